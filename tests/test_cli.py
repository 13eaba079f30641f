"""The `ecac-bench` CLI end to end on the bundled sample (in-process and as the installed console script)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ecac_bench import SAMPLE_DATA, SAMPLE_PREDICTIONS, load_dataset, load_predictions, score_captions
from ecac_bench.cli import main


def test_score_defaults_write_a_complete_report(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["score", "--json", str(out), "--by", "category", "--by", "area", "--n-boot", "200"]) == 0
    report = json.loads(out.read_text())
    expected = score_captions(load_dataset(), load_predictions(SAMPLE_PREDICTIONS["system-a"], load_dataset()))
    assert report["metrics"] == pytest.approx(expected.metrics)
    assert report["kind"] == "ecac-bench/score" and report["model"] == "system-a"
    assert report["dataset"]["name"] == "ecac-sample" and report["dataset"]["size"] == len(load_dataset())
    assert report["coverage"]["metric_images"]["tts"] > 0
    assert set(report["breakdown"]) == {"category", "area"} and set(report["ci"]) == {*expected.metrics}
    assert report["ci_config"] == {
        "method": "percentile bootstrap over images",
        "n_boot": 200,
        "seed": 0,
        "level": 0.95,
    }
    assert report["config"]["match"] == "exact" and report["schema_version"] == 2
    out_text = capsys.readouterr().out
    assert "tts_fl" in out_text and f"signature: {report['signature']}" in out_text
    assert report["signature"].endswith("|match:exact|pixels:unknown|decoding:unknown|nboot:200|seed:0")
    assert main(["score", "--json", str(out), "--n-boot", "0"]) == 0  # no intervals asked for
    no_ci = json.loads(out.read_text())
    assert no_ci["ci"] is None and no_ci["signature"].endswith("|nboot:0")


def test_score_system_b_differs_and_model_flag(tmp_path):
    out = tmp_path / "b.json"
    system_b = str(SAMPLE_PREDICTIONS["system-b"])
    assert main(["score", "--predictions", system_b, "--model", "B", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    a = score_captions(load_dataset(), load_predictions(SAMPLE_PREDICTIONS["system-a"], load_dataset()))
    assert report["model"] == "B" and report["metrics"]["tts"] < a.metrics["tts"]


def test_score_reports_bad_predictions_with_location(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "ecac-sample-0001", "caption": 1}\n')
    assert main(["score", "--predictions", str(bad), "--allow-missing"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:line 1: field 'caption'" in err


def test_allow_missing_shows_coverage(tmp_path):
    part = tmp_path / "p.jsonl"
    part.write_text('{"id": "ecac-sample-0001", "caption": "剪刀"}\n')
    assert main(["score", "--predictions", str(part)]) == 2
    out = tmp_path / "r.json"
    assert main(["score", "--predictions", str(part), "--allow-missing", "--json", str(out)]) == 0
    coverage = json.loads(out.read_text())["coverage"]
    assert coverage["predicted"] == 1 and coverage["missing"] == coverage["images"] - 1


def test_validate_and_stats(tmp_path, capsys):
    assert main(["validate"]) == 0
    assert main(["validate", "--predictions", str(SAMPLE_PREDICTIONS["system-b"])]) == 0
    bad = tmp_path / "d.jsonl"
    bad.write_text('{"id": "x"}\n{\n')
    assert main(["validate", "--data", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "line 1: field 'category'" in out and "line 2: field '<json>'" in out
    stats_json = tmp_path / "s.json"
    assert main(["stats", "--json", str(stats_json)]) == 0
    stats = json.loads(stats_json.read_text())
    assert stats["images"] == len(load_dataset()) and sum(stats["images_per_category"].values()) == stats["images"]
    figure = tmp_path / "stats.svg"
    assert main(["stats", "--plot", str(figure)]) == 0
    svg = figure.read_text()
    assert "images per activity area (13 areas)" in svg and "美工区" in svg


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "ecac-bench"
    assert exe.is_file(), "install the package (pip install -e .): the ecac-bench console script is missing"
    done = subprocess.run([str(exe), "score", "--data", str(SAMPLE_DATA)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "system-a" in done.stdout


def test_fuzzy_match_flag_is_recorded(tmp_path):
    out = tmp_path / "f.json"
    assert main(["score", "--match", "fuzzy", "--fuzzy-threshold", "80", "--json", str(out)]) == 0
    config = json.loads(out.read_text())["config"]
    assert config["match"] == "fuzzy" and config["threshold"] == 80


def test_validate_image_check_can_be_skipped(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(SAMPLE_DATA.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    assert main(["validate", "--data", str(data)]) == 1  # images/... does not exist next to this copy
    assert main(["validate", "--data", str(data), "--no-check-images"]) == 0


def _sample_rows_with(tmp_path, changes):
    """The sample's system-a predictions with some rows replaced (by image index)."""
    rows = [json.loads(line) for line in SAMPLE_PREDICTIONS["system-a"].read_text(encoding="utf-8").splitlines()]
    for index, row in changes.items():
        rows[index] = {"id": rows[index]["id"], **row}
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path, rows


def test_score_exits_2_on_failed_generations_after_writing_the_report(tmp_path, capsys):
    marker = "[LMMS_EVAL_REQUEST_FAILED after 5 retries] Connection error."
    path, rows = _sample_rows_with(tmp_path, {0: {"caption": marker}, 1: {"error": "HTTP 400"}, 2: {"caption": " "}})
    out = tmp_path / "r.json"
    argv = ["score", "--predictions", str(path), "--json", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: 3 of 60 generations failed" in err and f"the report is in {out}" in err
    report = json.loads(out.read_text())
    assert report["coverage"]["n_failed_generations"] == 3 and report["coverage"]["failed_images"] == 3
    # The metrics are those of the other 57 images, not 60 images with three empty captions.
    dataset = load_dataset()
    good = {r["id"]: [r["caption"]] for r in rows[3:]}
    kept = [r for r in dataset.records if r.id in good]
    assert report["metrics"] == pytest.approx(score_captions(kept, good).metrics)
    assert report["coverage"]["metric_images"]["reward"] == 57
    assert main([*argv, "--allow-failed", "3"]) == 0
    assert main([*argv, "--allow-failed", "0.04"]) == 2  # floor(0.04 x 60) = 2 < 3
    assert main([*argv, "--allow-failed", "0.05"]) == 0  # floor(0.05 x 60) = 3
    assert json.loads(out.read_text())["config"]["allow_failed"] == 0.05


def test_bad_allow_failed_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["score", "--allow-failed", "1.5"])
    assert info.value.code == 2 and "argument --allow-failed: expected a count" in capsys.readouterr().err


def test_prompt_id_is_recorded(tmp_path):
    out = tmp_path / "r.json"
    assert main(["score", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["protocol"]["caption_prompt"] == {"id": "unknown", "sha256": None}
    from ecac_bench.prompts import load_prompt

    own = load_prompt("caption", "zh")
    assert main(["score", "--json", str(out), "--prompt-id", own.tag]) == 0
    report = json.loads(out.read_text())
    assert report["protocol"]["caption_prompt"] == {"id": own.tag, "sha256": own.sha256}
    assert f"|prompt:{own.tag}#{own.sha256[:8]}|" in report["signature"]
    assert main(["score", "--json", str(out), "--prompt-id", "my-lab-prompt-v3"]) == 0
    assert json.loads(out.read_text())["protocol"]["caption_prompt"] == {"id": "my-lab-prompt-v3", "sha256": None}


def test_empty_files_are_errors_in_every_command(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(" \n\n")
    assert main(["validate", "--data", str(empty)]) == 1
    assert main(["score", "--data", str(empty)]) == 2
    assert main(["stats", "--data", str(empty)]) == 2
    assert main(["score", "--predictions", str(empty), "--allow-missing"]) == 2
    assert main(["agree", "--human", str(empty), "--scores", str(empty)]) == 2
    err = capsys.readouterr().err
    assert f"{empty}: field '<file>': holds no records" in err and "holds no prediction rows" in err
    assert "holds no rows" in err


def test_stats_paper_prints_the_paper_s_facts_beside_the_data(tmp_path, capsys):
    from ecac_bench.paper import PAPER_DATASET

    out = tmp_path / "s.json"
    assert main(["stats", "--paper", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "256,121" in text and "195,397" in text and "247,579" in text and "12,000" in text
    assert json.loads(out.read_text())["paper"] == PAPER_DATASET.to_dict()
    assert PAPER_DATASET.to_dict() == {
        "images": 256_121,
        "images_per_category": {"outdoor": 56_665, "classroom": 195_397, "specialty": 4_059},
        "areas": 35,
        "sft_images": 247_579,
        "hybrid_images": 12_000,
    }


def test_paths_that_are_not_files_are_one_line_errors(tmp_path, capsys):
    """A folder where a file is expected, or an output path that cannot be created: exit 2, one line naming the path
    the user gave (never the temp file beside it), no traceback."""
    predictions = str(SAMPLE_PREDICTIONS["system-a"])
    cases = [
        (["score", "--predictions", str(tmp_path)], f"{tmp_path}: Is a directory"),
        (["score", "--predictions", predictions, "--json", str(tmp_path)], f"{tmp_path}: Is a directory"),
        (["score", "--predictions", predictions, "--json", "/proc/x.json"], "/proc/x.json: No such file or directory"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"error: {message}" in err, err
        assert "Traceback" not in err and ".tmp" not in err


def test_a_command_pauses_the_cyclic_gc_and_gives_it_back(tmp_path, monkeypatch):
    """main() runs with the collector off (millions of acyclic objects), and a caller in the same process gets it
    back as it was, after a success and after an error alike."""
    import gc

    import ecac_bench.commands.validate as validate

    during = []
    real = validate.validate_dataset
    monkeypatch.setattr(validate, "validate_dataset", lambda *a, **k: during.append(gc.isenabled()) or real(*a, **k))
    assert gc.isenabled()
    assert main(["validate", "--data", str(SAMPLE_DATA), "--no-check-images"]) == 0 and gc.isenabled()
    assert main(["validate", "--data", str(tmp_path / "missing.jsonl")]) != 0 and gc.isenabled()
    assert during and not any(during)
    with pytest.raises(SystemExit):  # a bad flag stops the command in argparse
        main(["validate", "--no-such-flag"])
    assert gc.isenabled()
    gc.disable()
    try:
        assert main(["validate", "--data", str(SAMPLE_DATA), "--no-check-images"]) == 0 and not gc.isenabled()
    finally:
        gc.enable()


def test_a_bad_ecac_processes_is_a_clear_error_in_every_command(monkeypatch, capsys):
    monkeypatch.setenv("ECAC_PROCESSES", "4")
    assert main(["validate", "--data", str(SAMPLE_DATA), "--no-check-images"]) == 2
    err = capsys.readouterr().err
    assert "ECAC_PROCESSES='4': expected 1, 2 or auto" in err and "Traceback" not in err
