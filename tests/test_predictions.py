"""Predictions files: both row forms, missing and unknown ids, malformed rows."""

import json

import pytest

from ecac_bench import DataValidationError, EcacDataset, EcacRecord, load_predictions


def dataset(n=3):
    records = [EcacRecord(f"id{i}", f"/x/{i}.png", "classroom", "a", "ref", "test", ()) for i in range(n)]
    return EcacDataset(records, "/x/d.jsonl", "d", "0" * 64)


def write(tmp_path, rows):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_single_and_multiple_captions(tmp_path):
    path = write(
        tmp_path, [{"id": "id0", "caption": "a"}, {"id": "id1", "captions": ["b", "c"]}, {"id": "id2", "caption": ""}]
    )
    assert load_predictions(path, dataset()) == {"id0": ["a"], "id1": ["b", "c"], "id2": [""]}


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
    ],
)
def test_malformed_rows_name_line_and_field(tmp_path, row, field, message):
    path = write(tmp_path, [{"id": "id0", "caption": "a"}, row])
    with pytest.raises(DataValidationError) as info:
        load_predictions(path, dataset(2), allow_missing=True)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (2, field) and message in problem.message
