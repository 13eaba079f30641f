"""``python -m ecac_bench.leaderboard build``: the static leaderboard site from baselines and measured runs."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

from ecac_bench.commands._output import error, plain
from ecac_bench.leaderboard.build import BuildError, build_site

DEFAULT_BASELINES = Path("baselines/reported")
DEFAULT_RESULTS = Path("leaderboard/runs")
DEFAULT_OUT = Path("leaderboard/site")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m ecac_bench.leaderboard", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build index.html, leaderboard.csv/.json/.md")
    build.add_argument(
        "--results",
        type=Path,
        action="append",
        default=None,
        help=f"folder of measured results (ecac-bench reports, lmms-eval output); repeatable "
        f"(default {DEFAULT_RESULTS})",
    )
    build.add_argument(
        "--baselines",
        type=Path,
        action="append",
        default=None,
        help=f"folder of reported baselines and model facts (YAML/JSON); repeatable (default {DEFAULT_BASELINES})",
    )
    build.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"the site folder, replaced as a whole when the build succeeds (default {DEFAULT_OUT})",
    )
    build.add_argument("--skip-bad", action="store_true", help="leave out unreadable inputs (listed on the page)")
    build.add_argument(
        "--stamp", action="store_true", help="print the build time in the site (off: byte-identical rebuilds)"
    )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if args.stamp else None
    try:
        result = build_site(
            args.baselines or [DEFAULT_BASELINES],
            args.results or [DEFAULT_RESULTS],
            args.out,
            skip_bad=args.skip_bad,
            stamp=stamp,
        )
    except BuildError as exc:
        error(exc)
        return 2
    for problem in result.skipped:
        print(f"skipped: {plain(problem)}", file=sys.stderr)
    for board in result.boards:
        print(f"{plain(board.dataset.label)}: {len(board.rows)} rows")
    print(f"wrote {args.out}/ ({len(result.written)} files): open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
