"""`ecac-bench balanced`: BalCapRL's precision (with pointability), recall, linguistic score and b-CapScore."""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import asdict

from ecac_bench.balanced import BALANCED, BALANCED_PROMPTS, aggregate_balanced, balanced_items, balanced_scores
from ecac_bench.commands._llm import add_llm_args, llm_report_fields, llm_settings
from ecac_bench.commands._metric import Measurement, MetricCommand
from ecac_bench.data import EcacDataset
from ecac_bench.llm import LLMClient
from ecac_bench.predictions import Predictions
from ecac_bench.prompts import load_prompt
from ecac_bench.report_schema import judge_identity


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=("zh", "en"), default="zh", help="prompt language (default zh)")
    add_llm_args(parser, vlm=True, parse_retries=2)


def _measure(args: argparse.Namespace, dataset: EcacDataset, predictions: Predictions) -> Measurement:
    settings = llm_settings(args)
    llm, vlm = LLMClient.from_settings(settings), LLMClient.from_settings(settings, "vlm")
    items = balanced_items(dataset, predictions)
    images = asyncio.run(balanced_scores(llm, vlm, items, lang=args.lang, retries=settings.parse_retries))
    judge = judge_identity(llm, *(load_prompt(task, args.lang) for task in BALANCED_PROMPTS))
    judge["params"] = {**judge["params"], "vlm": vlm.config.model}  # the verifier is part of what the numbers mean
    return Measurement(
        aggregate_balanced(images).stats,
        coverage={"images": len(dataset), "predicted": len(predictions), "items": len(items)},
        config={"lang": args.lang, "parse_retries": settings.parse_retries},
        protocol={"judge": judge},
        sections={
            "failures": dict(Counter(i.error.split(":")[0] for i in images if i.error)),
            "vlm": vlm.describe(),
            **llm_report_fields(llm),
        },
        title=llm.config.model,
        per_image=lambda: {i.id: {"details": {**asdict(i), "b_capscore": i.b_capscore}} for i in images},
    )


COMMAND = MetricCommand(
    name="balanced",
    kind="balanced",
    help="BalCapRL balanced score: precision, recall, linguistic",
    allow_missing_help="score only the predicted images",
    estimator=BALANCED,
    add_arguments=_arguments,
    measure=_measure,
    nothing_measured=lambda metrics, _: not metrics["n"],
)
register = COMMAND.register
