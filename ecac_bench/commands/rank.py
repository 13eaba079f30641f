"""`ecac-bench rank`: per-caption scores of candidate captions, the input of `ecac-bench agree`.

Each scoring method is one entry of :data:`METHODS`: a function that scores the candidates (None for a caption it
could not score) and says how (config, protocol fields, report sections). A new method is one function and one
entry."""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ecac_bench.agreement import Candidate, load_candidates
from ecac_bench.clip_ranker import add_clip_args, clip_scores
from ecac_bench.commands._common import (
    add_data_args,
    add_match_args,
    file_identity,
    load_data,
    match_config,
    match_tag,
    print_signature,
    write_report,
)
from ecac_bench.commands._output import error, say, text
from ecac_bench.data import EcacDataset
from ecac_bench.generations import N_FAILED_KEY, generation_failure
from ecac_bench.matching import ToyMatcher
from ecac_bench.metrics import toy_reward
from ecac_bench.report import build_report, write_bytes_atomic


@dataclass
class MethodScores:
    """One method's score per candidate (None: not scored) and what the report says about how."""

    scores: list[float | None]
    config: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)


Scorer = Callable[[argparse.Namespace, EcacDataset, Sequence[Candidate]], MethodScores]


def _reward(args: argparse.Namespace, dataset: EcacDataset, candidates: Sequence[Candidate]) -> MethodScores:
    match = match_config(args)
    matcher = ToyMatcher(match)
    scores = [toy_reward(dataset.by_id[c.id].toys, c.caption, matcher) for c in candidates]
    return MethodScores(scores, match.describe(), {"match": match_tag(match)})  # type: ignore[arg-type]


def _judge_score(args: argparse.Namespace, dataset: EcacDataset, candidates: Sequence[Candidate]) -> MethodScores:
    # Imported here: the judge's client is not needed by the other methods.
    from ecac_bench.commands._llm import llm_report_fields, llm_settings
    from ecac_bench.judge import JudgeInput, judge_captions, prompt_version
    from ecac_bench.llm import LLMClient
    from ecac_bench.prompts import load_prompt
    from ecac_bench.report_schema import judge_identity

    settings = llm_settings(args)
    inputs = [JudgeInput(c.id, c.caption, dataset.by_id[c.id].image, i) for i, c in enumerate(candidates)]
    client = LLMClient.from_settings(settings)
    outcomes = asyncio.run(judge_captions(client, inputs, lang=args.lang, parse_retries=settings.parse_retries))
    templates = (load_prompt("judge_score", args.lang), load_prompt("judge_score_repair", args.lang))
    return MethodScores(
        [o.score for o in outcomes],  # None for a failure: `agree` leaves that caption out
        {"lang": args.lang, "prompt": prompt_version(args.lang)},
        {"judge": judge_identity(client, *templates)},
        llm_report_fields(client),
    )


def _clip(args: argparse.Namespace, dataset: EcacDataset, candidates: Sequence[Candidate]) -> MethodScores:
    # None where the image cannot be read: `agree` leaves that image out
    values, config = clip_scores(args, [(dataset.by_id[c.id].image, c.caption) for c in candidates])
    return MethodScores(values, {"clip": config})


# Run in this order whatever order --methods gives: the paid judge last, so that a wrong --clip-model stops the run
# before anything is paid.
METHODS: dict[str, Scorer] = {"reward": _reward, "clip": _clip, "judge_score": _judge_score}


def register(subparsers: argparse._SubParsersAction) -> None:
    from ecac_bench.commands._llm import add_llm_args
    from ecac_bench.judge import LANGS

    parser = subparsers.add_parser(
        "rank", help="score candidate captions per caption (reward R(C), judge score, CN-CLIP similarity)"
    )
    add_data_args(parser)
    parser.add_argument(
        "--candidates", type=Path, required=True, help='JSONL {"id", "caption_id", "caption"} (K rows per image)'
    )
    parser.add_argument("--out", type=Path, required=True, help="scores JSONL to write (input of `agree --scores`)")
    parser.add_argument(
        "--methods", default="reward", help=f"comma-separated, from {','.join(METHODS)} (default reward)"
    )
    add_match_args(parser)
    parser.add_argument("--lang", choices=LANGS, default="zh", help="judge prompt language (default zh)")
    add_llm_args(parser, parse_retries=2)
    add_clip_args(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write a JSON report (means per method)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        error(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
        return 2
    dataset = load_data(args)
    candidates = load_candidates(args.candidates, dataset.by_id)
    # A failed generation (an empty caption, lmms-eval's failure marker) gets no score from any method: `agree`
    # then leaves its image out, instead of ranking a failure as the worst caption.
    failed = [generation_failure(c.caption) is not None for c in candidates]
    scored = [c for c, f in zip(candidates, failed, strict=True) if not f]
    rows: list[dict[str, float | None]] = [{} for _ in candidates]
    config: dict[str, Any] = {"methods": methods}
    protocol: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for name in (m for m in METHODS if m in methods):
        measured = METHODS[name](args, dataset, scored)
        values = iter(measured.scores)
        for row, f in zip(rows, failed, strict=True):
            row[name] = None if f else next(values)
        config.update(measured.config)
        protocol.update(measured.protocol)
        sections.update(measured.sections)
    lines = [
        orjson.dumps({"id": c.id, "caption_id": c.caption_id, "scores": row})
        for c, row in zip(candidates, rows, strict=True)
    ]
    write_bytes_atomic(args.out, b"\n".join(lines) + b"\n")
    means: dict[str, dict[str, float | int | None]] = {}
    for m in methods:
        values = [v for row in rows if (v := row.get(m)) is not None]
        means[m] = {"mean": statistics.fmean(values) if values else None, "n": len(values)}
    say(f"scored {len(candidates)} captions of {len({c.id for c in candidates})} images -> ", text(args.out))
    if any(failed):
        say((f"{sum(failed)} failed generation(s) (empty or lmms-eval failure marker): no score", "yellow"))
    say("means: ", text({m: v["mean"] for m, v in means.items()}))
    if args.json:
        report = build_report(
            "ecac-bench/rank",
            model=args.candidates.stem,
            dataset=dataset.describe(),
            metrics={
                "n_captions": len(candidates),
                "n_images": len({c.id for c in candidates}),
                N_FAILED_KEY: sum(failed),
            },
            protocol=protocol,
            config=config,
            methods=means,
            inputs={"candidates": file_identity(args.candidates)},
            outputs={"scores": str(args.out)},
            **sections,
        )
        write_report(args, report)
        print_signature(report)
    return 0
