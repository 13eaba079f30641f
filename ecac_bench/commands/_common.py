"""Arguments and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ecac_bench.data import SAMPLE_DATA, EcacDataset, load_dataset

console = Console()


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="ECAC data: .jsonl, .parquet or a saved Hugging Face dataset dir "
        f"(default: the bundled sample, {SAMPLE_DATA.name})",
    )
    parser.add_argument("--split", default=None, help="keep only records of this split (default: all)")


def add_output_args(parser: argparse.ArgumentParser, default_model: str | None = None) -> None:
    parser.add_argument("--json", type=Path, default=None, help="write the JSON report here (atomically)")
    parser.add_argument("--model", default=default_model, help="model name recorded in the report")


def load_data(args: argparse.Namespace) -> EcacDataset:
    return load_dataset(args.data, split=args.split)


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metrics_table(
    title: str, rows: Sequence[tuple[str, Mapping[str, Any]]], keys: Sequence[str], extra: Sequence[str] = ()
) -> Table:
    """A table with one row per (label, values) and one column per key."""
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for key in (*keys, *extra):
        table.add_column(key, justify="right")
    for label, values in rows:
        table.add_row(label, *(fmt(values.get(k)) for k in (*keys, *extra)))
    return table
