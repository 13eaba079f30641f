"""`ecac-bench annotate` on the bundled synthetic images against a scripted annotator (tests/judge_server.py's
responder): strict answers and counted failures, the output validates and scores, a SIGKILLed run resumes without
re-sending anything, the review CSV round-trips, the split never leaks a group; and the `reviewed` / `group`
fields of the data format."""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from judge_server import JudgeServer

from ecac_bench.annotate.answers import TOYS_SCHEMA, parse_caption, parse_scene, parse_toys
from ecac_bench.annotate.inputs import photos_from_folder, photos_from_jsonl
from ecac_bench.annotate.review import neutralise, restore
from ecac_bench.annotate.split import assign_splits, parse_fractions
from ecac_bench.cli import main
from ecac_bench.data import SAMPLE_DATA, DataValidationError, load_dataset, toy_list_problems, validate_dataset
from ecac_bench.prompts import load_prompt
from ecac_bench.report import harness

SAMPLE_ROWS = {r["id"]: r for r in map(json.loads, SAMPLE_DATA.read_text(encoding="utf-8").splitlines())}
IMAGES = SAMPLE_DATA.parent / "images"
VLM_KEY = "sk-ANNOTATE-SENTINEL-7f3a"


def sample_toys(image_id: str) -> list[dict[str, Any]]:
    return SAMPLE_ROWS[image_id]["toys"]


# -- the scripted annotator ----------------------------------------------------------------------------------


def _text(message: dict[str, Any]) -> str:
    content = message["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content if p["type"] == "text")


class FakeAnnotator:
    """Answers the three annotate prompts with the sample's own annotations of the photo it is shown (found by the
    hash of the image bytes the client sent), except where ``faults`` script otherwise:

    * ``"toys-broken-once"``: the first toy answer has an unknown level, the repair turn is right;
    * ``"toys-garbage"``: every toy answer is prose (the photo fails after its repair turns);
    * ``"toys-clash"``: the first toy answer lists one toy twice, once per ground (an image's toys are a set);
    * ``"toys-wrapped"``: a <think> block and a ```json fence around the right answer (accepted as it is);
    * ``"caption-400"``: the caption request is refused with HTTP 400 (the photo fails; nothing is guessed).
    """

    def __init__(self) -> None:
        self.by_hash = {
            hashlib.sha256((SAMPLE_DATA.parent / r["image"]).read_bytes()).hexdigest(): r for r in SAMPLE_ROWS.values()
        }
        self.faults: dict[str, str] = {}
        self.log: list[tuple[str, str, int]] = []  # (image id, step, round)

    def identify(self, messages: list[dict[str, Any]]) -> tuple[dict[str, Any], str, int]:
        first = messages[0]
        url = next(p["image_url"]["url"] for p in first["content"] if p["type"] == "image_url")
        record = self.by_hash[hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()]
        prompt = _text(first)
        step = "toys" if '"toys"' in prompt else "scene" if '"category"' in prompt else "caption"
        return record, step, sum(m["role"] == "assistant" for m in messages)

    def fail_with(self, messages: list[dict[str, Any]]) -> int | None:
        record, step, _ = self.identify(messages)
        return 400 if step == "caption" and self.faults.get(record["id"]) == "caption-400" else None

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        record, step, rnd = self.identify(messages)
        self.log.append((record["id"], step, rnd))
        fault = self.faults.get(record["id"])
        if step == "caption":
            return record["caption"]
        if step == "scene":
            return json.dumps({"category": record["category"], "area": record["area"]}, ensure_ascii=False)
        toys = [{**t, "aliases": t.get("aliases") or []} for t in record["toys"]]
        answer = json.dumps({"toys": toys}, ensure_ascii=False)
        if fault == "toys-garbage":
            return "The photo shows children playing happily with several toys."
        if fault == "toys-broken-once" and rnd == 0:
            return json.dumps({"toys": [{**toys[0], "level": "expert"}, *toys[1:]]}, ensure_ascii=False)
        if fault == "toys-clash" and rnd == 0:
            other = "background" if toys[0]["ground"] == "foreground" else "foreground"
            return json.dumps({"toys": [*toys, {**toys[0], "ground": other}]}, ensure_ascii=False)
        if fault == "toys-wrapped":
            return f"<think>Let me look at the photo.</think>\n```json\n{answer}\n```"
        return answer


@pytest.fixture(scope="module")
def annotator():
    fake = FakeAnnotator()
    with JudgeServer() as server:
        server.state.responder = fake
        server.state.fail_with = fake.fail_with
        server.state.keep_bodies = True
        yield server, fake


@pytest.fixture
def fake(annotator):
    server, fake = annotator
    server.wait_idle()
    server.state.reset()
    server.state.latency = 0.0
    server.state.structured = "accept"
    fake.faults = {}
    fake.log.clear()
    return server, fake


def llm_flags(server: JudgeServer, cache: Path) -> list[str]:
    return [
        "--vlm-base-url",
        server.base_url,
        "--vlm-model",
        "fake-annotator",
        "--cache-dir",
        str(cache),
        "--no-progress",
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def flat(text: str) -> str:
    """Console output without the line breaks rich adds at the terminal width."""
    return " ".join(text.split())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# -- strict answers ------------------------------------------------------------------------------------------


def test_toy_answers_are_read_by_the_projects_strict_reader():
    """The annotator reads its JSON through ecac_bench.llm.parsing.json_answer (pinned in test_llm_parsing): the
    value alone, a reasoning block and one enclosing fence aside."""
    assert parse_toys('{"toys": []}') == ([], None)
    assert parse_toys('<think>hm {"x": 1}</think>\n {"toys": []} ') == ([], None)
    assert parse_toys('```json\n{"toys": []}\n```') == ([], None)
    for text in (
        'Here you go: {"toys": []}',
        '{"toys": []} Hope this helps!',
        '```json\n{"toys": []}\n``` and more',
        "<think>x</think>",
        '{"toys": [NaN]}',
    ):
        value, problem = parse_toys(text)
        assert value is None and problem, text


def toy(name: str, level: str = "low", ground: str = "foreground", **extra: Any) -> dict[str, Any]:
    return {"name": name, "level": level, "ground": ground, **extra}


def answer(*toys: dict[str, Any]) -> str:
    return json.dumps({"toys": list(toys)}, ensure_ascii=False)


def test_parse_toys_validates_every_item():
    assert parse_toys(answer()) == ([], None)
    parsed, problem = parse_toys(answer(toy(" 彩泥 ", "medium", aliases=[" 橡皮泥", ""][:1]), toy("积木", aliases=[])))
    assert problem is None
    assert parsed == [toy("彩泥", "medium", aliases=["橡皮泥"]), toy("积木")]  # trimmed; empty aliases left out
    for text, reason in [
        (json.dumps([toy("积木")], ensure_ascii=False), 'expected the object {"toys": [...]}'),
        (json.dumps({"toys": [], "category": "outdoor"}), 'expected the object {"toys": [...]}'),
        (json.dumps({"toys": {"name": "积木"}}, ensure_ascii=False), '"toys" must be a list'),
        (answer("积木"), "toys[0]: must be an object"),
        (answer(toy("积木", colour="red")), "toys[0]: unknown key(s) 'colour'"),
        (answer(toy("积木"), toy("球", "expert")), "toys[1].level: unknown level 'expert'"),
        (answer(toy("积木", "LOW")), "toys[0].level: unknown level 'LOW'"),
        (answer(toy("积木", ground="middle")), "toys[0].ground: unknown ground 'middle'"),
        (answer(toy("  ")), "toys[0].name: missing or empty toy name"),
        (answer(toy("\u200b\u200d")), "has no visible character"),
        (answer(toy(3)), "toys[0].name: missing or empty toy name"),
        (answer(toy("积木", aliases="木块")), "toys[0].aliases: must be a list"),
        (answer(toy("积木", aliases=["\u3164"])), "toys[0].aliases[0]: alias"),
        (answer(toy("积木"), toy("积木", ground="background")), "both normalise to '积木'"),
        (answer(toy("Lego"), toy("blocks", aliases=["ｌｅｇｏ"])), "toys[1].aliases[0]: 'ｌｅｇｏ' and toys[0].name"),
    ]:
        value, problem = parse_toys(text)
        assert value is None and reason in problem, (text, problem)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from(["low", "high", "foreground", "积木", " ", "\u200b"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["toys", "name", "level", "ground", "aliases", "x"]), inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, wrap=st.sampled_from(["{}", "```json\n{}\n```", "<think>x</think>{}", "ok: {}"]))
def test_parse_toys_never_raises_and_only_accepts_valid_toy_sets(value, wrap):
    toys, problem = parse_toys(wrap.replace("{}", json.dumps(value, ensure_ascii=False), 1))
    assert (toys is None) != (problem is None)
    if toys is not None:
        assert toy_list_problems(toys) == [] and wrap != "ok: {}"


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_hostile_text_is_a_reason_never_an_exception(text):
    for parse in (parse_toys, parse_scene, parse_caption):
        value, problem = parse(text)
        assert (value is None) != (problem is None)  # a value or a reason: never both, never neither


def test_parse_toys_names_at_most_five_problems():
    value, problem = parse_toys(answer(*(toy(f"t{i}", "x") for i in range(8))))
    assert value is None and problem.count("unknown level") == 5 and problem.endswith("and 3 more")


def test_parse_scene_and_caption():
    assert parse_scene('{"category": "outdoor", "area": " 户外沙水区 "}') == (
        {"category": "outdoor", "area": "户外沙水区"},
        None,
    )
    assert parse_scene('{"category": "outdoor", "area": "x"}', ("classroom",))[1] == (
        "category: 'outdoor' is not one of classroom"
    )
    assert parse_scene('{"category": "garden", "area": "x"}')[1].startswith("category: 'garden'")
    assert parse_scene('{"category": "outdoor", "area": "\u200b"}')[1] == "area: must be a non-empty name"
    assert parse_scene('{"category": "outdoor"}')[1].startswith("expected the object")
    assert parse_caption("<think>plan</think>\n 孩子们在搭积木。 ") == ("孩子们在搭积木。", None)
    assert parse_caption(" \u200b ") == (None, "empty caption")


# -- inputs ------------------------------------------------------------------------------------------------


def test_folder_ids_groups_and_collisions(tmp_path):
    for rel in ("class-a/1.png", "class-a/sub/2.jpg", "class-b/1.png", "top.webp", ".hidden.png", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    photos = photos_from_folder(tmp_path, group_by_folder=True)
    assert [(p.id, p.group) for p in photos] == [
        ("class-a/1", "class-a"),
        ("class-a/sub/2", "class-a"),
        ("class-b/1", "class-b"),
        ("top", None),
    ]
    assert all(p.image.is_absolute() and p.category is None for p in photos)
    (tmp_path / "top.png").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"top\.png and top\.webp would both get the id 'top'"):
        photos_from_folder(tmp_path)


def test_jsonl_input_reports_every_problem_with_its_line(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"image": "a.png", "category": "classroom", "area": "美工区", "group": "班级1"},
            {"image": "missing.png"},
            {"image": "a.png", "category": "garden"},
            {"image": "a.png", "id": "a.png"},
            {"image": "a.png", "id": "b", "colour": "red", "area": " "},
            {"id": "c"},
        ],
    )
    with pytest.raises(DataValidationError) as info:
        photos_from_jsonl(path)
    text = str(info.value)
    for expected in (
        "in.jsonl:line 2: field 'image': file not found",
        "in.jsonl:line 3: field 'category': unknown category 'garden'",
        "in.jsonl:line 4: field 'id': duplicate id 'a.png' (first at line 1)",
        "in.jsonl:line 5: field 'colour': unknown key",
        "in.jsonl:line 5: field 'area': must be a non-empty string",
        "in.jsonl:line 6: field 'image': missing",
    ):
        assert expected in text
    good = photos_from_jsonl(write_jsonl(tmp_path / "ok.jsonl", [{"image": "a.png", "area": "美工区", "group": "g"}]))
    assert [(p.id, p.category, p.area, p.group) for p in good] == [("a.png", None, "美工区", "g")]


# -- annotate end to end ---------------------------------------------------------------------------------------


def sample_input(tmp_path: Path, ids: list[str], with_metadata: set[str] = frozenset()) -> Path:
    """A JSONL of sample photos (absolute paths); ``with_metadata`` ids also give their category and area."""
    rows = []
    for image_id in ids:
        row = {"id": image_id, "image": str(IMAGES / f"{image_id}.png")}
        if image_id in with_metadata:
            row |= {"category": SAMPLE_ROWS[image_id]["category"], "area": SAMPLE_ROWS[image_id]["area"]}
        rows.append(row)
    return write_jsonl(tmp_path / "photos.jsonl", rows)


def test_annotate_writes_valid_data_that_scores_and_lists_failures(fake, tmp_path, capsys, monkeypatch):
    server, annotator = fake
    monkeypatch.setenv("ECAC_VLM_API_KEY", VLM_KEY)
    monkeypatch.setenv("ECAC_JUDGE_API_KEY", "sk-judge-key-never-sent-here")
    ids = sorted(SAMPLE_ROWS)
    annotator.faults = {
        ids[2]: "toys-broken-once",
        ids[3]: "toys-garbage",
        ids[4]: "caption-400",
        ids[5]: "toys-wrapped",
        ids[6]: "toys-clash",
    }
    photos = sample_input(tmp_path, ids, with_metadata=set(ids[:30]))
    out, report_path, cache = tmp_path / "data" / "ecac_own.jsonl", tmp_path / "report.json", tmp_path / "cache"
    argv = ["annotate", "--images", str(photos), "--out", str(out), "--json", str(report_path)]
    assert main([*argv, *llm_flags(server, cache)]) == 1  # two photos failed: written without them, exit 1
    printed = flat(capsys.readouterr().out)
    assert f"{ids[3]} (toys)" in printed and f"{ids[4]} (caption)" in printed and "58 of 60 photos" in printed

    assert validate_dataset(out, check_images=True) == []
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [i for i in ids if i not in (ids[3], ids[4])]
    for row in rows:
        expected = SAMPLE_ROWS[row["id"]]
        assert (row["caption"], row["category"], row["area"]) == (
            expected["caption"],
            expected["category"],
            expected["area"],
        )
        assert row["toys"] == expected["toys"]  # the repaired answers included; nothing made up
        assert row["image"] == str(IMAGES / f"{row['id']}.png")  # outside the output's folder: absolute
        assert "split" not in row and "group" not in row and "reviewed" not in row

    report = json.loads(report_path.read_text())
    assert (report["kind"], report["harness"]) == ("ecac-bench/annotate", harness())  # a data tool record
    assert "schema_version" not in report and "signature" not in report and dt.date.fromisoformat(report["date"])
    failures = {(f["id"], f["step"]): f for f in report["failures"]}
    assert set(failures) == {(ids[3], "toys"), (ids[4], "caption")}
    assert (
        failures[(ids[3], "toys")]["answer"].startswith("The photo shows")
        and "HTTP 400" in failures[(ids[4], "caption")]["error"]
    )
    assert report["metrics"] | {"toys": 0} == {
        "photos": 60,
        "annotated": 58,
        "failed": 2,
        "toys": 0,
        "scene_asked": 30,
    }
    assert report["config"]["prompts"]["caption"] == load_prompt("caption", "zh").identity()
    assert report["annotator"]["model"] == "fake-annotator" and report["annotator"]["base_url"] == server.base_url
    assert server.state.authorizations == {f"Bearer {VLM_KEY}"}  # the VLM's key, to the VLM endpoint only
    assert not any(VLM_KEY.encode() in f.read_bytes() for f in tmp_path.rglob("*") if f.is_file())

    # What was asked: the evaluation's own caption prompt, the toy schema, repair turns only where broken, and
    # category/area only for the photos that did not give them.
    bodies = server.state.bodies
    captions = [b for b in bodies if "response_format" not in b]
    assert {_text(b["messages"][0]) for b in captions} == {load_prompt("caption", "zh").render()}
    toy_formats = [
        b["response_format"]
        for b in bodies
        if b.get("response_format", {}).get("json_schema", {}).get("name") == "ecac_toys"
    ]
    assert toy_formats and toy_formats[0]["json_schema"]["schema"] == TOYS_SCHEMA.schema
    rounds = [(i, step, rnd) for i, step, rnd in annotator.log if rnd > 0]
    assert sorted(rounds) == sorted(
        [(ids[2], "toys", 1), (ids[6], "toys", 1), (ids[3], "toys", 1), (ids[3], "toys", 2)]
    )
    assert {i for i, step, _ in annotator.log if step == "scene"} == set(ids[30:])

    # It scores: the same numbers as the sample's own annotations of these images.
    predictions = [
        r
        for r in read_jsonl(SAMPLE_DATA.parent / "predictions" / "system-a.jsonl")
        if r["id"] in {row["id"] for row in rows}
    ]
    preds = write_jsonl(tmp_path / "preds.jsonl", predictions)
    reference = write_jsonl(
        tmp_path / "reference.jsonl",
        [{**SAMPLE_ROWS[r["id"]], "image": str(IMAGES / f"{r['id']}.png"), "split": None} for r in rows],
    )
    for data, name in ((out, "own"), (reference, "ref")):
        assert (
            main(["score", "--data", str(data), "--predictions", str(preds), "--json", str(tmp_path / f"{name}.json")])
            == 0
        )
    own, ref = (json.loads((tmp_path / f"{n}.json").read_text())["metrics"] for n in ("own", "ref"))
    assert own == ref and own["tts"] is not None

    # A second run is answered from the cache: nothing is sent, and the output is the same bytes.
    before, requests = out.read_bytes(), server.state.requests
    assert main([*argv, *llm_flags(server, cache)]) == 1
    assert server.state.requests == requests + 1  # only the caption refused with HTTP 400 (never cached) again
    assert out.read_bytes() == before


def test_annotate_folder_without_structured_output_and_in_english(fake, tmp_path):
    server, _ = fake
    server.state.structured = "reject"  # a server without response_format: asked plainly, parsed the same way
    folder = tmp_path / "photos"
    folder.mkdir()
    for image_id in sorted(SAMPLE_ROWS)[:3]:
        (folder / f"{image_id}.png").write_bytes((IMAGES / f"{image_id}.png").read_bytes())
    out = folder / "ecac.jsonl"
    argv = ["annotate", "--images", str(folder), "--out", str(out), "--lang", "en", "--split", "train=2/3,test=1/3"]
    assert main([*argv, *llm_flags(server, tmp_path / "cache")]) == 0
    rows = read_jsonl(out)
    assert [r["image"] for r in rows] == [f"{i}.png" for i in sorted(SAMPLE_ROWS)[:3]]  # inside the folder: relative
    assert sorted(r["split"] for r in rows) == ["test", "train", "train"]
    assert list(rows[0]) == ["id", "image", "category", "area", "caption", "split", "toys"]
    english = load_prompt("caption", "en").render()
    assert any(_text(b["messages"][0]) == english for b in server.state.bodies)
    assert load_dataset(out).records[0].image.is_file()


def test_annotate_refuses_bad_flags_before_sending(fake, tmp_path, capsys):
    server, _ = fake
    photos = sample_input(tmp_path, sorted(SAMPLE_ROWS)[:2])
    out = tmp_path / "o.jsonl"
    cases = [
        (["--images", str(photos), "--out", str(out), "--split", "train=0.8,test=0.3"], "sum to 1"),
        (["--images", str(photos)], "--out: required"),
        (["--images", str(tmp_path / "nope"), "--out", str(out)], "nope: not found"),
        (["--images", str(photos), "--out", str(out), "--group-by-folder"], "--group-by-folder: only for a folder"),
        (["--data", str(SAMPLE_DATA)], "give --images, --review-export"),
        (["--images", str(photos), "--out", str(out), "--concurrency", "0"], "--concurrency: must be >= 1"),
        (["--images", str(photos), "--out", str(tmp_path)], "is a folder; give a file name"),
        (["--review-export", str(tmp_path), "--data", str(SAMPLE_DATA)], "is a folder; give a file name"),
    ]
    for argv, message in cases:
        assert main(["annotate", *argv, *llm_flags(server, tmp_path / "cache")]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert server.state.requests == 0 and not out.exists()


# -- resume after SIGKILL -----------------------------------------------------------------------------------------


def stored_answers(db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_killed_run_resumes_without_resending_and_never_leaves_half_a_file(fake, tmp_path):
    server, _ = fake
    server.state.latency = 0.05
    out, cache = tmp_path / "own.jsonl", tmp_path / "cache"
    argv = ["annotate", "--images", str(IMAGES), "--out", str(out), *llm_flags(server, cache), "--concurrency", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "ecac_bench.cli", *argv], stdout=subprocess.DEVNULL)
    db = cache / "llm_responses.sqlite"
    deadline = time.monotonic() + 120
    while stored_answers(db) < 40 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stored = stored_answers(db)
    total = 3 * len(SAMPLE_ROWS)  # caption, toys, category and area of each photo: no repair turn here
    assert 40 <= stored < total
    assert not out.exists() and not list(tmp_path.glob(".own.jsonl.*"))  # no output at all, not half of one

    server.state.reset()
    server.state.latency = 0.0
    assert main(argv) == 0
    assert server.state.requests == total - stored  # every answer paid before the kill came from the cache
    assert stored_answers(db) == total
    rows = read_jsonl(out)
    assert len(rows) == len(SAMPLE_ROWS) and validate_dataset(out) == []
    assert all(r["toys"] == SAMPLE_ROWS[r["id"]]["toys"] for r in rows)


# -- review ------------------------------------------------------------------------------------------------------


def own_data(tmp_path: Path, n: int = 8) -> Path:
    """A small annotated file (the sample's first records, absolute image paths)."""
    rows = [{**SAMPLE_ROWS[i], "image": str(IMAGES / f"{i}.png")} for i in sorted(SAMPLE_ROWS)[:n]]
    for row in rows:
        row.pop("split", None)
    return write_jsonl(tmp_path / "own.jsonl", rows)


def read_csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8-sig") -> Path:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def test_formula_cells_are_neutralised_and_restored():
    for cell in ('=HYPERLINK("x")', "+1", "-2", "@SUM(A1)", "\tx", "\rx", "＝1+1", "＠x"):
        assert neutralise(cell) == "'" + cell and restore(neutralise(cell)) == cell
    for cell in ("积木", "'quoted", "a=b", ""):
        assert neutralise(cell) == cell and restore(cell) == cell


def test_review_round_trip_with_one_edited_level(tmp_path, capsys):
    data = own_data(tmp_path)
    rows = read_jsonl(data)
    rows[0]["toys"].append({"name": "=cmd|' /C calc'!A0", "level": "low", "ground": "background"})
    write_jsonl(data, rows)
    review = tmp_path / "review.csv"
    assert main(["annotate", "--review-export", str(review), "--data", str(data)]) == 0
    raw = review.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: Excel reads Chinese correctly
    table = read_csv(review)
    assert table[0] == ["id", "toy", "image", "name", "level", "ground", "aliases", "caption_excerpt"]
    n_toys = sum(len(r["toys"]) for r in rows) + sum(not r["toys"] for r in rows)  # a row for each toyless image
    assert len(table) == 1 + n_toys
    assert [r[3] for r in table if "calc" in r[3]] == ["'=cmd|' /C calc'!A0"]  # inert in a spreadsheet

    # Unchanged: nothing changes but the reviewed flag.
    same = tmp_path / "same.jsonl"
    assert main(["annotate", "--review-import", str(review), "--data", str(data), "--out", str(same)]) == 0
    assert "0 toys added, 0 removed, 0 edited" in flat(capsys.readouterr().out)
    assert [r["toys"] for r in read_jsonl(same)] == [r["toys"] for r in rows]
    assert all(r["reviewed"] == ["toys"] for r in read_jsonl(same))

    # One level edited by an expert.
    line = next(i for i, r in enumerate(table) if r[0] == rows[1]["id"] and r[1] == "1")
    old_level = table[line][4]
    new_level = "high" if old_level != "high" else "low"
    table[line][4] = new_level
    write_csv(review, table)
    out, report = tmp_path / "reviewed.jsonl", tmp_path / "review.json"
    argv = ["annotate", "--review-import", str(review), "--data", str(data), "--out", str(out), "--json", str(report)]
    assert main(argv) == 0
    printed = flat(capsys.readouterr().out)
    assert "0 toys added, 0 removed, 1 edited" in printed and f"level: {old_level} -> {new_level}" in printed
    result = read_jsonl(out)
    assert result[1]["toys"][0]["level"] == new_level
    result[1]["toys"][0]["level"] = old_level
    assert [r["toys"] for r in result] == [r["toys"] for r in rows]  # nothing else changed
    assert validate_dataset(out, check_images=True) == []
    record = json.loads(report.read_text())
    assert (record["kind"], record["harness"]) == ("ecac-bench/annotate-review", harness())  # a data tool record
    assert "schema_version" not in record and "signature" not in record and dt.date.fromisoformat(record["date"])
    changes = record["changes"]
    assert changes == [
        {
            "id": rows[1]["id"],
            "kind": "edited",
            "name": rows[1]["toys"][0]["name"],
            "fields": ["level"],
            "detail": f"level: {old_level} -> {new_level}",
        }
    ]


def test_review_adds_removes_renames_and_leaves_unlisted_images_alone(tmp_path, capsys):
    data = own_data(tmp_path)
    rows = read_jsonl(data)
    review = tmp_path / "review.csv"
    assert main(["annotate", "--review-export", str(review), "--data", str(data)]) == 0
    table = read_csv(review)
    first, second = rows[0]["id"], rows[1]["id"]
    toyless = next(r["id"] for r in rows if not r["toys"])
    body = [r for r in table[1:] if r[0] in (first, second, toyless)]  # the other images' rows deleted
    renamed = next(r for r in body if r[0] == first)
    renamed[3] = "安全剪刀"
    renamed[6] = "儿童剪刀 | "
    body = [r for r in body if not (r[0] == second and r[1] == "1")]  # a toy removed
    placeholder = next(r for r in body if r[0] == toyless)
    placeholder[3:6] = ["沙漏", "medium", "background"]  # a toy added to a toyless image
    body.append([second, "", "", "彩色积木", "low", "foreground", "", ""])  # and one more, in a new row
    write_csv(review, [table[0], *body, ["", "", "", "", "", "", "", ""]])
    out = tmp_path / "out.jsonl"
    assert main(["annotate", "--review-import", str(review), "--data", str(data), "--out", str(out)]) == 0
    printed = flat(capsys.readouterr().out)
    assert "review applied to 3 images (5 not in the CSV, unchanged): 2 toys added, 1 removed, 1 edited" in printed
    result = {r["id"]: r for r in read_jsonl(out)}
    assert result[first]["toys"][0] == {**rows[0]["toys"][0], "name": "安全剪刀", "aliases": ["儿童剪刀"]}
    assert result[toyless]["toys"] == [{"name": "沙漏", "level": "medium", "ground": "background"}]
    assert result[second]["toys"] == [
        *rows[1]["toys"][1:],
        {"name": "彩色积木", "level": "low", "ground": "foreground"},
    ]
    untouched = [r for r in rows if r["id"] not in (first, second, toyless)]
    assert all(result[r["id"]] == r for r in untouched)  # not reviewed, not changed
    assert {i for i, r in result.items() if "reviewed" in r} == {first, second, toyless}
    assert validate_dataset(out) == []


def test_review_import_errors_name_line_and_column(tmp_path, capsys):
    data = own_data(tmp_path)
    rows = read_jsonl(data)
    review = tmp_path / "review.csv"
    assert main(["annotate", "--review-export", str(review), "--data", str(data)]) == 0
    table = read_csv(review)
    with_two = next(r for r in rows if len(r["toys"]) >= 2)["id"]
    lines = {(r[0], r[1]): i + 1 for i, r in enumerate(table)}  # CSV line numbers (1 = header)
    table[lines[(with_two, "1")] - 1][4] = "expert"
    table[lines[(with_two, "2")] - 1][5] = "Foreground"
    table.append(["nobody", "", "", "积木", "low", "foreground", "", ""])
    table.append([with_two, "7", "", "积木", "low", "foreground", "", ""])
    table.append([with_two, "2", "", "积木", "low", "foreground", "", ""])
    table.append([rows[0]["id"], "", "", rows[0]["toys"][0]["name"], "low", "background", "", ""])  # a clash
    table.append([rows[0]["id"], "", "", "", "low", "background", "", ""])
    n = len(table)
    write_csv(review, table)
    out = tmp_path / "out.jsonl"
    argv = ["annotate", "--review-import", str(review), "--data", str(data), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    for expected in (
        f"review.csv:line {lines[(with_two, '1')]}: column 'level': unknown level 'expert'",
        f"review.csv:line {lines[(with_two, '2')]}: column 'ground': unknown ground 'Foreground'",
        f"review.csv:line {n - 4}: column 'id': unknown image id 'nobody'",
        f"review.csv:line {n - 3}: column 'toy': '7' is not a toy of image",
        f"review.csv:line {n - 2}: column 'toy': toy 2 of image {with_two!r} is listed twice (first at line",
        f"review.csv:line {n - 1}: column 'name': {rows[0]['toys'][0]['name']!r} and toys[0].name",
        f"review.csv:line {n}: column 'name': missing toy name",
    ):
        assert expected in err, expected
    assert not out.exists()  # nothing written

    write_csv(review, [table[0], [rows[0]["id"], "²", "", "积木", "low", "foreground", "", ""]])
    assert main(argv) == 2 and "review.csv:line 2: column 'toy': '²' is not a toy" in capsys.readouterr().err
    write_csv(review, [["id", "name", "level"]])
    assert main(argv) == 2 and "review.csv:line 1: column '<header>': missing column(s) toy, ground, aliases" in (
        capsys.readouterr().err
    )
    write_csv(review, [table[0], [rows[0]["id"], "1", "", "积木", "low", "foreground", "", ""]], encoding="gbk")
    assert main(argv) == 2 and "not UTF-8 text; save the sheet as 'CSV UTF-8'" in capsys.readouterr().err
    review.write_bytes(b"id,toy,name,level,ground,aliases\r\nx,1," + b"a" * 200_000 + b",low,background,\r\n")
    assert main(argv) == 2 and "review.csv:line 2: column '<file>': not a readable CSV (field larger" in (
        capsys.readouterr().err
    )


def test_an_existing_review_or_reviewed_data_is_never_overwritten_by_accident(fake, tmp_path, capsys):
    server, _ = fake
    data = own_data(tmp_path, 2)
    review = tmp_path / "review.csv"
    review.write_text("an expert's work in progress")
    assert main(["annotate", "--review-export", str(review), "--data", str(data)]) == 2
    assert "exists (a review in progress?)" in capsys.readouterr().err
    assert review.read_text() == "an expert's work in progress"
    rows = read_jsonl(data)
    rows[0]["reviewed"] = ["toys"]
    write_jsonl(data, rows)
    photos = sample_input(tmp_path, [r["id"] for r in rows])
    argv = ["annotate", "--images", str(photos), "--out", str(data), *llm_flags(server, tmp_path / "cache")]
    assert main(argv) == 2 and "holds 1 human-reviewed record(s)" in capsys.readouterr().err
    assert server.state.requests == 0 and read_jsonl(data) == rows
    assert main([*argv, "--overwrite"]) == 0 and "reviewed" not in read_jsonl(data)[0]


# -- split ------------------------------------------------------------------------------------------------------


def test_fractions_are_parsed_exactly():
    assert {k: float(v) for k, v in parse_fractions("train=0.7, test=0.3").items()} == {"train": 0.7, "test": 0.3}
    assert sum(parse_fractions("a=1/3,b=1/3,c=1/3").values()) == 1
    for text, message in [
        ("train=0.8", "at least two"),
        ("train=0.8,test=0.1", "sum to 1"),
        ("train=1,test=0", "must be > 0"),
        ("train=x,test=1", "not a number"),
        ("train=0.5,train=0.5", "given twice"),
        ("=0.5,test=0.5", "expected NAME=FRACTION"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_fractions(text)


def test_split_by_image_hits_the_fractions_and_depends_only_on_the_seed():
    records = [{"id": f"img{i:03d}"} for i in range(60)]
    assigned = assign_splits(records, parse_fractions("train=0.8,test=0.2"), seed=0)
    assert sorted(assigned.values()).count("test") == 12  # 0.2 x 60 exactly, images being units of one
    assert assign_splits(list(reversed(records)), parse_fractions("train=0.8,test=0.2"), seed=0) == assigned
    assert assign_splits(records, parse_fractions("train=0.8,test=0.2"), seed=1) != assigned


def test_split_by_group_never_leaks_a_group_and_stats_reads_it(tmp_path, capsys):
    rows = [{**SAMPLE_ROWS[i], "image": str(IMAGES / f"{i}.png")} for i in sorted(SAMPLE_ROWS)]
    for row in rows:
        row.pop("split")
        row["group"] = row["area"]  # a classroom per area: 13 groups of unequal size
    data = write_jsonl(tmp_path / "own.jsonl", rows)
    out = tmp_path / "split.jsonl"
    assert (
        main(["annotate", "--data", str(data), "--split", "train=0.75,test=0.25", "--seed", "3", "--out", str(out)])
        == 0
    )
    result = read_jsonl(out)
    sides: dict[str, set[str]] = {}
    for row in result:
        sides.setdefault(row["group"], set()).add(row["split"])
    assert all(len(s) == 1 for s in sides.values())  # no group on both sides
    assert {s for row in result for s in [row["split"]]} == {"train", "test"}
    n_test = sum(r["split"] == "test" for r in result)
    largest = max(sum(r["group"] == g for r in result) for g in sides)
    assert abs(n_test - 15) <= largest / 2  # the share to within half a unit
    assert [{k: v for k, v in r.items() if k != "split"} for r in result] == rows  # nothing else changed
    again = tmp_path / "again.jsonl"
    assert (
        main(["annotate", "--data", str(out), "--split", "train=0.75,test=0.25", "--seed", "3", "--out", str(again)])
        == 0
    )
    assert again.read_bytes() == out.read_bytes()  # a split file split again with the same seed: the same
    assert main(["stats", "--data", str(out), "--json", str(tmp_path / "stats.json")]) == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["images_per_split"] == {"test": n_test, "train": 60 - n_test}
    assert load_dataset(out, split="test").records


# -- the optional fields of the data format -------------------------------------------------------------------


def test_reviewed_and_group_are_validated_on_every_path(tmp_path):
    base = {**SAMPLE_ROWS["ecac-sample-0001"], "image": "x.png"}
    good = [{**base, "id": "a", "reviewed": ["toys", "caption"], "group": "班级 1"}, {**base, "id": "b"}]
    assert validate_dataset(write_jsonl(tmp_path / "good.jsonl", good)) == []
    bad = [
        {**base, "id": "c", "reviewed": ["toys", "toys"]},
        {**base, "id": "d", "reviewed": ["colour"]},
        {**base, "id": "e", "reviewed": "toys"},
        {**base, "id": "f", "group": ""},
        {**base, "id": "g", "group": 3},
        {**base, "id": "h", "reviewed": [["toys"]]},
    ]
    problems = [str(p) for p in validate_dataset(write_jsonl(tmp_path / "bad.jsonl", bad))]
    assert problems == [
        "{}:line 1: field 'reviewed[1]': 'toys' is listed twice".format(tmp_path / "bad.jsonl"),
        "{}:line 2: field 'reviewed[0]': unknown field 'colour'; expected one of caption, category, area, toys".format(
            tmp_path / "bad.jsonl"
        ),
        "{}:line 3: field 'reviewed': must be a list, got str".format(tmp_path / "bad.jsonl"),
        "{}:line 4: field 'group': is empty (leave it out for an image without a group)".format(tmp_path / "bad.jsonl"),
        "{}:line 5: field 'group': must be a string, got int".format(tmp_path / "bad.jsonl"),
        "{}:line 6: field 'reviewed[0]': unknown field ['toys']; expected one of caption, category, area, toys".format(
            tmp_path / "bad.jsonl"
        ),
    ]
