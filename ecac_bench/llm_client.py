"""The one OpenAI-compatible client of ecac-bench: concurrent, retried, cached and resumable.

Every judge call in the project goes through :class:`LLMClient` (vLLM's ``vllm serve`` or any hosted API):

* configuration from flags, then ``ECAC_JUDGE_BASE_URL`` / ``ECAC_JUDGE_API_KEY`` / ``ECAC_JUDGE_MODEL``, then the
  SDK's own ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (:meth:`ClientConfig.resolve`);
* images are given as ``{"type": "image_path", "path": ...}`` parts (:func:`image_part`) and sent as base64 data URLs
  downscaled to ``image_max_side``; the cache key sees them by content hash;
* bounded concurrency, a per-request deadline, and retries with exponential backoff + full jitter on 429 / 5xx /
  timeouts / connection errors / malformed bodies, honouring ``Retry-After`` (the SDK's own retries are off so that
  every retry is ours and counted);
* a SQLite response cache (:class:`ResponseCache`): each answer is committed the moment it arrives, so a killed run
  resumes and re-sends nothing already answered. Only answers are stored; never the API key.

See docs/judges.md for the exact cache key and resume semantics.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import io
import logging
import math
import os
import random
import re
import sqlite3
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai
import orjson
from tqdm.auto import tqdm

from ecac_bench.errors import ClientConfigError, FatalAPIError

__all__ = ["ClientConfigError", "FatalAPIError"]  # re-exported: they are part of this module's API

log = logging.getLogger("ecac_bench.llm")

ENV_BASE_URL = "ECAC_JUDGE_BASE_URL"
ENV_API_KEY = "ECAC_JUDGE_API_KEY"
ENV_MODEL = "ECAC_JUDGE_MODEL"
ENV_CACHE_DIR = "ECAC_CACHE_DIR"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
# vLLM started without --api-key accepts any key, but the SDK refuses an empty one.
PLACEHOLDER_API_KEY = "EMPTY"
CACHE_FILE = "llm_responses.sqlite"
# Bump when the meaning of a cached entry changes; old entries then simply stop matching.
CACHE_SCHEMA = 1
# Longest Retry-After we honour; a server asking for more gets this (the run must still finish).
MAX_RETRY_AFTER = 120.0


def default_cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "ecac-bench")


def _public_url(url: str) -> str:
    """The URL without a ``user:password@`` part or a query (either may carry a secret), for keys and reports."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class ClientConfig:
    """Where and how to call the model. ``api_key`` is excluded from ``repr`` and :meth:`describe`."""

    model: str
    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default=PLACEHOLDER_API_KEY, repr=False)
    concurrency: int = 32
    timeout: float = 60.0
    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    image_max_side: int = 1024
    params: Mapping[str, Any] = field(default_factory=lambda: {"temperature": 0.0})

    def __post_init__(self) -> None:
        if not self.model:
            raise ClientConfigError(f"no judge model: pass --judge-model or set {ENV_MODEL}")
        if self.concurrency < 1:
            raise ClientConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.timeout <= 0:
            raise ClientConfigError(f"timeout must be > 0 seconds, got {self.timeout}")
        if self.max_retries < 0:
            raise ClientConfigError(f"max_retries must be >= 0, got {self.max_retries}")

    @classmethod
    def resolve(
        cls,
        *,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> ClientConfig:
        """Flags first, then ``ECAC_JUDGE_*``, then ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, then defaults."""
        env = os.environ if env is None else env
        return cls(
            model=model or env.get(ENV_MODEL, ""),
            base_url=base_url or env.get(ENV_BASE_URL) or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
            api_key=api_key or env.get(ENV_API_KEY) or env.get("OPENAI_API_KEY") or PLACEHOLDER_API_KEY,
            **options,
        )

    @property
    def endpoint(self) -> str:
        return _public_url(self.base_url)

    def describe(self) -> dict[str, Any]:
        """What reports record about the judge: everything but the key."""
        return {
            "model": self.model,
            "base_url": self.endpoint,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "image_max_side": self.image_max_side,
            "params": dict(self.params),
        }


# ---------------------------------------------------------------------------------------------------------------
# Requests and results


def image_part(path: str | Path) -> dict[str, str]:
    """A message part for a local image; the client sends it as a downscaled base64 data URL."""
    return {"type": "image_path", "path": str(Path(path).resolve())}


def text_part(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def user_message(text: str, images: Sequence[str | Path] = ()) -> dict[str, Any]:
    """A user turn with the images first, then the text (the order VLM chat templates expect)."""
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [*(image_part(p) for p in images), text_part(text)]}


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make. ``params`` override the config's sampling parameters."""

    messages: tuple[Mapping[str, Any], ...]
    template_version: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatResult:
    """The answer to one request, or why there is none. ``attempts`` counts HTTP requests made this run."""

    text: str | None
    cached: bool = False
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.text is not None


@dataclass
class RunStats:
    """Counters over all batches of a client. ``prompt_tokens``/``completion_tokens`` sum every answer used (cached
    ones included); ``new_*`` only what was paid for in this run."""

    requests: int = 0
    cached: int = 0
    answered: int = 0
    failed: int = 0
    http_requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    new_prompt_tokens: int = 0
    new_completion_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# Cache


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    """Answers by request key in SQLite (WAL). One committed transaction per answer: a crash or kill loses at
    most the answers in flight, never corrupts the file, and other processes may share it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (sqlite3's implicit transactions are surprising).
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: committed data survives a process kill; only a power loss may drop the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL,"
            " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
        )

    @classmethod
    def in_dir(cls, cache_dir: str | Path | None = None) -> ResponseCache:
        return cls(Path(cache_dir or default_cache_dir()) / CACHE_FILE)

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedAnswer]:
        found: dict[str, CachedAnswer] = {}
        chunk = 900  # below SQLite's default limit on bound parameters
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            marks = ",".join("?" * len(part))
            query = f"SELECT key, text, prompt_tokens, completion_tokens FROM responses WHERE key IN ({marks})"
            rows = self._db.execute(query, part)
            for key, text, pt, ct in rows:
                found[key] = CachedAnswer(text, pt, ct)
        return found

    def put(self, key: str, model: str, answer: CachedAnswer) -> None:
        with self._db:  # BEGIN ... COMMIT, ROLLBACK on error
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                (key, model, answer.text, answer.prompt_tokens, answer.completion_tokens, time.time()),
            )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        self._db.close()


# ---------------------------------------------------------------------------------------------------------------
# Images


_IMAGE_HASHES: dict[tuple[str, int, int], str] = {}


def image_sha256(path: str) -> str:
    """Content hash of an image file, remembered per (path, mtime, size) so re-runs do not re-read files."""
    st = os.stat(path)
    memo_key = (path, st.st_mtime_ns, st.st_size)
    if memo_key not in _IMAGE_HASHES:
        _IMAGE_HASHES[memo_key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return _IMAGE_HASHES[memo_key]


def image_data_url(path: str | Path, max_side: int) -> str:
    """The image as a data URL; re-encoded (JPEG, or PNG with transparency) only when larger than ``max_side``
    or in a format other than JPEG/PNG/WEBP."""
    from PIL import Image, ImageOps  # deferred: pillow is only needed when images are sent

    raw = Path(path).read_bytes()
    with Image.open(io.BytesIO(raw)) as img:
        fmt = (img.format or "").upper()
        if max(img.size) <= max_side and fmt in ("JPEG", "PNG", "WEBP"):
            mime, data = f"image/{fmt.lower()}", raw
        else:
            img = ImageOps.exif_transpose(img)  # re-encoding drops EXIF: apply its rotation to the pixels first
            img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            out = io.BytesIO()
            if img.mode in ("RGBA", "LA", "P"):
                img.save(out, format="PNG")
                mime = "image/png"
            else:
                img.convert("RGB").save(out, format="JPEG", quality=90)
                mime = "image/jpeg"
            data = out.getvalue()
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# ---------------------------------------------------------------------------------------------------------------
# Errors and backoff


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    seconds: float | None = None
    if (ms := headers.get("retry-after-ms")) is not None:
        seconds = _to_float(ms, 1000.0)
    if seconds is None and (value := headers.get("retry-after")) is not None:
        seconds = _to_float(value, 1.0)
        if seconds is None:
            parsed = email.utils.parsedate_tz(value)
            seconds = None if parsed is None else email.utils.mktime_tz(parsed) - time.time()
    return None if seconds is None else min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _to_float(value: str, scale: float) -> float | None:
    try:
        number = float(value) / scale
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * (2**attempt)))


def _http_client() -> Any:
    """aiohttp under the SDK when installed (``openai[aiohttp]``): httpx's connection pool costs several times the
    CPU per request at high concurrency (bench/judge_throughput.py); otherwise the SDK's default (None)."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return None
    return openai.DefaultAioHttpClient()


def _answer_of(completion: Any) -> CachedAnswer:
    """Text and token usage of a chat.completion body; a body of another shape is a retryable error."""
    try:
        text = completion["choices"][0]["message"]["content"]
    except (TypeError, KeyError, IndexError) as exc:
        raise _Retryable("malformed response: no choices[0].message.content") from exc
    if not isinstance(text, str):
        raise _Retryable("malformed response: message content is not text")
    usage = completion.get("usage") or {}
    return CachedAnswer(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


# ---------------------------------------------------------------------------------------------------------------
# The client


class LLMClient:
    """Sends many :class:`ChatRequest` concurrently; see the module docstring for what it guarantees."""

    def __init__(
        self,
        config: ClientConfig,
        cache: ResponseCache | None = None,
        *,
        progress: bool = True,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.progress = progress
        self.stats = RunStats()
        self._rng = random.Random(seed)

    # -- keys --------------------------------------------------------------------------------------------------

    def _keyed_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):
                parts = [
                    {
                        "type": "image",
                        "sha256": image_sha256(p["path"]),
                        "max_side": self.config.image_max_side,
                    }
                    if p.get("type") == "image_path"
                    else p
                    for p in content
                ]
                message = {**message, "content": parts}
            out.append(message)
        return out

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        return {**self.config.params, **request.params}

    def key(self, request: ChatRequest) -> str:
        """sha256 over model, endpoint, messages (images by content hash), sampling params and template version."""
        payload = {
            "schema": CACHE_SCHEMA,
            "model": self.config.model,
            "endpoint": self.config.endpoint,
            "messages": self._keyed_messages(request.messages),
            "params": self._params(request),
            "template": request.template_version,
        }
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()

    # -- sending -----------------------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        key = self.config.api_key
        return text.replace(key, "***") if key and key != PLACEHOLDER_API_KEY else text

    async def _wire_messages(self, messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):
                parts = []
                for p in content:
                    if p.get("type") == "image_path":
                        # Decoding/resizing is CPU work: keep it off the event loop.
                        url = await asyncio.to_thread(image_data_url, p["path"], self.config.image_max_side)
                        parts.append({"type": "image_url", "image_url": {"url": url}})
                    else:
                        parts.append(dict(p))
                out.append({**message, "content": parts})
            else:
                out.append(dict(message))
        return out

    async def _call_once(self, api: openai.AsyncOpenAI, messages: list[dict[str, Any]], params: dict) -> CachedAnswer:
        body = {"model": self.config.model, "messages": messages, **params}
        try:
            # The SDK's generic `post` skips its per-call TypedDict transform and pydantic model building, which
            # cost about half of the client's CPU per request (see bench/judge_throughput.py); errors, auth and
            # headers are the SDK's as for `chat.completions.create`.
            completion = await asyncio.wait_for(
                api.post("/chat/completions", cast_to=dict, body=body, options={"timeout": self.config.timeout}),
                timeout=self.config.timeout,
            )
        except (asyncio.TimeoutError, openai.APITimeoutError) as exc:
            raise _Retryable("timeout") from exc
        except openai.APIConnectionError as exc:
            raise _Retryable(f"connection error: {exc}") from exc
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
            raise FatalAPIError(f"{self.config.endpoint}: HTTP {exc.status_code}: {self.redact(str(exc))}") from exc
        except openai.APIStatusError as exc:
            if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
                raise _Retryable(f"HTTP {exc.status_code}", parse_retry_after(exc.response.headers)) from exc
            raise
        except (ValueError, openai.APIResponseValidationError) as exc:  # a body that is not JSON
            raise _Retryable(f"malformed response: {type(exc).__name__}") from exc
        return _answer_of(completion)

    async def _send(self, api: openai.AsyncOpenAI, key: str, request: ChatRequest) -> ChatResult:
        messages = await self._wire_messages(request.messages)
        params = self._params(request)
        attempts = 0
        while True:
            attempts += 1
            self.stats.http_requests += 1
            try:
                answer = await self._call_once(api, messages, params)
            except _Retryable as exc:
                if attempts > self.config.max_retries:
                    return ChatResult(None, error=self.redact(f"{exc} (after {attempts} attempts)"), attempts=attempts)
                delay = exc.retry_after
                if delay is None:
                    delay = backoff_delay(attempts - 1, self.config.backoff_base, self.config.backoff_max, self._rng)
                self.stats.retries += 1
                log.debug("retrying in %.2fs: %s", delay, exc)
                await asyncio.sleep(delay)
                continue
            except openai.APIStatusError as exc:
                return ChatResult(None, error=self.redact(f"HTTP {exc.status_code}: {exc}"), attempts=attempts)
            if self.cache is not None:
                self.cache.put(key, self.config.model, answer)
            return ChatResult(answer.text, False, None, answer.prompt_tokens, answer.completion_tokens, attempts)

    async def acomplete(self, requests: Sequence[ChatRequest], desc: str = "llm") -> list[ChatResult]:
        """Answers in the order of ``requests``; identical requests are sent once. Raises :class:`FatalAPIError`
        when the endpoint rejects the key, the model or the path (answers so far are already cached)."""
        keys = [self.key(r) for r in requests]
        unique: dict[str, ChatRequest] = dict(zip(keys, requests, strict=True))
        cached = self.cache.get_many(list(unique)) if self.cache is not None else {}
        results: dict[str, ChatResult] = {
            k: ChatResult(a.text, True, None, a.prompt_tokens, a.completion_tokens) for k, a in cached.items()
        }
        todo = [k for k in unique if k not in results]
        bar = tqdm(total=len(unique), desc=desc, unit="req", disable=not self.progress, dynamic_ncols=True)
        bar.update(len(results))
        failed = 0

        def show() -> None:
            bar.set_postfix(cached=len(cached), failed=failed, refresh=False)

        show()
        if todo:
            semaphore = asyncio.Semaphore(self.config.concurrency)
            api = openai.AsyncOpenAI(
                base_url=self.config.base_url,
                api_key=self.config.api_key,
                max_retries=0,
                timeout=self.config.timeout,
                http_client=_http_client(),
            )

            async def worker(key: str) -> None:
                nonlocal failed
                async with semaphore:
                    result = await self._send(api, key, unique[key])
                results[key] = result
                if not result.ok:
                    failed += 1
                    log.warning("request failed: %s", result.error)
                bar.update(1)
                show()

            tasks = [asyncio.ensure_future(worker(k)) for k in todo]
            try:
                await asyncio.gather(*tasks)
            finally:  # on a fatal error: stop the other requests before closing the connection pool
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await api.close()
                bar.close()
        else:
            bar.close()
        self._count(len(requests), list(results.values()))
        return [results[k] for k in keys]

    def complete(self, requests: Sequence[ChatRequest], desc: str = "llm") -> list[ChatResult]:
        """Synchronous :meth:`acomplete`."""
        return asyncio.run(self.acomplete(requests, desc))

    def _count(self, n_requests: int, results: Sequence[ChatResult]) -> None:
        """Add one batch to the stats; ``results`` holds one entry per distinct request (tokens counted once)."""
        s = self.stats
        s.requests += n_requests
        s.cached += sum(r.cached for r in results)
        s.failed += sum(not r.ok for r in results)
        s.answered += sum(r.ok and not r.cached for r in results)
        for r in results:
            s.prompt_tokens += r.prompt_tokens
            s.completion_tokens += r.completion_tokens
            if not r.cached:
                s.new_prompt_tokens += r.prompt_tokens
                s.new_completion_tokens += r.completion_tokens


# ---------------------------------------------------------------------------------------------------------------
# Ask, parse, and repair


@dataclass(frozen=True)
class ParsedAnswer:
    """The parsed value of a conversation's last answer, or why there is none. ``rounds`` = answers asked for."""

    value: Any
    error: str | None
    rounds: int
    answer: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


# Quotes that models (or input methods) put where JSON wants '"'; NFKC already maps fullwidth ＂｛｝：.
_QUOTES = str.maketrans({c: '"' for c in "“”„‟″«»「」『』"} | {c: "'" for c in "‘’‚‛′"})
_THINK = re.compile(r"<think>.*?</think>", re.S)
_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)


def answer_blocks(text: str) -> list[str]:
    """Where to look for structured output in a model answer, best first: the contents of code fences, then the
    whole answer; NFKC-normalised, typographic quotes made ASCII, reasoning ``<think>`` blocks removed."""
    clean = _THINK.sub("", unicodedata.normalize("NFKC", text)).translate(_QUOTES)
    return [*_FENCE.findall(clean), clean]


def json_in_answer(text: str, opener: str = "[") -> Any:
    """The JSON list (``opener="["``) or object (``"{"``) in a model answer, or None: the outermost span from the
    first opener to the last closer, tried in the answer as it is (quotes inside strings intact), then in each of
    :func:`answer_blocks` (code fences, typographic quotes made ASCII, reasoning removed)."""
    closer = {"[": "]", "{": "}"}[opener]
    for block in (text, *answer_blocks(text)):
        start, end = block.find(opener), block.rfind(closer)
        if start == -1 or end <= start:
            continue
        try:
            return orjson.loads(block[start : end + 1])
        except orjson.JSONDecodeError:
            continue
    return None


def failure_counts(errors: Iterable[str | None]) -> dict[str, int]:
    """Failures counted by reason for reports (the attempt count left out, so equal reasons group together)."""
    return dict(Counter(re.sub(r" \(after \d+ attempts\)$", "", e) for e in errors if e))


async def complete_parsed(
    client: LLMClient,
    conversations: Sequence[Sequence[Mapping[str, Any]]],
    parse: Callable[[str], tuple[Any, str | None]],
    repair: Callable[[str], str],
    *,
    version: str,
    retries: int,
    desc: str = "llm",
) -> list[ParsedAnswer]:
    """Ask every conversation; an answer that ``parse`` rejects (``(None, reason)``) gets up to ``retries`` repair
    turns (the answer, then the user message ``repair(reason)``) in the same conversation; cached like any request.
    A request that fails at the transport level is a failure at once (the client already retried it)."""
    convs = [list(c) for c in conversations]
    out: list[ParsedAnswer | None] = [None] * len(convs)
    pending = list(range(len(convs)))
    for round_no in range(retries + 1):
        if not pending:
            break
        requests = [ChatRequest(tuple(convs[i]), version) for i in pending]
        results = await client.acomplete(requests, desc=desc if round_no == 0 else f"{desc} (repair {round_no})")
        still_pending = []
        for i, result in zip(pending, results, strict=True):
            if result.text is None:
                out[i] = ParsedAnswer(None, result.error or "no answer", round_no + 1, None)
                continue
            value, error = parse(result.text)
            if error is None:
                out[i] = ParsedAnswer(value, None, round_no + 1, result.text)
            elif round_no < retries:
                convs[i] += [{"role": "assistant", "content": result.text}, user_message(repair(error))]
                still_pending.append(i)
            else:
                out[i] = ParsedAnswer(None, error, round_no + 1, result.text)
        pending = still_pending
    return [a for a in out if a is not None]
