"""The `ecac-bench` command line: a thin adapter over the library."""

from __future__ import annotations

import argparse
import importlib
import sys

from ecac_bench import __version__
from ecac_bench.data import DataValidationError
from ecac_bench.llm_client import ClientConfigError, FatalAPIError

# Subcommand modules under ecac_bench.commands, in the order `--help` lists them.
COMMANDS = (
    "score",
    "stats",
    "validate",
    "judge",
    "toy_precision",
    "rank",
    "agree",
    "utility",
    "balanced",
    "make_qa",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecac-bench", description="ECAC benchmark: score kindergarten captions.")
    parser.add_argument("--version", action="version", version=f"ecac-bench {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"ecac_bench.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataValidationError, FileNotFoundError, ValueError, ClientConfigError, FatalAPIError) as exc:
        # Bad input or an endpoint that rejects every request: a clear message and exit code 2, no traceback.
        # Judge answers received before a FatalAPIError are already in the response cache.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
