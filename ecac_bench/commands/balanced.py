"""`ecac-bench balanced`: BalCapRL's precision (with pointability), recall, linguistic score and b-CapScore."""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from pathlib import Path

from ecac_bench.balanced import aggregate_balanced, balanced_items, balanced_scores
from ecac_bench.commands._common import add_data_args, add_output_args, console, load_data, metrics_table
from ecac_bench.commands._llm import add_llm_args, client_from_args, llm_report_fields
from ecac_bench.commands._sibling import add_vlm_args, vlm_client
from ecac_bench.data import SAMPLE_PREDICTIONS
from ecac_bench.llm_client import ClientConfigError, FatalAPIError
from ecac_bench.predictions import load_predictions
from ecac_bench.report import build_report, file_sha256, write_json_atomic

METRICS = ("balanced_precision", "balanced_recall", "linguistic", "b_capscore", "n", "n_failed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("balanced", help="BalCapRL balanced score: precision, recall, linguistic")
    add_data_args(parser)
    parser.add_argument("--predictions", type=Path, default=None, help="captions JSONL (default: sample system-a)")
    parser.add_argument("--allow-missing", action="store_true", help="score only the predicted images")
    parser.add_argument("--lang", choices=("zh", "en"), default="zh", help="prompt language (default zh)")
    parser.add_argument("--parse-retries", type=int, default=2, help="repair turns for unreadable answers")
    add_llm_args(parser)
    add_vlm_args(parser)
    add_output_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_data(args)
    predictions_path = args.predictions or SAMPLE_PREDICTIONS["system-a"]
    predictions = load_predictions(predictions_path, dataset, allow_missing=args.allow_missing)
    try:
        llm = client_from_args(args)
        vlm = vlm_client(args, llm)
        images = asyncio.run(
            balanced_scores(llm, vlm, balanced_items(dataset, predictions), lang=args.lang, retries=args.parse_retries)
        )
    except (ClientConfigError, FatalAPIError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    result = aggregate_balanced(images)
    model = args.model or Path(predictions_path).stem
    report = build_report(
        "ecac-bench/balanced",
        model=model,
        dataset=dataset.describe(),
        metrics=result.metrics(),
        config={"lang": args.lang, "parse_retries": args.parse_retries, "vlm": vlm.config.describe()},
        predictions={"path": str(predictions_path), "sha256": file_sha256(predictions_path)},
        failures=dict(Counter(i.error.split(":")[0] for i in images if i.error)),
        **llm_report_fields(llm),
    )
    console.print(metrics_table(f"balanced score ({llm.config.model})", [(model, report["metrics"])], METRICS))
    if args.json:
        write_json_atomic(args.json, report)
        console.print(f"report written to {args.json}")
    return 0 if result.n else 1
