"""`ecac-bench rank`: per-caption scores of candidate captions, the input of `ecac-bench agree`."""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

import orjson

from ecac_bench.agreement import load_candidates
from ecac_bench.clip_ranker import add_clip_args, clip_scores
from ecac_bench.commands._common import add_data_args, add_match_args, console, file_identity, load_data, match_config
from ecac_bench.commands._llm import add_llm_args, llm_report_fields, llm_settings
from ecac_bench.generations import N_FAILED_KEY, generation_failure
from ecac_bench.judge import LANGS, JudgeInput, judge_captions, prompt_version
from ecac_bench.llm import LLMClient
from ecac_bench.matching import ToyMatcher
from ecac_bench.metrics import toy_reward
from ecac_bench.report import build_report, write_bytes_atomic, write_json_atomic

METHODS = ("reward", "judge_score", "clip")


def register(subparsers: argparse._SubParsersAction) -> None:
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
        console.print(f"[red]error:[/red] unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
        return 2
    settings = llm_settings(args)
    dataset = load_data(args)
    candidates = load_candidates(args.candidates, dataset.by_id)
    # A failed generation (an empty caption, lmms-eval's failure marker) gets no score from any method: `agree`
    # then leaves its image out, instead of ranking a failure as the worst caption.
    failed = [generation_failure(c.caption) is not None for c in candidates]
    scores: list[dict[str, float | None]] = [dict.fromkeys(methods) if f else {} for f in failed]
    scored = [(i, row, c) for i, (row, c, f) in enumerate(zip(scores, candidates, failed, strict=True)) if not f]
    extra: dict[str, object] = {}
    config: dict[str, object] = {"methods": methods}
    if "reward" in methods:
        match = match_config(args)
        matcher = ToyMatcher(match)
        for _, row, c in scored:
            row["reward"] = toy_reward(dataset.by_id[c.id].toys, c.caption, matcher)
        config.update(match.describe())
    if "clip" in methods:  # before the judge: a wrong --clip-model stops the run before anything is paid
        values, config["clip"] = clip_scores(args, [(dataset.by_id[c.id].image, c.caption) for _, _, c in scored])
        for (_, row, _), value in zip(scored, values, strict=True):
            row["clip"] = value  # None where the image cannot be read: `agree` leaves that image out
    if "judge_score" in methods:
        inputs = [JudgeInput(c.id, c.caption, dataset.by_id[c.id].image, i) for i, _, c in scored]
        client = LLMClient.from_settings(settings)
        outcomes = asyncio.run(judge_captions(client, inputs, lang=args.lang, parse_retries=settings.parse_retries))
        for (_, row, _), outcome in zip(scored, outcomes, strict=True):
            row["judge_score"] = outcome.score  # None for a failure: `agree` leaves that caption out
        config.update(lang=args.lang, prompt=prompt_version(args.lang))
        extra = llm_report_fields(client)
    lines = [
        orjson.dumps({"id": c.id, "caption_id": c.caption_id, "scores": row})
        for c, row in zip(candidates, scores, strict=True)
    ]
    write_bytes_atomic(args.out, b"\n".join(lines) + b"\n")
    means: dict[str, float | int | None] = {N_FAILED_KEY: sum(failed)}
    for m in methods:
        values = [v for row in scores if (v := row.get(m)) is not None]
        means[m] = statistics.fmean(values) if values else None
        means[f"n_{m}"] = len(values)
    console.print(f"scored {len(candidates)} captions of {len({c.id for c in candidates})} images -> {args.out}")
    if any(failed):
        console.print(
            f"[yellow]{sum(failed)} failed generation(s) (empty or lmms-eval failure marker): no score[/yellow]"
        )
    console.print(f"means: {means}")
    if args.json:
        report = build_report(
            "ecac-bench/rank",
            model=args.candidates.stem,
            dataset=dataset.describe(),
            metrics=means,
            config=config,
            candidates=file_identity(args.candidates),
            scores_file=str(args.out),
            **extra,
        )
        write_json_atomic(args.json, report)
        console.print(f"report written to {args.json}")
    return 0
