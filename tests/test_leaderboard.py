"""The leaderboard builder: parsing both input kinds, ranking, escaping, determinism, errors, atomic builds."""

from __future__ import annotations

import csv
import html as html_lib
import io
import json
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecac_bench import SAMPLE_PREDICTIONS, load_dataset, load_predictions, score_captions
from ecac_bench.cli import main as ecac_main
from ecac_bench.csv_safety import FORMULA_START
from ecac_bench.leaderboard import (
    SITE_FILES,
    BuildError,
    DatasetId,
    InputError,
    build_boards,
    build_site,
    parse_baseline_file,
    parse_results_file,
)
from ecac_bench.leaderboard.__main__ import main as leaderboard_main
from ecac_bench.leaderboard.loaders import load_inputs
from ecac_bench.report import build_report

REPO = Path(__file__).resolve().parents[1]
BASELINES = REPO / "baselines" / "reported"
RUNS = REPO / "leaderboard" / "runs"
SITE = REPO / "leaderboard" / "site"
SHA_A = "a" * 64
SHA_B = "b" * 64
SAMPLE_DS = {"name": "ecac-sample", "path": "/x/ecac_sample.jsonl", "split": "test", "size": 40, "sha256": SHA_A}


# ---------------------------------------------------------------------------------------------- helpers


SCORE_KEYS = ("tts", "tts_l", "tts_m", "tts_h", "tts_fl", "tts_fm", "tts_fh", "tts_bl", "tts_bm", "tts_bh")


def score_report(
    model: str,
    tts: float | None,
    dataset: dict[str, Any] | None = None,
    prompt: dict[str, Any] | None = None,
    **metrics: float,
) -> dict:
    values = dict.fromkeys(SCORE_KEYS, 50.0)
    values.update(tts=tts, reward=1.5, **metrics)
    return build_report(
        "ecac-bench/score",
        model=model,
        dataset=dataset or SAMPLE_DS,
        metrics=values,
        protocol={"caption_prompt": prompt or {"id": "unknown"}, "match": "exact"},
        config={"match": "exact"},
        date="2026-11-20",
    )


JUDGE = {"model": "qwen2.5-vl-72b", "params": {"temperature": 0}, "prompt": {"id": "judge_score.zh@1"}}


def judge_report(model: str, score: float, dataset: dict[str, Any] | None = None, judge: dict | None = None) -> dict:
    return build_report(
        "ecac-bench/judge",
        model=model,
        dataset=dataset or SAMPLE_DS,
        metrics={"judge_score": score, "judge_score_std": 7.5, "n": 40, "n_failed": 0},
        protocol={"judge": judge or JUDGE},
        judge={"model": (judge or JUDGE)["model"], "base_url": "http://judge.internal:9999/v1"},
        date="2026-11-21",
    )


def precision_report(model: str, precision: float) -> dict:
    counts = {"n_images": 40, "n_images_with_names": 30, "n_extracted": 76, "n_correct": 44, "n_failed": 0}
    return build_report(
        "ecac-bench/toy-precision",
        model=model,
        dataset=SAMPLE_DS,
        metrics={"toy_precision": precision, "toy_precision_macro": precision - 1, "avg_toy_count": 1.9, **counts},
        protocol={"match": "exact", "precision_match": "equal", "extractor": "lexicon"},
        config={"extractor": "lexicon"},
        date="2026-11-22",
    )


def signature_entry(kind: str, dataset: dict[str, Any], protocol: dict[str, Any], ci: dict | None = None) -> dict:
    """The ``ecac_signature`` value an ECAC lmms-eval task reports (ecac_bench.lmms_adapter)."""
    from ecac_bench.report_schema import SignedFields, format_signature

    ci_config = {"method": "percentile bootstrap over images", "n_boot": 1000, "seed": 0, "level": 0.95}
    fields = SignedFields.model_validate(
        {
            "harness": {"name": "ecac-bench", "version": "0.1.0", "runner": "lmms-eval 0.7.3"},
            "kind": kind,
            "dataset": {k: v for k, v in dataset.items() if k != "path"},
            "protocol": protocol,
            "ci_config": ci_config if ci else None,
        }
    )
    return {"schema_version": 2, "text": format_signature(fields), **fields.model_dump(), "ci": ci}


LMMS_DS = {"name": "ecac_test", "split": "test", "size": 500, "sha256": SHA_B}
CAPTION = {"caption_prompt": {"id": "caption.zh@2", "sha256": "c" * 64}}


def lmms_results(model: str = "Qwen/Qwen2.5-VL-3B-Instruct") -> dict:
    """The shape lmms-eval 0.7.3 writes to <output_path>/<model>/<timestamp>_results.json."""
    tts_ci = {k: None for k in (*SCORE_KEYS, "reward")} | {"tts": [38.5, 44.0]}
    return {
        "results": {
            "ecac_tts": {
                "alias": "ecac_tts",
                "tts,none": 41.25,
                "tts_stderr,none": "N/A",
                "tts_l,none": 60.0,
                "tts_m,none": 30.0,
                "tts_h,none": 5.0,
                "tts_fl,none": 70.0,
                "tts_fm,none": "N/A",
                "tts_fh,none": "N/A",
                "tts_bl,none": "N/A",
                "tts_bm,none": "N/A",
                "tts_bh,none": "N/A",
                "reward,none": 2.25,
                "n_failed_generations,none": 0,
                "ecac_signature,none": signature_entry(
                    "ecac-bench/score", LMMS_DS, {**CAPTION, "match": "exact"}, tts_ci
                ),
            },
            "ecac_judge": {
                "alias": "ecac_judge",
                "judge_score,none": 81.5,
                "judge_score_stderr,none": "N/A",
                "judge_score_std,none": 6.0,
                "n,none": 500,
                "n_failed,none": 0,
                "ecac_signature,none": signature_entry("ecac-bench/judge", LMMS_DS, {**CAPTION, "judge": JUDGE}),
            },
            "ecac_toy_precision": {
                "alias": "ecac_toy_precision",
                "toy_precision,none": 66.0,
                "toy_precision_macro,none": 60.0,
                "avg_toy_count,none": 1.7,
                "n_images,none": 500,
                "n_images_with_names,none": 400,
                "n_extracted,none": 850,
                "n_correct,none": 561,
                "n_failed,none": 0,
                "ecac_signature,none": signature_entry(
                    "ecac-bench/toy-precision",
                    LMMS_DS,
                    {**CAPTION, "match": "exact", "precision_match": "equal", "extractor": "lexicon"},
                ),
            },
        },
        "group_subtasks": {"ecac": ["ecac_tts", "ecac_judge", "ecac_toy_precision"]},
        "configs": {
            "ecac_tts": {
                "task": "ecac_tts",
                "dataset_path": "json",
                "test_split": "test",
                "dataset_kwargs": {"data_files": {"test": "/data/ecac_test.jsonl"}},
                "generation_kwargs": {"max_new_tokens": 512, "temperature": 0, "do_sample": False},
            },
        },
        "versions": {"ecac_tts": 1.0, "ecac_judge": 1.0, "ecac_toy_precision": 1.0},
        "n-samples": {"ecac_tts": {"original": 500, "effective": 500}},
        "config": {"model": "openai", "model_args": f"model={model},base_url=http://127.0.0.1:8000/v1"},
        "date": "20261124_093015",
        "model_name": model,
    }


def write(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def build(tmp_path: Path, results: Path, baselines: list[Path] | None = None, **kw: Any):
    return build_site(baselines if baselines is not None else [], [results], tmp_path / "site", **kw)


def site_bytes(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in SITE_FILES}


# ---------------------------------------------------------------------------------------------- parsing


def test_score_judge_precision_reports_merge_into_one_measured_row(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "m.score.json", score_report("My-Model", 61.0))
    write(runs / "m.judge.json", judge_report("My-Model", 77.25))
    write(runs / "m.prec.json", precision_report("My-Model", 58.0))
    (board,) = build(tmp_path, runs).boards
    (row,) = board.rows
    assert row.source == "measured" and row.display_name == "My-Model"
    assert row.metrics["tts"] == 61.0 and row.metrics["judge_score"] == 77.25 and row.metrics["toy_precision"] == 58.0
    assert row.metric_origin["judge_score"] == "runs/m.judge.json"
    assert {p.kind for p in row.provenance} == {"ecac-bench/score", "ecac-bench/judge", "ecac-bench/toy-precision"}
    assert {p.judge_model for p in row.provenance} == {None, "qwen2.5-vl-72b"}
    assert {p.note for p in row.provenance} == {"match exact", "n 40; n_failed 0", "extractor lexicon; n_failed 0"}
    assert len(row.signatures) == 3 and all(s.startswith("ecac-bench:0.1.0|kind:") for s in row.signatures)
    assert row.date == "2026-11-22"
    assert board.dataset.sha256 == SHA_A and board.dataset.size == 40 and board.dataset.split == "test"


def test_sibling_metrics_are_optional_columns(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "a.score.json", score_report("A", 61.0))
    write(runs / "b.score.json", score_report("B", 55.0))
    build(tmp_path, runs)
    assert "Sibling caption metrics" not in (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    counts = {"n_images": 40, "n_questions": 80, "n_rounds": 320, "n_failed": 0, "n_unparsed": 0}
    utility = build_report(
        "ecac-bench/utility",
        model="A",
        dataset=SAMPLE_DS,
        metrics={"utility": 71.5, "utility_micro": 70.0, **counts},
        protocol={"match": "exact"},
    )
    balanced = build_report(
        "ecac-bench/balanced",
        model="B",
        dataset=SAMPLE_DS,
        metrics={
            "balanced_precision": 80.0,
            "balanced_recall": 40.0,
            "linguistic": 90.0,
            "b_capscore": 61.02,
            "n": 40,
            "n_failed": 0,
        },
        protocol={"match": "exact"},
    )
    write(runs / "a.utility.json", utility)
    write(runs / "b.balanced.json", balanced)
    (board,) = build(tmp_path, runs).boards
    by_name = {row.display_name: row for row in board.rows}
    assert by_name["A"].metrics["utility"] == 71.5 and "b_capscore" not in by_name["A"].metrics
    assert by_name["B"].metrics["b_capscore"] == 61.02 and by_name["B"].metrics["balanced_recall"] == 40.0
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Sibling caption metrics" in page and "Utility (CapRL)" in page and "b-CapScore" in page
    assert "71.50" in page and "61.02" in page
    header = (tmp_path / "site" / "leaderboard.csv").read_text(encoding="utf-8").splitlines()[0]
    assert "utility" in header and "b_capscore" in header


def test_judge_endpoint_is_not_published(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "j.json", judge_report("M", 70.0))
    build(tmp_path, runs)
    for name in SITE_FILES:
        assert "judge.internal" not in (tmp_path / "site" / name).read_text(encoding="utf-8")


def test_lmms_eval_results_folder(tmp_path):
    out = tmp_path / "lmms"
    path = write(out / "Qwen__Qwen2.5-VL-3B-Instruct" / "20261124_093015_results.json", lmms_results())
    entries = parse_results_file(path, "lmms/Qwen__Qwen2.5-VL-3B-Instruct/20261124_093015_results.json")
    assert [e.provenance.kind for e in entries] == ["lmms-eval ecac_judge", "lmms-eval ecac_toy_precision",
                                                    "lmms-eval ecac_tts"]  # fmt: skip
    assert {e.model for e in entries} == {"Qwen/Qwen2.5-VL-3B-Instruct"}
    assert {k: v for e in entries for k, v in e.metrics.items()} == {
        "tts": 41.25,
        "tts_l": 60.0,
        "tts_m": 30.0,
        "tts_h": 5.0,
        "tts_fl": 70.0,
        "reward": 2.25,
        "judge_score": 81.5,
        "judge_score_std": 6.0,
        "toy_precision": 66.0,
        "toy_precision_macro": 60.0,
        "avg_toy_count": 1.7,
    }
    tts = entries[2]
    assert tts.ci == {"tts": (38.5, 44.0)}
    assert tts.provenance.date == "2026-11-24" and tts.provenance.note is None
    assert tts.provenance.harness == "ecac-bench 0.1.0 via lmms-eval 0.7.3"
    assert tts.dataset == DatasetId("ecac_test", "test", 500, SHA_B)
    # the signature states what the task knew and what the results file's config adds (decoding; no pixel budget)
    assert tts.provenance.signature == (
        "ecac-bench:0.1.0+lmms-eval:0.7.3|kind:score|data:ecac_test|split:test|size:500|sha256:bbbbbbbbbbbb|"
        "prompt:caption.zh@2#cccccccc|match:exact|pixels:unknown|"
        "decoding:greedy,max_new_tokens=512,repetition_penalty=checkpoint|nboot:1000|seed:0"
    )
    (board,) = build(tmp_path, out).boards
    (row,) = board.rows
    assert row.metrics["judge_score"] == 81.5 and row.ci == {"tts": (38.5, 44.0)}


def test_lmms_eval_model_name_falls_back_to_model_args(tmp_path):
    data = lmms_results()
    del data["model_name"]
    entries = parse_results_file(write(tmp_path / "r.json", data), "r.json")
    assert {e.model for e in entries} == {"Qwen/Qwen2.5-VL-3B-Instruct"}


def test_lmms_eval_limit_is_a_different_dataset(tmp_path):
    out = tmp_path / "lmms"
    write(out / "a" / "20261124_093015_results.json", lmms_results("A"))
    limited = lmms_results("B")
    limited["n-samples"]["ecac_tts"]["effective"] = 8
    for values in limited["results"].values():  # a --limit run states the 8 records it saw
        values["ecac_signature,none"]["dataset"].update(size=8, sha256=SHA_A)
        values["ecac_signature,none"]["text"] = values["ecac_signature,none"]["text"].replace(
            "size:500|sha256:bbbbbbbbbbbb", "size:8|sha256:aaaaaaaaaaaa"
        )
    write(out / "b" / "20261124_093015_results.json", limited)
    boards = build(tmp_path, out).boards
    assert sorted(b.dataset.size for b in boards) == [8, 500]
    limited_row = next(b.rows[0] for b in boards if b.dataset.size == 8)
    assert "lmms-eval --limit: 8 of 500 images" in {p.note for p in limited_row.provenance}


def test_lmms_eval_without_dataset_identity_is_not_ranked_with_others(tmp_path):
    data = lmms_results()
    for values in data["results"].values():  # a run of an ecac-bench before the signature
        del values["ecac_signature,none"]
    out = tmp_path / "lmms"
    write(out / "m" / "20261124_093015_results.json", data)
    write(out / "other.json", score_report("Other", 10.0, {**SAMPLE_DS, "size": 500, "split": None, "sha256": SHA_B}))
    boards = build(tmp_path, out).boards
    assert len(boards) == 2
    unknown = next(b for b in boards if b.dataset.sha256 is None)
    assert unknown.dataset.name == "dataset not recorded by lmms-eval"
    assert "reported no ecac_signature" in unknown.rows[0].provenance[0].note
    assert unknown.rows[0].metrics["tts"] == 41.25 and unknown.rows[0].metrics["judge_score"] == 81.5


def test_lmms_eval_and_ecac_bench_runs_on_the_same_data_share_a_board(tmp_path):
    out = tmp_path / "runs"
    write(out / "lmms" / "Qwen__Qwen2.5-VL-3B-Instruct" / "20261124_093015_results.json", lmms_results())
    # the same records under another file name (the record-level hash is what counts)
    same = {"name": "test_set", "path": "/elsewhere/test_set.parquet", "split": "test", "size": 500, "sha256": SHA_B}
    prompt = CAPTION["caption_prompt"]
    write(out / "qwen-score.json", score_report("Qwen/Qwen2.5-VL-3B-Instruct", 41.25, same, prompt=prompt))
    write(out / "other-score.json", score_report("Other", 50.0, same, prompt=prompt))
    (board,) = build(tmp_path, out).boards
    assert board.names == ["ecac_test", "test_set"] and len(board.rankings) == 1
    names = [r.display_name for r in board.rows]
    assert names[0] == "Other" and len(names) == 3 and len(set(names)) == 3  # tts given twice: two rows
    assert [r.rank for r in board.rows] == [1, 2, 2]


def _with(report: dict, **changes: Any) -> str:
    """A valid report's JSON with top-level fields replaced (no re-validation: the builder must catch it)."""
    return json.dumps({**report, **changes})


def _metric(report: dict, **values: Any) -> str:
    return json.dumps({**report, "metrics": {**report["metrics"], **values}})


GOOD = score_report("M", 1.0)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "invalid JSON at line 1"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"hello": 1}), "unrecognised results file"),
        (json.dumps({"kind": "ecac-bench/score"}), "schema_version: None is not 2 (a report written before schema 2"),
        (_with(judge_report("M", 1.0), kind="ecac-bench/agree"), "metrics: a ecac-bench/agree report holds per-method"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "model"}), "model: missing"),
        (_with(GOOD, date="24/11/2026"), "date: expected a date YYYY-MM-DD"),
        (_with(GOOD, date="2025-02-30"), "date: expected a date YYYY-MM-DD"),
        (_metric(GOOD, tts=140.0), "metrics.tts: 140.0 is outside 0-100"),
        (_metric(GOOD, tts="high"), "metrics"),
        (_metric(GOOD, reward=-1.0), "metrics.reward: -1.0 is below 0"),
        (_metric(GOOD, reward=10**400), "invalid value: an integer of 401 digits"),
        (_metric(GOOD, reward=1e308 * 10), "metrics.reward: inf is not a finite number"),
        (_metric(GOOD, bleu=3.0), "unknown metric(s) ['bleu']"),
        (_with(GOOD, protocol={**GOOD["protocol"], "match": "fuzzy@90"}), "signature"),
        (_with(GOOD, dataset={**SAMPLE_DS, "sha256": "xyz"}), "dataset.sha256"),
        (_with(GOOD, dataset={**SAMPLE_DS, "size": 10**400}), "an integer of 401 digits"),
        (_with(GOOD, dataset={**SAMPLE_DS, "size": 10**13}), "dataset.size"),
        (_with(GOOD, dataset=[SAMPLE_DS]), "dataset"),
        (_with(GOOD, metrics={k: v for k, v in GOOD["metrics"].items() if k != "tts"}), "metrics.tts: missing"),
        (_with(GOOD, signature="forged"), "does not state the report's fields"),
        (_with(GOOD, extra_field=1), "extra_field: unknown field"),
        (json.dumps({**GOOD, "config": {"a": json.loads("[" * 30 + "]" * 30)}}), "nested more than"),
        ("[" * 100_000 + "]" * 100_000, "nested more than"),
        (json.dumps({**lmms_results(), "results": {"mmmu": {"acc,none": 0.5}}}), "no ecac_* task"),
        (json.dumps({**lmms_results(), "results": [1]}), "results: Input should be a valid dictionary"),
        (
            json.dumps({**lmms_results(), "results": {"ecac_tts": {"tts,none": 1.0, "tts,strict": 2.0}}}),
            "more than once",
        ),
        (json.dumps({**lmms_results(), "date": "2026-99-99", "model_name": "x"}), "date:"),
    ],
)
def test_bad_results_file_names_path_and_problem(tmp_path, content, needle):
    path = tmp_path / "runs" / "bad.json"
    path.parent.mkdir()
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as err:
        parse_results_file(path, "runs/bad.json")
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_built_leaderboard_json_is_not_taken_for_results(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "a.json", score_report("A", 10.0))
    build(tmp_path, runs)
    with pytest.raises(InputError, match="built leaderboard"):
        parse_results_file(tmp_path / "site" / "leaderboard.json", "site/leaderboard.json")


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda e: e.update(source="measured"), "entries[0].source: Input should be 'reported'"),
        (lambda e: e.pop("params_b"), "entries[0].params_b: missing"),
        (lambda e: e.pop("table"), "entries[0].table: missing"),
        (lambda e: e["citation"].pop("key"), "entries[0].citation.key: missing"),
        (lambda e: e["metrics"].update(bleu=3.0), "unknown metric(s) ['bleu']"),
        (lambda e: e.update(prompt=" "), "entries[0].prompt: expected a non-empty string"),
    ],
)
def test_bad_baseline_entry(tmp_path, mutate, needle):
    entry = {
        "source": "reported",
        "citation": {"key": "paper", "text": "A paper"},
        "dataset": {"name": "ECAC", "split": "test"},
        "table": "Table 1",
        "model": "M",
        "params_b": 3,
        "metrics": {"tts": 10.0},
    }
    mutate(entry)
    path = write(tmp_path / "b.json", {"entries": [entry]})
    with pytest.raises(InputError) as err:
        parse_baseline_file(path)
    assert str(path) in str(err.value) and needle in str(err.value)


def test_bundled_baselines_carry_the_papers_numbers():
    loaded = load_inputs([BASELINES], [])
    assert not loaded.problems
    by = {(e.model, e.provenance.kind): e for e in loaded.entries}
    assert all(e.source == "reported" and e.citation and e.provenance.origin == "li-ecac" for e in loaded.entries)
    assert by[("KinderMM-Cap-3B", "Table III")].metrics == {"tts": 51.06, "judge_score": 86.20}
    assert by[("KinderMM-Cap-3B", "Table III")].params_b == 3
    assert by[("Gemma3-27B", "Table III")].metrics == {"tts": 10.74, "judge_score": 12.00}
    assert by[("Qwen2.5-VL-32B", "Table III (text)")].metrics == {"tts": 29.96, "judge_score": 89.13}
    assert by[("Qwen2.5-VL-3B+SFT+GRPO", "Fig. 5")].metrics == {"tts": 49.61, "judge_score": 86.59}
    assert by[("Qwen2.5-VL-3B", "Table V")].metrics["tts_bh"] == 0.01
    assert by[("KinderMM-Cap-3B", "Table VI")].metrics == {"toy_precision": 56.43, "avg_toy_count": 2.08}
    assert len(loaded.entries) == 6 + 4 + 4 + 4
    # The paper never prints the prompt its test captions were made with: every reported row says so.
    for path in sorted(BASELINES.glob("*.yaml")):
        entries = yaml.safe_load(path.read_text(encoding="utf-8")).get("entries", [])
        assert path.name == "00_models.yaml" or {e.get("prompt") for e in entries} == {"unknown"}
    fig5 = (BASELINES / "02_fig5.yaml").read_text(encoding="utf-8")
    assert "Inferred, not read off the figure" in fig5.split('variant: "ablation: baseline"')[1].split("metrics")[0]


def test_reported_tables_merge_per_model_and_conflicts_are_shown():
    (board,) = build_boards(load_inputs([BASELINES], []).entries)
    rows = {r.model: r for r in board.rows}
    kinder = rows["KinderMM-Cap-3B"]
    assert kinder.metrics["tts"] == 51.06 and kinder.metric_origin["tts"] == "Table III"
    assert kinder.metrics["tts_fl"] == 66.59 and kinder.metrics["toy_precision"] == 56.43
    (conflict,) = kinder.conflicts
    assert conflict.metric == "tts" and conflict.values == ((51.06, "Table III"), (51.07, "Fig. 5"))
    assert not rows["Qwen2.5-VL-3B"].conflicts  # 38.07 in both Table III and Fig. 5
    assert [r.rank for r in board.rows] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert board.rows[0].model == "KinderMM-Cap-3B" and board.rows[-1].model == "Gemma3-27B"


# ---------------------------------------------------------------------------------------------- ranking


def test_ties_share_a_rank_at_the_precision_shown(tmp_path):
    runs = tmp_path / "runs"
    for name, tts in [("a", 70.0), ("b", 45.251), ("c", 45.249), ("d", 12.0), ("e", None)]:
        write(runs / f"{name}.json", score_report(name, tts))
    (board,) = build(tmp_path, runs).boards
    assert [(r.display_name, r.rank) for r in board.rows] == [("a", 1), ("b", 2), ("c", 2), ("d", 4), ("e", None)]


def test_datasets_never_share_a_ranking(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "a1.json", score_report("A", 30.0))
    write(runs / "b1.json", score_report("B", 20.0))
    write(runs / "a2.json", score_report("A", 90.0, {**SAMPLE_DS, "sha256": SHA_B}))
    write(runs / "c3.json", score_report("C", 95.0, {**SAMPLE_DS, "split": None, "size": 60}))
    boards = build(tmp_path, runs).boards
    assert len(boards) == 3
    ranked = {b.dataset.key: [(r.display_name, r.rank) for r in b.rows] for b in boards}
    assert sorted(ranked.values()) == [[("A", 1)], [("A", 1), ("B", 2)], [("C", 1)]]


def test_duplicate_names_are_disambiguated_not_dropped(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "first.json", score_report("Same", 40.0))
    write(runs / "second.json", score_report("Same", 50.0))
    write(runs / "judge.json", judge_report("Same", 80.0))  # judge given once, but tts twice: no merging at all
    (board,) = build(tmp_path, runs).boards
    names = [r.display_name for r in board.rows]
    assert len(names) == 3 and len(set(names)) == 3
    assert names[:2] == ["Same [runs/second]", "Same [runs/first]"]
    assert {r.metrics.get("tts") for r in board.rows} == {40.0, 50.0, None}


def test_reported_and_measured_are_never_merged(tmp_path):
    runs, base = tmp_path / "runs", tmp_path / "base"
    write(runs / "m.json", score_report("M", 40.0))
    write(
        base / "b.json",
        {
            "entries": [
                {
                    "source": "reported",
                    "citation": {"key": "p", "text": "P"},
                    "table": "T1",
                    "model": "M",
                    "params_b": 1,
                    "dataset": {"name": "ecac-sample", "split": "test", "size": 40, "sha256": SHA_A},
                    "metrics": {"tts": 41.0},
                }
            ]
        },
    )
    (board,) = build(tmp_path, runs, [base]).boards
    assert sorted((r.source, r.metrics["tts"]) for r in board.rows) == [("measured", 40.0), ("reported", 41.0)]
    assert sorted(r.display_name for r in board.rows) == ["M [p]", "M [runs/m]"]


# ---------------------------------------------------------------------------------------------- rendering


def test_model_name_is_escaped_everywhere(tmp_path):
    runs = tmp_path / "runs"
    evil = "<script>alert('x')</script>"
    write(runs / "s.json", score_report(evil, 40.0))
    write(runs / "j.json", judge_report(evil, 80.0))
    build(tmp_path, runs)
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert html.count("<script>") == 1  # only the page's own sorting script
    assert "<script>" not in (tmp_path / "site" / "leaderboard.md").read_text(encoding="utf-8")
    data = json.loads((tmp_path / "site" / "leaderboard.json").read_text(encoding="utf-8"))
    assert data["boards"][0]["rows"][0]["model"] == evil  # data files keep the name as it is


def test_build_is_byte_identical_and_stamp_is_opt_in(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "a.json", score_report("A", 40.0))
    write(runs / "b.json", judge_report("A", 80.0))
    first = build_site([BASELINES], [runs], tmp_path / "one")
    build_site([BASELINES], [runs], tmp_path / "two")
    assert site_bytes(tmp_path / "one") == site_bytes(tmp_path / "two")
    assert first.written == [tmp_path / "one" / name for name in SITE_FILES]
    build_site([BASELINES], [runs], tmp_path / "three", stamp="2026-11-25 03:00 UTC")
    stamped = site_bytes(tmp_path / "three")
    assert b"2026-11-25 03:00 UTC" in stamped["index.html"] and b"2026-11-25 03:00 UTC" in stamped["leaderboard.json"]
    assert b"03:00 UTC" not in site_bytes(tmp_path / "one")["index.html"]


def test_csv_and_markdown_hold_the_same_table(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "a.json", score_report("A|B", 40.0))
    build(tmp_path, runs)
    csv_text = (tmp_path / "site" / "leaderboard.csv").read_text(encoding="utf-8").splitlines()
    header = (
        "dataset,dataset_split,dataset_size,dataset_sha256,ranking,rank,model,source,params_b,weights,model_url,tts,"
    )
    assert csv_text[0].startswith(header)
    assert csv_text[1].startswith(f"ecac-sample,test,40,{SHA_A},main,1,A|B,measured,,,,40.0,")
    md = (tmp_path / "site" / "leaderboard.md").read_text(encoding="utf-8")
    assert "| 1 | A\\|B | 40.00 |" in md  # no Size column: no row states one


# ---------------------------------------------------------------------------------------------- errors, swap


def test_bad_input_fails_before_writing_and_skip_bad_goes_on(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "good.json", score_report("Good", 40.0))
    (runs / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(BuildError) as err:
        build(tmp_path, runs)
    assert "broken.json: invalid JSON" in str(err.value)
    assert not (tmp_path / "site").exists() or not any((tmp_path / "site").iterdir())
    result = build(tmp_path, runs, skip_bad=True)
    assert [r.display_name for r in result.boards[0].rows] == ["Good"]
    assert len(result.skipped) == 1
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "broken.json: invalid JSON" in html
    assert json.loads((tmp_path / "site" / "leaderboard.json").read_text())["skipped_inputs"][0].endswith(
        "invalid JSON at line 1, column 2: Expecting property name enclosed in double quotes"
    )


def test_failed_build_leaves_previous_site_intact(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    write(runs / "good.json", score_report("Good", 40.0))
    build(tmp_path, runs)
    before = site_bytes(tmp_path / "site")
    write(runs / "more.json", score_report("More", 50.0))
    (runs / "bad.json").write_text('{"schema_version": 2, "kind": "ecac-bench/score"}', encoding="utf-8")
    with pytest.raises(BuildError, match="harness: missing"):
        build(tmp_path, runs)
    assert site_bytes(tmp_path / "site") == before

    # A failure while writing (after some files are rendered) changes nothing either.
    (runs / "bad.json").unlink()
    import ecac_bench.leaderboard.build as build_mod

    def boom(boards, meta):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_mod, "render_md", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build(tmp_path, runs)
    assert site_bytes(tmp_path / "site") == before
    monkeypatch.undo()

    # A failure midway through writing the new site (two files written, the third fails) changes nothing.
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(BuildError, match=r"the site was not written \(No space left on device\)"):
        build(tmp_path, runs)
    monkeypatch.undo()
    assert len(calls) == 3 and site_bytes(tmp_path / "site") == before
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == sorted(SITE_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "site"]  # no staging folder left beside it
    build(tmp_path, runs)
    assert b"More" in (tmp_path / "site" / "index.html").read_bytes()


def test_the_site_changes_as_one_unit(tmp_path, monkeypatch):
    """The site folder is put in place by one rename of a complete folder (readers see the old site or the new one,
    never some files of each); the files are never renamed into place one by one."""
    runs = tmp_path / "runs"
    write(runs / "a.json", score_report("A", 40.0))
    build(tmp_path, runs)
    write(runs / "b.json", score_report("B", 50.0))
    real_replace, renames = os.replace, []

    def recording_replace(src, dst):
        src, dst = Path(src), Path(dst)
        complete = src.is_dir() and sorted(p.name for p in src.iterdir()) == sorted(SITE_FILES)
        renames.append((dst.name, complete, b"B" in (src / "index.html").read_bytes() if complete else None))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    build(tmp_path, runs)
    into_place = [(complete, new) for dst, complete, new in renames if dst == "site"]
    assert into_place == [(True, True)]  # one rename puts the whole new site in place
    assert not any(dst in SITE_FILES for dst, _, _ in renames)
    assert b"B" in (tmp_path / "site" / "index.html").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "site"]


def test_out_folder_holding_other_files_is_refused(tmp_path, capsys):
    """The site folder is replaced as a whole: --out pointing at a folder with other files (e.g. leaderboard/, which
    holds runs/) is refused before anything is read or changed."""
    top = tmp_path / "leaderboard"
    runs = top / "runs"
    write(runs / "a.json", score_report("A", 40.0))
    with pytest.raises(BuildError, match=r"holds runs, which the builder did not write"):
        build_site([], [runs], top)
    assert (runs / "a.json").is_file() and sorted(p.name for p in top.iterdir()) == ["runs"]
    args = ["build", "--results", str(runs), "--baselines", str(BASELINES), "--out", str(top)]
    assert leaderboard_main(args) == 2
    assert "holds runs" in capsys.readouterr().err
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(BuildError, match="not a folder"):
        build_site([], [runs], tmp_path / "file")


def test_cli_reports_problems_and_exit_codes(tmp_path, capsys):
    runs = tmp_path / "runs"
    write(runs / "ok.json", score_report("Ok", 40.0))
    (runs / "bad.json").write_text("[]", encoding="utf-8")
    out = tmp_path / "site"
    args = ["build", "--results", str(runs), "--baselines", str(BASELINES), "--out", str(out)]
    assert leaderboard_main(args) == 2
    assert f"{runs / 'bad.json'}: expected a JSON object" in capsys.readouterr().err
    assert not out.exists()
    assert leaderboard_main([*args, "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "skipped:" in captured.err and "ECAC, split test: 8 rows" in captured.out
    assert leaderboard_main(["build", "--results", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere: not a folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- end to end


def test_real_score_cli_report_feeds_the_leaderboard(tmp_path):
    runs = tmp_path / "runs"
    report = runs / "system-b.json"
    assert ecac_main(["score", "--predictions", str(SAMPLE_PREDICTIONS["system-b"]), "--json", str(report)]) == 0
    (board,) = build(tmp_path, runs).boards
    expected = json.loads(report.read_text(encoding="utf-8"))
    assert board.rows[0].metrics["tts"] == expected["metrics"]["tts"]
    assert board.dataset.sha256 == expected["dataset"]["sha256"]


def test_committed_runs_match_a_fresh_score():
    """leaderboard/runs/ holds real `ecac-bench score` output for the sample systems; regenerate if this fails."""
    dataset = load_dataset()
    for name, predictions in SAMPLE_PREDICTIONS.items():
        committed = json.loads((RUNS / f"{name}.json").read_text(encoding="utf-8"))
        fresh = score_captions(dataset, load_predictions(predictions, dataset))
        assert committed["dataset"]["sha256"] == dataset.sha256
        assert committed["metrics"] == pytest.approx(fresh.metrics), name


def test_committed_site_is_up_to_date(tmp_path):
    """The built site in leaderboard/ is what the builder makes from the repo's inputs (rebuild it if not)."""
    fresh = tmp_path / "site"
    build_site([BASELINES], [RUNS], fresh)
    files = sorted(str(p.relative_to(fresh)) for p in fresh.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(SITE)) for p in SITE.rglob("*") if p.is_file()) == files
    assert set(SITE_FILES) <= set(files) and "viewer/runs/system-a.html" in files  # the sample runs' caption pages
    for name in files:
        committed = (SITE / name).read_bytes()
        assert committed == (fresh / name).read_bytes(), f"leaderboard/site/{name} is stale: run the build"


def test_python_dash_m_entry_point(tmp_path):
    import subprocess
    import sys

    runs = tmp_path / "runs"
    write(runs / "a.json", score_report("A", 40.0))
    cmd = [
        sys.executable,
        "-m",
        "ecac_bench.leaderboard",
        "build",
        "--results",
        str(runs),
        "--out",
        str(tmp_path / "o"),
    ]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ECAC, split test: 8 rows" in done.stdout  # default --baselines, relative to the repo root
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(SITE_FILES)


def test_baseline_yaml_errors_and_dates(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("entries: [unclosed\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.yaml: invalid YAML"):
        parse_baseline_file(bad)
    good = tmp_path / "good.yaml"
    good.write_text(
        "entries:\n  - {source: reported, citation: {key: p, text: P}, dataset: {name: ECAC}, table: T,\n"
        "     model: M, params_b: null, date: 2025-03-01, metrics: {tts: 12.5}}\n",
        encoding="utf-8",
    )
    (entry,) = parse_baseline_file(good)
    assert entry.provenance.date == "2025-03-01" and entry.params_b is None and entry.metrics == {"tts": 12.5}


def test_results_file_written_by_lmms_evals_own_tracker(tmp_path):
    """The file layout and extra keys come from lmms-eval's EvaluationTracker, not from a hand-made copy."""
    loggers = pytest.importorskip("lmms_eval.loggers")
    tracker = loggers.EvaluationTracker(output_path=str(tmp_path / "lmms"))
    tracker.general_config_tracker.log_experiment_args(
        model_source="openai",
        model_args="model=Qwen/Qwen2.5-VL-7B-Instruct,base_url=http://127.0.0.1:8000/v1",
        system_instruction=None,
        chat_template=None,
        fewshot_as_multiturn=False,
    )
    results = lmms_results("ignored")
    del results["model_name"]  # the tracker adds its own
    tracker.save_results_aggregated(results=results, samples=None, datetime_str="20261124_093015")
    (written,) = (tmp_path / "lmms").rglob("*_results.json")
    assert written.parent.name == "Qwen__Qwen2.5-VL-7B-Instruct"
    (board,) = build(tmp_path, tmp_path / "lmms").boards
    (row,) = board.rows
    assert row.model == "Qwen/Qwen2.5-VL-7B-Instruct" and row.date == "2026-11-24"
    assert row.metrics["tts"] == 41.25 and board.dataset == DatasetId("ecac_test", "test", 500, SHA_B)
    assert row.provenance[0].origin == "lmms/Qwen__Qwen2.5-VL-7B-Instruct/20261124_093015_results.json"


# ---------------------------------------------------------------------------------------------- the board rule, CIs


def with_ci(report: dict, tts_ci: tuple[float, float]) -> dict:
    keys = [*SCORE_KEYS, "reward"]
    return build_report(
        report["kind"],
        model=report["model"],
        dataset=report["dataset"],
        metrics=report["metrics"],
        protocol=report["protocol"],
        ci={k: list(tts_ci) if k == "tts" else None for k in keys},
        ci_config={"method": "percentile bootstrap over images", "n_boot": 1000, "seed": 0, "level": 0.95},
        date=report["date"],
    )


def test_another_caption_prompt_ranks_separately_on_the_same_board_labelled(tmp_path):
    runs = tmp_path / "runs"
    toys = {"id": "caption_toys.zh@1", "sha256": "d" * 64}
    write(runs / "a.json", score_report("A", 40.0))
    write(runs / "b.json", score_report("B", 30.0))
    write(runs / "c.json", score_report("C", 90.0, prompt=toys))  # teaches to the test: never ranked with A and B
    (board,) = build(tmp_path, runs).boards
    main, apart = board.rankings
    assert [(r.display_name, r.rank) for r in main.rows] == [("A", 1), ("B", 2)] and main.label == ""
    assert [(r.display_name, r.rank) for r in apart.rows] == [("C", 1)]
    assert apart.label == "caption prompt: caption_toys.zh@1#dddddddd"
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Ranked separately: <bdi>caption prompt: caption_toys.zh@1#dddddddd</bdi>" in page
    rows = json.loads((tmp_path / "site" / "leaderboard.json").read_text(encoding="utf-8"))["boards"][0]["rows"]
    assert [(r["display_name"], r["ranking"], r["rank"]) for r in rows] == [
        ("A", "main", 1),
        ("B", "main", 2),
        ("C", "caption prompt: caption_toys.zh@1#dddddddd", 1),
    ]


def test_overlapping_cis_are_marked_not_separable_and_reported_rows_have_none(tmp_path):
    runs, base = tmp_path / "runs", tmp_path / "base"
    write(runs / "a.json", with_ci(score_report("A", 50.0), (45.0, 55.0)))
    write(runs / "b.json", with_ci(score_report("B", 48.0), (43.0, 53.0)))
    write(runs / "c.json", with_ci(score_report("C", 20.0), (15.0, 25.0)))
    write(
        base / "p.json",
        {
            "entries": [
                {
                    "source": "reported",
                    "citation": {"key": "p", "text": "P"},
                    "table": "T1",
                    "model": "R",
                    "params_b": 1,
                    "dataset": {"name": "ecac-sample", "split": "test", "size": 40, "sha256": SHA_A},
                    "metrics": {"tts": 41.0},
                }
            ]
        },
    )
    (board,) = build(tmp_path, runs, [base]).boards
    rows = {r.display_name: r for r in board.rows}
    assert rows["A"].not_separable_from == ["B"] and rows["B"].not_separable_from == ["A"]
    assert rows["C"].not_separable_from == [] and rows["A"].ci == {"tts": (45.0, 55.0)}
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert 'title="95% CIs of TTS overlap with: B"' in page and "95% CI 45.00–55.00" in page
    data = json.loads((tmp_path / "site" / "leaderboard.json").read_text(encoding="utf-8"))
    by_name = {r["display_name"]: r for r in data["boards"][0]["rows"]}
    assert by_name["A"]["ci"]["tts"] == [45.0, 55.0] and by_name["R"]["ci"] is None
    csv_rows = (tmp_path / "site" / "leaderboard.csv").read_text(encoding="utf-8").splitlines()
    header = csv_rows[0].split(",")
    a_row = next(line.split(",") for line in csv_rows if ",A," in line)
    assert a_row[header.index("tts_ci_low")] == "45.0" and a_row[header.index("not_separable_from")] == "B"


def test_the_sample_note_follows_the_data_not_the_file_name(tmp_path):
    sample = load_dataset()
    runs = tmp_path / "runs"
    write(runs / "copy.json", score_report("A", 40.0, {**sample.describe(), "name": "my-copy"}))
    write(runs / "other.json", score_report("B", 40.0, {**SAMPLE_DS, "name": "ecac-sample", "sha256": SHA_B}))
    boards = {b.dataset.name: b for b in build(tmp_path, runs).boards}
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    sections = page.split('<section class="card board"')[1:]
    note = "The bundled sample is small and synthetic"
    assert {"my-copy", "ecac-sample"} == set(boards)
    assert [note in s for s in sections] == [b.dataset.name == "my-copy" for b in build(tmp_path, runs).boards]


# ---------------------------------------------------------------------------------------------- odd inputs


def _alias_bomb(levels: int = 7) -> str:
    """A few lines of YAML that expand to 10**levels values (each alias repeats the one before ten times)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join([*lines, f"entries: [*a{levels}]"]) + "\n"


BASELINE_YAML = (
    "entries:\n  - {source: reported, citation: {key: p, text: P}, dataset: {name: ECAC}, table: T, model: M,\n"
    "     params_b: PARAMS, metrics: {tts: 12.5}}\n"
)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("dup.json", json.dumps(GOOD).replace('"tts": 1.0', '"tts": 99.0, "tts": 1.0'), "key 'tts' is given twice"),
        ("surrogate.json", json.dumps(score_report("\ud800", 1.0)), "lone surrogate '\\ud800'"),
        ("bigint.json", json.dumps(GOOD).replace('"reward": 1.5', '"reward": ' + "9" * 5000), "5,000 digits"),
        ("bomb.yaml", _alias_bomb(), "more than 1,000,000 values"),
        ("self.yaml", "entries: &a [*a]\n", "a value contains itself"),
        ("dup.yaml", BASELINE_YAML.replace("PARAMS", "3, params_b: 7"), "key 'params_b' is given twice"),
        ("octal.yaml", BASELINE_YAML.replace("PARAMS", "010"), "entries[0].params_b"),
        ("sexagesimal.yaml", BASELINE_YAML.replace("PARAMS", "1:30"), "entries[0].params_b"),
        ("reward.yaml", BASELINE_YAML.replace("PARAMS", "3").replace("tts: 12.5", "reward: -1"), "-1.0 is below 0"),
        ("date.yaml", BASELINE_YAML.replace("PARAMS", "3, date: 2025-02-30"), "day is out of range"),
        ("list.yaml", BASELINE_YAML.replace("PARAMS", "3").replace("{name: ECAC}", "[ECAC]"), "entries[0].dataset"),
    ],
)
def test_odd_inputs_are_named_errors_that_skip_bad_skips(tmp_path, name, content, needle):
    """Each odd input (one that once hung the build, crashed it with a traceback, or was read as another number) is
    an InputError naming the file, and --skip-bad builds without it."""
    runs, base = tmp_path / "runs", tmp_path / "base"
    write(runs / "good.json", score_report("Good", 40.0))
    base.mkdir()
    bad = (base if name.endswith(".yaml") else runs) / name
    bad.write_text(content, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(BuildError) as err:
        build(tmp_path, runs, [base])
    assert f"{bad}: " in str(err.value) and needle in str(err.value)
    result = build(tmp_path, runs, [base], skip_bad=True)
    assert [str(p) for p in result.skipped] == [str(err.value.problems[0])]
    assert [r.display_name for b in result.boards for r in b.rows] == ["Good"]


# ---------------------------------------------------------------------------------------------- hostile names


FORMULAS = ['=HYPERLINK("https://evil.example","x")', "+cmd|' /C calc'!A0", "@SUM(A1)", "-2+3", "\tTAB", "\rCR"]


def test_csv_neutralises_formula_cells(tmp_path):
    """OWASP's rule (ecac_bench.csv_safety): a text cell a spreadsheet would run gets a leading quote; numbers are
    written as numbers; the JSON keeps the names as they are."""
    runs = tmp_path / "runs"
    for i, name in enumerate(FORMULAS):
        write(runs / f"m{i}.json", score_report(name, 40.0 + i, {**SAMPLE_DS, "name": "\t=1+1"}))
    build(tmp_path, runs)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "site" / "leaderboard.csv").read_text(encoding="utf-8"))))
    # model names are stripped of surrounding white space when read; dataset names are kept as they are
    expected = ["'" + n if n.strip().startswith(FORMULA_START) else n.strip() for n in FORMULAS]
    assert sorted(r["model"] for r in rows) == sorted(expected) and sum(e.startswith("'") for e in expected) == 4
    assert {r["dataset"] for r in rows} == {"'\t=1+1"}
    assert all(not cell.startswith(FORMULA_START) for r in rows for cell in r.values())
    assert sorted(float(r["tts"]) for r in rows) == [40.0 + i for i in range(len(FORMULAS))]
    data = json.loads((tmp_path / "site" / "leaderboard.json").read_text(encoding="utf-8"))
    assert sorted(r["model"] for r in data["boards"][0]["rows"]) == sorted(n.strip() for n in FORMULAS)


HOSTILE_MD = [
    "evil\r| 1 | forged | 99.00 |\nrow",
    "![pixel](https://evil.example/track.png)",
    "[click](https://evil.example)",
    "<img src=x onerror=alert(1)>",
    "`code` and *bold* _it_",
    "https://evil.example/x",
    "www.evil.example",
    "<https://evil.example>",
    "mail@evil.example",
    "a&#124;b &lt;i&gt;",
]


def test_markdown_escapes_names(tmp_path):
    """No name can split a row, or become an image, a link, an autolink, HTML or a code span: rendered by a
    CommonMark parser (markdown-it, with tables) the table has one row per model, no element from a name, and each
    name reads as it was written."""
    markdown_it = pytest.importorskip("markdown_it")
    runs = tmp_path / "runs"
    for i, name in enumerate(HOSTILE_MD):
        write(runs / f"m{i}.json", score_report(name, 40.0 + i))
    build(tmp_path, runs)
    md = (tmp_path / "site" / "leaderboard.md").read_text(encoding="utf-8")
    assert "\r" not in md
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(HOSTILE_MD)
    assert len({len(re.findall(r"(?<!\\)\|", row)) for row in table}) == 1  # one cell count: no row is split
    html = markdown_it.MarkdownIt("commonmark").enable("table").render("\n".join(table))
    for tag in ("<img", "<a ", "<code", "<em", "<strong", "<https"):
        assert tag not in html, tag
    assert html.count("<tr>") == 1 + len(HOSTILE_MD)
    ranks = re.findall(r"<tr>\s*<td[^>]*>([^<]*)</td>", html)  # each row's first cell: its rank
    assert ranks == [str(n) for n in range(1, len(HOSTILE_MD) + 1)]
    assert "https\\://" in md and "www\\.evil" in md and "mail\\@evil" in md  # GitHub's bare autolinks, too
    for name in HOSTILE_MD[1:]:
        shown_name = html_lib.escape(name, quote=False) if "&" not in name else name.replace("&", "&amp;").replace(
            "<", "&lt;").replace(">", "&gt;")  # fmt: skip
        assert shown_name in html, name


def _bdi_check(html: str, marker: str) -> list[str]:
    """The enclosing elements of every text node that holds ``marker`` outside <bdi> (and outside SVG, whose text
    is one label each), and of attributes: problems."""

    class Walker(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.stack: list[str] = []
            self.problems: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag not in ("br", "meta", "input", "link", "line", "circle", "rect", "img"):
                self.stack.append(tag)

        def handle_startendtag(self, tag, attrs):
            pass

        def handle_endtag(self, tag):
            if tag in self.stack:
                while self.stack.pop() != tag:
                    pass

        def handle_data(self, data):
            if marker in data and "bdi" not in self.stack and "svg" not in self.stack:
                self.problems.append("/".join(self.stack))

    walker = Walker()
    walker.feed(html)
    return walker.problems


def test_html_isolates_every_input_text_in_bdi(tmp_path):
    """A right-to-left override in a name (or a dataset name, a variant, a file name) cannot reorder the page: it is
    shown as an escape, and every input text sits in its own <bdi>."""
    runs, base = tmp_path / "runs", tmp_path / "base"
    rlo = "\u202e"
    write(runs / "m.json", score_report(f"Model{rlo}ZZ", 40.0, {**SAMPLE_DS, "name": f"data{rlo}ZZ"}))
    write(runs / "j.json", judge_report(f"Model{rlo}ZZ", 80.0, {**SAMPLE_DS, "name": f"data{rlo}ZZ"}))
    write(runs / "arabic.json", score_report("نموذج ZZ", 30.0, {**SAMPLE_DS, "name": f"data{rlo}ZZ"}))
    entry = {"source": "reported", "citation": {"key": "p", "text": f"Paper{rlo}ZZ"}, "table": f"T{rlo}ZZ",
             "model": "R", "params_b": 1, "variant": f"variant{rlo}ZZ", "note": f"note{rlo}ZZ",
             "dataset": {"name": "ECAC", "split": f"test{rlo}ZZ"}, "metrics": {"tts": 10.0}}  # fmt: skip
    write(base / "p.json", {"entries": [entry]})
    build(tmp_path, runs, [base])
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert rlo not in html and "\\u202eZZ" in html
    assert _bdi_check(html, "ZZ") == []
    assert html.count("<bdi>") > 20


def test_control_characters_in_names_are_shown_as_escapes(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "m.json", score_report("A\x1b[31mred\x00\u200bX", 40.0))
    build(tmp_path, runs)
    for name in ("index.html", "leaderboard.md"):
        text = (tmp_path / "site" / name).read_text(encoding="utf-8")
        assert "\x1b" not in text and "\x00" not in text and "\u200b" not in text
        assert "\\x1b" in text and "\\u200b" in text


# ---------------------------------------------------------------------------------------------- what the page shows


def test_columns_empty_on_a_board_are_hidden(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "a.json", score_report("A", 40.0))
    write(runs / "b.json", score_report("B", 30.0, tts_h=None))
    build(tmp_path, runs)
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    head = re.search(r'<table class="lb main" id="board-1-main">\s*<thead><tr>(.*?)</tr></thead>', page, re.S)
    columns = re.findall(r"<button type=\"button\">(.*?)</button>", head.group(1))
    assert columns == ["#", "Model", "TTS", "TTS-L", "TTS-M", "TTS-H", "Source", "Date"]  # no judge, size, weights
    assert "Sibling caption metrics" not in page
    md_head = next(line for line in (tmp_path / "site" / "leaderboard.md").read_text().splitlines() if "Model" in line)
    assert md_head == "| # | Model | TTS | TTS-L | TTS-M | TTS-H | Source | Date |"
    # The paper's board: TTS-L/M/H are given by no table of the paper, and no reported row has a date.
    build_site([BASELINES], [], tmp_path / "paper")
    paper = (tmp_path / "paper" / "index.html").read_text(encoding="utf-8")
    head = re.search(r'id="board-1-main">\s*<thead><tr>(.*?)</tr></thead>', paper, re.S).group(1)
    assert re.findall(r"<button type=\"button\">(.*?)</button>", head) == [
        "#", "Model", "TTS", "Judge score", "Toy precision", "Size", "Weights", "Source"
    ]  # fmt: skip
    # A secondary table lists only the rows with a value in it.
    fine = re.search(r'id="board-1-fine">(.*?)</table>', paper, re.S).group(1)
    assert fine.count("<tr class=") == 4 and "Gemma3-27B" not in fine


def test_measured_numbers_show_their_ci_half_width_and_reported_ones_say_they_have_none(tmp_path):
    runs, base = tmp_path / "runs", tmp_path / "base"
    write(runs / "a.json", with_ci(score_report("A", 40.0), (35.0, 46.0)))
    write(runs / "b.json", score_report("B", 30.0))  # a report without CIs
    write(base / "p.json", {"entries": [{"source": "reported", "citation": {"key": "p", "text": "P"}, "table": "T1",
                                         "model": "R", "params_b": 1, "metrics": {"tts": 41.0},
                                         "dataset": {"name": "ecac-sample", "split": "test", "size": 40,
                                                     "sha256": SHA_A}}]})  # fmt: skip
    build(tmp_path, runs, [base])
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert 'title="from runs/a.json; 95% CI 35.00–46.00">40.00<span class="pm">±5.50</span>' in page
    assert 'title="from runs/b.json; no CI in the report">30.00</td>' in page
    assert 'title="from T1; reported: no CI (the paper gives none)">41.00</td>' in page
    md = (tmp_path / "site" / "leaderboard.md").read_text(encoding="utf-8")
    assert "| A | 40.00 ±5.50 |" in md and "| R | 41.00 |" in md and "(no CI: the paper gives none)" in md
    rows = {r["model"]: r for r in csv.DictReader(io.StringIO((tmp_path / "site" / "leaderboard.csv").read_text()))}
    assert (rows["A"]["tts_ci_low"], rows["A"]["tts_ci_high"]) == ("35.0", "46.0") and rows["R"]["tts_ci_low"] == ""


def test_negative_zero_is_shown_as_zero(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "a.json", json.loads(_metric(score_report("A", 40.0), reward=-0.0, tts_bh=-0.0)))
    (board,) = build(tmp_path, runs).boards
    assert math.copysign(1, board.rows[0].metrics["reward"]) == 1.0
    for name in ("index.html", "leaderboard.md"):
        assert "-0.00" not in (tmp_path / "site" / name).read_text(encoding="utf-8"), name
    assert ",-0.0," not in (tmp_path / "site" / "leaderboard.csv").read_text(encoding="utf-8")
    row = json.loads((tmp_path / "site" / "leaderboard.json").read_text(encoding="utf-8"))["boards"][0]["rows"][0]
    assert math.copysign(1, row["metrics"]["reward"]) == math.copysign(1, row["metrics"]["tts_bh"]) == 1.0


def test_last_updated_is_the_newest_date_of_the_inputs(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "a.json", score_report("A", 40.0))  # 2026-11-20
    write(runs / "p.json", precision_report("A", 50.0))  # 2026-11-22
    write(runs / "j.json", judge_report("B", 50.0))  # 2026-11-21
    build(tmp_path, runs)
    site = tmp_path / "site"
    assert 'Last updated <time datetime="2026-11-22"><bdi>2026-11-22</bdi></time>' in (site / "index.html").read_text()
    assert "Last updated 2026-11-22 (the newest date of the inputs)." in (site / "leaderboard.md").read_text()
    assert json.loads((site / "leaderboard.json").read_text())["last_updated"] == "2026-11-22"
    build_site([BASELINES], [], tmp_path / "paper")  # no reported entry states a date
    assert "Last updated" not in (tmp_path / "paper" / "index.html").read_text(encoding="utf-8")


def test_bibtex_holds_only_the_facts_given(tmp_path):
    base = tmp_path / "base"
    entry = {"source": "reported", "table": "T1", "model": "R", "params_b": 1, "metrics": {"tts": 41.0},
             "dataset": {"name": "ECAC"},
             "citation": {"key": "doe 2024", "text": "J. Doe, R. Roe. A {braced} title & more.",
                          "authors": ["J. Doe", "R. Roe"], "title": "A {braced} title & more_"}}  # fmt: skip
    write(base / "p.json", {"entries": [entry]})
    write(tmp_path / "runs" / "a.json", score_report("A", 40.0))
    build(tmp_path, tmp_path / "runs", [base])
    cite = json.loads((tmp_path / "site" / "leaderboard.json").read_text(encoding="utf-8"))["cite"]
    assert cite == {
        "doe 2024": "@misc{doe-2024,\n  author = {J. Doe and R. Roe},\n  title = {A \\{braced\\} title \\& more\\_}\n}",
        "ecac-bench": "@misc{ecac-bench,\n  title = {ecac-bench: the ECAC benchmark, evaluation harness and reference "
        "trainer},\n  note = {Version 0.1.0}\n}",
    }
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert page.count('<button type="button" class="copy"') == 2
    # The committed baselines: the ECAC paper's authors and title, and nothing the paper's text does not give.
    build_site([BASELINES], [], tmp_path / "paper")
    paper = json.loads((tmp_path / "paper" / "leaderboard.json").read_text(encoding="utf-8"))["cite"]["li-ecac"]
    assert paper == (
        "@misc{li-ecac,\n  author = {Sixing Li and Zhibin Gu and Ziqi Zhang},\n  title = {Captioning Daily Activity "
        "Images in Early Childhood Education: Benchmark and Algorithm}\n}"
    )


MODELS = {
    "name": "Paper-VLM-3B",
    "ids": ["org/paper-vlm-3b-instruct"],
    "params_b": 3,
    "weights": "open",
    "url": "https://huggingface.co/org/paper-vlm-3b-instruct",
    "source": "its model card",
}


def _reported(model: str, params_b: float | None = 3) -> dict:
    return {"source": "reported", "citation": {"key": "p", "text": "P"}, "table": "T1", "model": model,
            "params_b": params_b, "metrics": {"tts": 41.0}, "dataset": {"name": "ECAC"}}  # fmt: skip


def test_model_facts_give_size_weights_and_link_to_reported_and_measured_rows(tmp_path):
    runs, base = tmp_path / "runs", tmp_path / "base"
    write(base / "00_models.json", {"models": [MODELS, {"name": "Api-Model", "weights": "api", "source": "vendor"}]})
    write(base / "p.json", {"entries": [_reported("Paper-VLM-3B"), _reported("Api-Model", None)]})
    write(runs / "m.json", score_report("org/paper-vlm-3b-instruct", 40.0))
    write(runs / "u.json", score_report("unknown-model", 30.0))
    boards = build(tmp_path, runs, [base]).boards
    rows = {r.model: r for b in boards for r in b.rows}
    assert rows["org/paper-vlm-3b-instruct"].params_b == 3 and rows["org/paper-vlm-3b-instruct"].facts.weights == "open"
    assert rows["Api-Model"].facts.weights == "api" and rows["Api-Model"].params_b is None
    assert rows["unknown-model"].facts is None and rows["unknown-model"].params_b is None
    page = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    link = '<a class="model-link" href="https://huggingface.co/org/paper-vlm-3b-instruct" rel="noopener noreferrer '
    assert page.count(link) == 2  # the reported row and the measured run of the same checkpoint
    assert '<td data-sort="API" title="vendor">API</td>' in page
    csv_rows = list(csv.DictReader(io.StringIO((tmp_path / "site" / "leaderboard.csv").read_text(encoding="utf-8"))))
    by = {r["model"]: r for r in csv_rows}
    assert (by["Paper-VLM-3B"]["weights"], by["Paper-VLM-3B"]["params_b"]) == ("open", "3")
    assert by["org/paper-vlm-3b-instruct"]["model_url"] == MODELS["url"] and by["unknown-model"]["weights"] == ""
    data = json.loads((tmp_path / "site" / "leaderboard.json").read_text(encoding="utf-8"))
    facts = [r["model_facts"] for b in data["boards"] for r in b["rows"] if r["model"] == "Paper-VLM-3B"]
    assert facts == [{"name": "Paper-VLM-3B", "params_b": 3.0, "weights": "open", "url": MODELS["url"],
                      "source": "its model card"}]  # fmt: skip


@pytest.mark.parametrize(
    ("models", "entries", "needle"),
    [
        ([{**MODELS, "url": "javascript:alert(1)"}], [], "models[0].url: expected an https:// URL"),
        ([{**MODELS, "url": 'https://x.example/"onmouseover="x'}], [], "models[0].url: expected an https:// URL"),
        ([{**MODELS, "weights": "free"}], [], "models[0].weights"),
        ([{k: v for k, v in MODELS.items() if k != "source"}], [], "models[0].source: missing"),
        ([MODELS, {**MODELS, "ids": []}], [], "named by more than one model"),
        ([MODELS], [_reported("Paper-VLM-3B", 7)], "Paper-VLM-3B: params_b 7 here, 3 in its model facts"),
    ],
)
def test_bad_model_facts(tmp_path, models, entries, needle):
    base = tmp_path / "base"
    write(base / "00_models.json", {"models": models})
    write(base / "p.json", {"entries": entries or [_reported("Other")]})
    loaded = load_inputs([base], [])
    assert len(loaded.problems) == 1 and needle in str(loaded.problems[0]), loaded.problems


def test_model_facts_in_two_files_are_a_problem_of_the_second(tmp_path):
    base = tmp_path / "base"
    write(base / "a.json", {"models": [MODELS]})
    write(base / "b.json", {"models": [{**MODELS, "name": "Other", "ids": ["ORG/Paper-VLM-3B-instruct"]}]})
    (problem,) = load_inputs([base], []).problems
    assert str(problem).startswith(f"{base / 'b.json'}: models: ['ORG/Paper-VLM-3B-instruct'] already have facts")


# ---------------------------------------------------------------------------------------------- viewer pages


def test_a_results_files_viewer_page_is_copied_into_the_site_and_linked(tmp_path):
    """The hook for the caption viewer: ``X.viewer.html`` beside ``X.json`` is copied to ``viewer/<origin>.html``
    in the site (so it travels with it) and the row's name links to it."""
    runs = tmp_path / "runs"
    write(runs / "a.json", score_report("A", 40.0))
    write(runs / "a.prec.json", precision_report("A", 50.0))
    (runs / "a.viewer.html").write_bytes(b"<!DOCTYPE html><title>A captions</title>\xe2\x9c\x93")
    write(runs / "sub" / "we ird#?.json", score_report("B", 30.0))
    (runs / "sub" / "we ird#?.viewer.html").write_text("B page", encoding="utf-8")
    write(runs / "c.json", score_report("C", 20.0))  # no viewer page
    result = build(tmp_path, runs)
    site = tmp_path / "site"
    assert (site / "viewer" / "runs" / "a.html").read_bytes() == (runs / "a.viewer.html").read_bytes()
    assert (site / "viewer" / "runs" / "sub" / "we ird#?.html").read_text(encoding="utf-8") == "B page"
    rows = {r.model: r for r in result.boards[0].rows}
    assert rows["A"].viewer.href == "viewer/runs/a.html" and rows["C"].viewer is None
    assert rows["B"].viewer.href == "viewer/runs/sub/we%20ird%23%3F.html"
    page = (site / "index.html").read_text(encoding="utf-8")
    assert '<a class="viewer-link" href="viewer/runs/a.html">captions</a>' in page
    assert 'href="viewer/runs/sub/we%20ird%23%3F.html"' in page and page.count('class="viewer-link"') == 2
    data = json.loads((site / "leaderboard.json").read_text(encoding="utf-8"))
    assert {r["model"]: r["viewer"] for r in data["boards"][0]["rows"]} == {
        "A": "viewer/runs/a.html",
        "B": "viewer/runs/sub/we%20ird%23%3F.html",
        "C": None,
    }
    # The viewer pages change with the site, as one unit: a rebuild without them leaves none behind.
    (runs / "a.viewer.html").unlink()
    (runs / "sub" / "we ird#?.viewer.html").unlink()
    build(tmp_path, runs)
    assert not (site / "viewer").exists()
