"""The one path every metric command takes: load data and predictions -> per-image statistics -> aggregate and
bootstrap -> report -> table -> finish.

A metric command is a :class:`MetricCommand`: its name, its registry kind, its estimator, its own arguments and a
``measure`` function that turns (arguments, dataset, predictions) into a :class:`Measurement` (the per-image
statistics plus what the report should say about how they were made). Everything else (the shared arguments, the
bootstrap, the schema-checked report with its signature, the tables drawn from the registry, the failed-generation
exit rule) happens here, the same way for every metric. docs/contributing.md: adding a metric.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text

from ecac_bench import registry
from ecac_bench.commands._common import (
    add_ci_args,
    add_data_args,
    add_output_args,
    add_predictions_args,
    caption_prompt_identity,
    file_identity,
    finish,
    load_data_and_predictions,
    print_signature,
)
from ecac_bench.commands._output import console, line, say, table, text
from ecac_bench.data import EcacDataset
from ecac_bench.imagestats import BootstrapConfig, Estimator, ImageStats, evaluate
from ecac_bench.predictions import Predictions
from ecac_bench.report import build_report

# Metric columns per table: with the CI row, more would not fit an 80-column terminal.
_COLUMNS_PER_TABLE = 4


@dataclass
class Measurement:
    """What a metric's ``measure`` step found: per-image statistics and how they were made."""

    stats: ImageStats
    coverage: dict[str, Any]
    config: dict[str, Any]
    protocol: dict[str, Any] = field(default_factory=dict)  # match, precision_match, extractor, judge
    sections: dict[str, Any] = field(default_factory=dict)  # optional report fields: judge, failures, inputs, ...
    title: str = ""  # shown after the kind's title, e.g. the judge model
    notes: list[Text] = field(default_factory=list)  # printed under the tables
    # What the kind adds to each image's row of the per-image file (``--per-image``): image id -> fields. Called only
    # when that file is asked for, so the default path never pays for it.
    per_image: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None


Measure = Callable[[argparse.Namespace, EcacDataset, Predictions], Measurement]


@dataclass(frozen=True)
class MetricCommand:
    """A declarative metric command (see the module docstring)."""

    name: str
    kind: str
    help: str
    allow_missing_help: str
    estimator: Estimator
    add_arguments: Callable[[argparse.ArgumentParser], None]
    measure: Measure
    # Whether nothing could be measured (given the metrics and the predictions): the command then exits 1, after
    # writing its report.
    nothing_measured: Callable[[Mapping[str, Any], Predictions], bool] | None = None
    seed_help: str = "bootstrap seed (default 0)"

    def register(self, subparsers: argparse._SubParsersAction) -> None:
        parser = subparsers.add_parser(self.name, help=self.help)
        add_data_args(parser)
        add_predictions_args(parser, self.allow_missing_help)
        self.add_arguments(parser)
        add_ci_args(parser, self.seed_help)
        add_output_args(parser)
        parser.add_argument(
            "--per-image",
            type=Path,
            default=None,
            metavar="FILE",
            help="also write one JSONL row per image here: its captions, status and per-image statistics (and for "
            "score, each toy named or missed and where); `ecac-bench view` and `compare` read it (docs/viewer.md)",
        )
        parser.set_defaults(func=functools.partial(run, self))


def run(command: MetricCommand, args: argparse.Namespace) -> int:
    dataset, predictions_path, predictions = load_data_and_predictions(args)
    measured = command.measure(args, dataset, predictions)
    result = evaluate(
        measured.stats, command.estimator, BootstrapConfig(args.n_boot, args.seed) if args.n_boot else None
    )
    kind = registry.kind(command.kind)
    sections = dict(measured.sections)
    if args.per_image:
        sections["outputs"] = {**sections.get("outputs", {}), "per_image": str(args.per_image)}
    report = build_report(
        kind.report_kind,
        model=args.model or predictions_path.stem,
        dataset=dataset.describe(),
        metrics=result.metrics,
        ci=result.ci,
        ci_config=result.ci_config,
        protocol={"caption_prompt": caption_prompt_identity(args.prompt_id), **measured.protocol},
        config={**measured.config, "allow_failed": args.allow_failed.value},
        coverage={**measured.coverage, **predictions.failure_summary()},
        predictions=file_identity(predictions_path),
        **sections,
    )
    print_report(report, measured.title)
    for note in measured.notes:
        console.print(note)
    if args.per_image:
        _write_per_image(args.per_image, report, dataset, predictions, measured, result.stats)
    empty = command.nothing_measured is not None and command.nothing_measured(result.metrics, predictions)
    return finish(args, report, predictions, 1 if empty else 0)


def _write_per_image(
    path: Path,
    report: Mapping[str, Any],
    dataset: EcacDataset,
    predictions: Predictions,
    measured: Measurement,
    stats: ImageStats,
) -> None:
    from ecac_bench.per_image import image_rows, per_image_header, write_per_image  # only when asked for

    details = measured.per_image() if measured.per_image is not None else None
    rows = image_rows(dataset, predictions, stats, details, path.resolve().parent)
    write_per_image(path, per_image_header(report, stats.columns), rows)
    say("per-image results written to ", text(path))


def metric_columns(kind: str) -> list[list[str]]:
    """The kind's measured (non-count) metrics as tables' columns: the leaderboard's main ones first, then the
    rest, in registry order, at most _COLUMNS_PER_TABLE per table."""
    measured = [m for m in registry.metrics(kind) if not m.is_count]
    main = [m.key for m in measured if m.table == "main"]
    rest = [m.key for m in measured if m.key not in main]
    chunk = _COLUMNS_PER_TABLE
    return [part for keys in (main, rest) for part in (keys[i : i + chunk] for i in range(0, len(keys), chunk))]


def _interval(value: Sequence[float] | None) -> str | None:
    return None if value is None else f"{value[0]:.2f}–{value[1]:.2f}"


def print_report(report: Mapping[str, Any], title: str = "") -> None:
    """The report as the terminal shows it: the data and coverage line, the metrics (with their 95% CIs and, where
    the coverage says so, the images each averages over), the counts, the breakdowns, and the signature."""
    kind = registry.kind_of_report(report["kind"])
    assert kind is not None
    model, metrics, coverage = report["model"], report["metrics"], report["coverage"]
    ds = report["dataset"]
    split = f", split {ds['split']}" if ds["split"] else ""
    facts = []
    if "predicted" in coverage:
        facts.append(f"predicted {coverage['predicted']}" + (f"/{coverage['images']}" if "images" in coverage else ""))
    facts += [
        f"{label} {coverage[k]}" for k, label in (("failed_images", "failed"), ("missing", "missing")) if k in coverage
    ]
    console.print(line(text(ds["name"], "bold"), f" ({ds['size']} images{split})", "; " * bool(facts), *_join(facts)))
    rows: list[tuple[object, Mapping[str, Any]]] = [(model, metrics)]
    if report.get("ci"):
        rows.append(("95% CI", {k: _interval(v) for k, v in report["ci"].items()}))
    if isinstance(coverage.get("metric_images"), Mapping):
        rows.append(("images", coverage["metric_images"]))
    heading = kind.title + (f" ({title})" if title else "")
    for columns in metric_columns(kind.name):
        console.print(table(heading, columns, rows))
        heading = f"{kind.title} (continued)"
    counts = [m.key for m in registry.metrics(kind.name) if m.is_count]
    if counts:
        console.print(table("counts", counts, [(model, metrics)]))
    main = metric_columns(kind.name)[0]
    for by, groups in report.get("breakdown", {}).items():
        group_rows = [(f"{value} (n={g['images']})", g["metrics"]) for value, g in groups.items()]
        console.print(table(f"by {by}", main, group_rows))
    print_signature(report)


def _join(parts: Sequence[str]) -> list[str]:
    return [", ".join(parts)] if parts else []
