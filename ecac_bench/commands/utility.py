"""`ecac-bench utility`: CapRL caption utility (a text-only LLM answers image questions from the caption)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ecac_bench.commands._common import file_identity
from ecac_bench.commands._llm import add_llm_args, llm_report_fields, llm_settings
from ecac_bench.commands._metric import Measurement, MetricCommand
from ecac_bench.data import EcacDataset
from ecac_bench.llm import LLMClient
from ecac_bench.predictions import Predictions
from ecac_bench.prompts import load_prompt
from ecac_bench.report_schema import judge_identity
from ecac_bench.utility import UTILITY, caption_utility, load_questions


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--questions", type=Path, required=True, help="JSONL {id, question, options, answer}")
    parser.add_argument("--rounds", type=int, default=4, help="shuffled rounds per question (default 4)")
    parser.add_argument("--lang", choices=("zh", "en"), default="zh", help="prompt language (default zh)")
    add_llm_args(parser)


def _measure(args: argparse.Namespace, dataset: EcacDataset, predictions: Predictions) -> Measurement:
    settings = llm_settings(args)
    # The questions of an image whose generation failed are not asked: a failure is never scored (as an empty caption).
    items = [q for q in load_questions(args.questions, dataset) if q.id not in predictions.failed]
    client = LLMClient.from_settings(settings)
    result = asyncio.run(
        caption_utility(client, items, predictions, rounds=args.rounds, seed=args.seed, lang=args.lang)
    )
    prompt = load_prompt("utility_answer", args.lang)
    return Measurement(
        result.stats,
        coverage={"images": len(dataset), "predicted": len(predictions), "questions": len(items)},
        config={"rounds": args.rounds, "seed": args.seed, "lang": args.lang, "prompt": prompt.tag},
        protocol={"judge": judge_identity(client, prompt)},
        sections={
            "inputs": {"questions": file_identity(args.questions)},
            "per_image": result.per_image,
            **llm_report_fields(client),
        },
        title=client.config.model,
        per_image=lambda: {image_id: {"details": {"accuracy": acc}} for image_id, acc in result.per_image.items()},
    )


COMMAND = MetricCommand(
    name="utility",
    kind="utility",
    help="CapRL caption utility: answer image questions from captions",
    allow_missing_help="missing captions count as empty",
    estimator=UTILITY,
    add_arguments=_arguments,
    measure=_measure,
    nothing_measured=lambda metrics, _: not metrics["n_rounds"],
    seed_help="seed of the option shuffles and of the bootstrap (default 0)",
)
register = COMMAND.register
