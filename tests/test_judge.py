"""The MLLM-judge score: the answer parser, the aggregation, and `ecac-bench judge` against the local server."""

from __future__ import annotations

import json
import logging
import math

import pytest
from judge_server import JudgeServer

from ecac_bench import SAMPLE_DATA, load_dataset
from ecac_bench.cli import main
from ecac_bench.judge import aggregate_judge_scores, parse_score
from ecac_bench.prompts import load_prompt

SENTINEL_KEY = "sk-SENTINEL-7f3a9c-never-written"


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        ('{"score": 80}', 80),
        ('```json\n{"score": 85}\n```', 85),
        ('```\n{"score": 61}\n```', 61),
        ('Sure! Here is my rating:\n{"score": 72}\nHope this helps.', 72),
        ("{”score:80}", 80),  # the curly-quote case from the issue
        ("{“score”: “90”}", 90),
        ('{"score": "88"}', 88),
        ("{'score': 77}", 77),
        ("{score: 66}", 66),
        ("score: 55", 55),
        ("Score = 45", 45),
        ("分数：91", 91),
        ("｛＂ｓｃｏｒｅ＂：７５｝", 75),  # fullwidth
        ('{"Score": 79.5}', 79.5),
        ('{"reason": "good", "score": 64}', 64),
        ('{"a": 1} then {"score": 60}', 60),
        ('<think>score: 20 seems low... {"score": 30}?</think>\n{"score": 85}', 85),  # reasoning models
        ("80", 80),
        ('"80"', 80),
        ('{"score": 0}', 0),
        ('{"score": 100}', 100),
    ],
)
def test_parse_score_reads_every_form(answer, score):
    parsed = parse_score(answer)
    assert parsed.ok and parsed.score == score, parsed


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (None, "empty answer"),
        ("   ", "empty answer"),
        ("This caption is rather good.", "no score found"),
        ('{"score": "high"}', "no score found"),
        ('{"score": true}', "no score found"),
        ('{"rating": 80}', "no score found"),
        ("The score is 80", "no score found"),
        ('{"score": 150}', "score out of range 0-100"),
        ('```json\n{"score": 101}\n```', "score out of range 0-100"),
        ('{"score": -5}', "score out of range 0-100"),
    ],
)
def test_parse_score_rejects_what_has_no_valid_score(answer, error):
    parsed = parse_score(answer)
    assert not parsed.ok and parsed.error == error


def test_out_of_range_keeps_the_value():
    assert parse_score('{"score": 150}').value == 150


def test_aggregate_by_hand():
    summary = aggregate_judge_scores([80, None, 60, 70, 90])
    assert summary.judge_score == 75
    assert math.isclose(summary.judge_score_std, math.sqrt((25 + 225 + 25 + 225) / 4))  # population std
    assert (summary.n, summary.n_failed) == (4, 1)
    assert aggregate_judge_scores([None, None]).to_dict() == {
        "judge_score": None,
        "judge_score_std": None,
        "n": 0,
        "n_failed": 2,
    }
    assert aggregate_judge_scores([]).n_failed == 0
    assert aggregate_judge_scores([50]).judge_score_std == 0


def test_prompts_have_both_languages_and_versions():
    for lang in ("zh", "en"):
        prompt = load_prompt("judge_score", lang)
        text = prompt.render(caption="CAPTION-X")
        assert "CAPTION-X" in text and '{"score": 80}' in text and prompt.version
    with pytest.raises(ValueError, match=r"judge_score\.fr\.j2"):
        load_prompt("judge_score", "fr")


def run_command(argv: list[str]) -> int:
    return main(["judge", *argv])


@pytest.fixture
def server():
    with JudgeServer(api_key=SENTINEL_KEY) as srv:
        yield srv


@pytest.fixture
def judge_env(server, monkeypatch):
    monkeypatch.setenv("ECAC_JUDGE_BASE_URL", server.base_url)
    monkeypatch.setenv("ECAC_JUDGE_API_KEY", SENTINEL_KEY)
    monkeypatch.setenv("ECAC_JUDGE_MODEL", "test-judge")
    return server


def write_predictions(path, captions: dict[str, str]) -> None:
    path.write_text(
        "".join(json.dumps({"id": i, "caption": c}, ensure_ascii=False) + "\n" for i, c in captions.items())
    )


def test_judge_command_end_to_end(judge_env, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    server = judge_env
    ids = [r.id for r in load_dataset(SAMPLE_DATA).records[:6]]
    captions = dict(
        zip(
            ids,
            [
                "幼儿在搭积木 @@score=80",
                "B @@score=60",
                "C @@outx1 @@score=70",  # out of range once, repaired in the same conversation
                "D @@garbagex9",  # never a score: failure after 2 repair turns
                "E @@500x99",  # transport failure after retries
                "F @@score=90",
            ],
            strict=True,
        )
    )
    preds = tmp_path / "preds.jsonl"
    write_predictions(preds, captions)
    report_path, items_path, cache_dir = tmp_path / "report.json", tmp_path / "items.jsonl", tmp_path / "cache"
    argv = ["--predictions", str(preds), "--allow-missing", "--json", str(report_path), "--items", str(items_path)]
    argv += ["--cache-dir", str(cache_dir), "--max-retries", "1", "--no-progress", "--model", "sys-x"]
    assert run_command(argv) == 0
    report = json.loads(report_path.read_text())
    assert report["kind"] == "ecac-bench/judge" and report["model"] == "sys-x"
    metrics = report["metrics"]
    assert metrics["judge_score"] == 75 and (metrics["n"], metrics["n_failed"]) == (4, 2)
    assert math.isclose(metrics["judge_score_std"], math.sqrt(125))
    assert report["failures"] == {"no score found": 1, "HTTP 500": 1}
    assert report["judge"]["model"] == "test-judge" and report["judge"]["base_url"] == server.base_url
    items = {row["id"]: row for row in map(json.loads, items_path.read_text().splitlines())}
    assert items[ids[2]]["score"] == 70 and items[ids[2]]["rounds"] == 2
    assert items[ids[3]]["score"] is None and items[ids[3]]["rounds"] == 3
    # 1 + 1 + 2 + 3 answers, 2 attempts for the 500, 1 + 0 ...: every HTTP request the server saw
    assert server.state.requests == 1 + 1 + 2 + 3 + 2 + 1
    assert server.state.authorizations == {f"Bearer {SENTINEL_KEY}"}  # the key was used ...

    # ... and a re-run answers everything from the cache; only the transport failure is tried again.
    server.state.reset()
    assert run_command(argv) == 0
    assert server.state.requests == 2
    assert json.loads(report_path.read_text())["metrics"] == metrics

    # ... but never written: not in the cache, the report, the items, the logs or the console.
    out = capsys.readouterr()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sqlite" for p in written)
    for path in written:
        assert SENTINEL_KEY.encode() not in path.read_bytes(), path
    assert SENTINEL_KEY not in caplog.text and SENTINEL_KEY not in out.out + out.err


def test_judge_command_clear_errors(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("ECAC_JUDGE_MODEL", raising=False)
    assert run_command(["--cache-dir", str(tmp_path), "--no-progress"]) == 2
    assert "ECAC_JUDGE_MODEL" in capsys.readouterr().err


def test_judge_command_bad_key_is_fatal(server, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ECAC_JUDGE_API_KEY", "sk-wrong-key-123")
    argv = ["--judge-base-url", server.base_url, "--judge-model", "m", "--cache-dir", str(tmp_path), "--no-progress"]
    assert run_command(argv) == 2
    captured = capsys.readouterr()
    assert "401" in captured.err and "sk-wrong-key-123" not in captured.err + captured.out


def test_no_cache_writes_nothing_and_resends(judge_env, tmp_path):
    record = load_dataset(SAMPLE_DATA).records[0]
    preds = tmp_path / "p.jsonl"
    write_predictions(preds, {record.id: "@@score=42"})
    argv = ["--predictions", str(preds), "--allow-missing", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert run_command([*argv, "--no-cache"]) == 0
    assert run_command([*argv, "--no-cache"]) == 0
    assert judge_env.state.requests == 2 and not (tmp_path / "cache").exists()
