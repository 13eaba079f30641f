"""`ecac-bench toy-precision`: toy precision (micro, macro) and average toy count of a predictions file."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
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
from ecac_bench.commands._llm import add_llm_args, llm_report_fields, llm_settings
from ecac_bench.judge import LANGS
from ecac_bench.llm import LLMClient, failure_counts
from ecac_bench.prompts import load_prompt
from ecac_bench.report import build_report
from ecac_bench.toy_precision import (
    EXTRACTORS,
    PRECISION_MATCHES,
    LexiconExtractor,
    describe_precision_match,
    extract_with_lexicon,
    extract_with_llm,
    toy_precision,
)

METRICS = ("toy_precision", "toy_precision_macro", "avg_toy_count", "n_failed")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "toy-precision", help="toy precision and average toy count (names extracted by an LLM or a lexicon)"
    )
    add_data_args(parser)
    add_predictions_args(parser, "use only the predicted images")
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
    add_output_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = llm_settings(args)
    dataset, predictions_path, predictions = load_data_and_predictions(args)
    match = match_config(args)
    config: dict[str, object] = {
        **match.describe(),
        "extractor": args.extractor,
        "precision_match": describe_precision_match(args.precision_match),
    }
    extra: dict[str, object] = {}
    names: Mapping[str, Sequence[str] | None]
    failures: dict[str, str] = {}
    if args.extractor == "lexicon":
        names = extract_with_lexicon(LexiconExtractor.for_dataset(dataset, match), predictions)
    else:
        client = LLMClient.from_settings(settings)
        names, failures = asyncio.run(
            extract_with_llm(client, predictions, lang=args.lang, parse_retries=settings.parse_retries)
        )
        prompt = load_prompt("toy_extract", args.lang).tag
        config.update(lang=args.lang, prompt=prompt, parse_retries=settings.parse_retries)
        extra = llm_report_fields(client)
    result = toy_precision(dataset, names, match, args.precision_match)
    model = args.model or Path(predictions_path).stem
    report = build_report(
        "ecac-bench/toy-precision",
        model=model,
        dataset=dataset.describe(),
        metrics=result.metrics(),
        coverage={"images": len(dataset), "predicted": len(predictions)},
        config=config,
        predictions=file_identity(predictions_path),
        failures=failure_counts(failures.values()),
        **extra,
    )
    console.print(metrics_table(f"toy precision ({args.extractor} extractor)", [(model, report["metrics"])], METRICS))
    console.print(f"leaderboard: toy_precision (micro, pooled over all extracted names); {config['precision_match']}")
    return finish(args, report, predictions, 0 if result.n_images or not predictions else 1)
