"""`ecac-bench stats`: the make-up of a dataset."""

from __future__ import annotations

import argparse

from rich.table import Table

from ecac_bench.commands._common import add_data_args, load_data
from ecac_bench.commands._output import console, say, text
from ecac_bench.data import CATEGORIES, GROUNDS, LEVELS
from ecac_bench.paper import PAPER_DATASET
from ecac_bench.report import tool_record, write_json_atomic
from ecac_bench.stats import DatasetStats, dataset_stats


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("stats", help="images per category/area, toys per level/ground")
    add_data_args(parser)
    parser.add_argument("--json", default=None, help="also write the statistics as JSON (a data tool record)")
    parser.add_argument("--plot", default=None, help="also draw them (.svg/.png/.pdf; needs matplotlib)")
    parser.add_argument("--paper", action="store_true", help="also print the paper's dataset facts beside these")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_data(args)
    stats = dataset_stats(dataset)
    say(
        text(dataset.name, "bold"),
        f": {stats.images} images, {stats.toys} toys ({stats.distinct_toy_names} distinct names); splits ",
        text(stats.images_per_split),
    )
    # Every value below comes from the data file: inert text, never markup (commands/_output.py).
    cats = Table(title="images per category", title_justify="left")
    cats.add_column("category")
    cats.add_column("images", justify="right")
    cats.add_column("%", justify="right")
    for category, n in stats.images_per_category.items():
        cats.add_row(text(category), str(n), f"{100 * n / max(stats.images, 1):.1f}")
    console.print(cats)
    areas = Table(title=text(f"images per area ({len(stats.images_per_area)} areas)"), title_justify="left")
    for col in ("area", "category", "images"):
        areas.add_column(col, justify="right" if col == "images" else "left")
    for area, info in stats.images_per_area.items():
        areas.add_row(text(area), text(info["category"]), str(info["images"]))
    console.print(areas)
    toys = Table(title="toys per level and ground", title_justify="left")
    toys.add_column("level")
    for ground in GROUNDS:
        toys.add_column(ground, justify="right")
    for level in LEVELS:
        toys.add_row(level, *(str(stats.toys_per_level_ground[level][g]) for g in GROUNDS))
    console.print(toys)
    say("toys per image: ", text(", ".join(f"{k}: {v}" for k, v in stats.toys_per_image.items())))
    if args.paper:
        console.print(paper_table(stats))
    if args.json:
        paper = {"paper": PAPER_DATASET.to_dict()} if args.paper else {}
        record = tool_record("ecac-bench/stats", dataset=dataset.describe(), **stats.to_dict(), **paper)
        write_json_atomic(args.json, record)
    if args.plot:
        from ecac_bench.stats_plot import plot_stats  # matplotlib is optional: import only when asked

        say("figure written to ", text(plot_stats(stats, f"{dataset.name}: {len(dataset)} images", args.plot)))
    return 0


def paper_table(stats: DatasetStats) -> Table:
    """The paper's dataset facts (ecac_bench.paper) beside the loaded data's; "—" where the data has no counterpart."""
    table = Table(title="the paper's ECAC beside the loaded data", title_justify="left")
    for col in ("", "paper", "loaded"):
        table.add_column(col, justify="left" if not col else "right")
    paper = PAPER_DATASET
    rows: list[tuple[str, int, int | None]] = [("images", paper.images, stats.images)]
    rows += [(f"  {c}", paper.images_per_category[c], stats.images_per_category[c]) for c in CATEGORIES]
    rows += [
        ("activity areas", paper.areas, len(stats.images_per_area)),
        ("SFT warm-up images (train split)", paper.sft_images, stats.images_per_split.get("train")),
        ("RSRS hybrid-stage images", paper.hybrid_images, None),
    ]
    for label, in_paper, loaded in rows:
        table.add_row(label, f"{in_paper:,}", "—" if loaded is None else f"{loaded:,}")
    return table
