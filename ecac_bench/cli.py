"""The `ecac-bench` command line: a thin adapter over the library."""

from __future__ import annotations

import argparse
import importlib
import sys

from pydantic import ValidationError

from ecac_bench import __version__
from ecac_bench.commands._output import error
from ecac_bench.data import DataValidationError
from ecac_bench.errors import ClientConfigError, RunStoppedError
from ecac_bench.forking import processes
from ecac_bench.gc_pause import no_gc

# Subcommand modules under ecac_bench.commands, in the order `--help` lists them: each has ``register(subparsers)``
# (a metric command is a ``MetricCommand``: commands/_metric.py). A new command is one module and one name here.
COMMANDS = (
    # metrics
    "score",
    "judge",
    "toy_precision",
    "utility",
    "balanced",
    # looking into results
    "view",
    "compare",
    # agreement with humans
    "rank",
    "agree",
    # data tools
    "stats",
    "validate",
    "make_qa",
    "annotate",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with ``only`` that one (its module alone is imported)."""
    parser = argparse.ArgumentParser(prog="ecac-bench", description="ECAC benchmark: score kindergarten captions.")
    parser.add_argument("--version", action="version", version=f"ecac-bench {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS if only is None else (only,):
        importlib.import_module(f"ecac_bench.commands.{name}").register(subparsers)
    return parser


def _requested_command(argv: list[str]) -> str | None:
    """The subcommand module named by argv, if any: `ecac-bench score` need not import the judge's openai."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    name = first.replace("-", "_") if first else None
    return name if name in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    # A command loads up to millions of small, acyclic objects (records, toys, captions); CPython's cyclic GC would
    # rescan them again and again (about a third of `score`'s time at ECAC scale) for almost no cyclic garbage.
    # Reference counting still frees everything as usual; a caller in the same process (a test, a notebook) gets
    # the collector back as it was.
    with no_gc():
        return _run(sys.argv[1:] if argv is None else argv)


def _run(argv: list[str]) -> int:
    args = build_parser(_requested_command(argv)).parse_args(argv)
    try:
        processes()  # a bad ECAC_PROCESSES is an error before any work, not only on a large input
        return args.func(args)
    except ValidationError as exc:  # a report that does not follow the schema: a bug, said plainly
        error(f"the report does not follow schema 2 (docs/report_schema.md): {exc}")
        return 2
    except (DataValidationError, OSError, ImportError, ValueError, ClientConfigError, RunStoppedError) as exc:
        # Bad input (a folder where a file is expected, permission denied, a full disk among them), a missing
        # optional extra, an endpoint that rejects every request, or a response cache that failed on write: a clear
        # message and exit code 2, no traceback. Judge answers received before the run stopped are already in the
        # response cache (or in the fallback file the message names).
        error(_message(exc))
        return 2


def _message(exc: Exception) -> str:
    """One line: ``PATH: what is wrong`` for an OS error about a file, the exception's own text otherwise."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
