"""`ecac-bench balanced`: BalCapRL's precision (with pointability), recall, linguistic score and b-CapScore."""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from pathlib import Path

from ecac_bench.balanced import aggregate_balanced, balanced_items, balanced_scores
from ecac_bench.commands._common import (
    add_data_args,
    add_output_args,
    add_predictions_args,
    console,
    file_identity,
    finish,
    load_data_and_predictions,
    metrics_table,
)
from ecac_bench.commands._llm import add_llm_args, llm_report_fields, llm_settings
from ecac_bench.llm import LLMClient
from ecac_bench.report import build_report

METRICS = ("balanced_precision", "balanced_recall", "linguistic", "b_capscore", "n", "n_failed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("balanced", help="BalCapRL balanced score: precision, recall, linguistic")
    add_data_args(parser)
    add_predictions_args(parser, "score only the predicted images")
    parser.add_argument("--lang", choices=("zh", "en"), default="zh", help="prompt language (default zh)")
    add_llm_args(parser, vlm=True, parse_retries=2)
    add_output_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = llm_settings(args)
    dataset, predictions_path, predictions = load_data_and_predictions(args)
    llm, vlm = LLMClient.from_settings(settings), LLMClient.from_settings(settings, "vlm")
    items = balanced_items(dataset, predictions)
    images = asyncio.run(balanced_scores(llm, vlm, items, lang=args.lang, retries=settings.parse_retries))
    result = aggregate_balanced(images)
    model = args.model or Path(predictions_path).stem
    report = build_report(
        "ecac-bench/balanced",
        model=model,
        dataset=dataset.describe(),
        metrics=result.metrics(),
        config={"lang": args.lang, "parse_retries": settings.parse_retries, "vlm": vlm.describe()},
        predictions=file_identity(predictions_path),
        failures=dict(Counter(i.error.split(":")[0] for i in images if i.error)),
        **llm_report_fields(llm),
    )
    console.print(metrics_table(f"balanced score ({llm.config.model})", [(model, report["metrics"])], METRICS))
    return finish(args, report, predictions, 0 if result.n else 1)
