"""The OpenAI-compatible client against a real local HTTP server, through the real openai SDK."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from judge_server import JudgeServer
from PIL import Image

from ecac_bench.llm_client import (
    ChatRequest,
    ClientConfig,
    ClientConfigError,
    FatalAPIError,
    LLMClient,
    ResponseCache,
    backoff_delay,
    parse_retry_after,
    user_message,
)


@pytest.fixture(scope="module")
def server():
    with JudgeServer() as srv:
        yield srv


@pytest.fixture
def judge(server):
    server.wait_idle()
    server.state.reset()
    server.state.latency = 0.0
    server.state.retry_after = "0"
    server.state.slow_seconds = 2.0
    server.state.api_key = None
    server.state.keep_bodies = False
    return server


def make_client(server, cache_path: Path | None = None, **options) -> LLMClient:
    options = {"model": "test-judge", "base_url": server.base_url, "api_key": "sk-local", **options}
    config = ClientConfig.resolve(env={}, backoff_base=0.001, **{"timeout": 5.0, **options})
    cache = ResponseCache(cache_path) if cache_path else None
    return LLMClient(config, cache, progress=False, seed=0)


def requests_for(texts) -> list[ChatRequest]:
    return [ChatRequest((user_message(t),), "test@1") for t in texts]


def test_config_precedence():
    env = {
        "ECAC_JUDGE_MODEL": "env-model",
        "ECAC_JUDGE_BASE_URL": "http://ecac:1/v1",
        "OPENAI_BASE_URL": "http://openai:2/v1",
        "OPENAI_API_KEY": "sk-openai",
    }
    config = ClientConfig.resolve(env=env)
    assert (config.model, config.base_url, config.api_key) == ("env-model", "http://ecac:1/v1", "sk-openai")
    config = ClientConfig.resolve(model="flag", base_url="http://flag/v1", api_key="sk-flag", env=env)
    assert (config.model, config.base_url, config.api_key) == ("flag", "http://flag/v1", "sk-flag")
    assert ClientConfig.resolve(env={**env, "ECAC_JUDGE_API_KEY": "sk-ecac"}).api_key == "sk-ecac"
    no_url = ClientConfig.resolve(env={"ECAC_JUDGE_MODEL": "m"})
    assert no_url.base_url == "https://api.openai.com/v1" and no_url.api_key == "EMPTY"
    with pytest.raises(ClientConfigError, match="ECAC_JUDGE_MODEL"):
        ClientConfig.resolve(env={})
    assert "sk-" not in repr(config) and "sk-" not in str(config.describe())
    assert ClientConfig(model="m", base_url="http://user:pw@host:8/v1/?key=x").endpoint == "http://host:8/v1"


def test_retry_after_and_backoff():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    import random

    rng = random.Random(0)
    delays = [backoff_delay(a, 0.5, 4.0, rng) for a in range(8) for _ in range(50)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(backoff_delay(0, 0.5, 4.0, rng) for _ in range(50)) <= 0.5


def test_cache_hit_on_rerun_sends_nothing(judge, tmp_path):
    texts = [f"caption {i}" for i in range(20)]
    client = make_client(judge, tmp_path / "c.sqlite")
    first = client.complete(requests_for(texts))
    assert judge.state.requests == 20 and all(r.ok and not r.cached for r in first)
    assert len(client.cache) == 20
    judge.state.reset()
    client = make_client(judge, tmp_path / "c.sqlite")
    second = client.complete(requests_for(texts))
    assert judge.state.requests == 0
    assert [r.text for r in second] == [r.text for r in first] and all(r.cached for r in second)
    assert client.stats.cached == 20 and client.stats.new_prompt_tokens == 0
    assert client.stats.prompt_tokens == sum(r.prompt_tokens for r in first) > 0


def test_key_covers_model_params_template_and_image_content(judge, tmp_path):
    client = make_client(judge)
    base = ChatRequest((user_message("x"),), "t@1")
    key = client.key(base)
    assert client.key(ChatRequest((user_message("x"),), "t@2")) != key
    assert client.key(ChatRequest((user_message("x"),), "t@1", {"temperature": 0.7})) != key
    assert make_client(judge, model="other").key(base) != key
    assert make_client(judge, base_url="http://elsewhere/v1").key(base) != key
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    Image.new("RGB", (8, 8), "red").save(a)
    b.write_bytes(a.read_bytes())
    Image.new("RGB", (8, 8), "blue").save(c)
    keys = [client.key(ChatRequest((user_message("x", [p]),), "t@1")) for p in (a, b, c)]
    assert keys[0] == keys[1] != keys[2]


def test_identical_requests_are_sent_once(judge):
    results = make_client(judge).complete(requests_for(["same"] * 5 + ["other"]))
    assert judge.state.requests == 2 and len({r.text for r in results[:5]}) == 1


def test_retries_recover_and_are_counted(judge):
    judge.state.slow_seconds = 1.5
    texts = ["a @@429x2", "b @@500x1", "c @@slowx1", "d @@badjsonx1", "e fine"]
    # 0.6 s: far above a normal answer even on a loaded CI machine (a spurious timeout would change the counts)
    client = make_client(judge, timeout=0.6)
    results = client.complete(requests_for(texts))
    assert all(r.ok for r in results), [r.error for r in results]
    assert [r.attempts for r in results] == [3, 2, 2, 2, 1]
    assert client.stats.retries == 5 and client.stats.http_requests == 10 == judge.state.requests


def test_retry_after_is_honoured(judge):
    judge.state.retry_after = "1"
    start = time.monotonic()
    result = make_client(judge).complete(requests_for(["x @@429x1"]))[0]
    assert result.ok and result.attempts == 2
    assert time.monotonic() - start >= 1.0  # backoff alone would wait about 1 ms


def test_failure_after_retries_is_reported_and_not_cached(judge, tmp_path):
    client = make_client(judge, tmp_path / "c.sqlite", max_retries=2)
    results = client.complete(requests_for(["bad @@500x99", "good"]))
    assert not results[0].ok and "HTTP 500" in results[0].error and results[0].attempts == 3
    assert results[1].ok
    assert client.stats.failed == 1 and client.stats.answered == 1
    judge.state.reset()
    make_client(judge, tmp_path / "c.sqlite", max_retries=0).complete(requests_for(["bad @@500x99", "good"]))
    assert judge.state.requests == 1  # the failure is tried again, the answer is not


def test_timeout_failure(judge):
    judge.state.slow_seconds = 1.0
    result = make_client(judge, timeout=0.2, max_retries=1).complete(requests_for(["x @@slowx5"]))[0]
    assert not result.ok and "timeout" in result.error


def test_bad_key_is_fatal_and_redacted(judge):
    judge.state.api_key = "sk-right"
    client = make_client(judge, api_key="sk-wrong-SENTINEL")
    with pytest.raises(FatalAPIError) as info:
        client.complete(requests_for(["x"]))
    assert "401" in str(info.value) and "SENTINEL" not in str(info.value)


def test_concurrency_is_bounded(judge):
    judge.state.latency = 0.05
    make_client(judge, concurrency=4).complete(requests_for([f"c{i}" for i in range(24)]))
    assert judge.state.max_in_flight == 4


def test_images_go_as_downscaled_data_urls(judge, tmp_path):
    judge.state.keep_bodies = True
    path = tmp_path / "big.png"
    Image.new("RGB", (1200, 600), "green").save(path)
    result = make_client(judge, image_max_side=300).complete([ChatRequest((user_message("x", [path]),))])[0]
    assert result.ok
    parts = judge.state.bodies[0]["messages"][0]["content"]
    assert parts[0]["type"] == "image_url" and parts[1] == {"type": "text", "text": "x"}
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
        assert img.size == (300, 150)


RUNNER = textwrap.dedent(
    """
    import sys
    from ecac_bench.llm_client import ChatRequest, ClientConfig, LLMClient, ResponseCache, user_message
    url, db, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    config = ClientConfig(model="test-judge", base_url=url, api_key="sk-local", concurrency=4)
    client = LLMClient(config, ResponseCache(db), progress=False)
    results = client.complete([ChatRequest((user_message(f"resume {i}"),)) for i in range(start, stop)])
    sys.exit(0 if all(r.ok for r in results) else 1)
    """
)


def stored_rows(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return con.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


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
    stored = stored_rows(db)
    assert 40 <= stored < 200
    judge.state.reset()
    judge.state.latency = 0.0
    results = LLMClient(
        ClientConfig(model="test-judge", base_url=judge.base_url, api_key="sk-local"), ResponseCache(db), progress=False
    ).complete([ChatRequest((user_message(f"resume {i}"),)) for i in range(200)])
    assert all(r.ok for r in results)
    assert judge.state.requests == 200 - stored
    assert sum(r.cached for r in results) == stored


def test_processes_can_share_one_cache(judge, tmp_path):
    judge.state.latency = 0.005
    db = tmp_path / "c.sqlite"
    procs = [
        subprocess.Popen([sys.executable, "-c", RUNNER, judge.base_url, str(db), start, stop])
        for start, stop in (("0", "150"), ("50", "200"))
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert stored_rows(db) == 200
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
