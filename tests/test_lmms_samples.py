"""Reading captions from lmms-eval samples files (``--log_samples``) of the ECAC tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ecac_bench import DataValidationError, load_dataset
from ecac_bench.cli import main
from ecac_bench.lmms_samples import is_lmms_eval_sample, looks_like_lmms_eval_samples
from ecac_bench.predictions import load_lmms_eval_samples

TEST = load_dataset(split="test")
IDS = [r.id for r in TEST.records]


def sample(doc_id: int, image_id: str | None, response: Any, field: str = "filtered_resps") -> dict[str, Any]:
    """A row shaped like lmms-eval 0.7.3 writes it for ecac_tts (payload per metric, id inside)."""
    row: dict[str, Any] = {"doc_id": doc_id, "target": "ref", field: response, "doc_hash": "x"}
    if image_id is not None:
        payload = {"id": image_id, "named": [0] * 10, "total": [1] * 10, "reward": 0.0}
        row |= {"tts": payload, "reward": payload}
    return row


def write(tmp_path: Path, rows: list[Any]) -> Path:
    path = tmp_path / "20260101_samples_ecac_tts.jsonl"
    path.write_bytes(b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in rows))
    return path


def test_reads_string_and_list_responses_by_payload_id(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            sample(0, IDS[0], "在美工区，幼儿用剪刀剪纸。"),
            sample(1, IDS[1], ["first", "second"]),
            sample(2, IDS[2], [["nested"]]),
            sample(3, IDS[3], "raw only", field="resps"),
        ],
    )
    got = load_lmms_eval_samples(path, TEST, allow_missing=True)
    assert got == {
        IDS[0]: ["在美工区，幼儿用剪刀剪纸。"],
        IDS[1]: ["first", "second"],
        IDS[2]: ["nested"],
        IDS[3]: ["raw only"],
    }


def test_filtered_responses_win_over_raw(tmp_path: Path) -> None:
    row = sample(0, IDS[0], "scored") | {"resps": "<think>x</think>scored"}
    assert load_lmms_eval_samples(write(tmp_path, [row]), TEST, allow_missing=True) == {IDS[0]: ["scored"]}


def test_every_test_image_needed_unless_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, [sample(0, IDS[0], "a")])
    pattern = rf"{len(IDS) - 1} of {len(IDS)} dataset id\(s\) have no prediction .*--limit covers part of the data"
    with pytest.raises(DataValidationError, match=pattern):
        load_lmms_eval_samples(path, TEST)
    full = write(tmp_path, [sample(i, image_id, "c") for i, image_id in enumerate(IDS)])
    assert len(load_lmms_eval_samples(full, TEST)) == len(IDS)


def test_problems_name_file_line_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            sample(0, IDS[0], "ok"),
            b"{not json",
            sample(2, None, "no id anywhere"),
            sample(3, IDS[0], "again"),
            sample(4, "not-in-dataset", "x"),
            sample(5, IDS[1], 7),
            {"id": IDS[2], "caption": "a plain predictions row"},
        ],
    )
    with pytest.raises(DataValidationError) as err:
        load_lmms_eval_samples(path, TEST, allow_missing=True)
    text = str(err.value)
    assert f"{path}:line 2: field '<json>'" in text
    assert f"{path}:line 3: field 'id': no metric payload carries an image id" in text
    assert f"{path}:line 4: field 'id': duplicate id '{IDS[0]}' (first at line 1)" in text
    assert "1 id(s) not in dataset" in text and "'not-in-dataset' (line 5)" in text
    assert f"{path}:line 6: field 'filtered_resps': must be a string or a list of strings" in text
    assert f"{path}:line 7: field '<record>': not an lmms-eval sample" in text


def test_disagreeing_payload_ids_are_an_error(tmp_path: Path) -> None:
    row = sample(0, IDS[0], "c")
    row["reward"] = {**row["reward"], "id": IDS[1]}
    with pytest.raises(DataValidationError, match="disagreeing ids"):
        load_lmms_eval_samples(write(tmp_path, [row]), TEST, allow_missing=True)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="predictions file not found"):
        load_lmms_eval_samples("/nonexistent/samples.jsonl", TEST)


def test_detection_tells_samples_from_prediction_rows() -> None:
    assert is_lmms_eval_sample(sample(0, IDS[0], "c"))
    assert not is_lmms_eval_sample({"id": IDS[0], "caption": "c"})
    assert not is_lmms_eval_sample([1, 2])


def test_file_detection(tmp_path: Path) -> None:
    assert looks_like_lmms_eval_samples(write(tmp_path, [b"", sample(0, IDS[0], "c")]))
    plain = tmp_path / "p.jsonl"
    plain.write_text('{"id": "x", "caption": "c"}\n')
    assert not looks_like_lmms_eval_samples(plain)
    plain.write_text("{broken\n")
    assert not looks_like_lmms_eval_samples(plain)


def test_ecac_bench_score_reads_a_samples_file_directly(tmp_path: Path) -> None:
    """`ecac-bench score --predictions <samples.jsonl>` (load_predictions autodetects the format)."""
    with_toys = [r for r in TEST.records if r.toys][::2]
    captions = {r.id: f"在美工区，幼儿在玩{r.toys[0].name}。" for r in with_toys}
    samples = write(tmp_path, [sample(i, image_id, c) for i, (image_id, c) in enumerate(captions.items())])
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b"".join(orjson.dumps({"id": i, "caption": c}) + b"\n" for i, c in captions.items()))
    reports = []
    for predictions in (samples, plain):
        out = tmp_path / f"{predictions.stem}.json"
        args = ["score", "--split", "test", "--predictions", str(predictions), "--allow-missing", "--json", str(out)]
        assert main(args) == 0
        reports.append(orjson.loads(out.read_bytes())["metrics"])
    assert reports[0] == reports[1] and reports[0]["tts"] > 0


def test_a_sample_with_no_response_is_missing_and_a_failed_one_is_failed(tmp_path: Path) -> None:
    marker = "[LMMS_EVAL_REQUEST_FAILED after 5 retries] Error code: 500"
    rows = [
        sample(0, IDS[0], "ok"),
        sample(1, IDS[1], []),  # no response at all: missing, like no row
        sample(2, IDS[2], None),
        sample(3, IDS[3], [[]]),
        sample(4, IDS[4], marker),  # the backend's failure marker: failed
        sample(5, IDS[5], [""]),  # an empty response: failed
    ]
    path = write(tmp_path, rows)
    with pytest.raises(DataValidationError, match=rf"{len(IDS) - 3} of {len(IDS)} dataset id\(s\) have no prediction"):
        load_lmms_eval_samples(path, TEST)
    got = load_lmms_eval_samples(path, TEST, allow_missing=True)
    assert got == {IDS[0]: ["ok"]}
    assert got.failed == {IDS[4]: "lmms-eval request failed", IDS[5]: "empty response"}
    # `score` leaves the failed images out, says so, and exits 2 unless they are allowed; the report is written first
    out = tmp_path / "r.json"
    argv = ["score", "--split", "test", "--predictions", str(path), "--allow-missing", "--json", str(out)]
    assert main(argv) == 2
    coverage = orjson.loads(out.read_bytes())["coverage"]
    assert (coverage["failed_images"], coverage["n_failed_generations"], coverage["predicted"]) == (2, 2, 1)
    assert coverage["missing"] == len(IDS) - 3 and coverage["metric_images"]["reward"] == len(IDS) - 2
    assert main([*argv, "--allow-failed", "2"]) == 0
