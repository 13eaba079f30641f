"""`ecac-bench toy-precision`: toy precision (micro, macro) and average toy count of a predictions file."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ecac_bench.commands._common import add_match_args, match_config, match_tag
from ecac_bench.commands._llm import add_llm_args, llm_report_fields, llm_settings
from ecac_bench.commands._metric import Measurement, MetricCommand
from ecac_bench.commands._output import line
from ecac_bench.data import EcacDataset
from ecac_bench.judge import LANGS
from ecac_bench.llm import LLMClient, failure_counts
from ecac_bench.predictions import Predictions
from ecac_bench.prompts import load_prompt
from ecac_bench.report_schema import judge_identity
from ecac_bench.toy_precision import (
    EXTRACTORS,
    PRECISION_MATCHES,
    TOY_PRECISION,
    LexiconExtractor,
    describe_precision_match,
    extract_with_lexicon,
    extract_with_llm,
    toy_precision,
)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--extractor", choices=EXTRACTORS, default="llm", help="how names are extracted (default llm)")
    parser.add_argument("--lang", choices=LANGS, default="zh", help="extraction prompt language (default zh)")
    parser.add_argument(
        "--precision-match",
        choices=PRECISION_MATCHES,
        default="equal",
        help="when an extracted name is correct: 'equal' (default, the paper's Eq. 7: it equals an annotated name "
        "or alias after normalisation) or 'contains' (lenient, not the paper's: an annotated name occurs in it)",
    )
    add_match_args(parser)
    add_llm_args(parser, parse_retries=1)


def _measure(args: argparse.Namespace, dataset: EcacDataset, predictions: Predictions) -> Measurement:
    settings = llm_settings(args)
    match = match_config(args)
    config: dict[str, Any] = {
        **match.describe(),
        "extractor": args.extractor,
        "precision_match": describe_precision_match(args.precision_match),
    }
    protocol: dict[str, Any] = {
        "match": match_tag(match),
        "precision_match": args.precision_match,
        "extractor": args.extractor,
    }
    sections: dict[str, Any] = {}
    names: Mapping[str, Sequence[str] | None]
    failures: dict[str, str] = {}
    if args.extractor == "lexicon":
        names = extract_with_lexicon(LexiconExtractor.for_dataset(dataset, match), predictions)
    else:
        client = LLMClient.from_settings(settings)
        names, failures = asyncio.run(
            extract_with_llm(client, predictions, lang=args.lang, parse_retries=settings.parse_retries)
        )
        templates = (load_prompt("toy_extract", args.lang), load_prompt("toy_extract_repair", args.lang))
        config.update(lang=args.lang, prompt=templates[0].tag, parse_retries=settings.parse_retries)
        protocol["judge"] = judge_identity(client, *templates)
        sections = llm_report_fields(client)
    result = toy_precision(dataset, names, match, args.precision_match)
    return Measurement(
        result.stats,
        coverage={"images": len(dataset), "predicted": len(predictions)},
        config=config,
        protocol=protocol,
        sections={"failures": failure_counts(failures.values()), **sections},
        title=f"{args.extractor} extractor",
        notes=[
            line(f"leaderboard: toy_precision (micro, pooled over all extracted names); {config['precision_match']}")
        ],
        per_image=lambda: {
            **{i.id: {"details": {"extracted": list(i.extracted), "correct": list(i.correct)}} for i in result.images},
            **{image_id: {"details": {"error": error}} for image_id, error in failures.items()},
        },
    )


COMMAND = MetricCommand(
    name="toy-precision",
    kind="toy-precision",
    help="toy precision and average toy count (names extracted by an LLM or a lexicon)",
    allow_missing_help="use only the predicted images",
    estimator=TOY_PRECISION,
    add_arguments=_arguments,
    measure=_measure,
    nothing_measured=lambda metrics, predictions: not metrics["n_images"] and bool(predictions),
)
register = COMMAND.register
