"""The response cache, schema v2: blob keys with their components, v1 migration, the write check before the first
request, the fallback file when a write fails mid-run, and claims shared by processes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import ClassVar

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from judge_server import JudgeServer
from llm_helpers import fresh, make_client, requests_for
from PIL import Image

from ecac_bench.llm import (
    CacheWriteError,
    ChatRequest,
    ClientConfig,
    ClientConfigError,
    Endpoint,
    ImageRule,
    JsonSchema,
    LLMClient,
    ResponseCache,
    image_part,
    image_sha256,
    user_message,
)
from ecac_bench.llm.cache import CachedAnswer, key_of
from ecac_bench.llm.engine import COMMIT_SECONDS
from ecac_bench.llm.settings import public_url

SENTINEL = "sk-CACHE-SENTINEL-4d1e"


@pytest.fixture(scope="module")
def server():
    with JudgeServer() as srv:
        yield srv


@pytest.fixture
def judge(server):
    return fresh(server)


def test_keys_are_blobs_and_rows_keep_their_components(judge, tmp_path):
    db = tmp_path / "c.sqlite"
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(image)
    client = make_client(judge.base_url, db, key=SENTINEL)
    request = ChatRequest((user_message("describe", [image]),), "t@1", response_format=JsonSchema("s", {}))
    assert client.complete([request])[0].ok
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 2
        ((key, kind, size),) = con.execute("SELECT key, typeof(key), length(key) FROM answers").fetchall()
        (components,) = con.execute("SELECT components FROM key_components WHERE key = ?", (key,)).fetchone()
    assert (kind, size) == ("blob", 32) and key == client.key(request)
    assert hashlib.sha256(components).digest() == key  # a later key function can recompute it: migration
    parsed = orjson.loads(components)
    assert parsed["model"] == "test-judge" and parsed["template"] == "t@1" and parsed["v"] == 2
    assert parsed["messages"][0]["content"][0] == {"type": "image", "sha256": image_sha256(str(image.resolve()))}
    assert parsed["image"] == {"max_pixels": ImageRule().max_pixels} and parsed["response_format"]["name"] == "s"
    assert SENTINEL.encode() not in db.read_bytes() and judge.base_url.encode() not in components


def test_footprint_reports_bytes_per_entry(judge, tmp_path):
    client = make_client(judge.base_url, tmp_path / "c.sqlite")
    client.complete(requests_for([f"row {i}" for i in range(50)]))
    footprint = client.cache.footprint()
    assert footprint["entries"] == 50 and 0 < footprint["bytes_per_entry"] == footprint["bytes"] / 50


# -- v1 files ----------------------------------------------------------------------------------------------------

V1_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL,"
    " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
)


def v1_key(model, base_url, messages, params, template, max_side=1024) -> str:
    """The v1 client's key function (ecac_bench/llm_client.py before schema v2), verbatim in substance."""
    keyed = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = [
                {
                    "type": "image",
                    "sha256": hashlib.sha256(Path(p["path"]).read_bytes()).hexdigest(),
                    "max_side": max_side,
                }
                if p.get("type") == "image_path"
                else p
                for p in content
            ]
            message = {**message, "content": content}
        keyed.append(message)
    payload = {
        "schema": 1,
        "model": model,
        "endpoint": public_url(base_url),
        "messages": keyed,
        "params": params,
        "template": template,
    }
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def write_v1(db: Path, rows: list[tuple[str, str, int]]) -> None:
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(V1_SCHEMA)
        con.executemany(
            "INSERT INTO responses VALUES (?, 'test-judge', ?, 10, ?, 0)", [(k, text, ct) for k, text, ct in rows]
        )
        con.commit()


def test_v1_answers_are_migrated_not_lost(judge, tmp_path):
    db = tmp_path / "c.sqlite"
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(image)
    text_msg = (user_message("old text request"),)
    image_msg = (user_message("old image request", [image]),)
    long_msg = (user_message("old long answer"),)
    write_v1(
        db,
        [
            # the v1 default: temperature only (no max_tokens was sent)
            (v1_key("test-judge", judge.base_url, text_msg, {"temperature": 0.0}, "t@1"), "OLD TEXT", 7),
            (v1_key("test-judge", judge.base_url, image_msg, {"temperature": 0.0}, "t@1"), "OLD IMAGE", 7),
            (v1_key("test-judge", judge.base_url, long_msg, {"temperature": 0.0}, "t@1"), "TOO LONG", 500),
        ],
    )
    # The same judge behind two URLs now: the v1 key of either matches.
    client = make_client(("http://127.0.0.1:9/v1", judge.base_url), db, image=ImageRule(max_side=1024), max_tokens=100)
    schema = JsonSchema("judge_score", {"type": "object"})
    results = client.complete(
        [
            ChatRequest(text_msg, "t@1", response_format=schema),  # v1 never sent a schema: the answer still counts
            ChatRequest(image_msg, "t@1"),
            ChatRequest(long_msg, "t@1"),  # 500 tokens > max_tokens 100: not the answer a capped request gets
        ]
    )
    assert [r.text for r in results[:2]] == ["OLD TEXT", "OLD IMAGE"] and all(r.cached for r in results[:2])
    assert not results[2].cached and judge.state.requests == 1
    assert client.stats.migrated_v1 == 2
    # Copied into v2 with components: found directly next time, under the v2 key.
    again = make_client(judge.base_url, db, image=ImageRule(max_side=1024), max_tokens=100)
    assert [r.text for r in again.complete([ChatRequest(text_msg, "t@1", response_format=schema)])] == ["OLD TEXT"]
    assert again.stats.migrated_v1 == 0 and again.cache.components(
        again.key(ChatRequest(text_msg, "t@1", response_format=schema))
    )
    # Under the pixel budget the image is prepared differently than v1's max_side: a new request.
    judge.state.reset()
    budget = make_client(judge.base_url, db, max_tokens=100)
    assert not budget.complete([ChatRequest(image_msg, "t@1")])[0].cached and judge.state.requests == 1


# -- the write check and the fallback file ------------------------------------------------------------------------


def test_unusable_cache_is_an_error_before_anything_is_sent(judge, tmp_path):
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ClientConfigError, match=f"response cache {corrupt}: cannot be opened and written"):
        ResponseCache(corrupt)
    directory = tmp_path / "dir.sqlite"
    directory.mkdir()
    with pytest.raises(ClientConfigError, match="cannot be opened"):
        ResponseCache(directory)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ClientConfigError, match=f"cache dir {a_file}: cannot be created"):
        ResponseCache.in_dir(a_file)
    newer = tmp_path / "newer.sqlite"
    with contextlib.closing(sqlite3.connect(newer)) as con:
        con.execute("PRAGMA user_version = 3")
    with pytest.raises(ClientConfigError, match="schema v3 is newer"):
        ResponseCache(newer)
    assert judge.state.requests == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_read_only_cache_is_an_error_before_anything_is_sent(tmp_path):
    db = tmp_path / "c.sqlite"
    ResponseCache(db).close()
    for path in tmp_path.iterdir():
        path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(ClientConfigError, match="cannot be opened and written"):
            ResponseCache(db)
    finally:
        tmp_path.chmod(0o755)


def test_disk_full_mid_run_keeps_every_paid_answer(judge, tmp_path):
    db = tmp_path / "c.sqlite"
    judge.state.responder = lambda messages: "x" * 3000  # answers big enough to fill pages fast
    judge.state.latency = 0.005
    client = make_client(judge.base_url, db, concurrency=4)
    pages = client.cache._db.execute("PRAGMA page_count").fetchone()[0]
    client.cache._db.execute(f"PRAGMA max_page_count = {pages + 20}")  # a disk that fills up after ~20 answers
    with pytest.raises(CacheWriteError) as info:
        client.complete(requests_for([f"full {i}" for i in range(300)]))
    fallback = tmp_path / "c.fallback.jsonl"
    message = str(info.value)
    assert "database or disk is full" in message and str(fallback) in message and "stopped sending" in message
    stored, saved = len(client.cache), len(fallback.read_bytes().splitlines())
    assert saved >= 1 and stored + saved == judge.state.answered  # every answer received is kept
    assert judge.state.requests < 300  # sending stopped
    client.cache.close()

    # The next process imports the fallback file: nothing paid is asked again.
    judge.state.reset()
    rerun = make_client(judge.base_url, db)
    assert rerun.cache.imported == saved and not fallback.exists()
    results = rerun.complete(requests_for([f"full {i}" for i in range(300)]))
    assert all(r.ok for r in results) and judge.state.requests == 300 - stored - saved


def test_cli_exits_2_with_the_fallback_named_when_the_cache_fails(judge, tmp_path, monkeypatch, capsys):
    from ecac_bench import SAMPLE_DATA, load_dataset
    from ecac_bench.cli import main

    ids = [r.id for r in load_dataset(SAMPLE_DATA).records[:6]]
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(orjson.dumps({"id": i, "caption": f"cap {i}"}).decode() + "\n" for i in ids))
    calls = 0
    real_put = ResponseCache.put_many

    def failing_put(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        if calls > 2:
            raise sqlite3.OperationalError("disk I/O error")
        return real_put(self, *args, **kwargs)

    monkeypatch.setattr(ResponseCache, "put_many", failing_put)
    monkeypatch.setenv("ECAC_JUDGE_API_KEY", SENTINEL)
    judge.state.latency = 2 * COMMIT_SECONDS  # one at a time, slower than a group commit: a commit per answer
    argv = ["judge", "--predictions", str(preds), "--allow-missing", "--judge-base-url", judge.base_url]
    argv += ["--judge-model", "m", "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--concurrency", "1"]
    argv += ["--text-only", "--json", str(tmp_path / "r.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: response cache") and "disk I/O error" in err and "fallback.jsonl" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r.json").exists()
    fallback = tmp_path / "cache" / "llm_responses.fallback.jsonl"
    # 2 answers committed, every later one kept in the fallback file, and nothing sent after the failure
    assert len(fallback.read_bytes().splitlines()) == judge.state.answered - 2 >= 1 and judge.state.answered < 6
    assert SENTINEL not in err and all(SENTINEL.encode() not in p.read_bytes() for p in tmp_path.rglob("*.*"))


def test_damaged_fallback_lines_are_skipped(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    components = orjson.dumps({"v": 2, "model": "m"}, option=orjson.OPT_SORT_KEYS)
    cache.write_fallback([(key_of(components), components, CachedAnswer("kept", 1, 2), False)])
    with open(cache.fallback_path, "ab") as f:
        f.write(b'{"key": "00", "components": {}, "text": "forged"}\nnot json\n')
    cache.close()
    reopened = ResponseCache(tmp_path / "c.sqlite")
    assert reopened.imported == 1 and reopened.get_many([key_of(components)])[key_of(components)].text == "kept"


# -- claims: two processes never pay twice ------------------------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import sys
    from ecac_bench.llm import ChatRequest, ClientConfig, Endpoint, LLMClient, ResponseCache, user_message
    url, db, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    config = ClientConfig(Endpoint((url,), "test-judge", "sk-local"), concurrency=4)
    client = LLMClient(config, ResponseCache(db), progress=False)
    results = client.complete([ChatRequest((user_message(f"resume {i}"),)) for i in range(start, stop)])
    sys.exit(0 if all(r.ok for r in results) else 1)
    """
)


def stored_rows(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_two_processes_on_one_cache_pay_once(judge, tmp_path):
    judge.state.latency = 0.02
    db = tmp_path / "c.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", RUNNER, judge.base_url, str(db), "0", "200"]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert stored_rows(db) == 200
    assert judge.state.requests == 200  # each request paid once, though both processes asked all of them
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # released with the answers


def test_an_expired_claim_is_taken_over(judge, tmp_path):
    client = make_client(judge.base_url, tmp_path / "c.sqlite")
    request = requests_for(["claimed by a dead process"])[0]
    with client.cache._db:
        client.cache._db.execute("INSERT INTO claims VALUES (?, 'dead:1:x', ?)", (client.key(request), time.time() - 1))
    assert client.complete([request])[0].ok and judge.state.requests == 1


def test_a_live_claim_is_waited_for_not_paid_again(judge, tmp_path):
    db = tmp_path / "c.sqlite"
    client = make_client(judge.base_url, db)
    request = requests_for(["claimed by a live process"])[0]
    key, components = client.key(request), client.components(request)
    other = ResponseCache(db)  # another process's connection
    with other._db:
        other._db.execute("INSERT INTO claims VALUES (?, 'other:2:y', ?)", (key, time.time() + 60))

    async def scenario():
        task = asyncio.ensure_future(client.acomplete([request]))
        await asyncio.sleep(0.6)
        assert not task.done()  # waiting for the other process's answer
        other.put(key, components, CachedAnswer("ANSWERED ELSEWHERE", 3, 4), owner="other:2:y")
        return await asyncio.wait_for(task, 5)

    (result,) = asyncio.run(scenario())
    assert result.text == "ANSWERED ELSEWHERE" and result.cached and judge.state.requests == 0


def test_resume_after_kill_resends_nothing_answered(judge, tmp_path):
    judge.state.latency = 0.02
    db = tmp_path / "c.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, judge.base_url, str(db), "0", "200"])
    deadline = time.monotonic() + 60
    while stored_rows(db) < 40 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*) FROM claims").fetchone()[0] > 0  # the dead process's, taken over below
    stored = stored_rows(db)
    assert 40 <= stored < 200
    judge.state.reset()
    judge.state.latency = 0.0
    results = make_client(judge.base_url, db).complete(
        [ChatRequest((user_message(f"resume {i}"),)) for i in range(200)]
    )
    assert all(r.ok for r in results)
    assert judge.state.requests == 200 - stored
    assert sum(r.cached for r in results) == stored


# -- the cached re-run's fast path: keys from pre-encoded pieces, one lookup per chunk, no job for a hit -------------


def defined_components(client, request: ChatRequest) -> bytes:
    """The key components by their definition (schema v2, docs/judges.md): one dict, orjson with sorted keys."""
    messages, has_images = [], False
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "image_path":
                    parts.append({"type": "image", "sha256": image_sha256(part["path"])})
                    has_images = True
                else:
                    parts.append(part)
            message = {**message, "content": parts}
        messages.append(message)
    components = {
        "v": 2,
        "model": client.config.model,
        "messages": messages,
        "params": {**client.config.params, **request.params},
        "template": request.template_version,
    }
    if request.response_format is not None:
        components["response_format"] = request.response_format.key_part()
    if has_images:
        components["image"] = client.config.image.key_part()
    return orjson.dumps(components, option=orjson.OPT_SORT_KEYS)


class EchoTransport:
    """Answers at once with the last text of the conversation (any message shape), reversed."""

    def __init__(self, config) -> None:
        pass

    async def send(self, base_url, body):
        content = body["messages"][-1]["content"]
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
        return {
            "choices": [{"message": {"content": text[::-1]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }

    async def aclose(self) -> None:
        pass


def echo_client(db: Path, **options) -> LLMClient:
    config = ClientConfig(Endpoint(("local://echo",), "echo-model"), **options)
    return LLMClient(config, ResponseCache(db), transport=EchoTransport, progress=False)


@pytest.fixture(scope="module")
def two_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = [folder / "red.png", folder / "blue.png"]
    Image.new("RGB", (8, 8), "red").save(paths[0])
    Image.new("RGB", (8, 8), "blue").save(paths[1])
    return paths


SHARED_SCHEMAS = [JsonSchema("a", {"type": "object"}), JsonSchema("b", {"type": "array", "items": {"x": 1}})]
texts = st.text(max_size=12)
parts = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, texts), st.integers(0, 1).map(lambda i: {"type": "image", "i": i})
)
messages_strategy = st.lists(
    st.tuples(st.sampled_from(["system", "user", "assistant"]), st.one_of(texts, st.lists(parts, max_size=3))),
    min_size=1,
    max_size=3,
)
request_strategy = st.tuples(
    messages_strategy,
    st.sampled_from(["", "t@1", "模板@2"]),
    st.dictionaries(
        st.sampled_from(["temperature", "max_tokens", "top_p", "seed"]),
        st.one_of(st.integers(-5, 5000), st.floats(allow_nan=False, allow_infinity=False)),
        max_size=2,
    ),
    # None, a schema shared by many requests (as the project's are), or a new schema object per request
    st.one_of(st.none(), st.sampled_from(SHARED_SCHEMAS), st.builds(lambda n: JsonSchema(n, {"n": n}), texts)),
)


def build_request(spec, images) -> ChatRequest:
    messages, template, params, response_format = spec
    built = []
    for role, content in messages:
        if isinstance(content, list):
            content = [image_part(images[p["i"]]) if p["type"] == "image" else p for p in content]
        built.append({"role": role, "content": content})
    return ChatRequest(tuple(built), template, params, response_format)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(request_strategy, min_size=1, max_size=25), st.sampled_from([None, 64]))
def test_keys_are_the_defined_components_whatever_the_requests(tmp_path_factory, two_images, specs, max_side):
    """The key pieces encoded once per run (model, params, template, format, image rule) and the messages encoded
    per request give the very bytes of the definition, for every request of a run and for client.key alone."""
    db = tmp_path_factory.mktemp("k") / "c.sqlite"
    client = echo_client(db, image=ImageRule(max_side=max_side))
    requests = [build_request(spec, two_images) for spec in specs]
    expected = {defined_components(client, r) for r in requests}
    assert all(client.components(r) == defined_components(client, r) for r in requests)
    assert all(client.key(r) == key_of(defined_components(client, r)) for r in requests)
    assert all(r.ok for r in client.complete(requests))
    with contextlib.closing(sqlite3.connect(db)) as con:
        stored = con.execute("SELECT key, components FROM key_components").fetchall()
    assert {components for _, components in stored} == expected
    assert all(key == key_of(components) for key, components in stored)


def test_find_returns_positions_of_the_keys_it_has(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    keys = [key_of(b"%d" % i) for i in range(5)]
    for i in (1, 3):
        cache.put(keys[i], b"%d" % i, CachedAnswer(f"answer {i}", i, 10 * i))
    assert cache.find([]) == [] and cache.get_many([]) == {}
    assert sorted(cache.find(keys)) == [(1, "answer 1", 1, 10), (3, "answer 3", 3, 30)]
    assert sorted(cache.find([keys[3], keys[0], keys[3]])) == [(0, "answer 3", 3, 30), (2, "answer 3", 3, 30)]
    assert cache.get_many([keys[4], keys[3]]) == {keys[3]: CachedAnswer("answer 3", 3, 30)}
    with pytest.raises(ValueError, match="32 bytes"):
        cache.find([keys[0], b"short"])  # positions in one blob: a key of another size would shift them


class RecordingBar:
    """Stands in for tqdm: records every update."""

    updates: ClassVar[list[int]] = []

    def __init__(self, *args, **kwargs) -> None:
        RecordingBar.updates = []

    def update(self, n: int) -> None:
        RecordingBar.updates.append(n)

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_cached_rerun_answers_in_order_and_sends_each_miss_once(judge, tmp_path, monkeypatch):
    db = tmp_path / "c.sqlite"
    first = make_client(judge.base_url, db).complete(requests_for([f"cached {i}" for i in range(700)]))
    answer = {f"cached {i}": r for i, r in enumerate(first)}
    # More than one chunk (512): hits, misses, and repeats of both, interleaved.
    mixed = []
    for i in range(700):
        mixed.append(f"cached {i}")
        if i % 3 == 0:
            mixed.append(f"new {i}")
        if i % 50 == 0:
            mixed += [f"cached {i}", f"new {i}", f"new {i}"]
    judge.state.reset()
    monkeypatch.setattr("ecac_bench.llm.engine.tqdm", RecordingBar)
    client = make_client(judge.base_url, db)
    results = client.complete(requests_for(mixed))
    assert sum(RecordingBar.updates) == len(mixed)  # the bar counts every request, hits in batches
    new = {t for t in mixed if t.startswith("new")}
    assert judge.state.requests == len(new) == client.stats.answered  # every miss paid once, no hit sent
    for text, result in zip(mixed, results, strict=True):
        if text.startswith("cached"):
            assert result.cached and (result.text, result.prompt_tokens) == (
                answer[text].text,
                answer[text].prompt_tokens,
            )
        else:
            assert result.ok and not result.cached
    assert client.stats.requests == len(mixed) and client.stats.failed == 0
    hits = {t for t in mixed if t.startswith("cached")}
    assert len(hits) <= client.stats.cached <= len(mixed) - len(new)  # distinct per chunk
    paid = {t: r for t, r in zip(mixed, results) if not r.cached}
    assert client.stats.new_prompt_tokens == sum(r.prompt_tokens for r in paid.values())
    # usage counts each distinct cached answer of a chunk once
    cached_tokens = client.stats.prompt_tokens - client.stats.new_prompt_tokens
    assert (
        sum(answer[t].prompt_tokens for t in hits) <= cached_tokens <= sum(r.prompt_tokens for r in results if r.cached)
    )


def test_hits_of_a_chunk_stream_in_the_requests_order(tmp_path):
    db = tmp_path / "c.sqlite"
    requests = requests_for([f"ordered {i}" for i in range(300)])
    echo_client(db).complete(requests)
    client = echo_client(db)

    async def indices() -> list[int]:
        return [i async for i, result in client.astream(requests) if result.cached]

    assert asyncio.run(indices()) == list(range(300))  # keys sort otherwise: the lookup's order is not the answers'


def test_hits_are_answered_while_a_request_held_elsewhere_waits(judge, tmp_path):
    db = tmp_path / "c.sqlite"
    cached, held = requests_for(["in the cache", "claimed by another live process"])
    make_client(judge.base_url, db).complete([cached])
    judge.state.reset()
    client = make_client(judge.base_url, db)
    other = ResponseCache(db)
    with other._db:
        other._db.execute("INSERT INTO claims VALUES (?, 'other:2:y', ?)", (client.key(held), time.time() + 60))

    async def scenario():
        seen = []
        async with contextlib.aclosing(client.astream([cached, held])) as stream:
            async for index, result in stream:
                seen.append((index, result.text, result.cached))
                if index == 0:  # the hit came first; now the other process answers
                    other.put(client.key(held), client.components(held), CachedAnswer("FROM ELSEWHERE", 1, 1))
        return seen

    seen = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert seen[0][0] == 0 and seen[0][2] and seen[1] == (1, "FROM ELSEWHERE", True)
    assert judge.state.requests == 0


def test_a_lookup_that_fails_stops_the_run_before_anything_is_sent(judge, tmp_path, monkeypatch):
    client = make_client(judge.base_url, tmp_path / "c.sqlite")

    def failing_find(self, keys):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ResponseCache, "find", failing_find)
    with pytest.raises(CacheWriteError, match="disk I/O error"):
        client.complete(requests_for([f"lookup {i}" for i in range(10)]))
    assert judge.state.requests == 0 and client.stats.failed == 10


def test_a_write_failure_in_a_rerun_keeps_the_new_answers_and_sends_no_hit(judge, tmp_path, monkeypatch):
    db = tmp_path / "c.sqlite"
    make_client(judge.base_url, db).complete(requests_for([f"old {i}" for i in range(20)]))
    judge.state.reset()

    def failing_put(self, rows, owner=None):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(ResponseCache, "put_many", failing_put)
    client = make_client(judge.base_url, db)
    new = requests_for([f"new {i}" for i in range(10)])
    with pytest.raises(CacheWriteError):
        client.complete(requests_for([f"old {i}" for i in range(20)]) + new)
    rows = [orjson.loads(line) for line in (tmp_path / "c.fallback.jsonl").read_bytes().splitlines()]
    assert 1 <= len(rows) == judge.state.answered <= judge.state.requests <= 10  # every answer received is kept
    assert {row["key"] for row in rows} <= {client.key(r).hex() for r in new}  # hits were never sent
    assert client.stats.cached == 20


def test_any_write_error_keeps_the_answers_in_the_fallback_file(judge, tmp_path, monkeypatch):
    """Not only SQLite's errors: whatever the commit raises, the answers received are kept and the run stops."""

    def failing_put(self, rows, owner=None):
        raise ValueError("not storable")

    monkeypatch.setattr(ResponseCache, "put_many", failing_put)
    judge.state.latency = 2 * COMMIT_SECONDS  # one at a time, slower than a group commit: a commit per answer
    client = make_client(judge.base_url, tmp_path / "c.sqlite", concurrency=1)
    with pytest.raises(CacheWriteError, match="not storable"):
        client.complete(requests_for([f"any {i}" for i in range(5)]))
    rows = (tmp_path / "c.fallback.jsonl").read_bytes().splitlines()
    assert 1 <= len(rows) == judge.state.answered < 5


def test_an_image_is_hashed_once_per_chunk(tmp_path, two_images, monkeypatch):
    calls = []
    real = image_sha256

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr("ecac_bench.llm.engine.image_sha256", counting)
    client = echo_client(tmp_path / "c.sqlite")
    requests = [ChatRequest((user_message(f"question {i}", [two_images[i % 2]]),)) for i in range(40)]
    assert all(r.ok for r in client.complete(requests))
    assert sorted(calls) == sorted(str(p.resolve()) for p in two_images)
    image = tmp_path / "changing.png"
    Image.new("RGB", (8, 8), "red").save(image)
    client.complete([ChatRequest((user_message("what is it?", [image]),))])
    Image.new("RGB", (8, 8), "green").save(image)  # the next run looks at the file again: a new request
    assert not client.complete([ChatRequest((user_message("what is it?", [image]),))])[0].cached
