"""`ecac-bench judge`: the MLLM-judge score (0-100) of a predictions file."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import orjson

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
from ecac_bench.judge import (
    LANGS,
    aggregate_judge_scores,
    inputs_from_predictions,
    judge_captions,
    prompt_version,
)
from ecac_bench.llm import LLMClient, failure_counts
from ecac_bench.report import build_report, write_bytes_atomic

METRICS = ("judge_score", "judge_score_std", "n", "n_failed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "judge", help="MLLM-judge score (0-100) of captions through an OpenAI-compatible API"
    )
    add_data_args(parser)
    add_predictions_args(parser, "judge only the predicted images")
    parser.add_argument("--lang", choices=LANGS, default="zh", help="prompt language (default zh)")
    parser.add_argument("--text-only", action="store_true", help="do not send the image (for text-only judges)")
    parser.add_argument("--items", type=Path, default=None, help="also write per-caption scores here (JSONL)")
    add_llm_args(parser, parse_retries=2)
    add_output_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = llm_settings(args)
    dataset, predictions_path, predictions = load_data_and_predictions(args)
    inputs = inputs_from_predictions(dataset, predictions, with_image=not args.text_only)
    client = LLMClient.from_settings(settings)
    outcomes = asyncio.run(judge_captions(client, inputs, lang=args.lang, parse_retries=settings.parse_retries))
    summary = aggregate_judge_scores([o.score for o in outcomes])
    model = args.model or Path(predictions_path).stem
    report = build_report(
        "ecac-bench/judge",
        model=model,
        dataset=dataset.describe(),
        metrics=summary.to_dict(),
        coverage={"images": len(dataset), "predicted": len(predictions), "captions": len(inputs)},
        config={
            "lang": args.lang,
            "prompt": prompt_version(args.lang),
            "parse_retries": settings.parse_retries,
            "with_image": not args.text_only,
        },
        predictions=file_identity(predictions_path),
        failures=failure_counts(o.error for o in outcomes),
        **llm_report_fields(client),
    )
    console.print(metrics_table(f"MLLM judge ({client.config.model})", [(model, report["metrics"])], METRICS))
    stats = client.stats
    console.print(
        f"requests: {stats.requests} ({stats.cached} cached, {stats.answered} answered, {stats.failed} failed; "
        f"{stats.retries} retries); tokens: {stats.prompt_tokens} prompt + {stats.completion_tokens} completion"
    )
    if report["failures"]:
        console.print(f"[yellow]failures:[/yellow] {report['failures']}")
    if args.items:
        lines = b"".join(orjson.dumps(o.to_dict()) + b"\n" for o in outcomes)
        write_bytes_atomic(args.items, lines)
    return finish(args, report, predictions, 0 if summary.n else 1)
