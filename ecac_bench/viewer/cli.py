"""The viewer's command line, shared by `ecac-bench view` and `python -m ecac_bench.viewer build`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ecac_bench.commands._output import say, text
from ecac_bench.viewer.build import build_run_page, build_viewer


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive count, got {value!r}")
    return int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="one score per-image file (ecac-bench score --per-image FILE), or two to show side by side (A, B)",
    )
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        metavar="REPORT",
        help="instead of FILEs: the page of a committed score run (its report in leaderboard/runs/; data and "
        "predictions found from the report, relative to the current folder, and checked against its hashes), "
        "written beside it as REPORT.viewer.html for the leaderboard to link",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="the page to write (default: the first FILE as .html, or beside --run)"
    )
    parser.add_argument(
        "--embed-images",
        action="store_true",
        help="embed downscaled JPEG copies of the images in the page (default: link them by relative path, never "
        "copy them; embed only images that may go wherever the page goes)",
    )
    parser.add_argument("--limit", type=_count, default=None, help="show only the first N images")
    parser.add_argument("--title", default=None, help="the page's title")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.run is not None:
        if args.files or args.limit is not None or args.title is not None:
            raise ValueError("--run builds a committed run's page: give no FILE, --limit or --title with it")
        out = args.out or args.run.with_name(f"{args.run.stem}.viewer.html")
        page = build_run_page(args.run, out, embed_images=args.embed_images)
    elif not 1 <= len(args.files) <= 2:
        raise ValueError(f"view shows one or two per-image files side by side (or --run REPORT), got {len(args.files)}")
    else:
        out = args.out or args.files[0].with_suffix(".html")
        page = build_viewer(args.files, out, embed_images=args.embed_images, limit=args.limit, title=args.title)
    images = "embedded" if page.embedded else "linked by relative path"
    say(f"viewer: {len(page.cards)} images ({images}) written to ", text(out))
    return 0
