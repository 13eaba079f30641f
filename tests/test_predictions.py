"""Predictions files: both row forms, missing and unknown ids, malformed rows, failed generations."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecac_bench import DataValidationError, EcacDataset, EcacRecord, load_predictions, score_captions
from ecac_bench.data import ToyAnnotation
from ecac_bench.generations import FailureAllowance, generation_failure


def dataset(n=3):
    records = [EcacRecord(f"id{i}", f"/x/{i}.png", "classroom", "a", "ref", "test", ()) for i in range(n)]
    return EcacDataset(records, "/x/d.jsonl", "d", "0" * 64)


def write(tmp_path, rows):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_single_and_multiple_captions(tmp_path):
    path = write(
        tmp_path, [{"id": "id0", "caption": "a"}, {"id": "id1", "captions": ["b", "c"]}, {"id": "id2", "caption": "d"}]
    )
    loaded = load_predictions(path, dataset())
    assert loaded == {"id0": ["a"], "id1": ["b", "c"], "id2": ["d"]}
    assert (loaded.failed, loaded.n_failed_generations, loaded.n_generations) == ({}, 0, 4)


MARKER = "[LMMS_EVAL_REQUEST_FAILED after 5 retries] Error code: 400"


def test_failed_generations_are_recorded_not_predicted(tmp_path):
    rows = [
        {"id": "id0", "caption": ""},  # an empty response
        {"id": "id1", "caption": " \n\t"},  # whitespace only
        {"id": "id2", "caption": MARKER},  # lmms-eval's failure marker
        {"id": "id3", "error": "timeout"},  # the row says so (no caption needed)
        {"id": "id4", "caption": "text", "failed": True},  # the row says so (its caption is not scored)
        {"id": "id5", "captions": ["good", "", "  " + MARKER]},  # one image, 2 of its 3 samples failed
        {"id": "id6", "caption": "fine", "failed": False, "error": None},  # explicitly not failed
        {"id": "id7", "caption": "fine too", "error": ""},
    ]
    loaded = load_predictions(write(tmp_path, rows), dataset(8))
    assert loaded == {"id6": ["fine"], "id7": ["fine too"]}
    assert loaded.failed == {
        "id0": "empty response",
        "id1": "empty response",
        "id2": "lmms-eval request failed",
        "id3": "error",
        "id4": "failed: true",
        "id5": "empty response",
    }
    assert loaded.n_failed_generations == 1 + 1 + 1 + 1 + 1 + 2 and loaded.n_generations == 5 + 3 + 2
    assert loaded.failure_summary()["failed_by_reason"] == {
        "empty response": 3,
        "error": 1,
        "failed: true": 1,
        "lmms-eval request failed": 1,
    }


def test_a_row_without_a_caption_is_missing_not_predicted(tmp_path):
    path = write(tmp_path, [{"id": "id0", "caption": "a"}, {"id": "id1", "captions": []}])
    with pytest.raises(DataValidationError, match=r"1 of 2 dataset id\(s\) have no prediction \(first: 'id1'"):
        load_predictions(path, dataset(2))
    loaded = load_predictions(path, dataset(2), allow_missing=True)
    assert loaded == {"id0": ["a"]} and loaded.failed == {}


def test_an_empty_predictions_file_is_an_error_even_with_allow_missing(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n \n")
    with pytest.raises(DataValidationError, match="holds no prediction rows"):
        load_predictions(path, dataset(2), allow_missing=True)


def test_failed_images_are_left_out_of_the_metrics_not_scored_zero(tmp_path):
    # Two images with one toy each. Old behaviour: the failed one scored as a caption naming nothing (TTS 50).
    toy = ToyAnnotation("积木", "low", "foreground")
    records = [EcacRecord(f"id{i}", f"/x/{i}.png", "classroom", "a", "ref", "test", (toy,)) for i in range(2)]
    data = EcacDataset(records, "/x/d.jsonl", "d", "0" * 64)
    path = write(tmp_path, [{"id": "id0", "caption": "孩子在玩积木"}, {"id": "id1", "caption": MARKER}])
    result = score_captions(data, load_predictions(path, data))
    assert result.metrics["tts"] == 100.0 and result.metrics["reward"] == 1.0
    assert result.coverage["metric_images"]["tts"] == 1
    assert {k: result.coverage[k] for k in ("images", "predicted", "failed_images", "n_failed_generations")} == {
        "images": 2,
        "predicted": 1,
        "failed_images": 1,
        "n_failed_generations": 1,
    }
    assert result.coverage["missing"] == 0


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty response"),
        ("\u3000 ", "empty response"),
        (MARKER, "lmms-eval request failed"),
        ("幼儿 \ud800", "not Unicode text"),
        ("ok", None),
        ("幼儿在建构区搭积木", None),
    ],
)
def test_generation_failure(text, reason):
    assert generation_failure(text) == reason


@pytest.mark.parametrize(
    ("flag", "failed", "total", "exceeded"),
    [("0", 1, 10, True), ("0", 0, 10, False), ("2", 2, 10, False), ("2", 3, 10, True), ("0.25", 2, 10, False),
     ("0.25", 3, 10, True), ("1", 1, 1, False)],
)  # fmt: skip
def test_failure_allowance(flag, failed, total, exceeded):
    assert FailureAllowance.parse(flag).exceeded(failed, total) is exceeded


@pytest.mark.parametrize("flag", ["-1", "1.5", "nan", "inf", "many"])
def test_failure_allowance_rejects_other_values(flag):
    with pytest.raises(ValueError, match="--allow-failed: expected a count"):
        FailureAllowance.parse(flag)


def test_missing_ids_error_lists_count_and_first_few(tmp_path):
    path = write(tmp_path, [{"id": "id0", "caption": "a"}])
    with pytest.raises(DataValidationError) as info:
        load_predictions(path, dataset(10))
    message = str(info.value)
    assert "9 of 10 dataset id(s) have no prediction" in message and "'id1'" in message and "--allow-missing" in message
    assert "'id9'" not in message  # only the first few are listed
    assert load_predictions(path, dataset(10), allow_missing=True) == {"id0": ["a"]}


def test_unknown_ids_are_an_error(tmp_path):
    path = write(tmp_path, [{"id": "id0", "caption": "a"}, {"id": "zzz", "caption": "b"}])
    with pytest.raises(DataValidationError, match=r"1 id\(s\) not in dataset.*'zzz' \(line 2\)"):
        load_predictions(path, dataset(1))


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("{oops", "<json>", "invalid JSON"),
        ('"just a string"', "<record>", "must be a JSON object"),
        ({"caption": "a"}, "id", "missing"),
        ({"id": "id1"}, "caption", "missing"),
        ({"id": "id1", "caption": 3}, "caption", "must be a string"),
        ({"id": "id1", "captions": "a"}, "captions", "list of strings"),
        ({"id": "id1", "caption": "a", "captions": ["b"]}, "caption", "not both"),
        ({"id": "id0", "caption": "again"}, "id", "duplicate id 'id0' (first at line 1)"),
        ({"id": "id1", "caption": "a", "failed": "yes"}, "failed", "must be true or false"),
    ],
)
def test_malformed_rows_name_line_and_field(tmp_path, row, field, message):
    path = write(tmp_path, [{"id": "id0", "caption": "a"}, row])
    with pytest.raises(DataValidationError) as info:
        load_predictions(path, dataset(2), allow_missing=True)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (2, field) and message in problem.message


def _load_both_ways(path, data, allow_missing):
    """load_predictions with the typed path, then with the detailed reading alone (the code before the fast path):
    each outcome is (captions, failed, counts) or the problems raised."""
    import ecac_bench.predictions as predictions_module

    def outcome():
        try:
            loaded = load_predictions(path, data, allow_missing=allow_missing)
        except DataValidationError as exc:
            return exc.problems, exc.truncated
        return dict(loaded), loaded.failed, loaded.n_failed_generations, loaded.n_generations

    typed = outcome()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predictions_module, "typed_jsonl_rows", lambda data, decoder: None)
        return typed, outcome()


_CAPTIONS = st.sampled_from(["积木", "a car", "x", "孩子", "", " \t", MARKER, "  " + MARKER] + ["ok"] * 12)


@st.composite
def _prediction_rows(draw):
    """Mostly well-formed one-caption rows for the ids of dataset(4) (the typed path's files), sometimes another
    form, a failure, a duplicate, an unknown id, an extra field, a broken line."""
    rows = [{"id": f"id{i}", "caption": draw(_CAPTIONS)} for i in range(4) if draw(st.integers(0, 9))]
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        row = draw(
            st.sampled_from(
                [
                    {"id": "id1", "captions": ["a", "b"]},
                    {"id": "id2", "error": "timeout"},
                    {"id": "id3", "caption": "x", "failed": True},
                    {"id": "id0", "caption": "again"},
                    {"id": "zzz", "caption": "x"},
                    {"id": "id2", "caption": "x", "model": "m"},
                    {"id": "", "caption": "x"},
                    "{broken",
                ]
            )
        )
        rows.insert(draw(st.integers(0, len(rows))), row)
    return draw(st.permutations(rows))


@given(_prediction_rows(), st.booleans())
@settings(max_examples=300, deadline=None)
def test_typed_path_agrees_with_the_detailed_reading(rows, allow_missing):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        typed, detailed = _load_both_ways(write(Path(tmp), rows), dataset(4), allow_missing)
    assert typed == detailed
