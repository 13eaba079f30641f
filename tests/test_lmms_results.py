"""The lmms-eval run checker: a run whose tasks report failed generations is rejected unless they are allowed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ecac_bench.generations import FailureAllowance
from ecac_bench.lmms_results import RunCheckError, check_run, expected_tasks, main, results_problems


def results(n_failed: float | None, effective: int = 40) -> dict:
    values = {"alias": "ecac_tts", "tts,none": 41.0, "tts_stderr,none": "N/A"}
    if n_failed is not None:
        values["n_failed_generations,none"] = n_failed
    return {"results": {"ecac_tts": values}, "n-samples": {"ecac_tts": {"original": 40, "effective": effective}}}


def test_failed_generations_above_the_allowance_are_a_problem():
    assert results_problems(results(0), ["ecac_tts"]) == []
    assert results_problems(results(None), ["ecac_tts"]) == []  # a task that does not report the count
    (problem,) = results_problems(results(3), ["ecac_tts"])
    assert problem.startswith("task ecac_tts: 3 failed generation(s) of 40 (allowed: 0)")
    assert results_problems(results(3), ["ecac_tts"], FailureAllowance(3)) == []
    assert results_problems(results(4.0), ["ecac_tts"], FailureAllowance(0.1)) == []  # floor(0.1 x 40) = 4
    assert results_problems(results(5), ["ecac_tts"], FailureAllowance(0.1))


def test_cli_reads_the_allowance_from_the_flag_or_the_environment(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "20260101_000000_results.json").write_text(json.dumps(results(2)))
    monkeypatch.delenv("ECAC_MAX_FAILED", raising=False)
    assert main([str(tmp_path), "--tasks", "ecac_tts"]) == 2
    assert "2 failed generation(s)" in capsys.readouterr().err
    assert main([str(tmp_path), "--tasks", "ecac_tts", "--max-failed", "2"]) == 0
    monkeypatch.setenv("ECAC_MAX_FAILED", "0.05")
    assert main([str(tmp_path), "--tasks", "ecac_tts"]) == 0  # floor(0.05 x 40) = 2
    assert main([str(tmp_path), "--tasks", "ecac_tts", "--max-failed", "many"]) == 2
    assert "--max-failed: expected a count" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "2.5"])
def test_bad_environment_value_is_an_error(tmp_path: Path, monkeypatch, capsys, value):
    monkeypatch.setenv("ECAC_MAX_FAILED", value)
    assert main([str(tmp_path), "--tasks", "ecac_tts"]) == 2
    assert "$ECAC_MAX_FAILED: expected a count" in capsys.readouterr().err


GROUPS = {"ecac": ["ecac_tts", "ecac_judge", "ecac_toy_precision"], "ecac_all": ["ecac", "ecac_utility"]}


def results_of(**tasks: dict) -> dict:
    return {"results": tasks, "group_subtasks": GROUPS, "configs": {}}


def test_groups_expand_to_their_subtasks_recursively() -> None:
    assert expected_tasks(["ecac"], GROUPS) == ["ecac_tts", "ecac_judge", "ecac_toy_precision"]
    assert expected_tasks(["ecac_all", "ecac_tts"], GROUPS) == [
        "ecac_tts",
        "ecac_judge",
        "ecac_toy_precision",
        "ecac_utility",
    ]
    assert expected_tasks(["ecac_tts_en"], GROUPS) == ["ecac_tts_en"]


def test_a_missing_task_or_a_task_without_numbers_is_a_problem() -> None:
    ok = {"alias": "ecac_tts", "tts,none": 41.5, "tts_stderr,none": "N/A"}
    assert results_problems(results_of(ecac_tts=ok), ["ecac_tts"]) == []
    problems = results_problems(results_of(ecac_tts=ok, ecac_judge={"judge_score,none": None}), ["ecac"])
    assert problems[0].startswith("task ecac_judge: no numeric metric")
    assert problems[1].startswith("task ecac_toy_precision: missing from results")
    assert results_problems({"foo": 1}, ["ecac_tts"]) == ["not an lmms-eval results file (no 'results' object)"]
    # NaN, infinities and booleans are not numbers a leaderboard can use
    for bad in (float("nan"), float("inf"), True):
        assert results_problems(results_of(ecac_tts={"tts,none": bad}), ["ecac_tts"])


def _write(folder: Path, name: str, data: dict, mtime: float) -> Path:
    path = folder / "model" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    os.utime(path, (mtime, mtime))
    return path


def test_the_newest_results_file_newer_than_the_marker_is_checked(tmp_path: Path, capsys) -> None:
    now = time.time()
    _write(tmp_path, "20260101_000000_results.json", results_of(ecac_tts={"tts,none": 1.0}), now - 100)
    marker = tmp_path / "marker"
    marker.touch()
    os.utime(marker, (now - 50, now - 50))
    with pytest.raises(RunCheckError, match="wrote no results file"):
        check_run(tmp_path, ["ecac_tts"], newer_than=now - 50)
    assert main([str(tmp_path), "--tasks", "ecac_tts", "--newer-than", str(marker)]) == 2
    assert "wrote no results file" in capsys.readouterr().err
    fresh = _write(tmp_path, "20260102_000000_results.json", results_of(ecac_tts={"tts,none": 2.0}), now)
    assert check_run(tmp_path, ["ecac_tts"], newer_than=now - 50) == fresh
    assert main([str(tmp_path), "--tasks", "ecac_tts, ", "--newer-than", str(marker)]) == 0
    assert capsys.readouterr().out.strip() == str(fresh)
    broken = _write(tmp_path, "20260103_000000_results.json", {}, now + 10)
    broken.write_text("{not json")
    os.utime(broken, (now + 10, now + 10))
    with pytest.raises(RunCheckError, match="unreadable results file"):
        check_run(tmp_path, ["ecac_tts"])
