"""Keys stay with their endpoint on every command that talks to two (balanced, make-qa) or may pick up the SDK's key
(judge), and never land in reports, caches, fallback files, logs or the console."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
from fake_judge import fake_model
from judge_server import JudgeServer

from ecac_bench import SAMPLE_DATA, load_dataset
from ecac_bench.cli import main
from ecac_bench.llm import ResponseCache

JUDGE_KEY = "sk-JUDGE-SENTINEL-91b2"
VLM_KEY = "sk-VLM-SENTINEL-5c7e"
OPENAI_KEY = "sk-OPENAI-SENTINEL-0a3f"
RECORD = next(r for r in load_dataset(SAMPLE_DATA, split="test") if r.caption.isascii() and r.toys)


@pytest.fixture
def two_servers(monkeypatch):
    """A judge server and a VLM server, each recording the Authorization headers it receives (neither checks them:
    a wrong key would reach it and be recorded)."""
    with JudgeServer() as judge, JudgeServer() as vlm:
        judge.state.responder = vlm.state.responder = fake_model
        for name in ("OPENAI_BASE_URL", "ECAC_VLM_BASE_URL", "ECAC_VLM_API_KEY", "ECAC_VLM_MODEL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("ECAC_JUDGE_BASE_URL", judge.base_url)
        monkeypatch.setenv("ECAC_JUDGE_API_KEY", JUDGE_KEY)
        monkeypatch.setenv("ECAC_JUDGE_MODEL", "fake")
        monkeypatch.setenv("ECAC_VLM_API_KEY", VLM_KEY)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        yield judge, vlm


def assert_no_secret(tmp_path, caplog, capsys):
    out = capsys.readouterr()
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for key in (JUDGE_KEY, VLM_KEY, OPENAI_KEY):
            assert key.encode() not in data, (key, path)
    for key in (JUDGE_KEY, VLM_KEY, OPENAI_KEY):
        assert key not in caplog.text and key not in out.out + out.err


def data_file(tmp_path):
    data = tmp_path / "d.jsonl"
    line = next(x for x in SAMPLE_DATA.read_text().splitlines() if json.loads(x)["id"] == RECORD.id)
    data.write_text(line + "\n")
    (tmp_path / "images").symlink_to(SAMPLE_DATA.parent / "images")
    return data


def test_balanced_sends_each_key_to_its_own_endpoint(two_servers, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    judge, vlm = two_servers
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": RECORD.id, "caption": "Children play with play dough. A teacher helps."}))
    out = tmp_path / "b.json"
    argv = ["balanced", "--data", str(data_file(tmp_path)), "--predictions", str(preds), "--lang", "en"]
    argv += ["--vlm-base-url", vlm.base_url, "--vlm-model", "fake-vlm", "--cache-dir", str(tmp_path / "cache")]
    argv += ["--no-progress", "--json", str(out)]
    assert main(argv) == 0
    assert judge.state.requests > 0 and vlm.state.requests > 0
    assert judge.state.authorizations == {f"Bearer {JUDGE_KEY}"}
    assert vlm.state.authorizations == {f"Bearer {VLM_KEY}"}
    report = json.loads(out.read_text())
    assert report["vlm"]["base_url"] == vlm.base_url and report["vlm"]["model"] == "fake-vlm"
    assert report["judge"]["base_url"] == judge.base_url
    assert_no_secret(tmp_path, caplog, capsys)


def test_make_qa_sends_each_key_to_its_own_endpoint(two_servers, tmp_path, monkeypatch, caplog, capsys):
    judge, vlm = two_servers
    monkeypatch.delenv("ECAC_VLM_API_KEY")
    out = tmp_path / "qa.jsonl"
    argv = ["make-qa", "--data", str(data_file(tmp_path)), "--out", str(out), "--per-image", "2", "--rounds", "1"]
    argv += ["--lang", "en", "--vlm-base-url", vlm.base_url, "--vlm-api-key", VLM_KEY]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    main(argv)
    assert judge.state.requests > 0 and vlm.state.requests > 0
    assert judge.state.authorizations == {f"Bearer {JUDGE_KEY}"}
    assert vlm.state.authorizations == {f"Bearer {VLM_KEY}"}
    assert_no_secret(tmp_path, caplog, capsys)


def test_without_a_vlm_url_the_vlm_is_the_judge_endpoint(two_servers, tmp_path):
    judge, vlm = two_servers
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": RECORD.id, "caption": "Children play with play dough."}))
    argv = ["balanced", "--data", str(data_file(tmp_path)), "--predictions", str(preds), "--lang", "en"]
    argv += ["--no-cache", "--no-progress"]
    assert main(argv) == 0
    assert vlm.state.requests == 0 and judge.state.authorizations == {f"Bearer {JUDGE_KEY}"}


def test_the_sdk_key_never_goes_to_an_ecac_url(two_servers, tmp_path, monkeypatch):
    judge, _ = two_servers
    monkeypatch.delenv("ECAC_JUDGE_API_KEY")
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": RECORD.id, "caption": "@@score=50"}))
    argv = ["judge", "--data", str(data_file(tmp_path)), "--predictions", str(preds), "--no-cache", "--no-progress"]
    assert main(argv) == 0
    assert judge.state.authorizations == {"Bearer EMPTY"}  # OPENAI_API_KEY stayed home
    judge.state.reset()
    assert main([*argv, "--judge-base-url", judge.base_url]) == 0
    assert judge.state.authorizations == {"Bearer EMPTY"}
    # With the SDK's own variable for the URL, the SDK's key is the right one.
    monkeypatch.delenv("ECAC_JUDGE_BASE_URL")
    monkeypatch.setenv("OPENAI_BASE_URL", judge.base_url)
    judge.state.reset()
    assert main(argv) == 0
    assert judge.state.authorizations == {f"Bearer {OPENAI_KEY}"}


def test_judge_report_records_the_settings_and_no_secret(two_servers, tmp_path, caplog, capsys):
    judge, _ = two_servers
    caplog.set_level(logging.DEBUG)
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": RECORD.id, "caption": "@@score=60"}))
    out = tmp_path / "j.json"
    argv = ["judge", "--data", str(data_file(tmp_path)), "--predictions", str(preds), "--no-progress"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--json", str(out), "--rpm", "600", "--image-max-side", "640"]
    assert main(argv) == 0
    described = json.loads(out.read_text())["judge"]
    assert described["rate_limits"] == {"rpm": 600.0, "tpm": None}
    assert described["image"] == {"rule": "max_side", "max_side": 640}
    assert described["params"] == {"temperature": 0.0, "max_tokens": 2048}
    assert described["structured_output"] == {"mode": "auto", "supported": {judge.base_url: True}}
    assert judge.state.response_formats[0]["json_schema"]["name"] == "judge_score"
    with sqlite3.connect(tmp_path / "cache" / "llm_responses.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM key_components").fetchone()[0] == 1
    assert len(ResponseCache(tmp_path / "cache" / "llm_responses.sqlite")) == 1
    assert_no_secret(tmp_path, caplog, capsys)


def test_a_run_over_two_servers_resumes_on_one(two_servers, tmp_path):
    judge, other = two_servers
    data = data_file(tmp_path)
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": RECORD.id, "caption": "@@score=70"}))
    argv = ["judge", "--data", str(data), "--predictions", str(preds), "--cache-dir", str(tmp_path / "cache")]
    argv += ["--no-progress", "--text-only"]
    assert main([*argv, "--judge-base-url", f"{other.base_url},{judge.base_url}"]) == 0
    assert judge.state.requests + other.state.requests == 1
    judge.state.reset()
    other.state.reset()
    assert main([*argv, "--judge-base-url", judge.base_url]) == 0  # one server now: the cache still answers
    assert judge.state.requests == other.state.requests == 0
