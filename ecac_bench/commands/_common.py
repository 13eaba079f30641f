"""Arguments, inputs and report helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ecac_bench.commands._output import console, line, plain, say, text
from ecac_bench.data import SAMPLE_DATA, SAMPLE_PREDICTIONS, EcacDataset, load_dataset
from ecac_bench.generations import N_FAILED_KEY, FailureAllowance
from ecac_bench.hub import data_location
from ecac_bench.matching import MatchConfig
from ecac_bench.predictions import Predictions, load_predictions
from ecac_bench.report import file_sha256, write_json_atomic


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=data_location,
        default=None,
        help="ECAC data: .jsonl, .parquet, a saved Hugging Face dataset dir, or hf://org/name[:config] (a Hub "
        f"dataset) (default: the bundled sample, {SAMPLE_DATA.name})",
    )
    parser.add_argument("--split", default=None, help="keep only records of this split (default: all)")


def add_output_args(parser: argparse.ArgumentParser, default_model: str | None = None) -> None:
    parser.add_argument("--json", type=Path, default=None, help="write the JSON report here (atomically)")
    parser.add_argument("--model", default=default_model, help="model name recorded in the report")


def _count(text_value: str) -> int:
    try:
        value = int(text_value)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count (0, 1, 2, ...), got {text_value!r}")
    return value


def add_ci_args(parser: argparse.ArgumentParser, seed_help: str = "bootstrap seed (default 0)") -> None:
    """``--n-boot`` and ``--seed``: every metric with a CI in the registry gets a bootstrap CI in the report."""
    parser.add_argument(
        "--n-boot",
        type=_count,
        default=1000,
        help="bootstrap resamples for the 95%% confidence intervals (default 1000; 0: no intervals)",
    )
    parser.add_argument("--seed", type=int, default=0, help=seed_help)


def _allowance(text_value: str) -> FailureAllowance:
    try:
        return FailureAllowance.parse(text_value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--allow-failed: ")) from None


def add_predictions_args(parser: argparse.ArgumentParser, allow_missing_help: str) -> None:
    parser.add_argument(
        "--predictions",
        type=Path,
        default=None,
        help="JSONL of {id, caption} or {id, captions}, or an lmms-eval samples file "
        "(default: the sample's system-a predictions)",
    )
    parser.add_argument("--allow-missing", action="store_true", help=allow_missing_help)
    parser.add_argument(
        "--allow-failed",
        type=_allowance,
        default=FailureAllowance(),
        metavar="N",
        help="failed generations (docs/data_format.md) are never scored, and by default any of them makes the "
        "command exit 2 after writing its report; allow N of them (a count, or a fraction when 0 < N < 1)",
    )
    parser.add_argument(
        "--prompt-id",
        default="unknown",
        help="the prompt the captions were generated with, recorded in the report (default 'unknown'); an id of "
        "this harness's templates (e.g. caption.zh@2) also records the template's content hash",
    )


def add_match_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--match", choices=("exact", "fuzzy"), default="exact", help="matching rule (default exact)")
    parser.add_argument("--fuzzy-threshold", type=float, default=90.0, help="rapidfuzz partial_ratio threshold")


def match_config(args: argparse.Namespace) -> MatchConfig:
    return MatchConfig(args.match, args.fuzzy_threshold)


def match_tag(match: MatchConfig) -> str:
    """How a signature names the matching rule: ``exact`` or ``fuzzy@90``."""
    return "exact" if match.mode == "exact" else f"fuzzy@{match.threshold:g}"


def load_data(args: argparse.Namespace) -> EcacDataset:
    return load_dataset(args.data, split=args.split)


def load_data_and_predictions(args: argparse.Namespace) -> tuple[EcacDataset, Path, Predictions]:
    """The dataset, the predictions file (default: the sample's system-a) and its captions per image id (failed
    generations recorded apart: they reach no metric)."""
    dataset = load_data(args)
    path = args.predictions or SAMPLE_PREDICTIONS["system-a"]
    return dataset, path, load_predictions(path, dataset, allow_missing=args.allow_missing)


def caption_prompt_identity(prompt_id: str) -> dict[str, str | None]:
    """How a report names the prompt the scored captions were generated with: ``--prompt-id`` and, when it names
    one of this harness's templates at its current version (``caption.zh@2``), that template's content hash."""
    name, _, version = prompt_id.partition("@")
    task, _, lang = name.rpartition(".")
    if task and lang and version:
        # Imported here: jinja2 costs `score` a fifth of a second of start-up, and most ids are not ours.
        from ecac_bench.prompts import load_prompt

        try:
            template = load_prompt(task, lang)
        except ValueError:
            template = None
        if template is not None and template.version == version:
            return template.identity()
    return {"id": prompt_id, "sha256": None}


def file_identity(path: Path) -> dict[str, str]:
    """How a report names an input file: its path and content hash."""
    return {"path": str(path), "sha256": file_sha256(path)}


def write_report(args: argparse.Namespace, report: Mapping[str, Any]) -> None:
    """Write the report to ``--json`` (atomically) when given."""
    if args.json:
        write_json_atomic(args.json, report)
        say("report written to ", text(args.json))


def print_signature(report: Mapping[str, Any]) -> None:
    """The report's signature under its tables, on one line (never wrapped: it is copied as it is)."""
    console.print(line(("signature: ", "dim"), text(report["signature"])), soft_wrap=True)


def finish(args: argparse.Namespace, report: dict[str, Any], predictions: Predictions, code: int = 0) -> int:
    """The end of every command that scores a predictions file: write the report (``--json``), then exit 2 if there
    were more failed generations than ``--allow-failed`` allows (after writing: nothing computed is lost), else
    ``code``."""
    write_report(args, report)
    failed, total = predictions.n_failed_generations, predictions.n_generations
    if not args.allow_failed.exceeded(failed, total):
        if failed:
            say((f"{failed} failed generation(s) left out of every metric (allowed)", "yellow"))
        return code
    where = f"the report is in {plain(args.json)}" if args.json else "no report file was asked for (--json)"
    print(
        f"error: {failed} of {total} generations failed ({N_FAILED_KEY}; allowed: {args.allow_failed.describe()}); "
        f"every metric leaves them out; {where}; fix or regenerate them, or pass --allow-failed N",
        file=sys.stderr,
    )
    return 2
