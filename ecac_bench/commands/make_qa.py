"""`ecac-bench make-qa`: generate multiple-choice questions per image with a VLM, then keep the good ones (a data
tool: ``ecac_bench.qa_tools``)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import orjson

from ecac_bench.commands._common import add_data_args, load_data
from ecac_bench.commands._llm import add_llm_args, llm_settings
from ecac_bench.commands._output import say, text
from ecac_bench.llm import LLMClient
from ecac_bench.qa_tools import filter_questions, generate_questions
from ecac_bench.report import write_bytes_atomic


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("make-qa", help="generate and filter CapRL questions for a dataset with a VLM")
    add_data_args(parser)
    parser.add_argument("--out", type=Path, required=True, help="write the kept questions here (JSONL)")
    parser.add_argument("--per-image", type=int, default=5, help="questions asked per image (default 5)")
    parser.add_argument("--rounds", type=int, default=4, help="shuffled rounds for the filter (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pass-visual-min", type=float, default=0.75, help="min accuracy with the image")
    parser.add_argument("--pass-textual-max", type=float, default=0.25, help="max accuracy with no caption (leak)")
    parser.add_argument("--no-filter", action="store_true", help="keep every generated question")
    parser.add_argument("--lang", choices=("zh", "en"), default="zh")
    add_llm_args(parser, vlm=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = llm_settings(args)
    dataset = load_data(args)
    llm, vlm = LLMClient.from_settings(settings), LLMClient.from_settings(settings, "vlm")
    items, failed = asyncio.run(generate_questions(vlm, dataset, per_image=args.per_image, lang=args.lang))
    kept = items
    if not args.no_filter:
        decisions = asyncio.run(
            filter_questions(
                llm,
                vlm,
                items,
                {r.id: r.image for r in dataset},
                rounds=args.rounds,
                seed=args.seed,
                lang=args.lang,
                pass_visual_min=args.pass_visual_min,
                pass_textual_max=args.pass_textual_max,
            )
        )
        kept = [d.item for d in decisions if d.kept]
    write_bytes_atomic(args.out, b"".join(orjson.dumps(i.to_dict()) + b"\n" for i in kept))
    say(
        f"{len(items)} questions generated for {len(dataset) - len(failed)} images ({len(failed)} failed); "
        f"{len(kept)} kept -> ",
        text(args.out),
    )
    return 0 if kept else 1
