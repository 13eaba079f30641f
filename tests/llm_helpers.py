"""Helpers shared by the LLM client tests (tests/test_llm_*.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from judge_server import JudgeServer

from ecac_bench.llm import ChatRequest, ClientConfig, Endpoint, LLMClient, ResponseCache, user_message


def fresh(server: JudgeServer) -> JudgeServer:
    """The shared server, back to its defaults with zeroed counters."""
    server.wait_idle()
    state = server.state
    state.reset()
    state.latency = 0.0
    state.retry_after = "0"
    state.slow_seconds = 2.0
    state.api_key = None
    state.keep_bodies = False
    state.structured = "accept"
    state.usage_raw = None
    state.down = False
    state.responder = None
    return server


def make_client(
    urls: str | tuple[str, ...], cache: Path | ResponseCache | None = None, *, key: str = "sk-local", **options: Any
) -> LLMClient:
    """A client of ``urls`` (fast backoff, 5 s timeout unless given), with a cache file or object when given."""
    options = {"timeout": 5.0, "backoff_base": 0.001, **options}
    config = ClientConfig(Endpoint((urls,) if isinstance(urls, str) else urls, "test-judge", key), **options)
    if isinstance(cache, Path):
        cache = ResponseCache(cache)
    return LLMClient(config, cache, progress=False, seed=0)


def requests_for(texts: list[str], template: str = "test@1") -> list[ChatRequest]:
    return [ChatRequest((user_message(t),), template) for t in texts]
