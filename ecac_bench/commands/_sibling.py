"""Options shared by the sibling-method commands (utility, balanced, make-qa): a second endpoint for the VLM."""

from __future__ import annotations

import argparse
from dataclasses import replace

from ecac_bench.llm_client import LLMClient


def add_vlm_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("vision model for image-grounded steps (default: the judge endpoint)")
    group.add_argument("--vlm-model", default=None, help="VLM name (default: --judge-model)")
    group.add_argument("--vlm-base-url", default=None, help="VLM API base URL (default: the judge's)")


def vlm_client(args: argparse.Namespace, llm: LLMClient) -> LLMClient:
    """The VLM client: the judge client's settings and cache, with the model / endpoint overridden."""
    config = replace(
        llm.config, model=args.vlm_model or llm.config.model, base_url=args.vlm_base_url or llm.config.base_url
    )
    return LLMClient(config, llm.cache, progress=llm.progress)
