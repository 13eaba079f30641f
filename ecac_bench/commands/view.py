"""`ecac-bench view`: the caption viewer, a static HTML page of one or two score per-image files."""

from __future__ import annotations

import argparse

from ecac_bench.viewer.cli import add_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "view",
        help="a static HTML page of per-image results: captions with the toys highlighted, filters, search",
        description="Build the caption viewer (docs/viewer.md) from one or two `score --per-image` files.",
    )
    add_arguments(parser)
