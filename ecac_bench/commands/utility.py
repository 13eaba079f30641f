"""`ecac-bench utility`: CapRL caption utility (a text-only LLM answers image questions from the caption)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ecac_bench.commands._common import add_data_args, add_output_args, console, load_data, metrics_table
from ecac_bench.commands._llm import add_llm_args, client_from_args, llm_report_fields
from ecac_bench.data import SAMPLE_PREDICTIONS
from ecac_bench.llm_client import ClientConfigError, FatalAPIError
from ecac_bench.predictions import load_predictions
from ecac_bench.prompts import load_prompt
from ecac_bench.report import build_report, file_sha256, write_json_atomic
from ecac_bench.utility import caption_utility, load_questions

METRICS = ("utility", "utility_micro", "n_images", "n_questions", "n_failed", "n_unparsed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("utility", help="CapRL caption utility: answer image questions from captions")
    add_data_args(parser)
    parser.add_argument("--questions", type=Path, required=True, help="JSONL {id, question, options, answer}")
    parser.add_argument("--predictions", type=Path, default=None, help="captions JSONL (default: sample system-a)")
    parser.add_argument("--allow-missing", action="store_true", help="missing captions count as empty")
    parser.add_argument("--rounds", type=int, default=4, help="shuffled rounds per question (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    parser.add_argument("--lang", choices=("zh", "en"), default="zh", help="prompt language (default zh)")
    add_llm_args(parser)
    add_output_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    dataset = load_data(args)
    predictions_path = args.predictions or SAMPLE_PREDICTIONS["system-a"]
    predictions = load_predictions(predictions_path, dataset, allow_missing=args.allow_missing)
    items = load_questions(args.questions, dataset)
    try:
        client = client_from_args(args)
        result = asyncio.run(
            caption_utility(client, items, predictions, rounds=args.rounds, seed=args.seed, lang=args.lang)
        )
    except (ClientConfigError, FatalAPIError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
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
        questions={"path": str(args.questions), "sha256": file_sha256(args.questions), "n": len(items)},
        predictions={"path": str(predictions_path), "sha256": file_sha256(predictions_path)},
        per_image=result.per_image,
        **llm_report_fields(client),
    )
    console.print(metrics_table(f"caption utility ({client.config.model})", [(model, report["metrics"])], METRICS))
    if args.json:
        write_json_atomic(args.json, report)
        console.print(f"report written to {args.json}")
    return 0 if result.n_rounds else 1
