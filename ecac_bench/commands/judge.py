"""`ecac-bench judge`: the MLLM-judge score (0-100) of a predictions file."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import orjson

from ecac_bench.commands._llm import add_llm_args, llm_report_fields, llm_settings
from ecac_bench.commands._metric import Measurement, MetricCommand
from ecac_bench.commands._output import line, text
from ecac_bench.data import EcacDataset
from ecac_bench.judge import (
    JUDGE,
    LANGS,
    JudgeOutcome,
    inputs_from_predictions,
    judge_captions,
    judge_statistics,
    prompt_version,
)
from ecac_bench.llm import LLMClient, failure_counts
from ecac_bench.predictions import Predictions
from ecac_bench.prompts import load_prompt
from ecac_bench.report import write_bytes_atomic
from ecac_bench.report_schema import judge_identity


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lang", choices=LANGS, default="zh", help="prompt language (default zh)")
    parser.add_argument("--text-only", action="store_true", help="do not send the image (for text-only judges)")
    parser.add_argument("--items", type=Path, default=None, help="also write per-caption scores here (JSONL)")
    add_llm_args(parser, parse_retries=2)


def _measure(args: argparse.Namespace, dataset: EcacDataset, predictions: Predictions) -> Measurement:
    settings = llm_settings(args)
    inputs = inputs_from_predictions(dataset, predictions, with_image=not args.text_only)
    client = LLMClient.from_settings(settings)
    outcomes = asyncio.run(judge_captions(client, inputs, lang=args.lang, parse_retries=settings.parse_retries))
    if args.items:
        write_bytes_atomic(args.items, b"".join(orjson.dumps(o.to_dict()) + b"\n" for o in outcomes))
    failures = failure_counts(o.error for o in outcomes)
    stats = client.stats
    notes = [
        line(
            f"requests: {stats.requests} ({stats.cached} cached, {stats.answered} answered, {stats.failed} failed; "
            f"{stats.retries} retries); tokens: {stats.prompt_tokens} prompt + {stats.completion_tokens} completion"
        )
    ]
    if failures:
        notes.append(line(("failures: ", "yellow"), text(failures)))
    templates = (load_prompt("judge_score", args.lang), load_prompt("judge_score_repair", args.lang))
    return Measurement(
        judge_statistics([o.id for o in outcomes], [o.score for o in outcomes]),
        coverage={"images": len(dataset), "predicted": len(predictions), "captions": len(inputs)},
        config={
            "lang": args.lang,
            "prompt": prompt_version(args.lang),
            "parse_retries": settings.parse_retries,
            "with_image": not args.text_only,
        },
        protocol={"judge": judge_identity(client, *templates)},
        sections={
            "failures": failures,
            "outputs": {"items": str(args.items)} if args.items else {},
            **llm_report_fields(client),
        },
        title=client.config.model,
        notes=notes,
        per_image=lambda: _judge_per_image(outcomes),
    )


def _judge_per_image(outcomes: list[JudgeOutcome]) -> dict[str, dict[str, Any]]:
    """Each image's judge answers for the per-image file: per caption, its score or why it has none."""
    out: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        entry = {"caption": o.index, "score": o.score, "error": o.error}
        out.setdefault(o.id, {"details": {"judge": []}})["details"]["judge"].append(entry)
    return out


COMMAND = MetricCommand(
    name="judge",
    kind="judge",
    help="MLLM-judge score (0-100) of captions through an OpenAI-compatible API",
    allow_missing_help="judge only the predicted images",
    estimator=JUDGE,
    add_arguments=_arguments,
    measure=_measure,
    nothing_measured=lambda metrics, _: not metrics["n"],
)
register = COMMAND.register
