"""Arguments shared by the subcommands that call a judge model through :mod:`ecac_bench.llm_client`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ecac_bench.llm_client import (
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_CACHE_DIR,
    ENV_MODEL,
    ClientConfig,
    LLMClient,
    ResponseCache,
)


def add_llm_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("judge model (any OpenAI-compatible endpoint, e.g. `vllm serve MODEL`)")
    group.add_argument("--judge-model", default=None, help=f"model name (default ${ENV_MODEL})")
    group.add_argument(
        "--judge-base-url", default=None, help=f"API base URL (default ${ENV_BASE_URL}, then $OPENAI_BASE_URL)"
    )
    group.add_argument(
        "--judge-api-key",
        default=None,
        help=f"API key; prefer ${ENV_API_KEY} or $OPENAI_API_KEY (a flag is visible to other users in `ps`)",
    )
    group.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    group.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    group.add_argument("--max-retries", type=int, default=6, help="retries on 429/5xx/timeouts (default 6)")
    group.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default 0)")
    group.add_argument("--max-tokens", type=int, default=None, help="answer length limit (default: the server's)")
    group.add_argument("--image-max-side", type=int, default=1024, help="downscale images to this side (px)")
    group.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help=f"response cache dir (default ${ENV_CACHE_DIR} or ~/.cache/ecac-bench)",
    )
    group.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    group.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def client_from_args(args: argparse.Namespace) -> LLMClient:
    params: dict[str, float | int] = {"temperature": args.temperature}
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    config = ClientConfig.resolve(
        model=args.judge_model,
        base_url=args.judge_base_url,
        api_key=args.judge_api_key,
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_retries=args.max_retries,
        image_max_side=args.image_max_side,
        params=params,
    )
    cache = None if args.no_cache else ResponseCache.in_dir(args.cache_dir)
    return LLMClient(config, cache, progress=not args.no_progress)


def llm_report_fields(client: LLMClient) -> dict[str, object]:
    """What a report records about the judge and its calls (never the key)."""
    return {
        "judge": client.config.describe(),
        "usage": client.stats.to_dict(),
        "cache": str(client.cache.path) if client.cache is not None else None,
    }
