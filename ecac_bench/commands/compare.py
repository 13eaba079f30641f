"""`ecac-bench compare`: is system B's metric different from system A's? Paired tests over the same images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from ecac_bench.commands._common import add_data_args, add_match_args, load_data, match_config
from ecac_bench.commands._output import console, fmt, line, say, text
from ecac_bench.compare import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_TRIALS,
    CompareConfig,
    CompareError,
    compare_sides,
    is_per_image_file,
    load_sides,
)
from ecac_bench.report import write_json_atomic


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a count (0, 1, 2, ...), got {value!r}")
    return int(value)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="B - A for every metric, with a paired bootstrap CI and p-values (paired bootstrap, randomisation)",
        description="Compare two systems on the same images. Each of A and B is a per-image file (--per-image of "
        "any metric command) or a predictions file (captions JSONL or lmms-eval samples; scored with TTS on --data). "
        "docs/compare.md defines the tests.",
    )
    parser.add_argument("files", nargs="*", type=Path, metavar="FILE", help="A then B (per-image or predictions files)")
    parser.add_argument(
        "--predictions", type=Path, action="append", default=[], help="a predictions file: give it twice (A, then B)"
    )
    add_data_args(parser)
    add_match_args(parser)
    parser.add_argument("--allow-missing", action="store_true", help="score unpredicted images as empty captions")
    parser.add_argument(
        "--common-images",
        action="store_true",
        help="compare on the images both systems have statistics for (default: a difference in images is an error)",
    )
    parser.add_argument(
        "--n-boot",
        type=_count,
        default=DEFAULT_BOOTSTRAP,
        help=f"paired bootstrap resamples (default {DEFAULT_BOOTSTRAP}; 0: no CI and no bootstrap p-value)",
    )
    parser.add_argument(
        "--trials",
        type=_count,
        default=DEFAULT_TRIALS,
        help=f"approximate randomisation trials (default {DEFAULT_TRIALS}; 0: none); with at most log2(trials) "
        "images every swap is enumerated instead (the exact p-value)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the resamples and of the trials (default 0)")
    parser.add_argument("--json", type=Path, default=None, help="write the comparison as JSON here (atomically)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = [*args.files, *args.predictions]
    # the data: to score a predictions file on, or, when given, to check per-image files against
    needs_data = args.data is not None or any(path.is_file() and not is_per_image_file(path) for path in paths)
    dataset = load_data(args) if needs_data else None
    try:
        a, b = load_sides(paths, dataset, match_config(args), args.allow_missing)
        result = compare_sides(a, b, CompareConfig(args.n_boot, args.trials, args.seed), args.common_images)
    except CompareError as exc:
        raise ValueError(str(exc)) from None  # the CLI's one bad-input path: message, exit 2
    print_comparison(result)
    if args.json:
        write_json_atomic(args.json, result)
        say("comparison written to ", text(args.json))
    return 0


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.4f}" if value >= 0.0001 else f"{value:.1e}"


def _ci(value: Any) -> str:
    return "—" if value is None else f"{value[0]:+.2f}..{value[1]:+.2f}"


def print_comparison(result: dict[str, Any]) -> None:
    a, b, ds = result["a"], result["b"], result["dataset"]
    say("A: ", text(a["model"], "bold"), " (", text(a["source"]["path"]), ")")
    say("B: ", text(b["model"], "bold"), " (", text(b["source"]["path"]), ")")
    dropped = result["images_left_out"]
    extra = f"; left out: {dropped['only_a']} only in A, {dropped['only_b']} only in B" if any(dropped.values()) else ""
    say(text(ds["name"], "bold"), f": {result['images']} images compared (dataset size {ds['size']}){extra}")
    table = Table(title=text(f"{result['kind']}: B - A"), title_justify="left")
    for column in ("metric", "A", "B", "B - A", "95% CI", "p boot", "p rand"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, m in result["metrics"].items():
        diff = "—" if m["difference"] is None else f"{m['difference']:+.2f}"
        table.add_row(
            text(key), fmt(m["a"]), fmt(m["b"]), diff, _ci(m["ci"]), _p(m["p_bootstrap"]), _p(m["p_randomization"])
        )
    console.print(table)
    boot, rand = result["methods"]["bootstrap"], result["methods"]["randomization"]
    seed = "" if rand["seed"] is None else f", seed {rand['seed']}"
    console.print(
        line(
            ("tests: ", "dim"),
            f"paired bootstrap, {boot['n_boot']} resamples, seed {boot['seed']}; "
            f"{rand['method']}, {rand['trials']} trials{seed}; 95% CI: of B - A (paired bootstrap); "
            "p: two-sided (docs/compare.md)",
        )
    )
