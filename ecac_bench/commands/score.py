"""`ecac-bench score`: TTS metrics and the reward for a predictions file."""

from __future__ import annotations

import argparse
from typing import Any

from ecac_bench.commands._common import add_match_args, match_config, match_tag
from ecac_bench.commands._metric import Measurement, MetricCommand
from ecac_bench.data import EcacDataset
from ecac_bench.imagestats import ImageStats
from ecac_bench.matching import MatchConfig
from ecac_bench.metrics import TTS, score_captions
from ecac_bench.predictions import Predictions


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_match_args(parser)
    parser.add_argument("--by", action="append", choices=("category", "area"), default=[], help="add a breakdown")


def _measure(args: argparse.Namespace, dataset: EcacDataset, predictions: Predictions) -> Measurement:
    match = match_config(args)
    result = score_captions(dataset, predictions, match=match, by=args.by)
    return Measurement(
        result.stats,
        coverage=result.coverage,
        config={**match.describe(), "allow_missing": args.allow_missing, "by": args.by},
        protocol={"match": match_tag(match)},
        sections={"breakdown": result.breakdown},
        title=f"match: {match_tag(match)}",
        per_image=lambda: _toys_per_image(dataset, predictions, match, result.stats),
    )


def _toys_per_image(
    dataset: EcacDataset, predictions: Predictions, match: MatchConfig, stats: ImageStats
) -> dict[str, dict[str, Any]]:
    from ecac_bench.per_image import score_details  # only with --per-image: off the default path

    return score_details(dataset, predictions, match, stats)


COMMAND = MetricCommand(
    name="score",
    kind="score",
    help="score captions with TTS and the reward R(C)",
    allow_missing_help="score unpredicted images as empty captions",
    estimator=TTS,
    add_arguments=_arguments,
    measure=_measure,
)
register = COMMAND.register
