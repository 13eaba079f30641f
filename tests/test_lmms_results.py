"""ecac_bench.lmms_results: an lmms-eval run counts only when its results file holds every task with numbers
(lmms-eval exits 0 when it fails)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ecac_bench.lmms_results import RunCheckError, check_run, expected_tasks, main, results_problems

GROUPS = {"ecac": ["ecac_tts", "ecac_judge", "ecac_toy_precision"], "ecac_all": ["ecac", "ecac_utility"]}


def results(**tasks: dict) -> dict:
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
    assert results_problems(results(ecac_tts=ok), ["ecac_tts"]) == []
    problems = results_problems(results(ecac_tts=ok, ecac_judge={"judge_score,none": None}), ["ecac"])
    assert problems[0].startswith("task ecac_judge: no numeric metric")
    assert problems[1].startswith("task ecac_toy_precision: missing from results")
    assert results_problems({"foo": 1}, ["ecac_tts"]) == ["not an lmms-eval results file (no 'results' object)"]
    # NaN, infinities and booleans are not numbers a leaderboard can use
    for bad in (float("nan"), float("inf"), True):
        assert results_problems(results(ecac_tts={"tts,none": bad}), ["ecac_tts"])


def test_failed_generations_above_the_allowance_are_a_problem() -> None:
    data = results(ecac_tts={"tts,none": 40.0, "n_failed_generations,none": 2})
    assert results_problems(data, ["ecac_tts"]) == []  # not asked
    assert results_problems(data, ["ecac_tts"], max_failed=2) == []
    assert results_problems(data, ["ecac_tts"], max_failed=1) == [
        "task ecac_tts: 2 failed generation(s), more than the 1 allowed"
    ]


def _write(folder: Path, name: str, data: dict, mtime: float) -> Path:
    path = folder / "model" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    os.utime(path, (mtime, mtime))
    return path


def test_the_newest_results_file_newer_than_the_marker_is_checked(tmp_path: Path, capsys) -> None:
    now = time.time()
    _write(tmp_path, "20260101_000000_results.json", results(ecac_tts={"tts,none": 1.0}), now - 100)
    marker = tmp_path / "marker"
    marker.touch()
    os.utime(marker, (now - 50, now - 50))
    with pytest.raises(RunCheckError, match="wrote no results file"):
        check_run(tmp_path, ["ecac_tts"], newer_than=now - 50)
    assert main([str(tmp_path), "--tasks", "ecac_tts", "--newer-than", str(marker)]) == 2
    assert "wrote no results file" in capsys.readouterr().err
    fresh = _write(tmp_path, "20260102_000000_results.json", results(ecac_tts={"tts,none": 2.0}), now)
    assert check_run(tmp_path, ["ecac_tts"], newer_than=now - 50) == fresh
    assert main([str(tmp_path), "--tasks", "ecac_tts, ", "--newer-than", str(marker)]) == 0
    assert capsys.readouterr().out.strip() == str(fresh)
    broken = _write(tmp_path, "20260103_000000_results.json", {}, now + 10)
    broken.write_text("{not json")
    os.utime(broken, (now + 10, now + 10))
    with pytest.raises(RunCheckError, match="unreadable results file"):
        check_run(tmp_path, ["ecac_tts"])
