"""Toy precision: the pure metric by hand, both extractors, the list parser and `ecac-bench toy-precision`."""

from __future__ import annotations

import argparse
import json
import math

import pytest
from judge_server import JudgeServer

from ecac_bench import load_dataset
from ecac_bench.commands import toy_precision as toy_precision_command
from ecac_bench.matching import MatchConfig
from ecac_bench.toy_precision import LexiconExtractor, parse_name_list, toy_precision

RECORDS = [
    ("img1", [("积木", "foreground", []), ("拼图", "background", [])]),
    ("img2", [("Lego Duplo", "foreground", ["duplo"]), ("剪刀", "foreground", [])]),
    ("img3", [("皮球", "foreground", [])]),
    ("img4", [("画笔", "foreground", [])]),
    ("img5", [("彩泥", "foreground", ["橡皮泥"])]),
]


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [
        {
            "id": rid,
            "image": f"images/{rid}.png",
            "category": "classroom",
            "area": "建构区",
            "caption": "参考描述",
            "split": "test",
            "toys": [{"name": n, "level": "low", "ground": g, "aliases": a} for n, g, a in toys],
        }
        for rid, toys in RECORDS
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return load_dataset(path)


EXTRACTED = {
    "img1": ["积木", "拼图", "剪刀", "积木区"],  # 积木, 拼图 are this image's toys; 积木区 only contains one: 2 of 4
    "img2": ["duplo", " Duplo ", "ＬＥＧＯ duplo"],  # duplicates after normalisation count once; the alias: 2 of 2
    "img3": [],  # nothing extracted: counts for the average, not for macro
    "img4": None,  # extraction failed: left out, counted
    "img5": ["彩色橡皮泥"],  # contains the alias 橡皮泥 but is not it: 0 of 1
}


def test_precision_is_eq_7_by_hand(dataset):
    """|T_caption ∩ T_groundtruth| / |T_caption|: an extracted name is correct only when it equals an annotated
    name or alias after normalisation (NFKC, lower-case, whitespace)."""
    result = toy_precision(dataset, EXTRACTED)
    assert result.n_extracted == 7 and result.n_correct == 4
    assert math.isclose(result.toy_precision, 100 * 4 / 7)
    assert math.isclose(result.toy_precision_macro, (100 * 2 / 4 + 100 + 0) / 3)
    assert math.isclose(result.avg_toy_count, 7 / 4)
    assert (result.n_images, result.n_images_with_names, result.n_failed) == (4, 3, 1)
    assert result.images[0].correct == (True, True, False, False)
    assert result.images[1].extracted == ("duplo", "ＬＥＧＯ duplo") and result.images[1].correct == (True, True)
    metrics = result.metrics()
    assert "images" not in metrics and set(metrics) >= {"toy_precision", "toy_precision_macro", "avg_toy_count"}


def test_precision_contains_is_the_lenient_option(dataset):
    # The old rule: an annotated name occurring inside the extracted one counts (积木区, 彩色橡皮泥): 6 of 7.
    result = toy_precision(dataset, EXTRACTED, precision_match="contains")
    assert result.n_correct == 6 and math.isclose(result.toy_precision, 100 * 6 / 7)
    assert result.images[0].correct == (True, True, False, True)
    with pytest.raises(ValueError, match="unknown precision match"):
        toy_precision(dataset, EXTRACTED, precision_match="fuzzy")


def test_precision_empty_and_unknown_ids(dataset):
    result = toy_precision(dataset, {"img1": []})
    assert result.toy_precision is None and result.toy_precision_macro is None and result.avg_toy_count == 0
    with pytest.raises(KeyError, match="nope"):
        toy_precision(dataset, {"nope": ["积木"]})


def test_precision_fuzzy_rule_comes_from_the_core_in_contains_mode_only(dataset):
    fuzzy = MatchConfig("fuzzy", 90)
    assert toy_precision(dataset, {"img3": ["皮 球子"]}, precision_match="contains").n_correct == 0
    assert toy_precision(dataset, {"img3": ["皮球子"]}, fuzzy, precision_match="contains").n_correct == 1
    assert toy_precision(dataset, {"img3": ["皮球子"]}, fuzzy).n_correct == 0  # Eq. 7: equality, whatever --match


def test_lexicon_extractor():
    ex = LexiconExtractor(["画笔", "积木", "球", "皮球", "toy car", "car", "Lego Duplo", "duplo"])
    assert ex.extract("孩子们在积木区搭积木，旁边有皮球") == ["积木", "皮球"]
    assert ex.extract("他在画笔记本") == []  # jieba cuts 画/笔记本: no 画笔, which a substring search would find
    assert ex.extract("地球仪") == []
    assert ex.extract("a Toy Car and cars") == ["toy car"]  # longest match; "cars" is not "car" on word boundaries
    assert ex.extract("legoduplo") == []
    assert ex.extract("小朋友玩Lego Duplo") == ["lego duplo"]


def test_lexicon_extractor_on_dataset_vocabulary(dataset):
    ex = LexiconExtractor.for_dataset(dataset)
    assert ex.extract("幼儿用橡皮泥和剪刀做手工，还有duplo") == ["橡皮泥", "剪刀", "duplo"]


@pytest.mark.parametrize(
    ("answer", "names"),
    [
        ('{"toys": ["积木", "拼图"]}', ["积木", "拼图"]),  # the schema's form
        ('["积木", "拼图"]', ["积木", "拼图"]),  # the list alone
        ('```json\n{"toys": ["积木"]}\n```', ["积木"]),
        ('<think>maybe ["剪刀"]?</think>\n["积木"]', ["积木"]),
        ("[“积木”, “拼图”]", ["积木", "拼图"]),  # typographic quotes
        ('["他说“好”"]', ["他说“好”"]),  # quotes inside a string are kept
        ('{"toys": []}', []),
        ("[]", []),
        ('["积木", "", "  "]', ["积木"]),  # blank names are dropped
    ],
)
def test_parse_name_list(answer, names):
    assert parse_name_list(answer) == (names, None)


NOT_JSON = "not a JSON value alone (the answer must be the JSON and nothing else)"
NOT_LIST = 'not a JSON list or {"toys": [...]}'


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("", "empty answer"),
        (None, "empty answer"),
        ("none", NOT_JSON),
        ("提到的玩具有：[“积木”, “拼图”]。", NOT_JSON),  # text around the list
        ('The caption lists ["积木", "拼图", "钢琴"], of which ["积木"] are toys.', NOT_JSON),
        ('["积木"] ["拼图"]', NOT_JSON),
        ("[积木、拼图]", NOT_JSON),  # not JSON
        ("['blocks', 'puzzle']", NOT_JSON),
        ("[" * 20_000, NOT_JSON),
        ('{"names": ["a"]}', NOT_LIST),
        ('{"toys": ["a"], "more": ["b"]}', NOT_LIST),
        ('{"toys": "a"}', NOT_LIST),
        ('"积木"', NOT_LIST),
        ('[{"name": "积木"}]', "every item must be a string"),
        ('["积木", 3]', "every item must be a string"),
        ('["积木", null]', "every item must be a string"),
    ],
)
def test_parse_name_list_failures(answer, error):
    assert parse_name_list(answer) == (None, error)


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    toy_precision_command.register(parser.add_subparsers())
    args = parser.parse_args(["toy-precision", *argv])
    return args.func(args)


def write_predictions(path, captions: dict[str, str]) -> None:
    path.write_text(
        "".join(json.dumps({"id": i, "caption": c}, ensure_ascii=False) + "\n" for i, c in captions.items())
    )


def test_command_lexicon(dataset, tmp_path):
    preds = tmp_path / "p.jsonl"
    write_predictions(preds, {"img1": "幼儿在玩积木和剪刀", "img3": "一个皮球", "img5": "没有玩具"})
    out = tmp_path / "r.json"
    argv = ["--data", str(dataset.path), "--predictions", str(preds), "--allow-missing", "--extractor", "lexicon"]
    assert run_command([*argv, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["kind"] == "ecac-bench/toy-precision"
    m = report["metrics"]
    assert math.isclose(m["toy_precision"], 100 * 2 / 3) and math.isclose(m["toy_precision_macro"], 75)
    assert math.isclose(m["avg_toy_count"], 1.0)
    assert report["config"]["precision_match"].startswith("equal (Eq. 7")


def test_command_precision_match_flag(dataset, tmp_path):
    preds = tmp_path / "p.jsonl"
    write_predictions(preds, {"img1": '@@reply=["积木区", "拼图"]@@'})
    out = tmp_path / "r.json"
    argv = ["--data", str(dataset.path), "--predictions", str(preds), "--allow-missing", "--no-progress"]
    with JudgeServer() as server:
        argv += ["--judge-base-url", server.base_url, "--judge-model", "x", "--cache-dir", str(tmp_path / "cache")]
        assert run_command([*argv, "--json", str(out)]) == 0
        assert json.loads(out.read_text())["metrics"]["toy_precision"] == 50.0
        assert run_command([*argv, "--json", str(out), "--precision-match", "contains"]) == 0
    report = json.loads(out.read_text())
    assert report["metrics"]["toy_precision"] == 100.0 and report["config"]["precision_match"].startswith("contains")


def test_command_llm_extractor(dataset, tmp_path, monkeypatch):
    preds = tmp_path / "p.jsonl"
    write_predictions(
        preds,
        {
            "img1": '@@reply=```json\n{"toys": ["积木", "剪刀"]}\n```@@',
            "img2": '@@garbagex1 @@reply=["duplo"]@@',  # repaired on the second round
            "img3": "@@garbagex9",  # fails: left out, counted
        },
    )
    out = tmp_path / "r.json"
    with JudgeServer() as server:
        monkeypatch.setenv("ECAC_JUDGE_MODEL", "test-extractor")
        argv = ["--data", str(dataset.path), "--predictions", str(preds), "--allow-missing", "--no-progress"]
        argv += ["--judge-base-url", server.base_url, "--cache-dir", str(tmp_path / "cache"), "--json", str(out)]
        assert run_command(argv) == 0
        assert server.state.requests == 1 + 2 + 2
    m = json.loads(out.read_text())["metrics"]
    assert math.isclose(m["toy_precision"], 100 * 2 / 3) and math.isclose(m["toy_precision_macro"], 75)
    assert m["n_failed"] == 1 and m["n_images"] == 2
