"""`ecac-bench validate`: check a data file (and optionally a predictions file) without scoring."""

from __future__ import annotations

import argparse
from pathlib import Path

from ecac_bench.commands._output import plain, say, text
from ecac_bench.data import MAX_PROBLEMS, SAMPLE_DATA, DataValidationError, Problem, load_dataset, validate_dataset
from ecac_bench.hub import data_location, is_hub_uri
from ecac_bench.predictions import load_predictions


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("validate", help="validate an ECAC data file (all problems, with file:line:field)")
    parser.add_argument(
        "--data", type=data_location, default=None, help="data file or hf://org/name[:config] (default: the sample)"
    )
    parser.add_argument("--predictions", type=Path, default=None, help="also check a predictions file against it")
    parser.add_argument("--allow-missing", action="store_true", help="with --predictions: missing ids are fine")
    parser.add_argument("--no-check-images", action="store_true", help="do not check that image files exist")
    parser.set_defaults(func=run)


def _problems(path: str | Path, check_images: bool) -> list[Problem]:
    if not is_hub_uri(path):
        return validate_dataset(path, check_images=check_images)
    try:  # a Hub dataset: its records are validated as it loads (ecac_bench.hub)
        dataset = load_dataset(path)
    except DataValidationError as exc:
        return exc.problems
    missing = [r for r in dataset if not r.image.is_file()] if check_images else []
    return [Problem(str(path), None, "image", f"{r.id}: file not found: {r.image}") for r in missing[:MAX_PROBLEMS]]


def run(args: argparse.Namespace) -> int:
    path = args.data or SAMPLE_DATA
    problems = _problems(path, check_images=not args.no_check_images)
    if problems:
        for problem in problems:
            print(plain(problem))  # plain print: one problem per line, never wrapped to the terminal width
        capped = " (stopped at the cap)" if len(problems) >= MAX_PROBLEMS else ""
        say((f"{len(problems)} problem(s){capped}", "red"), " in ", text(path))
        return 1
    dataset = load_dataset(path)
    say(("OK", "green"), " ", text(path), f": {len(dataset)} records")
    if args.predictions:
        try:
            predictions = load_predictions(args.predictions, dataset, allow_missing=args.allow_missing)
        except DataValidationError as exc:
            print("\n".join(plain(part) for part in str(exc).split("\n")))
            return 1
        failed = predictions.failure_summary()
        say(
            ("OK", "green"),
            " ",
            text(args.predictions),
            f": {len(predictions)} predicted images, {failed['failed_images']} with failed generations "
            f"({failed['n_failed_generations']} generations, never scored; see docs/data_format.md)",
        )
    return 0
