"""The viewer's command line, shared by `ecac-bench view` and `python -m ecac_bench.viewer build`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ecac_bench.commands._output import say, text
from ecac_bench.viewer.build import build_viewer


def _count(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive count, got {value!r}")
    return int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="one score per-image file (ecac-bench score --per-image FILE), or two to show side by side (A, B)",
    )
    parser.add_argument("--out", type=Path, default=None, help="the page to write (default: the first FILE as .html)")
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
    if len(args.files) > 2:
        raise ValueError(f"view shows one or two per-image files side by side, got {len(args.files)}")
    out = args.out or args.files[0].with_suffix(".html")
    page = build_viewer(args.files, out, embed_images=args.embed_images, limit=args.limit, title=args.title)
    images = "embedded" if page.embedded else "linked by relative path"
    say(f"viewer: {len(page.cards)} images ({images}) written to ", text(out))
    return 0
