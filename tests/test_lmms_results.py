"""The lmms-eval run checker: a run whose tasks report failed generations is rejected unless they are allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ecac_bench.generations import FailureAllowance
from ecac_bench.lmms_results import main, results_problems


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
