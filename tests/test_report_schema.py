"""Report schema 2: every command's report validates, the signature states its fields, the dataset identity is a
record-level hash, and the leaderboard turns any odd input into a named error (never a traceback)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecac_bench import SAMPLE_DATA, SAMPLE_PREDICTIONS, load_dataset
from ecac_bench.cli import main
from ecac_bench.data import IDENTITY_FORM, dataset_identity
from ecac_bench.leaderboard import InputError, parse_baseline_file, parse_results_file
from ecac_bench.report import build_report
from ecac_bench.report_schema import Report, format_signature

SAMPLE_ROWS = [orjson.loads(line) for line in SAMPLE_DATA.read_bytes().splitlines() if line.strip()]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    base = SAMPLE_DATA.parent
    path.write_bytes(b"".join(orjson.dumps({**r, "image": str((base / r["image"]).resolve())}) + b"\n" for r in rows))
    return path


# --- the dataset identity ------------------------------------------------------------------------------------------


def reference_identity(rows: list[dict[str, Any]]) -> str:
    """The definition of docs/report_schema.md, written out plainly from raw rows."""
    rows = sorted(rows, key=lambda r: r["id"])
    toys = [[[t["name"], t["level"], t["ground"], sorted(t.get("aliases") or [])] for t in r["toys"]] for r in rows]
    columns = [[r[k] for r in rows] for k in ("id", "category", "area", "caption")]
    splits = [r.get("split") for r in rows]
    return hashlib.sha256(orjson.dumps([IDENTITY_FORM, *columns, splits, toys])).hexdigest()


def test_identity_is_the_documented_canonical_form() -> None:
    assert load_dataset().sha256 == reference_identity(SAMPLE_ROWS)
    assert load_dataset(split="test").sha256 == reference_identity([r for r in SAMPLE_ROWS if r["split"] == "test"])


def test_same_records_are_one_dataset_in_any_order_format_or_file_name(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    datasets = pytest.importorskip("datasets")
    expected = load_dataset().sha256
    shuffled = SAMPLE_ROWS[:]
    random.Random(0).shuffle(shuffled)
    assert load_dataset(write_rows(tmp_path / "other_name.jsonl", shuffled)).sha256 == expected
    moved = [{**r, "image": f"/elsewhere/{i}.jpg"} for i, r in enumerate(SAMPLE_ROWS)]  # images are locations
    (tmp_path / "moved.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in moved))
    assert load_dataset(tmp_path / "moved.jsonl").sha256 == expected
    reordered_aliases = [
        {**r, "toys": [{**t, "aliases": list(reversed(t["aliases"]))} if t.get("aliases") else t for t in r["toys"]]}
        for r in SAMPLE_ROWS
    ]
    assert load_dataset(write_rows(tmp_path / "aliases.jsonl", reordered_aliases)).sha256 == expected
    pd.DataFrame(shuffled).to_parquet(tmp_path / "d.parquet")
    assert load_dataset(tmp_path / "d.parquet").sha256 == expected
    datasets.Dataset.from_list(SAMPLE_ROWS).save_to_disk(str(tmp_path / "saved"))
    assert load_dataset(tmp_path / "saved").sha256 == expected


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(caption=r["caption"] + "。"),
        lambda r: r.update(area=r["area"] + "x"),
        lambda r: r.update(split="train" if r["split"] != "train" else "test"),
        lambda r: r["toys"].append({"name": "新玩具", "level": "low", "ground": "background"}),
        lambda r: r.update(id=r["id"] + "-b"),
    ],
)
def test_any_change_to_a_record_is_another_dataset(tmp_path: Path, change: Any) -> None:
    rows = [json.loads(json.dumps(r)) for r in SAMPLE_ROWS]
    change(rows[7])
    assert load_dataset(write_rows(tmp_path / "d.jsonl", rows)).sha256 != load_dataset().sha256


def test_identity_of_no_records_is_defined() -> None:
    assert dataset_identity([]) == hashlib.sha256(orjson.dumps([IDENTITY_FORM, [], [], [], [], [], []])).hexdigest()


# --- reports and signatures ---------------------------------------------------------------------------------------


def test_every_command_writes_a_schema_2_report(tmp_path: Path) -> None:
    preds = str(SAMPLE_PREDICTIONS["system-b"])
    runs = {
        "score": ["score", "--predictions", preds, "--by", "area", "--n-boot", "50"],
        "toy-precision": ["toy-precision", "--extractor", "lexicon", "--predictions", preds, "--n-boot", "50"],
    }
    for name, argv in runs.items():
        out = tmp_path / f"{name}.json"
        assert main([*argv, "--json", str(out)]) == 0
        report = Report.model_validate(json.loads(out.read_text(encoding="utf-8")))
        assert report.kind == f"ecac-bench/{name}" and report.signature == format_signature(report)
        assert report.dataset.sha256 == load_dataset().sha256 and report.ci_config.n_boot == 50
    candidates = tmp_path / "c.jsonl"
    candidates.write_text(
        "".join(
            json.dumps({"id": r["id"], "caption_id": str(k), "caption": c}) + "\n"
            for r in SAMPLE_ROWS[:6]
            for k, c in enumerate(["x", r["caption"]])
        )
    )
    scores, rank_json = tmp_path / "s.jsonl", tmp_path / "rank.json"
    assert main(["rank", "--candidates", str(candidates), "--out", str(scores), "--json", str(rank_json)]) == 0
    assert Report.model_validate(json.loads(rank_json.read_text())).methods["reward"]["n"] == 12
    human = tmp_path / "h.jsonl"
    human.write_text(
        "".join(
            json.dumps({"id": r["id"], "caption_id": str(k), "ranks": [2 - k]}) + "\n"
            for r in SAMPLE_ROWS[:6]
            for k in range(2)
        )
    )
    agree_json = tmp_path / "agree.json"
    assert main(["agree", "--human", str(human), "--scores", str(scores), "--json", str(agree_json)]) == 0
    agree = Report.model_validate(json.loads(agree_json.read_text()))
    assert set(agree.metrics) == {"reward"} and set(agree.ci["reward"]) == {"kendall_tau", "spearman_rho"}


def test_signature_format_and_escaping() -> None:
    report = build_report(
        "ecac-bench/judge",
        model="m",
        dataset={"name": "my|data", "split": "test", "size": 3, "sha256": "d" * 64},
        metrics={"judge_score": 50.0, "judge_score_std": 0.0, "n": 3, "n_failed": 0},
        protocol={
            "caption_prompt": {"id": "caption.zh@2", "sha256": "e" * 64},
            "judge": {
                "model": "qwen2.5-vl-72b",
                "params": {"temperature": 0.0, "max_tokens": 64},
                "image": {"rule": "max_side", "max_side": 1024},
                "prompt": {"id": "judge_score.zh@1+judge_score_repair.zh@1", "sha256": "f" * 64},
            },
            "pixels": "200704-1605632",
            "decoding": "greedy,max_new_tokens=512,repetition_penalty=checkpoint",
        },
        ci={"judge_score": [40.0, 60.0]},
        ci_config={"method": "percentile bootstrap over images", "n_boot": 1000, "seed": 7, "level": 0.95},
    )
    assert report["signature"] == (
        "ecac-bench:0.1.0|kind:judge|data:my\\|data|split:test|size:3|sha256:dddddddddddd|"
        "prompt:caption.zh@2#eeeeeeee|judge:qwen2.5-vl-72b|judge_params:max_tokens=64,temperature=0.0|"
        "judge_image:max_side=1024,rule=max_side|judge_prompt:judge_score.zh@1+judge_score_repair.zh@1#ffffffff|"
        "pixels:200704-1605632|decoding:greedy,max_new_tokens=512,repetition_penalty=checkpoint|nboot:1000|seed:7"
    )
    forged = {**report, "signature": report["signature"].replace("seed:7", "seed:8")}
    with pytest.raises(ValueError, match="does not state the report's fields"):
        Report.model_validate(forged)
    with pytest.raises(ValueError, match="give both"):
        Report.model_validate({**report, "ci": None})
    with pytest.raises(ValueError, match=r"ci\.judge_score_std: judge_score_std has no confidence interval"):
        Report.model_validate({**report, "ci": {"judge_score_std": [1.0, 2.0]}})


# --- hostile and odd inputs to the leaderboard ----------------------------------------------------------------------

VALID = build_report(
    "ecac-bench/score",
    model="M",
    dataset={"name": "d", "split": "test", "size": 40, "sha256": "a" * 64},
    metrics={
        k: 50.0 for k in ("tts", "tts_l", "tts_m", "tts_h", "tts_fl", "tts_fm", "tts_fh", "tts_bl", "tts_bm", "tts_bh")
    }
    | {"reward": 1.0},
    protocol={"match": "exact"},
    date="2026-11-20",
)
_ODD = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
        st.sampled_from(["2025-02-30", "NaN", "ecac-bench/score", "a" * 64, "exact"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=12,
)


def _replace(obj: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return value
    if isinstance(obj, dict):
        key = path[0] if path[0] in obj else sorted(obj)[hash(str(path[0])) % len(obj)] if obj else path[0]
        return {**obj, key: _replace(obj.get(key), path[1:], value)}
    if isinstance(obj, list) and obj:
        index = path[0] % len(obj) if isinstance(path[0], int) else 0
        return [*obj[:index], _replace(obj[index], path[1:], value), *obj[index + 1 :]]
    return value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.lists(st.one_of(st.sampled_from(sorted(VALID)), st.integers(0, 20), st.text(max_size=5)), max_size=4),
    value=_ODD,
)
def test_any_mutation_of_a_report_is_an_input_error_or_an_entry(tmp_path: Path, path: list[Any], value: Any) -> None:
    file = tmp_path / "r.json"
    file.write_text(json.dumps(_replace(VALID, path, value), allow_nan=True), encoding="utf-8")
    try:
        entries = parse_results_file(file, "runs/r.json")
    except InputError as exc:
        assert str(file) in str(exc)
    else:
        assert all(0 <= v <= 100 for e in entries for k, v in e.metrics.items() if k.startswith("tts"))


_BASELINE = {
    "entries": [
        {
            "source": "reported",
            "citation": {"key": "p", "text": "P"},
            "dataset": {"name": "ECAC", "split": "test"},
            "table": "T",
            "model": "M",
            "params_b": 3,
            "metrics": {"tts": 10.0, "reward": 1.0},
        }
    ]
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.lists(
        st.one_of(st.sampled_from(["entries", 0, "metrics", "dataset", "params_b", "date"]), st.text(max_size=4)),
        max_size=4,
    ),
    value=_ODD,
)
def test_any_mutation_of_a_baselines_file_is_an_input_error_or_entries(
    tmp_path: Path, path: list[Any], value: Any
) -> None:
    file = tmp_path / "b.json"
    file.write_text(json.dumps(_replace(_BASELINE, path, value), allow_nan=True), encoding="utf-8")
    try:
        parse_baseline_file(file)
    except InputError as exc:
        assert str(file) in str(exc)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("entries:\n  - {source: reported, date: 2025-02-30}\n", "invalid YAML value: day is out of range"),
        ("entries: 5\n", "entries: Input should be a valid list"),
        ("entries: [[1]]\n", "entries[0]: Input should be a valid dictionary"),
        ("- a\n- b\n", "Input should be a valid dictionary"),
        ("entries:\n" + "  " * 0 + "x: " + "[" * 40 + "]" * 40 + "\n", "nested more than"),
    ],
)
def test_odd_yaml_is_a_named_error(tmp_path: Path, text: str, needle: str) -> None:
    file = tmp_path / "b.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=None) as err:
        parse_baseline_file(file)
    assert needle in str(err.value)
