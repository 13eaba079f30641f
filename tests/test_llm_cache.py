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

import orjson
import pytest
from judge_server import JudgeServer
from llm_helpers import fresh, make_client, requests_for
from PIL import Image

from ecac_bench.llm import (
    CacheWriteError,
    ChatRequest,
    ClientConfigError,
    ImageRule,
    JsonSchema,
    ResponseCache,
    image_sha256,
    user_message,
)
from ecac_bench.llm.cache import CachedAnswer, key_of
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
