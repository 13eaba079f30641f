"""`ecac-bench utility`: CapRL caption utility (a text-only LLM answers image questions from the caption)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

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
from ecac_bench.prompts import load_prompt
from ecac_bench.report import build_report
from ecac_bench.utility import caption_utility, load_questions

METRICS = ("utility", "utility_micro", "n_images", "n_questions", "n_failed", "n_unparsed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("utility", help="CapRL caption utility: answer image questions from captions")
    add_data_args(parser)
    parser.add_argument("--questions", type=Path, required=True, help="JSONL {id, question, options, answer}")
    add_predictions_args(parser, "missing captions count as empty")
    parser.add_argument("--rounds", type=int, default=4, help="shuffled rounds per question (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    parser.add_argument("--lang", choices=("zh", "en"), default="zh", help="prompt language (default zh)")
    add_llm_args(parser)
    add_output_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = llm_settings(args)
    dataset, predictions_path, predictions = load_data_and_predictions(args)
    # The questions of an image whose generation failed are not asked: a failure is never scored (as an empty caption).
    items = [q for q in load_questions(args.questions, dataset) if q.id not in predictions.failed]
    client = LLMClient.from_settings(settings)
    result = asyncio.run(
        caption_utility(client, items, predictions, rounds=args.rounds, seed=args.seed, lang=args.lang)
    )
    model = args.model or Path(predictions_path).stem
    report = build_report(
        "ecac-bench/utility",
        model=model,
        dataset=dataset.describe(),
        metrics=result.metrics(),
        config={
            "rounds": args.rounds,
            "seed": args.seed,
            "lang": args.lang,
            "prompt": load_prompt("utility_answer", args.lang).tag,
        },
        questions={**file_identity(args.questions), "n": len(items)},
        predictions=file_identity(predictions_path),
        per_image=result.per_image,
        **llm_report_fields(client),
    )
    console.print(metrics_table(f"caption utility ({client.config.model})", [(model, report["metrics"])], METRICS))
    return finish(args, report, predictions, 0 if result.n_rounds else 1)
