"""The LLM layer of ecac-bench: one OpenAI-compatible client, concurrent, retried, cached and resumable.

* :mod:`~ecac_bench.llm.settings`: the options (flags, environment, validation) and the endpoints;
* :mod:`~ecac_bench.llm.messages`: requests, message parts, JSON schemas, results;
* :mod:`~ecac_bench.llm.engine`: :class:`LLMClient`, the retrying, caching, concurrent engine;
* :mod:`~ecac_bench.llm.transport`: the transport seam and its aiohttp implementation;
* :mod:`~ecac_bench.llm.cache`: the SQLite response cache (schema v2, claims, fallback file);
* :mod:`~ecac_bench.llm.images`: image preparation (pixel budget, content hash, data URLs);
* :mod:`~ecac_bench.llm.parsing`: reading answers, and the ask-parse-repair loop.

docs/judges.md describes the behaviour; this package's names are its public API.
"""

from ecac_bench.errors import CacheWriteError, ClientConfigError, FatalAPIError, RunStoppedError
from ecac_bench.llm.cache import CACHE_FILE, ENV_CACHE_DIR, CachedAnswer, ResponseCache, default_cache_dir
from ecac_bench.llm.engine import LLMClient, RunStats, backoff_delay
from ecac_bench.llm.images import ImageError, ImageRule, image_data_url, image_sha256, prepare_image
from ecac_bench.llm.messages import ChatRequest, ChatResult, JsonSchema, image_part, text_part, user_message
from ecac_bench.llm.parsing import (
    MAX_ANSWER_CHARS,
    ParsedAnswer,
    answer_payloads,
    complete_parsed,
    failure_counts,
    json_answer,
    list_answer,
    normalized,
    object_schema,
)
from ecac_bench.llm.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_TOKENS,
    OPTIONS,
    PLACEHOLDER_API_KEY,
    ClientConfig,
    Endpoint,
    Settings,
)
from ecac_bench.llm.transport import AiohttpTransport, Transport, parse_retry_after

__all__ = [
    "CACHE_FILE",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_TOKENS",
    "ENV_CACHE_DIR",
    "MAX_ANSWER_CHARS",
    "OPTIONS",
    "PLACEHOLDER_API_KEY",
    "AiohttpTransport",
    "CacheWriteError",
    "CachedAnswer",
    "ChatRequest",
    "ChatResult",
    "ClientConfig",
    "ClientConfigError",
    "Endpoint",
    "FatalAPIError",
    "ImageError",
    "ImageRule",
    "JsonSchema",
    "LLMClient",
    "ParsedAnswer",
    "ResponseCache",
    "RunStats",
    "RunStoppedError",
    "Settings",
    "Transport",
    "answer_payloads",
    "backoff_delay",
    "complete_parsed",
    "default_cache_dir",
    "failure_counts",
    "image_data_url",
    "image_part",
    "image_sha256",
    "json_answer",
    "list_answer",
    "normalized",
    "object_schema",
    "parse_retry_after",
    "prepare_image",
    "text_part",
    "user_message",
]
