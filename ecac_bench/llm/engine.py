"""The retrying, caching, concurrent engine every LLM call of the project goes through (:class:`LLMClient`).

* Requests stream in (any iterable; :meth:`LLMClient.astream` yields ``(index, result)`` as answers arrive) through a
  bounded window: at most ``2 x concurrency + 512`` distinct requests are held at a time, whatever the input's length.
* Each request's cache key names the logical request (:mod:`ecac_bench.llm.cache`); a hit costs no HTTP request.
  A miss is claimed in the cache first, so another process on the same cache waits for the answer instead of paying
  for it again; identical requests in flight together are sent once.
* ``concurrency`` workers send through a :class:`~ecac_bench.llm.transport.Transport` (aiohttp by default), spread
  over the endpoint's base URLs (least outstanding requests first; a retry goes to another server), retried with
  exponential backoff + full jitter on 429 / 5xx / timeouts / closed connections / malformed bodies, honouring
  ``Retry-After``; optional requests- and tokens-per-minute limits.
* A request with a JSON schema is sent with ``response_format`` where the server accepts it; a server that rejects
  it (HTTP 400/422, then the same request without it succeeds) is remembered and asked plainly from then on.
* Every answer is committed to the cache within ``COMMIT_SECONDS`` (10 ms) of its arrival, with the others of that
  moment in one transaction, and handed out only once committed. If the cache fails on write, sending stops, the
  answers in flight still arrive and go to the fallback file, and the run ends with
  :class:`~ecac_bench.errors.CacheWriteError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
from tqdm.auto import tqdm

from ecac_bench.errors import CacheWriteError, FatalAPIError
from ecac_bench.gc_pause import no_gc
from ecac_bench.llm.cache import CachedAnswer, CacheRow, ResponseCache, key_of
from ecac_bench.llm.images import ImageError, image_data_url, image_sha256
from ecac_bench.llm.messages import ChatRequest, ChatResult
from ecac_bench.llm.settings import ClientConfig, Settings, public_url
from ecac_bench.llm.transport import AiohttpTransport, HTTPError, RetryableError, Transport
from ecac_bench.unicode_text import lone_surrogate_at

log = logging.getLogger("ecac_bench.llm")

KEY_VERSION = 2
# Requests looked up (and claimed) together: one SQL query and one transaction per chunk.
CHUNK = 512
# Answers are committed in groups, this long after the first of a group arrived. A commit costs about the same
# whatever it holds: at concurrency 64 against a 50 ms server, one commit per event-loop turn (2.2 answers) cost
# 66-73 us of CPU per answer, one per 10 ms (about 20 answers) 35-46 us (bench/judge_throughput.py).
COMMIT_SECONDS = 0.01
# How often a request another process is answering is looked for in the cache (seconds).
POLL_SECONDS = 0.25
# Largest token count taken from a usage block as it is (2**53: above it a float is not an exact integer).
_MAX_TOKENS_COUNT = 2**53


@dataclass
class RunStats:
    """Counters over all runs of a client. ``prompt_tokens``/``completion_tokens`` sum every answer used (cached
    ones included); ``new_*`` only what was paid for in this process. ``usage_malformed`` counts answers whose
    usage block could not be read (their tokens count as 0); ``migrated_v1`` cached answers found in a v1 cache."""

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
    usage_malformed: int = 0
    migrated_v1: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0.0, min(cap, base * (2**attempt)))


def token_count(usage: Any, name: str) -> int | None:
    """A usage field as a token count: a non-negative integer (or integral float) up to 2**53, 0 when absent;
    None when it is there but unreadable (``"lots"``, ``1e400``, NaN, negative, fractional)."""
    value = usage.get(name) if isinstance(usage, dict) else None
    if value is None:
        return 0
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    if isinstance(value, int) and 0 <= value <= _MAX_TOKENS_COUNT:
        return value
    return None


_SORTED = orjson.OPT_SORT_KEYS
# Distinct (template, response format) pairs whose encoded key tail a run keeps (a run has a handful).
_MAX_TAILS = 64


class _KeyFragments:
    """Builds :meth:`LLMClient.components` from pieces encoded once. The components are one JSON object with sorted
    keys (image < messages < model < params < response_format < template < v) and within a run only the messages
    change from request to request: the rest is encoded once per (template, response format) and joined around them.
    The bytes are exactly ``orjson.dumps(components, option=OPT_SORT_KEYS)`` of the components as a dict
    (tests/test_llm_engine.py pins them against that definition)."""

    def __init__(self, client: LLMClient) -> None:
        config = client.config
        self._params_of = client._params_of
        self._model = orjson.dumps(config.model)
        self._with_image = b'{"image":' + orjson.dumps(config.image.key_part(), option=_SORTED) + b',"messages":'
        # (template, id of the response format) -> (the format, kept alive so that its id stays its own; the tail)
        self._tails: dict[tuple[str, int], tuple[Any, bytes]] = {}
        # Image path -> its part as the key sees it ({"sha256": content hash, "type": "image"}), for the requests of
        # one chunk (keyed within moments of each other; the next chunk looks at the file again): the questions of
        # one image cost one stat of its file and share one part, not one each.
        self.image_parts: dict[str, dict[str, str]] = {}

    def _keyed_messages(self, messages: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], bool]:
        """Messages as the key sees them: image parts by content hash; and whether there was an image."""
        keyed: list[Mapping[str, Any]] = []
        has_images = False
        image_parts = self.image_parts
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):
                parts = []
                for part in content:
                    if part.get("type") == "image_path":
                        path = part["path"]
                        keyed_part = image_parts.get(path)
                        if keyed_part is None:
                            keyed_part = image_parts[path] = {"sha256": image_sha256(path), "type": "image"}
                        parts.append(keyed_part)
                        has_images = True
                    else:
                        parts.append(part)
                message = {**message, "content": parts}
            keyed.append(message)
        return keyed, has_images

    def _tail(self, request: ChatRequest) -> bytes:
        parts = [b',"model":', self._model, b',"params":', orjson.dumps(self._params_of(request), option=_SORTED)]
        if request.response_format is not None:
            parts += [b',"response_format":', orjson.dumps(request.response_format.key_part(), option=_SORTED)]
        parts += [b',"template":', orjson.dumps(request.template_version), b',"v":%d}' % KEY_VERSION]
        return b"".join(parts)

    def components(self, request: ChatRequest) -> bytes:
        messages: Sequence[Mapping[str, Any]] = request.messages
        opening = b'{"messages":'
        for message in messages:
            if not isinstance(message.get("content"), str):
                messages, has_images = self._keyed_messages(messages)
                if has_images:
                    opening = self._with_image
                break
        if request.params:
            tail = self._tail(request)
        else:
            slot = (request.template_version, id(request.response_format))
            entry = self._tails.get(slot)
            if entry is not None:
                tail = entry[1]
            else:
                tail = self._tail(request)
                if len(self._tails) < _MAX_TAILS:
                    self._tails[slot] = (request.response_format, tail)
        return b"".join((opening, orjson.dumps(messages, option=_SORTED), tail))


class RateLimiter:
    """Requests- and tokens-per-minute limits as evenly spaced starts (no bursts): a request may start once
    ``60 / rpm`` seconds have passed since the previous start, and once the tokens of the previous ones have been
    paid off at ``tpm / 60`` per second. A request's tokens are estimated before it is sent (prompt bytes / 3, images
    at the rule's size, plus ``max_tokens``) and corrected by its usage after."""

    def __init__(self, rpm: float | None, tpm: float | None) -> None:
        self.rpm, self.tpm = rpm, tpm
        self._next_request = 0.0
        self._next_tokens = 0.0

    async def acquire(self, tokens: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next_request, self._next_tokens)
        if self.rpm:
            self._next_request = start + 60.0 / self.rpm
        if self.tpm:
            self._next_tokens = start + tokens * 60.0 / self.tpm
        if start > now:
            await asyncio.sleep(start - now)

    def settle(self, estimated: int, used: int) -> None:
        """Correct the token debt by what the answer really used (a usage block read as 0 changes nothing)."""
        if self.tpm and used:
            self._next_tokens += (used - estimated) * 60.0 / self.tpm


@dataclass(slots=True)
class _Job:
    """One distinct request of a run: its key, the indices that asked it, whether this process claimed it."""

    key: bytes
    components: bytes
    request: ChatRequest
    indices: list[int]
    claimed: bool = False
    tokens: int = 0


class LLMClient:
    """Sends :class:`ChatRequest` streams concurrently; see the module docstring for what it guarantees.

    ``transport`` is the backend class (called with the config once per run); the default speaks HTTP with aiohttp.
    """

    def __init__(
        self,
        config: ClientConfig,
        cache: ResponseCache | None = None,
        *,
        transport: Callable[[ClientConfig], Transport] = AiohttpTransport,
        progress: bool = True,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.progress = progress
        self.stats = RunStats()
        self.transport = transport
        self._rng = random.Random(seed)
        self._params = config.params
        # Per base URL: does the server accept response_format json_schema? None = not known yet.
        self.structured_support: dict[str, bool | None] = dict.fromkeys(config.endpoint.base_urls)

    @classmethod
    def from_settings(cls, settings: Settings, role: str = "judge", **kwargs: Any) -> LLMClient:
        """The judge's or the VLM's client (``role``), sharing the settings' one response cache."""
        return cls(settings.client_config(role), settings.cache, progress=settings.progress, **kwargs)

    def describe(self) -> dict[str, Any]:
        """The config as reports record it (no key), with what this run learnt about structured output."""
        out = self.config.describe()
        out["structured_output"] = {
            "mode": out["structured_output"],
            "supported": {public_url(u): s for u, s in self.structured_support.items()},
        }
        return out

    # -- keys --------------------------------------------------------------------------------------------------

    def _params_of(self, request: ChatRequest) -> Mapping[str, Any]:
        return {**self._params, **request.params} if request.params else self._params

    def components(self, request: ChatRequest) -> bytes:
        """The request's key components as canonical JSON: key version, model, messages (images by content hash),
        sampling parameters, template version, and, when present, the response format and the image rule."""
        return _KeyFragments(self).components(request)

    def key(self, request: ChatRequest) -> bytes:
        """The 32-byte cache key of a request (sha256 of :meth:`components`)."""
        return key_of(self.components(request))

    def v1_keys(self, request: ChatRequest) -> list[tuple[str, bool]]:
        """The keys a v1 client (one URL per key, no response format, no default max_tokens) gave this request,
        one per base URL, as (hex key, capped): ``capped`` keys were made without the max_tokens this client sends,
        so their answers count only if they finished under it. Empty when no v1 request matches (images under
        the pixel budget: v1 knew only ``max_side``)."""
        max_side = self.config.image.max_side
        messages = []
        for message in request.messages:
            content = message.get("content")
            if isinstance(content, list):
                if max_side is None and any(p.get("type") == "image_path" for p in content):
                    return []
                content = [
                    {"type": "image", "sha256": image_sha256(p["path"]), "max_side": max_side}
                    if p.get("type") == "image_path"
                    else p
                    for p in content
                ]
                message = {**message, "content": content}
            messages.append(message)
        with_cap = dict(self._params_of(request))
        without_cap = {k: v for k, v in with_cap.items() if k != "max_tokens"}
        variants = [(with_cap, False)] + ([(without_cap, True)] if "max_tokens" not in request.params else [])
        out = []
        for url in self.config.endpoint.public_urls:
            for params, capped in variants:
                payload = {
                    "schema": 1,
                    "model": self.config.model,
                    "endpoint": url,
                    "messages": messages,
                    "params": params,
                    "template": request.template_version,
                }
                out.append((key_of(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hex(), capped))
        return out

    # -- running -----------------------------------------------------------------------------------------------

    async def astream(
        self, requests: Iterable[ChatRequest], desc: str = "llm"
    ) -> AsyncIterator[tuple[int, ChatResult]]:
        """``(index in requests, result)`` for every request, in the order answers arrive. ``requests`` is consumed
        lazily. Raises :class:`~ecac_bench.errors.FatalAPIError` when the endpoint rejects the key, the model or the
        path, :class:`~ecac_bench.errors.CacheWriteError` when the cache fails on write (answers so far are kept).
        Close it (``contextlib.aclosing``) when not iterating it to the end."""
        async with contextlib.aclosing(self._batches(requests, desc)) as batches:
            async for batch in batches:
                for item in batch:
                    yield item

    def _batches(self, requests: Iterable[ChatRequest], desc: str) -> AsyncIterator[list[tuple[int, ChatResult]]]:
        run = _Run(self, desc, len(requests) if isinstance(requests, Sized) else None)
        return run.batches(iter(enumerate(requests)))

    async def acomplete(self, requests: Iterable[ChatRequest], desc: str = "llm") -> list[ChatResult]:
        """Answers in the order of ``requests``."""
        requests = requests if isinstance(requests, Sequence) else list(requests)
        out: list[ChatResult | None] = [None] * len(requests)
        async with contextlib.aclosing(self._batches(requests, desc)) as batches:
            async for batch in batches:  # results a batch at a time: a cached re-run is mostly bookkeeping
                for i, result in batch:
                    out[i] = result
        return out  # type: ignore[return-value]

    def complete(self, requests: Iterable[ChatRequest], desc: str = "llm") -> list[ChatResult]:
        """Synchronous :meth:`acomplete`."""
        return asyncio.run(self.acomplete(requests, desc))


class _Run:
    """The state of one :meth:`LLMClient.astream` call."""

    def __init__(self, client: LLMClient, desc: str, total: int | None) -> None:
        self.client = client
        self.config = client.config
        self.fragments = _KeyFragments(client)
        self.cache = client.cache
        self.stats = client.stats
        self.done: list[tuple[int, ChatResult]] = []
        self.wake = asyncio.Event()
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.jobs: dict[bytes, _Job] = {}  # distinct requests not finished: queued, sending, or held elsewhere
        self.held: dict[bytes, _Job] = {}  # claimed by another live process: we wait for its answer
        self.window = 2 * self.config.concurrency + CHUNK
        # New requests are admitted once the window has room for this many: a claim transaction (and a lookup) per
        # wave of answers, not per answer.
        self.admit_step = min(CHUNK, self.config.concurrency)
        self.workers: list[asyncio.Task[None]] = []
        self.heartbeat: asyncio.Task[None] | None = None
        self.transport: Transport | None = None
        self.fatal: BaseException | None = None
        self.cache_error: Exception | None = None
        self.fallback: Path | None = None
        self.unsaved: list[tuple[_Job, ChatResult, CacheRow]] = []  # answers waiting for the next group commit
        self.commit_timer: asyncio.TimerHandle | None = None
        self.saved = 0
        self.lost = 0
        self.load = dict.fromkeys(self.config.endpoint.base_urls, 0)
        self.turn = itertools.count()
        self.probes: dict[str, asyncio.Lock] = {}
        limits = self.config.rpm or self.config.tpm
        self.limiter = RateLimiter(self.config.rpm, self.config.tpm) if limits else None
        self.failed = 0
        self.bar = tqdm(total=total, desc=desc, unit="req", disable=not client.progress, dynamic_ncols=True)
        # The cyclic GC, paused while every answer so far came from the cache (see batches()).
        self.gc_pause = contextlib.ExitStack()

    # -- the main loop -----------------------------------------------------------------------------------------

    async def batches(self, requests: Iterator[tuple[int, ChatRequest]]) -> AsyncIterator[list[tuple[int, ChatResult]]]:
        """The results as they come, in batches (all that are ready at each turn).

        Until the first request is sent, the cyclic GC is paused (its consumer's work included): answering from the
        cache makes many small objects and no cycle, and the collector's full rescans of every live object (the
        request list, the results) cost a cached re-run about a seventh of its time. It comes back with the first
        request sent (HTTP and retries do make cycles); from then on it is paused only while a chunk is admitted."""
        exhausted = False
        self.gc_pause.enter_context(no_gc())
        try:
            while True:
                if self.done:
                    batch, self.done = self.done, []
                    yield batch
                if self.fatal is not None:
                    raise self.fatal
                stopping = self.cache_error is not None
                if stopping and self.held:  # another process's requests: no cache to wait on any more
                    for key, job in list(self.held.items()):
                        del self.held[key], self.jobs[key]
                        self._emit(job.indices, ChatResult(None, error="not sent: the run stopped"))
                if stopping and not self.jobs:
                    raise self._cache_write_error()
                if exhausted and not self.jobs:
                    return
                if not exhausted and not stopping and len(self.jobs) <= self.window - self.admit_step:
                    chunk = list(itertools.islice(requests, min(CHUNK, self.window - len(self.jobs))))
                    if chunk:
                        with no_gc():  # a chunk's keys, lookups and results: many small objects, none in a cycle
                            self._admit(chunk)
                    else:
                        exhausted = True
                    continue
                self.wake.clear()
                if self.held:
                    try:
                        await asyncio.wait_for(self.wake.wait(), POLL_SECONDS)
                    except asyncio.TimeoutError:
                        self._poll_held()
                else:
                    await self.wake.wait()

        finally:
            await self.close()

    def _admit(self, chunk: list[tuple[int, ChatRequest]]) -> None:
        """Key a chunk of requests; answer the cache's hits in the chunk's order (one lookup for the chunk, no job
        made for a hit); join requests identical to one in flight; claim and queue the rest."""
        self.stats.requests += len(chunk)
        self.fragments.image_parts.clear()
        components_of = self.fragments.components
        keyed: list[tuple[int, ChatRequest, bytes, bytes]] = []
        for index, request in chunk:
            try:
                components = components_of(request)
            except ImageError as exc:
                self._emit([index], ChatResult(None, error=str(exc)))
                self._count_failure(str(exc))
                continue
            keyed.append((index, request, key_of(components), components))
        jobs, cache = self.jobs, self.cache
        hits: dict[bytes, ChatResult] = {}
        failed = False
        if cache is not None:
            try:
                # Requests identical to one in flight are not looked up: they join it below.
                wanted = sorted({key for _, _, key, _ in keyed if key not in jobs})
                rows = cache.find(wanted)
            except sqlite3.Error as exc:
                self._on_cache_error(exc)
                failed = True
            else:
                hits = {wanted[i]: ChatResult(text, True, None, pt, ct) for i, text, pt, ct in rows}
        fresh: dict[bytes, _Job] = {}
        done, emitted = self.done, 0
        for index, request, key, components in keyed:
            result = hits.get(key)
            if result is not None:
                done.append((index, result))
                emitted += 1
                continue
            job = jobs.get(key) or fresh.get(key)
            if job is not None:  # identical to a request in flight or in this chunk: sent once
                job.indices.append(index)
            else:
                fresh[key] = _Job(key, components, request, [index])
        if hits:
            self._count_cached(hits.values(), emitted)
        if not fresh:
            return
        if cache is None:
            for job in fresh.values():
                self._queue(job)
            return
        if not failed:
            try:
                self._admit_misses(fresh)
                return
            except sqlite3.Error as exc:
                self._on_cache_error(exc)
        for job in fresh.values():
            self._emit(job.indices, ChatResult(None, error="not sent: the response cache failed"))
            self._count_failure("not sent: the response cache failed")

    def _admit_misses(self, fresh: dict[bytes, _Job]) -> None:
        """Requests the cache had no answer for: a v1 answer, an answer committed meanwhile, a live claim of another
        process (wait for it), or ours to send."""
        cache = self.cache
        assert cache is not None
        if cache.has_v1:
            self._migrate_v1(fresh)
        if not fresh:
            return
        claims = cache.claim(list(fresh), self.config.claim_lease)
        for key, answer in claims.answered.items():
            self._emit_cached(fresh.pop(key), answer)
        for key in claims.held:
            job = fresh.pop(key)
            self.jobs[key] = self.held[key] = job
        for job in fresh.values():
            job.claimed = True
            self._queue(job)
        if claims.mine and self.heartbeat is None:
            self.heartbeat = asyncio.ensure_future(self._renew_claims())

    def _migrate_v1(self, fresh: dict[bytes, _Job]) -> None:
        """Copy answers a v1 cache has for these requests into v2 (lazily: v1 rows have no key components)."""
        cache = self.cache
        assert cache is not None
        candidates: dict[str, tuple[bytes, bool]] = {}
        for key, job in fresh.items():
            for v1_key, capped in self.client.v1_keys(job.request):
                candidates[v1_key] = (key, capped)
        for v1_key, answer in cache.get_v1(list(candidates)).items():
            key, capped = candidates[v1_key]
            job = fresh.get(key)
            if job is None or (capped and answer.completion_tokens >= self.config.max_tokens):
                continue
            cache.put(key, job.components, answer)
            self.stats.migrated_v1 += 1
            self._emit_cached(fresh.pop(key), answer)

    def _poll_held(self) -> None:
        """Requests another process claimed: take its answer when it is there, the request when its claim is gone."""
        cache = self.cache
        assert cache is not None
        try:
            claims = cache.claim(list(self.held), self.config.claim_lease)
        except sqlite3.Error as exc:
            self._on_cache_error(exc)
            return
        for key, answer in claims.answered.items():
            del self.jobs[key]
            self._emit_cached(self.held.pop(key), answer)
        for key in claims.mine:
            job = self.held.pop(key)
            del self.jobs[key]
            job.claimed = True
            self._queue(job)
        if claims.mine and self.heartbeat is None:
            self.heartbeat = asyncio.ensure_future(self._renew_claims())

    def _queue(self, job: _Job) -> None:
        if self.transport is None:  # first miss of the run: open the connection pool and start the workers
            self.gc_pause.close()
            self.transport = self.client.transport(self.config)
            self.workers = [asyncio.ensure_future(self._worker()) for _ in range(self.config.concurrency)]
        self.jobs[job.key] = job
        self.queue.put_nowait(job)

    # -- results -----------------------------------------------------------------------------------------------

    def _emit(self, indices: list[int], result: ChatResult) -> None:
        if len(indices) == 1:
            self.done.append((indices[0], result))
        else:
            self.done.extend((i, result) for i in indices)
        self.bar.update(len(indices))

    def _emit_cached(self, job: _Job, answer: CachedAnswer) -> None:
        result = ChatResult(answer.text, True, None, answer.prompt_tokens, answer.completion_tokens)
        self.done.extend((index, result) for index in job.indices)
        self._count_cached((result,), len(job.indices))

    def _count_cached(self, results: Iterable[ChatResult], emitted: int) -> None:
        """Counters and the bar for distinct cached answers, once per batch (``emitted``: the results they gave)."""
        n = prompt = completion = 0
        for result in results:
            n += 1
            prompt += result.prompt_tokens
            completion += result.completion_tokens
        s = self.stats
        s.cached += n
        s.prompt_tokens += prompt
        s.completion_tokens += completion
        self.bar.update(emitted)

    def _count_failure(self, error: str) -> None:
        self.stats.failed += 1
        self.failed += 1
        log.warning("request failed: %s", error)
        self.bar.set_postfix(failed=self.failed, refresh=False)

    def _finish(self, job: _Job, result: ChatResult, structured: bool) -> None:
        if result.ok:
            s = self.stats
            s.answered += 1
            s.prompt_tokens += result.prompt_tokens
            s.completion_tokens += result.completion_tokens
            s.new_prompt_tokens += result.prompt_tokens
            s.new_completion_tokens += result.completion_tokens
            if self.cache is not None:
                answer = CachedAnswer(result.text, result.prompt_tokens, result.completion_tokens)  # type: ignore[arg-type]
                self._store(job, result, (job.key, job.components, answer, structured))
                return
        else:
            self._count_failure(result.error or "failed")
            if job.claimed and self.cache is not None and self.cache_error is None:
                try:
                    self.cache.release([job.key])
                except sqlite3.Error as exc:
                    self._on_cache_error(exc)
        del self.jobs[job.key]
        self._emit(job.indices, result)
        self.wake.set()

    def _store(self, job: _Job, result: ChatResult, row: CacheRow) -> None:
        """Queue an answer for the group commit ``COMMIT_SECONDS`` after the first answer of the group arrived. Until
        then its job stays in flight (an identical request admitted meanwhile joins it instead of being sent again),
        and it is handed out only once committed."""
        self.unsaved.append((job, result, row))
        if len(self.unsaved) == 1:
            self.commit_timer = asyncio.get_running_loop().call_later(COMMIT_SECONDS, self._commit)

    def _commit(self) -> None:
        """Commit the queued answers (releasing their claims) and hand them out; when the cache cannot take them,
        keep them in the fallback file."""
        pending, self.unsaved = self.unsaved, []
        if not pending:
            return
        self._save([row for _, _, row in pending])
        for job, result, _ in pending:
            del self.jobs[job.key]
            self._emit(job.indices, result)
        self.wake.set()

    def _save(self, rows: list[CacheRow]) -> None:
        assert self.cache is not None
        if self.cache_error is None:
            try:
                self.cache.put_many(rows, owner=self.cache.owner)
                return
            except Exception as exc:  # any failure, not only SQLite's: the answers go to the fallback file
                self._on_cache_error(exc)
        try:
            self.fallback = self.cache.write_fallback(rows)
            self.saved += len(rows)
        except Exception as exc:  # an answer that cannot be saved is counted, and the run still ends cleanly
            self.lost += len(rows)
            log.error("%d answer(s) could not be saved anywhere: %s", len(rows), exc)

    def _on_cache_error(self, exc: Exception) -> None:
        if self.cache_error is None:
            self.cache_error = exc
            log.error("response cache %s failed: %s; sending stops", self.cache.path if self.cache else "", exc)
        self.wake.set()

    def _cache_write_error(self) -> CacheWriteError:
        path = self.cache.path if self.cache is not None else "?"
        kept = f"{self.saved} answer(s) received after the failure are saved in {self.fallback}" if self.saved else ""
        if self.lost:
            kept += f"{'; ' if kept else ''}{self.lost} could not be saved"
        kept = kept or "no answer was lost"
        return CacheWriteError(
            f"response cache {path}: write failed ({self.cache_error}); stopped sending. {kept} "
            "(the next run that opens the cache imports the fallback file)"
        )

    # -- workers -----------------------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            job = await self.queue.get()
            if self.cache_error is not None or self.fatal is not None:
                self._finish(job, ChatResult(None, error="not sent: the run stopped"), False)
                continue
            try:
                result, structured = await self._execute(job)
            except FatalAPIError as exc:
                self.fatal = FatalAPIError(self.config.endpoint.redact(str(exc)))
                self._finish(job, ChatResult(None, error="fatal API error"), False)
                continue
            self._finish(job, result, structured)

    async def _execute(self, job: _Job) -> tuple[ChatResult, bool]:
        config, stats, redact = self.config, self.stats, self.config.endpoint.redact
        try:
            messages = await self._wire_messages(job.request.messages)
        except ImageError as exc:
            return ChatResult(None, error=str(exc)), False
        body = {"model": config.model, "messages": messages, **self.client._params_of(job.request)}
        schema = job.request.response_format if config.structured_output else None
        if self.limiter is not None:
            job.tokens = self._estimate_tokens(job.request)
        attempts, avoid = 0, None
        while True:
            attempts += 1
            url = self._pick_url(avoid)
            if self.limiter is not None:
                await self.limiter.acquire(job.tokens)
            stats.http_requests += 1
            self.load[url] += 1
            try:
                data, structured = await self._send(url, body, schema)
                answer = self._answer_of(data)
            except RetryableError as exc:
                error: RetryableError | None = exc
            except HTTPError as exc:
                return ChatResult(None, error=redact(str(exc)), attempts=attempts), False
            else:
                error = None
            finally:
                self.load[url] -= 1
            if error is None:
                if self.limiter is not None:
                    self.limiter.settle(job.tokens, answer.prompt_tokens + answer.completion_tokens)
                return ChatResult(answer.text, False, None, *answer[1:], attempts), structured
            if attempts > config.max_retries:
                return ChatResult(None, error=redact(f"{error} (after {attempts} attempts)"), attempts=attempts), False
            delay = error.retry_after
            if delay is None:
                delay = backoff_delay(attempts - 1, config.backoff_base, config.backoff_max, self.client._rng)
            stats.retries += 1
            avoid = url
            log.debug("retrying in %.2fs: %s", delay, error)
            await asyncio.sleep(delay)

    def _pick_url(self, avoid: str | None) -> str:
        """The base URL with the fewest requests outstanding (ties in turn), not the one that just failed."""
        urls = self.config.endpoint.base_urls
        if len(urls) == 1:
            return urls[0]
        start = next(self.turn)
        best: str | None = None
        for k in range(len(urls)):
            url = urls[(start + k) % len(urls)]
            if url != avoid and (best is None or self.load[url] < self.load[best]):
                best = url
        return best or urls[0]

    async def _send(self, url: str, body: dict[str, Any], schema: Any) -> tuple[Any, bool]:
        """Send, with ``response_format`` when the request has a schema and the server is not known to reject it;
        the first such request to a server probes it (others wait for the verdict)."""
        transport = self.transport
        assert transport is not None
        support = self.client.structured_support
        if schema is None or support[url] is False:
            return await transport.send(url, body), False
        with_schema = {**body, "response_format": schema.response_format()}
        if support[url]:
            return await transport.send(url, with_schema), True
        async with self.probes.setdefault(url, asyncio.Lock()):
            if support[url] is None:
                try:
                    data = await transport.send(url, with_schema)
                except HTTPError as exc:
                    if exc.status not in (400, 422):
                        raise
                    self.stats.http_requests += 1
                    data = await transport.send(url, body)  # works without: the server rejects response_format
                    support[url] = False
                    log.info("%s does not accept response_format json_schema: answers are parsed", public_url(url))
                    return data, False
                support[url] = True
                return data, True
        return await self._send(url, body, schema)

    def _answer_of(self, data: Any) -> CachedAnswer:
        """Text and token usage of a chat.completion body; a body of another shape is a retryable error. Usage is
        best-effort accounting: an unreadable count is 0 and counted in ``usage_malformed``, never an error."""
        try:
            text = data["choices"][0]["message"]["content"]
        except (TypeError, KeyError, IndexError) as exc:
            raise RetryableError("malformed response: no choices[0].message.content") from exc
        if not isinstance(text, str):
            raise RetryableError("malformed response: message content is not text")
        if lone_surrogate_at(text) is not None:
            raise RetryableError("malformed response: message content is not valid Unicode")
        usage = data.get("usage") if isinstance(data, dict) else None
        prompt, completion = token_count(usage, "prompt_tokens"), token_count(usage, "completion_tokens")
        if prompt is None or completion is None or (usage is not None and not isinstance(usage, dict)):
            self.stats.usage_malformed += 1
        return CachedAnswer(text, prompt or 0, completion or 0)

    async def _wire_messages(self, messages: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        """The messages as sent: image parts become data URLs (prepared in a thread: decoding is CPU work)."""
        if all(isinstance(m.get("content"), str) for m in messages):
            return messages
        out: list[Mapping[str, Any]] = []
        for message in messages:
            content = message.get("content")
            if isinstance(content, list):
                parts = []
                for p in content:
                    if p.get("type") == "image_path":
                        url = await asyncio.to_thread(image_data_url, p["path"], self.config.image)
                        parts.append({"type": "image_url", "image_url": {"url": url}})
                    else:
                        parts.append(p)
                message = {**message, "content": parts}
            out.append(message)
        return out

    def _estimate_tokens(self, request: ChatRequest) -> int:
        text_bytes = 0
        images = 0
        for message in request.messages:
            content = message.get("content")
            if isinstance(content, str):
                text_bytes += len(content.encode())
            elif isinstance(content, list):
                for p in content:
                    if p.get("type") == "image_path":
                        images += 1
                    else:
                        text_bytes += len(str(p.get("text", "")).encode())
        rule = self.config.image
        pixels = rule.max_side**2 if rule.max_side is not None else rule.max_pixels
        max_tokens = int(self.client._params_of(request).get("max_tokens") or 0)
        return text_bytes // 3 + images * math.ceil(pixels / 784) + max_tokens

    # -- claims and shutdown -----------------------------------------------------------------------------------

    async def _renew_claims(self) -> None:
        cache = self.cache
        assert cache is not None
        while True:
            await asyncio.sleep(self.config.claim_lease / 3)
            if self.cache_error is None:
                try:
                    cache.renew(self.config.claim_lease)
                except sqlite3.Error as exc:
                    self._on_cache_error(exc)

    async def close(self) -> None:
        self.gc_pause.close()
        tasks = [*self.workers, *([self.heartbeat] if self.heartbeat else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.commit_timer is not None:
            self.commit_timer.cancel()
        self._commit()
        if self.cache is not None and self.heartbeat is not None:
            try:
                self.cache.release_all()  # a stopped run's unsent claims: others need not wait for them to expire
            except sqlite3.Error as exc:  # e.g. the cache that failed: the claims expire with their lease
                log.warning("could not release claims: %s", exc)
        if self.transport is not None:
            await self.transport.aclose()
        self.bar.close()
