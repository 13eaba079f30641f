"""`ecac-bench score`: TTS metrics and the reward for a predictions file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ecac_bench.commands._common import (
    add_data_args,
    add_match_args,
    add_output_args,
    add_predictions_args,
    console,
    file_identity,
    finish,
    load_data_and_predictions,
    match_config,
    metrics_table,
)
from ecac_bench.metrics import METRIC_KEYS, SUBSET_KEYS, score_captions
from ecac_bench.report import build_report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("score", help="score captions with TTS and the reward R(C)")
    add_data_args(parser)
    add_predictions_args(parser, "score unpredicted images as empty captions")
    add_match_args(parser)
    parser.add_argument("--by", action="append", choices=("category", "area"), default=[], help="add a breakdown")
    parser.add_argument("--ci", action="store_true", help="bootstrap 95%% confidence intervals")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    add_output_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset, predictions_path, predictions = load_data_and_predictions(args)
    match = match_config(args)
    result = score_captions(
        dataset, predictions, match=match, by=args.by, ci=args.ci, n_boot=args.n_boot, seed=args.seed
    )
    model = args.model or Path(predictions_path).stem
    body = result.to_dict()
    report = build_report(
        "ecac-bench/score",
        model=model,
        dataset=dataset.describe(),
        metrics=body.pop("metrics"),
        coverage=body.pop("coverage"),
        config={**match.describe(), "allow_missing": args.allow_missing, "by": args.by},
        predictions=file_identity(predictions_path),
        **body,
    )
    _print(report, model)
    return finish(args, report, predictions)


def _print(report: dict, model: str) -> None:
    metrics, coverage = report["metrics"], report["coverage"]
    covered = coverage["metric_images"]
    rows = [(model, metrics), ("images", covered)]
    if "ci" in report:
        rows.insert(1, ("95% CI", {k: f"{v[0]:.2f}–{v[1]:.2f}" if v else None for k, v in report["ci"].items()}))
    ds = report["dataset"]
    console.print(
        f"[bold]{ds['name']}[/bold] ({ds['size']} images{', split ' + ds['split'] if ds['split'] else ''}); "
        f"predicted {coverage['predicted']}/{coverage['images']}, failed {coverage['failed_images']}, "
        f"missing {coverage['missing']}; match: {report['config']['match']}"
    )
    console.print(metrics_table("TTS (0-100) and reward", rows, SUBSET_KEYS[:4], ("reward",)))
    console.print(metrics_table("TTS by level x ground", rows, SUBSET_KEYS[4:]))
    for field, groups in report.get("breakdown", {}).items():
        group_rows = [(f"{value} (n={g['images']})", g["metrics"]) for value, g in groups.items()]
        console.print(metrics_table(f"by {field}", group_rows, METRIC_KEYS[:4], ("reward",)))
