"""The ECAC data format: loading JSONL / Parquet / saved datasets, and every validation error."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecac_bench import SAMPLE_DATA, DataValidationError, load_dataset, validate_dataset
from ecac_bench.data import MAX_PROBLEMS, _Validator, has_visible_character

GOOD = {
    "id": "a",
    "image": "images/a.png",
    "category": "classroom",
    "area": "美工区",
    "caption": "ref",
    "split": "test",
    "toys": [{"name": "彩泥", "level": "medium", "ground": "foreground", "aliases": ["橡皮泥"]}],
}


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


def with_(**changes):
    row = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        if value is ...:
            row.pop(key)
        else:
            row[key] = value
    return row


def _toy(name, level="low", ground="background", aliases=None):
    toy = {"name": name, "level": level, "ground": ground}
    if aliases is not None:
        toy["aliases"] = aliases
    return toy


def problems_of(tmp_path, rows):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataValidationError) as info:
        load_dataset(path)
    return path, info.value.problems


def test_sample_loads_and_is_labelled():
    ds = load_dataset()
    assert ds.name == "ecac-sample" and len(ds) >= 36
    assert {r.category for r in ds} == {"outdoor", "classroom", "specialty"}
    assert {(t.level, t.ground) for r in ds for t in r.toys} == {
        (lv, g) for lv in ("low", "medium", "high") for g in ("foreground", "background")
    }
    assert any(r.caption.isascii() for r in ds) and any(not r.caption.isascii() for r in ds)
    assert all(r.image.is_file() for r in ds)
    assert validate_dataset(SAMPLE_DATA, check_images=True) == []
    assert {len(load_dataset(split="test")), len(load_dataset(split="train"))} <= {len(ds)} | set(range(1, len(ds)))


def test_image_paths_resolve_against_the_data_folder(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, with_(id="b", image="/abs/b.png")])
    ds = load_dataset(path)
    assert ds.records[0].image == tmp_path / "images" / "a.png"
    assert str(ds.records[1].image) == "/abs/b.png"
    assert ds.records[0].toys[0].aliases == ("橡皮泥",)
    assert ds.toy_vocabulary() == ["彩泥", "橡皮泥"]
    assert len(ds.sha256) == 64


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ("{not json", "<json>", "invalid JSON"),
        ("[1, 2]", "<record>", "must be a JSON object"),
        (with_(id=...), "id", "missing"),
        (with_(id=""), "id", "is empty"),
        (with_(id=7), "id", "must be a string"),
        (with_(category="kitchen"), "category", "unknown category 'kitchen'"),
        (with_(category=...), "category", "unknown category None"),
        (with_(area=""), "area", "is empty"),
        (with_(caption=...), "caption", "missing"),
        (with_(image=3), "image", "must be a string"),
        (with_(split=1), "split", "must be a string"),
        (with_(toys=...), "toys", "missing"),
        (with_(toys="彩泥"), "toys", "must be a list"),
        (with_(toys=["彩泥"]), "toys[0]", "must be an object"),
        (with_(toys=[{"name": "", "level": "low", "ground": "foreground"}]), "toys[0].name", "empty toy name"),
        (with_(toys=[{"level": "low", "ground": "foreground"}]), "toys[0].name", "empty toy name"),
        (with_(toys=[{"name": "x", "level": "expert", "ground": "foreground"}]), "toys[0].level", "unknown level"),
        (with_(toys=[{"name": "x", "level": "low", "ground": "middle"}]), "toys[0].ground", "unknown ground"),
        (
            with_(toys=[{"name": "x", "level": "low", "ground": "foreground", "aliases": "y"}]),
            "toys[0].aliases",
            "must be a list",
        ),
        (
            with_(toys=[{"name": "x", "level": "low", "ground": "foreground", "aliases": ["", "y"]}]),
            "toys[0].aliases[0]",
            "non-empty",
        ),
        (
            with_(toys=[{"name": "\u200b", "level": "low", "ground": "foreground"}]),
            "toys[0].name",
            "no visible character",
        ),
        (
            with_(toys=[{"name": "x", "level": "low", "ground": "foreground", "aliases": ["y", "\u2060\ufeff"]}]),
            "toys[0].aliases[1]",
            "no visible character",
        ),
        (
            with_(toys=[{"name": "积木", "level": "low", "ground": "foreground"}, _toy("ＬＥＧＯ", aliases=["积木 "])]),
            "toys[1].aliases[0]",
            "'积木 ' and toys[0].name '积木' both normalise to '积木'",
        ),
    ],
)
def test_each_validation_error_names_file_line_and_field(tmp_path, row, field, message):
    path, problems = problems_of(tmp_path, [GOOD | {"id": "ok"}, row])
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.file == str(path) and problem.line == 2 and problem.field == field
    assert message in problem.message
    assert f"{path}:line 2: field '{field}'" in str(problem)


def test_an_empty_file_is_an_error_not_zero_records(tmp_path):
    for text in ("", "\n  \n\t\n"):
        path = tmp_path / "d.jsonl"
        path.write_text(text)
        (problem,) = validate_dataset(path)
        assert (problem.file, problem.line, problem.field) == (str(path), None, "<file>")
        assert "holds no records" in str(problem)
        with pytest.raises(DataValidationError, match="holds no records"):
            load_dataset(path)


def test_an_image_s_toys_are_a_set(tmp_path):
    # Same name in both grounds (F ∩ B must be empty), a name equal to another toy's alias after NFKC + lower-case,
    # and (allowed) one toy listing its own name again as an alias.
    rows = [
        with_(id="a", toys=[_toy("积木", ground="foreground"), _toy("积木")]),
        with_(id="b", toys=[_toy("Lego"), _toy("blocks", aliases=["ｌｅｇｏ"])]),
        with_(id="c", toys=[_toy("剪刀", aliases=["剪刀", "剪子"]), _toy("胶水")]),
    ]
    _, problems = problems_of(tmp_path, rows)
    assert [(p.line, p.field) for p in problems] == [(1, "toys[1].name"), (2, "toys[1].aliases[0]")]
    assert "toys[0].name '积木'" in problems[0].message and "'ｌｅｇｏ' and toys[0].name 'Lego'" in problems[1].message
    assert len(load_dataset(write_jsonl(tmp_path / "ok.jsonl", [rows[2]])).records[0].toys) == 2


@given(
    st.text(
        alphabet=st.sampled_from(
            [
                "\u200b",
                "\u200c",
                "\u200d",
                "\u2060",
                "\ufeff",
                "\u00ad",
                "\u180e",
                "\x00",
                "\x1f",
                "\x7f",
                "\u3164",
                "\uffa0",
                "\u2800",
                " ",
                "\u3000",
                "\t",
                "\u202e",
                "\U000e0001",
                "\ue000",
            ]
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=200, deadline=None)
def test_a_name_with_no_visible_character_is_rejected_wherever_it_appears(name):
    assert not has_visible_character(name)
    for toy in (_toy(name), _toy("x", aliases=[name])):
        checked = _Validator("f", Path("/d"), "line")
        row = with_(toys=[toy])
        assert checked.record_checked(row, 1) is None
        (problem,) = checked.problems
        assert problem.field in ("toys[0].name", "toys[0].aliases[0]")
        assert "visible" in problem.message or "empty" in problem.message
    assert has_visible_character(name + "积") and has_visible_character("·") and has_visible_character("1")


def test_duplicate_id_points_at_the_first(tmp_path):
    _, problems = problems_of(tmp_path, [GOOD, GOOD])
    assert [(p.line, p.field) for p in problems] == [(2, "id")]
    assert "first at line 1" in problems[0].message


def test_all_problems_are_reported_not_just_the_first(tmp_path):
    rows = [with_(id=f"r{i}", category="bad") for i in range(5)] + ["{", with_(id="z", toys=5)]
    _, problems = problems_of(tmp_path, rows)
    assert [p.line for p in problems] == [1, 2, 3, 4, 5, 6, 7]


def test_problem_list_is_capped(tmp_path):
    rows = [with_(id=f"r{i}", category="bad") for i in range(MAX_PROBLEMS + 50)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataValidationError) as info:
        load_dataset(path)
    assert len(info.value.problems) == MAX_PROBLEMS and info.value.truncated
    assert len(validate_dataset(path)) == MAX_PROBLEMS


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(with_(id="b", level=1, category="x")) + "\n")
    problems = validate_dataset(path)
    assert [(p.line, p.field) for p in problems] == [(3, "category")]


def test_nothing_is_coerced(tmp_path):
    # A numeric id or a toy level in upper case is an error, not silently fixed.
    _, problems = problems_of(
        tmp_path, [with_(id=1), with_(id="b", toys=[{"name": "x", "level": "LOW", "ground": "foreground"}])]
    )
    assert [p.field for p in problems] == ["id", "toys[0].level"]


def test_validate_checks_images_and_missing_file(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    problems = validate_dataset(path, check_images=True)
    assert [(p.line, p.field) for p in problems] == [(1, "image")]
    assert validate_dataset(tmp_path / "nope.jsonl")[0].message == "does not exist"
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "nope.jsonl")


def test_unknown_format_and_missing_split(tmp_path):
    bad = tmp_path / "d.csv"
    bad.write_text("id\n")
    with pytest.raises(ValueError, match="unknown data format"):
        load_dataset(bad)
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    with pytest.raises(ValueError, match="no record has split 'train'"):
        load_dataset(path, split="train")


def test_parquet_round_trip_and_row_numbers(tmp_path):
    pd = pytest.importorskip("pandas")
    rows = [GOOD, with_(id="b", toys=[{"name": "积木", "level": "low", "ground": "background", "aliases": None}])]
    path = tmp_path / "d.parquet"
    pd.DataFrame(rows).to_parquet(path)
    ds = load_dataset(path)
    assert [r.id for r in ds] == ["a", "b"] and ds.records[1].toys[0].aliases == ()
    bad = tmp_path / "bad.parquet"
    pd.DataFrame([GOOD, with_(id="b", category="kitchen")]).to_parquet(bad)
    problems = validate_dataset(bad)
    assert [(p.unit, p.line, p.field) for p in problems] == [("row", 2, "category")]


def test_saved_hf_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    no_split = {k: v for k, v in GOOD.items() if k != "split"}
    dd = datasets.DatasetDict(
        {"test": datasets.Dataset.from_list([no_split]), "train": datasets.Dataset.from_list([no_split | {"id": "t"}])}
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    ds = load_dataset(tmp_path / "saved", split="train")
    assert [r.id for r in ds] == ["t"] and ds.records[0].split == "train"
    assert ds.records[0].image == tmp_path / "saved" / "images" / "a.png"


def test_fast_path_does_not_accept_what_the_checks_reject(tmp_path):
    # A valid toy with aliases ["y"] is cached first; the same toy with aliases "y" (a string) must still fail.
    good = with_(id="a", toys=[{"name": "x", "level": "low", "ground": "foreground", "aliases": ["y"]}])
    bad = with_(id="b", toys=[{"name": "x", "level": "low", "ground": "foreground", "aliases": "y"}])
    dup = with_(id="a")
    _, problems = problems_of(tmp_path, [good, bad, dup])
    assert [(p.line, p.field) for p in problems] == [(2, "toys[0].aliases"), (3, "id")]


_JUNK = st.one_of(
    st.none(),
    st.integers(),
    st.sampled_from(["", " ", "\u200b", "LOW", "kitchen", "middle"]),
    st.lists(st.text(max_size=2)),
)


@st.composite
def _toy_dicts(draw):
    toy = {  # few names: two toys of a record often share one, which must be rejected by both paths
        "name": draw(st.sampled_from(["x", "积木", "lego", "LEGO", "\u200b"])),
        "level": draw(st.sampled_from(["low", "medium", "high"])),
        "ground": draw(st.sampled_from(["foreground", "background"])),
    }
    if draw(st.booleans()):
        toy["aliases"] = draw(st.lists(st.sampled_from(["y", "z", "x", "\u2060"]), max_size=2))
    return _mutated(draw, toy)


def _mutated(draw, obj):
    """Mostly valid; sometimes a key dropped or its value replaced by junk (including a string for a list)."""
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        key = draw(st.sampled_from(sorted(obj)))
        if draw(st.booleans()):
            del obj[key]
            if not obj:
                break
        else:
            obj[key] = draw(st.one_of(_JUNK, st.just("y")))
    return obj


@st.composite
def _rows(draw):
    row = {
        "id": draw(st.sampled_from(["a", "b", "c"])),
        "image": draw(st.sampled_from(["i.png", "/abs/i.png"])),
        "category": draw(st.sampled_from(["outdoor", "classroom", "specialty"])),
        "area": "美工区",
        "caption": "ref",
        "split": draw(st.sampled_from([None, "test"])),
        "toys": draw(st.lists(_toy_dicts(), max_size=3)),
    }
    return _mutated(draw, row)


@given(st.lists(_rows(), max_size=8))
@settings(max_examples=300, deadline=None)
def test_fast_path_agrees_with_the_detailed_checks(rows):
    """Every row is parsed both ways on twin validators: the fast path either defers or builds the same record.

    Identical toys and repeated ids across rows exercise the toy cache and the duplicate check of the fast path."""
    fast_side, checked_side = _Validator("f", Path("/d"), "line"), _Validator("f", Path("/d"), "line")
    for line, row in enumerate(rows, start=1):
        fast = fast_side.record_fast(row, line) or fast_side.record_checked(row, line)
        checked = checked_side.record_checked(row, line)
        assert fast == checked
        assert fast_side.problems == checked_side.problems


def test_name_masks_that_share_a_bit_only_cost_time(tmp_path, monkeypatch):
    # With 2 bits, names 0 and 2 share a bit: the fast path defers, the detailed checks accept the distinct names.
    import ecac_bench.data as data_module

    monkeypatch.setattr(data_module, "_NAME_BITS", 2)
    rows = [with_(id="a", toys=[_toy("x"), _toy("y")]), with_(id="b", toys=[_toy("x"), _toy("z")])]
    fast, checked = _Validator("f", Path("/d"), "line"), _Validator("f", Path("/d"), "line")
    for line, row in enumerate(rows, start=1):
        assert (fast.record_fast(row, line) or fast.record_checked(row, line)) == checked.record_checked(row, line)
    assert fast.problems == [] and fast.record_fast(with_(id="c", toys=[_toy("x"), _toy("z")]), 3) is None
    assert fast.record_fast(with_(id="d", toys=[_toy("x"), _toy("y")]), 4) is not None


def _detailed_parse(path):
    """What _parse gives with the typed path turned off: the detailed checks alone (the code before the fast path)."""
    import ecac_bench.data as data_module

    typed, data_module.typed_jsonl_rows = data_module.typed_jsonl_rows, lambda data, decoder: None
    try:
        return data_module._parse(path)
    finally:
        data_module.typed_jsonl_rows = typed


def _assert_typed_path_agrees(path):
    """The typed path either declines the file (None: the detailed checks read it) or gives the records, lines and
    identity that the detailed checks give, and then the detailed checks found no problem."""
    from ecac_bench.data import RecordColumns, _parse, dataset_identity

    parsed, validator = _parse(path)
    detailed, checked = _detailed_parse(path)
    assert validator.problems == checked.problems
    if isinstance(parsed, RecordColumns):
        assert checked.problems == [] and parsed.records() == detailed
        lines = validator.record_lines or range(1, len(detailed) + 1)
        assert list(lines) == [checked.first_seen[r.id] for r in detailed]
        assert parsed.identity() == dataset_identity(detailed)
    else:
        assert parsed == detailed


@given(
    st.lists(_rows(), max_size=8),
    st.lists(st.sampled_from(["", " \r", "{", "[1]", '{"id": "z"} {"id": "y"}']), max_size=2),
)
@settings(max_examples=300, deadline=None)
def test_typed_path_agrees_with_the_detailed_checks(rows, junk):
    """The same rows as above, written as a file (unique ids, so that the typed path often takes the whole file;
    sometimes with blank, broken or doubled lines): a file's records and problems do not depend on the path."""
    import tempfile

    for i, row in enumerate(rows):
        if isinstance(row.get("id"), str) and i % 3:
            row["id"] = f"{row['id']}{i}"
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    for k, extra in enumerate(junk):
        lines.insert(k % (len(lines) + 1), extra)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _assert_typed_path_agrees(path)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(GOOD) + "\n\n  \r\n" + json.dumps(with_(id="b")) + "\r\n",  # blank lines, CRLF
        json.dumps(GOOD) + "\n" + json.dumps(with_(id="b")),  # no newline at the end
        json.dumps(GOOD) + " " + json.dumps(with_(id="b")) + "\n",  # two values on one line
        json.dumps(GOOD, indent=1) + "\n",  # one value over several lines
        "\ufeff" + json.dumps(GOOD) + "\n",  # a byte order mark
        json.dumps(with_(extra={"note": 1e999})) + "\n",  # a field the typed rows do not declare
        json.dumps(with_(toys=[{"name": "x", "level": "low", "ground": "foreground", "note": "n"}])) + "\n",
        json.dumps(GOOD) + "\n" + json.dumps(with_(id="b", group="g", reviewed=["toys", "caption"], split=None)),
        json.dumps(with_(id="b")) + "\n" + json.dumps(GOOD) + "\n",  # ids out of order
        json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n",  # a duplicate id
    ],
)
def test_typed_path_reads_lines_as_the_detailed_path_does(tmp_path, text):
    path = tmp_path / "d.jsonl"
    path.write_text(text, encoding="utf-8")
    _assert_typed_path_agrees(path)


def test_invalid_utf8_in_any_field_is_an_error_on_every_path(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(
        json.dumps(GOOD).encode() + b"\n" + json.dumps(with_(id="b", note="@")).encode().replace(b"@", b"\xff") + b"\n"
    )
    _assert_typed_path_agrees(path)
    (problem,) = validate_dataset(path)
    assert (problem.line, problem.field) == (2, "<json>")


def test_typed_path_decodes_each_toy_text_once_and_one_toy_written_two_ways_is_one_toy(tmp_path):
    from ecac_bench.data import RecordColumns, _parse

    toy = {"name": "积木", "level": "low", "ground": "background"}
    spaced = json.dumps(with_(id="b", toys=[toy]))  # json.dumps puts a space after ':' and ','
    compact = json.dumps(with_(id="c", toys=[toy]), separators=(",", ":"), ensure_ascii=False)
    path = tmp_path / "d.jsonl"
    path.write_text(f"{json.dumps(GOOD)}\n{spaced}\n{compact}\n", encoding="utf-8")
    _assert_typed_path_agrees(path)
    columns, _ = _parse(path)
    assert isinstance(columns, RecordColumns)
    assert [t.name for t in columns.toys.table] == ["彩泥", "积木"] and columns.toys.index.tolist() == [0, 1, 1]
    for bad_toy in (5, [toy], {**toy, "level": "huge"}, {**toy, "extra": 1}):
        path.write_text(f"{json.dumps(GOOD)}\n{json.dumps(with_(id='b', toys=[toy, bad_toy]))}\n", encoding="utf-8")
        parsed, validator = _parse(path)  # a toy that does not decode: the detailed checks name it
        assert not isinstance(parsed, RecordColumns) and validator.problems
        _assert_typed_path_agrees(path)


def test_typed_jsonl_rows_line_numbers_and_refusals():
    from ecac_bench.data import _RECORD_DECODER, _lines_of_objects, typed_jsonl_rows

    row = json.dumps(GOOD).encode()
    rows, lines = typed_jsonl_rows(row + b"\n\n \t\n" + row + b"\n", _RECORD_DECODER)
    assert [r.id for r in rows] == ["a", "a"] and lines == [1, 4]
    assert typed_jsonl_rows(row + b"\n" + row, _RECORD_DECODER)[1] is None  # no blank line: row i is line i + 1
    assert typed_jsonl_rows(b"", _RECORD_DECODER) == ([], None)
    for bad in (row + b" " + row, row[:-1] + b"\n}", json.dumps(with_(x=1)).encode()):
        assert typed_jsonl_rows(bad + b"\n", _RECORD_DECODER) is None
    # Two values on one line and one value over two lines: as many values as lines, and still refused line by line.
    split = row.replace(b', "toys": [', b', "toys":\n[')
    assert split.count(b"\n") == 1
    for balanced in (row + b" " + row + b"\n" + split, split + b"\n" + row + row):
        assert typed_jsonl_rows(balanced + b"\n", _RECORD_DECODER) is None
    # One record per line with "}\n{" between them: read in one call, with the same rows and lines.
    assert _lines_of_objects(row + b"\n" + row + b"\n") == _lines_of_objects(row + b"\n" + row) == 2
    assert _lines_of_objects(row + b"\r\n" + row) == _lines_of_objects(row + b"\n\n" + row) == 0
    assert _lines_of_objects(b" " + row) == _lines_of_objects(row + b" \n") == _lines_of_objects(b"") == 0
    rows, lines = typed_jsonl_rows(row + b"\n" + row.replace(b'"a"', b'"b"', 1) + b"\n", _RECORD_DECODER)
    assert [r.id for r in rows] == ["a", "b"] and lines is None


def test_a_dataset_read_by_columns_builds_its_records_on_first_use(tmp_path):
    from ecac_bench.data import dataset_identity

    ds = load_dataset(SAMPLE_DATA)
    assert ds.columns is not None and len(ds) == 60 and ds.ids[0] == ds.columns.ids[0]
    sha = ds.sha256
    assert sha == dataset_identity(_detailed_parse(SAMPLE_DATA)[0])
    records = ds.records
    assert ds.columns is None and ds.records is records and records == _detailed_parse(SAMPLE_DATA)[0]
    assert ds.describe()["size"] == 60 and ds.by_id[records[3].id] is records[3]
    ds.records = records[:5]
    assert (
        len(ds) == 5
        and ds.sha256 == dataset_identity(records[:5]) != sha
        and set(ds.by_id) == {r.id for r in records[:5]}
    )
    for split in ("test", "train"):
        assert load_dataset(SAMPLE_DATA, split=split).records == [r for r in records if r.split == split]
    assert load_dataset(SAMPLE_DATA, split="test").sha256 == dataset_identity([r for r in records if r.split == "test"])


def test_column_identity_does_not_depend_on_record_order():
    import random

    from ecac_bench.data import RecordColumns, dataset_identity

    columns = load_dataset(SAMPLE_DATA).columns
    order = list(range(len(columns)))
    random.Random(3).shuffle(order)
    shuffled = RecordColumns(
        *([column[i] for i in order] for column in (columns.ids, columns.images)),
        columns.base_prefix,
        *(
            [column[i] for i in order]
            for column in (columns.categories, columns.areas, columns.captions, columns.splits)
        ),
        columns.toys.reorder(order),
    )
    records = columns.records()
    assert shuffled.records() == [records[i] for i in order]
    assert shuffled.identity() == columns.identity() == dataset_identity(records)
    keep = np.array([i % 3 == 0 for i in range(len(columns))])
    assert columns.take(keep).records() == [r for r, k in zip(records, keep) if k]


_NAMES = st.sampled_from(
    ["积木", "积木 ", "lego", "LEGO", "ｌｅｇｏ", "unit blocks", "unit  blocks", "彩泥", "ﬁsh", "fish"]
)


@st.composite
def _valid_rows(draw):
    """Well-formed rows with unique ids, whose toys often share a name once normalised (an error only the set check
    finds): the files the typed path takes whole, or declines for that one reason."""
    rows = []
    for i in range(draw(st.integers(1, 6))):
        toys = [
            {
                "name": draw(_NAMES),
                "level": draw(st.sampled_from(["low", "medium", "high"])),
                "ground": draw(st.sampled_from(["foreground", "background"])),
                **({"aliases": draw(st.lists(_NAMES, max_size=2))} if draw(st.booleans()) else {}),
            }
            for _ in range(draw(st.integers(0, 3)))
        ]
        rows.append(with_(id=f"r{draw(st.integers(0, 3))}-{i}", toys=toys))
    return rows


@given(_valid_rows(), st.booleans())
@settings(max_examples=200, deadline=None)
def test_typed_path_checks_that_an_image_s_toys_are_a_set(rows, one_bit):
    """As above, on well-formed files; with ``one_bit`` every name sets the same bit of the toy masks, so that every
    image with two toys takes the exact comparison of their names."""
    import tempfile

    from ecac_bench.data import _Validator

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        if one_bit:
            patch.setattr(_Validator, "_mask64", lambda self, toy: 1)
        path = Path(tmp) / "d.jsonl"
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
        _assert_typed_path_agrees(path)
