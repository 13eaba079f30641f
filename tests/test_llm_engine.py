"""The engine (LLMClient) against a real local HTTP server: caching, retries, errors, concurrency, several servers,
rate limits, structured output, streaming, usage accounting, and the transport seam."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import math
import random
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from judge_server import JudgeServer
from llm_helpers import fresh, make_client, requests_for
from PIL import Image

from ecac_bench.llm import (
    ChatRequest,
    ClientConfig,
    Endpoint,
    FatalAPIError,
    ImageRule,
    JsonSchema,
    LLMClient,
    ResponseCache,
    backoff_delay,
    parse_retry_after,
    user_message,
)
from ecac_bench.llm.engine import token_count
from ecac_bench.llm.transport import HTTPError, RetryableError, decode_body

SCHEMA = JsonSchema("judge_score", {"type": "object", "properties": {"score": {"type": "number"}}})


@pytest.fixture(scope="module")
def server():
    with JudgeServer() as srv:
        yield srv


@pytest.fixture
def judge(server):
    return fresh(server)


@pytest.fixture(scope="module")
def second():
    with JudgeServer() as srv:
        yield srv


def test_retry_after_and_backoff():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None
    assert parse_retry_after({}) is None
    rng = random.Random(0)
    delays = [backoff_delay(a, 0.5, 4.0, rng) for a in range(8) for _ in range(50)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(backoff_delay(0, 0.5, 4.0, rng) for _ in range(50)) <= 0.5


def test_cache_hit_on_rerun_sends_nothing(judge, tmp_path):
    texts = [f"caption {i}" for i in range(20)]
    client = make_client(judge.base_url, tmp_path / "c.sqlite")
    first = client.complete(requests_for(texts))
    assert judge.state.requests == 20 and all(r.ok and not r.cached for r in first)
    assert len(client.cache) == 20
    judge.state.reset()
    client = make_client(judge.base_url, tmp_path / "c.sqlite")
    second = client.complete(requests_for(texts))
    assert judge.state.requests == 0
    assert [r.text for r in second] == [r.text for r in first] and all(r.cached for r in second)
    assert client.stats.cached == 20 and client.stats.new_prompt_tokens == 0
    assert client.stats.prompt_tokens == sum(r.prompt_tokens for r in first) > 0


def test_key_names_the_logical_request(judge, tmp_path):
    client = make_client(judge.base_url)
    base = ChatRequest((user_message("x"),), "t@1")
    key = client.key(base)
    assert isinstance(key, bytes) and len(key) == 32
    assert client.key(ChatRequest((user_message("x"),), "t@2")) != key
    assert client.key(ChatRequest((user_message("x"),), "t@1", {"temperature": 0.7})) != key
    assert client.key(ChatRequest((user_message("x"),), "t@1", response_format=SCHEMA)) != key
    assert make_client(judge.base_url, max_tokens=100).key(base) != key
    other_model = LLMClient(ClientConfig(Endpoint((judge.base_url,), "other")), progress=False)
    assert other_model.key(base) != key
    # The physical server and the key are not part of it: a run spread over two servers resumes on one.
    assert make_client(("http://elsewhere/v1", "http://b:1/v1"), key="sk-other").key(base) == key
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    Image.new("RGB", (8, 8), "red").save(a)
    b.write_bytes(a.read_bytes())
    Image.new("RGB", (8, 8), "blue").save(c)
    keys = [client.key(ChatRequest((user_message("x", [p]),), "t@1")) for p in (a, b, c)]
    assert keys[0] == keys[1] != keys[2]
    # the image rule is part of the key of requests with images only
    budget, side = make_client(judge.base_url), make_client(judge.base_url, image=ImageRule(max_side=512))
    assert budget.key(ChatRequest((user_message("x", [a]),))) != side.key(ChatRequest((user_message("x", [a]),)))
    assert budget.key(base) == side.key(base)


def test_identical_requests_are_sent_once(judge):
    results = make_client(judge.base_url).complete(requests_for(["same"] * 5 + ["other"]))
    assert judge.state.requests == 2 and len({r.text for r in results[:5]}) == 1


def test_retries_recover_and_are_counted(judge):
    judge.state.slow_seconds = 1.5
    texts = ["a @@429x2", "b @@500x1", "c @@slowx1", "d @@badjsonx1", "e @@closex1", "f fine"]
    # 0.6 s: far above a normal answer even on a loaded CI machine (a spurious timeout would change the counts)
    client = make_client(judge.base_url, timeout=0.6)
    results = client.complete(requests_for(texts))
    assert all(r.ok for r in results), [r.error for r in results]
    assert [r.attempts for r in results] == [3, 2, 2, 2, 2, 1]
    assert client.stats.retries == 6 and client.stats.http_requests == 12 == judge.state.requests


def test_retry_after_is_honoured(judge):
    judge.state.retry_after = "1"
    start = time.monotonic()
    result = make_client(judge.base_url).complete(requests_for(["x @@429x1"]))[0]
    assert result.ok and result.attempts == 2
    assert time.monotonic() - start >= 1.0  # backoff alone would wait about 1 ms


def test_failure_after_retries_is_reported_and_not_cached(judge, tmp_path):
    client = make_client(judge.base_url, tmp_path / "c.sqlite", max_retries=2)
    results = client.complete(requests_for(["bad @@500x99", "good", "refused @@400x9"]))
    assert not results[0].ok and results[0].error == "HTTP 500 (after 3 attempts)" and results[0].attempts == 3
    assert results[1].ok
    assert results[2].error == "HTTP 400: prompt too long" and results[2].attempts == 1  # not retried
    assert client.stats.failed == 2 and client.stats.answered == 1
    judge.state.reset()
    make_client(judge.base_url, tmp_path / "c.sqlite", max_retries=0).complete(requests_for(["bad @@500x99", "good"]))
    assert judge.state.requests == 1  # the failure is tried again, the answer is not


def test_timeout_and_closed_connection_are_told_apart(judge):
    judge.state.slow_seconds = 1.0
    client = make_client(judge.base_url, timeout=0.2, max_retries=1)
    slow, closed = client.complete(requests_for(["x @@slowx5", "y @@closex5"]))
    assert slow.error == "timeout (after 2 attempts)"
    assert closed.error == "connection closed with no response (after 2 attempts)"


def test_connection_refused_is_retried_then_reported():
    result = make_client("http://127.0.0.1:9/v1", max_retries=1).complete(requests_for(["x"]))[0]
    assert not result.ok and result.error.startswith("connection error: ClientConnectorError")


def test_bad_key_is_fatal_and_redacted(judge):
    judge.state.api_key = "sk-right"
    client = make_client(judge.base_url, key="sk-wrong-SENTINEL")
    with pytest.raises(FatalAPIError) as info:
        client.complete(requests_for([f"x{i}" for i in range(50)]))
    assert "401" in str(info.value) and "SENTINEL" not in str(info.value)
    assert judge.state.requests < 50  # the run stopped instead of trying every request


def test_concurrency_is_bounded(judge):
    judge.state.latency = 0.05
    make_client(judge.base_url, concurrency=4).complete(requests_for([f"c{i}" for i in range(24)]))
    assert judge.state.max_in_flight == 4


def test_images_go_as_downscaled_data_urls(judge, tmp_path):
    judge.state.keep_bodies = True
    path = tmp_path / "big.png"
    Image.new("RGB", (1200, 600), "green").save(path)
    client = make_client(judge.base_url, image=ImageRule(max_side=300))
    result = client.complete([ChatRequest((user_message("x", [path]),))])[0]
    assert result.ok
    parts = judge.state.bodies[0]["messages"][0]["content"]
    assert parts[0]["type"] == "image_url" and parts[1] == {"type": "text", "text": "x"}
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
        assert img.size == (300, 150)


def test_an_image_that_is_not_one_fails_that_request_only(judge, tmp_path):
    bad, missing, good = tmp_path / "bad.jpg", tmp_path / "missing.jpg", tmp_path / "good.png"
    bad.write_bytes(b"this is not a JPEG")
    Image.new("RGB", (8, 8), "red").save(good)
    client = make_client(judge.base_url, tmp_path / "c.sqlite")
    results = client.complete([ChatRequest((user_message("x", [p]),)) for p in (bad, missing, good)])
    assert results[0].error == f"image {bad}: cannot be read (not an image)"
    assert results[1].error.startswith(f"image {missing}: No such file")
    assert results[2].ok and client.stats.failed == 2 and judge.state.requests == 1


def test_sampling_defaults_are_sent(judge):
    judge.state.keep_bodies = True
    make_client(judge.base_url).complete(requests_for(["x"]))
    body = judge.state.bodies[0]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 2048 and "response_format" not in body


# -- several servers -------------------------------------------------------------------------------------------


def test_requests_spread_over_servers(judge, second):
    fresh(second)
    judge.state.latency = second.state.latency = 0.02
    client = make_client((judge.base_url, second.base_url), concurrency=8)
    results = client.complete(requests_for([f"spread {i}" for i in range(80)]))
    assert all(r.ok for r in results)
    assert judge.state.requests + second.state.requests == 80
    assert min(judge.state.requests, second.state.requests) >= 25  # least outstanding: about half each


def test_a_failing_servers_retries_go_elsewhere(judge, second):
    fresh(second).state.down = True
    client = make_client((judge.base_url, second.base_url), concurrency=2, max_retries=1)
    results = client.complete(requests_for([f"failover {i}" for i in range(20)]))
    assert all(r.ok for r in results), [r.error for r in results]  # one retry was always enough: the other server
    assert second.state.requests >= 1 and judge.state.answered == 20
    assert client.stats.retries == second.state.requests


# -- rate limits -------------------------------------------------------------------------------------------------


def test_requests_per_minute_limit_spaces_requests(judge):
    start = time.monotonic()
    results = make_client(judge.base_url, rpm=1200, concurrency=8).complete(requests_for([f"r{i}" for i in range(11)]))
    assert all(r.ok for r in results)
    assert time.monotonic() - start >= 0.5  # 11 starts at 20/s: the last one 0.5 s after the first


def test_tokens_per_minute_limit_spaces_requests(judge):
    # ~2,000 tokens per request (1 byte // 3 + max_tokens 2000) at 240,000/min (4,000/s): 2 requests per second
    client = make_client(judge.base_url, tpm=240_000, max_tokens=2000, concurrency=8)
    start = time.monotonic()
    assert all(r.ok for r in client.complete(requests_for(["t1", "t2", "t3"])))
    assert time.monotonic() - start >= 0.9  # starts at 0, 0.5 and 1.0 s (less the usage correction)


# -- structured output ---------------------------------------------------------------------------------------


def test_structured_output_is_requested_where_supported(judge):
    judge.state.keep_bodies = True
    client = make_client(judge.base_url)
    reqs = [ChatRequest((user_message(f"s{i}"),), "t@1", response_format=SCHEMA) for i in range(5)]
    assert all(r.ok for r in client.complete(reqs))
    assert len(judge.state.response_formats) == 5
    fmt = judge.state.response_formats[0]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == SCHEMA.schema
    assert not any("guided_json" in b for b in judge.state.bodies)
    assert client.describe()["structured_output"]["supported"] == {judge.base_url: True}


def test_structured_output_falls_back_once_per_server(judge, tmp_path):
    judge.state.structured = "reject"
    client = make_client(judge.base_url, tmp_path / "c.sqlite", concurrency=4)
    reqs = [ChatRequest((user_message(f"s{i}"),), "t@1", response_format=SCHEMA) for i in range(12)]
    results = client.complete(reqs)
    assert all(r.ok for r in results)
    # One probe (400), then 12 plain requests: the rejection was detected once and remembered.
    assert judge.state.requests == 13 and judge.state.answered == 12
    assert client.describe()["structured_output"]["supported"] == {judge.base_url: False}
    judge.state.reset()
    assert all(r.ok for r in client.complete([*reqs[:3], ChatRequest((user_message("new"),), response_format=SCHEMA)]))
    assert judge.state.requests == 1  # same client: no new probe


def test_structured_output_off(judge):
    judge.state.keep_bodies = True
    client = make_client(judge.base_url, structured_output=False)
    client.complete([ChatRequest((user_message("s"),), response_format=SCHEMA)])
    assert judge.state.response_formats == [] and "response_format" not in judge.state.bodies[0]


def test_a_400_not_about_the_schema_is_a_failure_not_a_verdict(judge):
    client = make_client(judge.base_url)
    result = client.complete([ChatRequest((user_message("p @@400x5"),), response_format=SCHEMA)])[0]
    assert result.error == "HTTP 400: prompt too long"
    assert client.structured_support[judge.base_url] is None  # still unknown: the plain request failed too


# -- usage accounting ------------------------------------------------------------------------------------------


MALFORMED_USAGE = [
    '"lots"',
    "1e400",
    "NaN",
    "-Infinity",
    "[1, 2]",
    '{"prompt_tokens": -5}',
    '{"prompt_tokens": 1e400}',
    '{"prompt_tokens": NaN, "completion_tokens": "3"}',
    '{"prompt_tokens": 2.5}',
    '{"prompt_tokens": true}',
    '{"completion_tokens": 1e300}',
]


@pytest.mark.parametrize("raw", MALFORMED_USAGE)
def test_malformed_usage_is_never_fatal(judge, tmp_path, raw):
    judge.state.usage_raw = raw
    client = make_client(judge.base_url, tmp_path / "c.sqlite", max_retries=0)
    result = client.complete(requests_for(["x @@score=70"]))[0]
    assert result.ok and result.text == '{"score": 70}' and result.attempts == 1
    assert result.prompt_tokens >= 0 and result.completion_tokens >= 0
    assert client.stats.usage_malformed == 1 and len(client.cache) == 1


class RawBodyTransport:
    """Answers with a raw body, read as the aiohttp transport reads one (``decode_body``)."""

    body = b""

    def __init__(self, config: ClientConfig) -> None:
        pass

    async def send(self, base_url: str, body: Mapping[str, Any]) -> Any:
        text = body["messages"][-1]["content"]
        return decode_body(RawBodyTransport.body if text == "hostile" else orjson.dumps(CHAT_ANSWER))

    async def aclose(self) -> None:
        pass


CHAT_ANSWER = {"choices": [{"message": {"content": "fine"}}]}


def test_a_lone_surrogate_is_a_malformed_answer_not_a_lost_cache_write(tmp_path):
    """orjson refuses ``"\\ud800"``; the standard library's reader, its fallback for out-of-range numbers, lets it
    through. Such a text cannot be stored (nor written to a report): it used to fail the commit of every answer of its
    turn, losing them all. It is a malformed answer now: retried, then failed; the others are kept."""
    RawBodyTransport.body = b'{"choices": [{"message": {"content": "bad \\ud800 text"}}]}'
    assert decode_body(RawBodyTransport.body)["choices"][0]["message"]["content"] == "bad \ud800 text"
    config = ClientConfig(Endpoint(("local://model",), "local"), backoff_base=0.001, max_retries=1)
    client = LLMClient(config, ResponseCache(tmp_path / "c.sqlite"), transport=RawBodyTransport, progress=False)
    results = client.complete(requests_for(["a", "hostile", "b"]))
    assert [r.text for r in results] == ["fine", None, "fine"]
    assert results[1].error == "malformed response: message content is not valid Unicode (after 2 attempts)"
    assert client.stats.failed == 1 and len(client.cache) == 2


def _usage_values():
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )


@settings(max_examples=300, deadline=None)
@given(
    usage=st.one_of(
        _usage_values(), st.dictionaries(st.sampled_from(["prompt_tokens", "completion_tokens", "x"]), _usage_values())
    )
)
def test_token_counts_of_any_usage_value(usage):
    for name in ("prompt_tokens", "completion_tokens"):
        count = token_count(usage, name)
        value = usage.get(name) if isinstance(usage, dict) else None
        if value is None:
            assert count == 0
        elif count is not None:
            assert isinstance(count, int) and 0 <= count <= 2**53 and count == value and not isinstance(value, bool)
        else:
            assert (
                isinstance(value, (bool, str, list, dict))
                or not math.isfinite(value)
                or value < 0
                or value != int(value)
                or value > 2**53
            )


# -- streaming and the transport seam --------------------------------------------------------------------------


class LocalTransport:
    """A backend in one class: answers in-process, records what it was sent, fails on request."""

    sent: ClassVar[list[tuple[str, Mapping[str, Any]]]] = []

    def __init__(self, config: ClientConfig) -> None:
        self.model = config.model

    async def send(self, base_url: str, body: Mapping[str, Any]) -> Any:
        LocalTransport.sent.append((base_url, body))
        await asyncio.sleep(0)
        text = body["messages"][-1]["content"]
        if "retry-me" in text and sum(1 for _, b in LocalTransport.sent if b is body) == 1:
            raise RetryableError("HTTP 503")
        return {"choices": [{"message": {"content": text.upper()}}], "usage": {"prompt_tokens": 1}}

    async def aclose(self) -> None:
        pass


class StaggeredTransport(LocalTransport):
    """LocalTransport answering after 0-5 ms (seeded), so that answers come back one by one, as from a server."""

    delays = random.Random(0)

    async def send(self, base_url: str, body: Mapping[str, Any]) -> Any:
        await asyncio.sleep(self.delays.uniform(0, 0.005))
        return await super().send(base_url, body)


def local_client(**options: Any) -> LLMClient:
    config = ClientConfig(Endpoint(("local://model",), "local"), backoff_base=0.001, **options)
    return LLMClient(config, transport=LocalTransport, progress=False)


def test_a_new_backend_is_one_class():
    LocalTransport.sent.clear()
    results = local_client().complete(requests_for(["hello", "retry-me"]))
    assert [r.text for r in results] == ["HELLO", "RETRY-ME"] and results[1].attempts == 2
    assert all(url == "local://model" for url, _ in LocalTransport.sent)


def test_requests_are_consumed_lazily_within_a_bounded_window():
    LocalTransport.sent.clear()
    client = local_client(concurrency=4)
    pulled = results_seen = max_ahead = 0

    def generate():
        nonlocal pulled
        for i in range(5_000):
            pulled += 1
            yield ChatRequest((user_message(f"stream {i}"),))

    async def consume() -> None:
        nonlocal results_seen, max_ahead
        async for _, result in client.astream(generate()):
            assert result.ok
            results_seen += 1
            max_ahead = max(max_ahead, pulled - results_seen)

    asyncio.run(consume())
    assert results_seen == 5_000
    # never more than the window (2 x concurrency + one chunk of 512) pulled ahead of the answers
    assert max_ahead <= 2 * 4 + 512


def test_requests_are_admitted_a_wave_at_a_time(tmp_path):
    """Past the first fill of the window, new requests are claimed `concurrency` at a time, not one per answer: a
    claim is a write transaction, and one per answer cost about a third of the client's CPU (bench/judge_throughput)."""
    LocalTransport.sent.clear()
    cache = ResponseCache(tmp_path / "c.sqlite")
    claimed: list[int] = []
    claim = cache.claim
    cache.claim = lambda keys, lease: claimed.append(len(keys)) or claim(keys, lease)  # type: ignore[method-assign]
    config = ClientConfig(Endpoint(("local://model",), "local"), concurrency=8)
    client = LLMClient(config, cache, transport=StaggeredTransport, progress=False)
    results = client.complete(requests_for([f"w{i}" for i in range(1_200)]))
    assert [r.text for r in results] == [f"W{i}" for i in range(1_200)]
    assert sum(claimed) == 1_200
    assert claimed[:2] == [512, 16]  # the window: one chunk, and twice the concurrency
    assert all(n >= 8 for n in claimed[2:-1]), claimed


class CommitWatch:
    """Wraps a cache's put_many: records the keys of each commit."""

    def __init__(self, cache: ResponseCache) -> None:
        self.commits: list[list[bytes]] = []
        self.keys: set[bytes] = set()
        put_many = cache.put_many

        def watched(rows, *, owner=None):  # type: ignore[no-untyped-def]
            put_many(rows, owner=owner)
            self.commits.append([key for key, *_ in rows])
            self.keys.update(self.commits[-1])

        cache.put_many = watched  # type: ignore[method-assign]


def test_answers_are_committed_in_groups_and_handed_out_only_once_committed(tmp_path):
    """A commit costs about the same whatever it holds (bench/judge_throughput.py: 66-73 us per answer at one commit
    per event-loop turn, 35-46 us at one per 10 ms): answers that arrive within COMMIT_SECONDS of the first of a group
    share one. No answer is handed out before its commit: a consumer that saw an answer may rely on it being kept."""
    cache = ResponseCache(tmp_path / "c.sqlite")
    watch = CommitWatch(cache)
    config = ClientConfig(Endpoint(("local://model",), "local"), concurrency=8)
    client = LLMClient(config, cache, transport=StaggeredTransport, progress=False)  # an answer every ~0.3 ms
    requests = requests_for([f"t{i}" for i in range(600)])
    seen = 0

    async def consume() -> None:
        nonlocal seen
        async for index, result in client.astream(requests):
            assert result.text == f"T{index}" and client.key(requests[index]) in watch.keys
            seen += 1

    asyncio.run(consume())
    assert seen == 600 and len(cache) == 600 == sum(map(len, watch.commits))
    assert len(watch.commits) <= 600 / 5, len(watch.commits)  # one per event-loop turn: 244 here (2.5 answers each)


def test_a_request_identical_to_one_waiting_for_its_commit_joins_it(tmp_path, monkeypatch):
    """An answer's job stays in flight until its commit: an identical request admitted meanwhile neither misses the
    cache nor finds its own claim free, so it is not paid for twice."""
    from ecac_bench.llm import engine

    class FailingTransport(LocalTransport):
        async def send(self, base_url: str, body: Mapping[str, Any]) -> Any:
            if body["messages"][-1]["content"] == "fail-me":
                raise HTTPError(400, "bad request")
            return await super().send(base_url, body)

    monkeypatch.setattr(engine, "COMMIT_SECONDS", 0.5)  # far longer than the run's first answers take
    LocalTransport.sent.clear()
    cache = ResponseCache(tmp_path / "c.sqlite")
    config = ClientConfig(Endpoint(("local://model",), "local"), concurrency=1)
    client = LLMClient(config, cache, transport=FailingTransport, progress=False)
    # The window (2 x 1 + 512) fills with the first 514 requests. "repeated" is answered first and waits for its
    # commit; "fail-me" fails next and frees a place in the window, which admits the second "repeated" at once.
    texts = ["repeated", "fail-me"] + [f"d{i}" for i in range(512)] + ["repeated"]
    results = client.complete(requests_for(texts))
    assert results[0].text == results[-1].text == "REPEATED" and not results[1].ok
    sent = [body["messages"][-1]["content"] for _, body in LocalTransport.sent]
    assert sent.count("repeated") == 1 and len(sent) == len(texts) - 2  # neither the repeat nor "fail-me"
    assert client.stats.answered == 513 and client.stats.cached == 0


def test_answers_received_are_committed_when_the_consumer_stops_early(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    watch = CommitWatch(cache)
    answered: list[str] = []

    class CountingTransport(StaggeredTransport):
        async def send(self, base_url: str, body: Mapping[str, Any]) -> Any:
            answer = await super().send(base_url, body)
            answered.append(answer["choices"][0]["message"]["content"])
            return answer

    config = ClientConfig(Endpoint(("local://model",), "local"), concurrency=16)
    client = LLMClient(config, cache, transport=CountingTransport, progress=False)

    async def first_answer() -> None:
        async with contextlib.aclosing(client.astream(requests_for([f"e{i}" for i in range(400)]))) as stream:
            async for _ in stream:
                break

    asyncio.run(first_answer())
    assert 1 < len(answered) < 400 and len(cache) == len(watch.keys) == len(answered)


def test_the_cyclic_gc_is_paused_while_a_chunk_is_keyed_and_looked_up(tmp_path):
    """A chunk makes many small objects and no cycle; the collector rescanning a large heap for them cost a cached
    re-run of 100k requests about a third of its time (bench/judge_throughput.py). It is on again afterwards."""
    import gc

    cache = ResponseCache(tmp_path / "c.sqlite")
    seen: list[bool] = []
    find = cache.find
    cache.find = lambda keys: seen.append(gc.isenabled()) or find(keys)  # type: ignore[method-assign]
    client = LLMClient(ClientConfig(Endpoint(("local://model",), "local")), cache, transport=LocalTransport)
    assert gc.isenabled()
    assert [r.text for r in client.complete(requests_for(["a", "b"]))] == ["A", "B"]
    assert seen and not any(seen) and gc.isenabled()  # the lookup, and the claim's look for answers


def test_the_cyclic_gc_stays_paused_while_everything_comes_from_the_cache(tmp_path):
    """A fully cached re-run makes no cycle: the collector is off for all of it (its full rescans of the request list
    and the results cost such a run about a seventh of its time); it is back once a request is sent, and after."""
    import gc

    gc_during_send: list[bool] = []

    class WatchingTransport(LocalTransport):
        async def send(self, base_url: str, body: Mapping[str, Any]) -> Any:
            gc_during_send.append(gc.isenabled())
            return await super().send(base_url, body)

    config = ClientConfig(Endpoint(("local://model",), "local"))
    client = LLMClient(config, ResponseCache(tmp_path / "c.sqlite"), transport=WatchingTransport, progress=False)
    requests = requests_for([f"g{i}" for i in range(1_500)])
    client.complete(requests[:1_000])
    assert gc_during_send and all(gc_during_send) and gc.isenabled()

    async def consume(requests: list[ChatRequest]) -> list[bool]:
        seen = []
        async for _ in client.astream(requests):
            seen.append(gc.isenabled())
        return seen

    assert not any(asyncio.run(consume(requests[:1_000])))  # three chunks, all cached: off throughout
    assert gc.isenabled()
    gc_during_send.clear()
    seen = asyncio.run(consume(requests))  # two chunks cached, then misses: on from the first request sent
    assert len(gc_during_send) == 500 and all(gc_during_send) and seen[-1] and gc.isenabled()


def test_results_come_back_in_order_from_complete():
    results = local_client(concurrency=3).complete(requests_for([f"o{i}" for i in range(100)]))
    assert [r.text for r in results] == [f"O{i}" for i in range(100)]


def test_json_bodies_are_orjson_round_trips(judge):
    judge.state.keep_bodies = True
    text = '汉字 "quotes" \\ \n and emoji 🧸'
    make_client(judge.base_url).complete(requests_for([text]))
    assert judge.state.bodies[0]["messages"][0]["content"] == text
    assert orjson.loads(orjson.dumps(judge.state.bodies[0])) == judge.state.bodies[0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=20))
def test_any_texts_round_trip_through_the_cache(tmp_path_factory, texts):
    path = tmp_path_factory.mktemp("c") / "c.sqlite"
    first = local_client().complete(requests_for(texts))
    config = ClientConfig(Endpoint(("local://model",), "local"))
    client = LLMClient(config, ResponseCache(path), transport=LocalTransport, progress=False)
    client.complete(requests_for(texts))
    again = client.complete(requests_for(texts))
    assert [r.text for r in again] == [r.text for r in first] and all(r.cached for r in again)
