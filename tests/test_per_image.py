"""Per-image results: the offset map back to the raw caption, where each toy was named, and the per-image file."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecac_bench import SAMPLE_PREDICTIONS, load_dataset, load_predictions, score_captions
from ecac_bench.cli import main
from ecac_bench.data import DataValidationError, ToyAnnotation
from ecac_bench.imagestats import point_estimate
from ecac_bench.judge import JUDGE
from ecac_bench.matching import MatchConfig, ToyMatcher, normalize_text
from ecac_bench.metrics import TTS
from ecac_bench.per_image import normalize_with_offsets, read_per_image, toy_occurrences

EXACT = ToyMatcher()


def spans(raw: str, *names: str, matcher: ToyMatcher = EXACT) -> list[tuple[str, str]]:
    """(matched name, raw text of the span) of every occurrence of ``names`` in ``raw``."""
    found = toy_occurrences(matcher, names, [normalize_with_offsets(raw)])
    return [(o.name, raw[o.start : o.end]) for o in found]


# --------------------------------------------------------------------------------------------- the offset map


def test_ascii_case_folding_and_whitespace_runs() -> None:
    n = normalize_with_offsets("  Kids  play\twith\n LEGO bricks ")
    assert n.text == "kids play with lego bricks"
    start = n.text.index("lego")
    assert n.raw_span(start, start + 4) == (19, 23)
    assert spans("  Kids  play\twith\n LEGO bricks ", "lego") == [("lego", "LEGO")]
    # a name with a space matches across a run of raw whitespace; the span covers the run
    assert spans("building\n\n  blocks!", "Building Blocks") == [("Building Blocks", "building\n\n  blocks")]


def test_full_width_characters_map_back_one_to_one() -> None:
    raw = "孩子们在玩ＬＥＧＯ积木，很开心"
    assert spans(raw, "lego") == [("lego", "ＬＥＧＯ")]
    assert spans(raw, "积木") == [("积木", "积木")]
    assert spans("用了ｌｅｇｏ", "LEGO") == [("LEGO", "ｌｅｇｏ")]


def test_nfkc_expansions_map_to_the_whole_raw_character() -> None:
    # "ﬁ" (one character) becomes "fi": a match starting inside it covers it whole
    assert spans("a ﬁsh tank", "fish") == [("fish", "ﬁsh")]
    # "㈱" becomes "(株)"
    assert spans("牌子㈱积木", "株") == [("株", "㈱")]
    # "½" becomes "1⁄2"; "⑤" becomes "5"
    assert spans("拼图⑤块", "5") == [("5", "⑤")]


def test_composition_and_lower_case_expansion() -> None:
    decomposed = "cafe\u0301 blocks"  # e + combining acute composes to é
    assert normalize_with_offsets(decomposed).text == "café blocks"
    assert spans(decomposed, "café") == [("café", "cafe\u0301")]
    # "İ".lower() is two characters ("i" + combining dot): both map to the raw "İ"
    raw = "İstanbul blocks"
    n = normalize_with_offsets(raw)
    assert n.text == normalize_text(raw) and len(n.text) == len(raw) + 1
    assert spans(raw, "blocks") == [("blocks", "blocks")]
    # Hangul jamo compose across two starters
    jamo = "\u1100\u1161 놀이"
    assert normalize_with_offsets(jamo).text == "가 놀이"
    assert spans(jamo, "가") == [("가", "\u1100\u1161")]


def test_greek_final_sigma_keeps_its_context_rule() -> None:
    raw = "ΟΔΟΣ car"
    n = normalize_with_offsets(raw)
    assert n.text == normalize_text(raw) == "οδος car"
    assert spans(raw, "car") == [("car", "car")]


def test_word_boundaries_and_chinese_latin_mixes() -> None:
    raw = "孩子们玩car和cart，还有scar、car2，最后是(Car)"
    found = spans(raw, "car")
    assert found == [("car", "car"), ("car", "Car")]  # 玩car和 and (Car): not cart, scar, car2
    starts = [o.start for o in toy_occurrences(EXACT, ["car"], [normalize_with_offsets(raw)])]
    assert starts == [raw.index("car"), raw.index("Car")]
    # CJK names are substrings: 积木 inside 单元积木
    assert spans("孩子们在搭单元积木", "积木", "单元积木") == [("单元积木", "单元积木"), ("积木", "积木")]


def test_overlapping_occurrences_and_duplicate_names_are_listed_once() -> None:
    assert spans("aaaa", "aa") == []  # a Latin name needs word boundaries: every "aa" here touches another "a"
    assert spans("ａａ aa", "aa", "AA") == [("aa", "ａａ"), ("aa", "aa")]
    assert spans("积积积", "积积") == [("积积", "积积"), ("积积", "积积")]


def test_fuzzy_rule_points_at_its_best_alignment() -> None:
    fuzzy = ToyMatcher(MatchConfig("fuzzy", 80))
    raw = "孩子们在玩 Legos 积木"
    found = toy_occurrences(fuzzy, ["lego"], [normalize_with_offsets(raw)])
    assert len(found) == 1 and raw[found[0].start : found[0].end].lower().startswith("lego")


_TEXT = st.text(
    alphabet=st.sampled_from(
        list("abcAB zZ09-_.,\t\n")
        + list("积木拼图")
        + list("ＡＢａｂ０，　")
        + ["ﬁ", "㈱", "\u0301", "\u1100", "\u1161", "İ"]
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_offset_map_is_monotone_and_each_span_normalises_to_what_it_maps(raw: str) -> None:
    n = normalize_with_offsets(raw)
    assert n.text == normalize_text(raw)
    assert list(n.starts) == sorted(n.starts) and list(n.ends) == sorted(n.ends)
    assert all(0 <= s < e <= len(raw) for s, e in zip(n.starts, n.ends))
    for i in range(len(n.text)):
        for j in range(i + 1, min(len(n.text), i + 6) + 1):
            piece = n.text[i:j]
            if piece != piece.strip():
                continue
            start, end = n.raw_span(i, j)
            assert piece in normalize_text(raw[start:end])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from([*"ab c1-积木", "Ａ", "ｂ"]), min_size=1, max_size=4), _TEXT)
def test_occurrences_agree_with_the_scoring_rule(name: str, caption: str) -> None:
    """Where the viewer points is exactly what the metric counts: found somewhere iff named."""
    for matcher in (EXACT, ToyMatcher(MatchConfig("fuzzy", 70))):
        text = normalize_text(caption)
        assert bool(matcher.occurrences(name, text)) == matcher.mention_in_normalized(name, text)
    toy = ToyAnnotation(name, "low", "foreground") if any(not c.isspace() for c in name) else None
    if toy is not None and toy.match_names:
        named = EXACT.named_flags([toy], [normalize_text(caption)])[0]
        assert bool(toy_occurrences(EXACT, toy.accepted_names, [normalize_with_offsets(caption)])) == named


def test_nfkc_units_agree_with_unicodedata_on_tricky_sequences() -> None:
    for raw in ("ﬀﬁﬂ", "Å\u030a", "\u1100\u1161\u11a8", "ｶﾞ", "ｶ\uff9e", "a\u0308\u0301b", "x\u0345\u0301y"):
        n = normalize_with_offsets(raw)
        assert n.text == " ".join(unicodedata.normalize("NFKC", raw).lower().split())
        assert all(0 <= s < e <= len(raw) for s, e in zip(n.starts, n.ends))


# --------------------------------------------------------------------------------------------- the per-image file


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("per_image") / "a.jsonl"
    assert main(["score", "--n-boot", "0", "--per-image", str(out), "--json", str(out.with_suffix(".json"))]) == 0
    return out


def test_score_per_image_rows_agree_with_the_report(sample_file: Path) -> None:
    dataset = load_dataset()
    loaded = read_per_image(sample_file)
    assert loaded.kind == "score" and loaded.model == "system-a" and len(loaded.rows) == len(dataset)
    assert [row.id for row in loaded.rows] == [r.id for r in dataset]
    report = json.loads(sample_file.with_suffix(".json").read_text())
    assert report["outputs"] == {"per_image": str(sample_file)}
    assert loaded.header.dataset["sha256"] == report["dataset"]["sha256"] == dataset.sha256
    # the rows' statistics give the report's metrics exactly
    assert point_estimate(loaded.stats(), TTS) == report["metrics"]
    expected = score_captions(dataset, load_predictions(SAMPLE_PREDICTIONS["system-a"], dataset))
    by_id = {s.id: s for s in expected.per_image}
    for row, record in zip(loaded.rows, dataset):
        assert row.status == "scored" and row.reference == record.caption
        assert (sample_file.parent / row.image).resolve() == record.image.resolve()
        named = [toy.named for toy in row.toys]
        assert sum(named) == by_id[row.id].named[0] and len(named) == by_id[row.id].total[0]
        assert row.rate == (sum(named) / len(named) if named else None)
        assert row.reward == pytest.approx(by_id[row.id].reward)
        for toy in row.toys:
            assert toy.named == bool(toy.occurrences)
            if toy.named:
                caption = row.captions[toy.caption]
                assert normalize_text(caption[toy.span[0] : toy.span[1]]) == normalize_text(toy.matched)
                assert toy.matched in (toy.name, *toy.aliases)


def test_alias_match_is_named_with_its_span(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    rows = [
        {"id": "x", "image": "x.png", "category": "classroom", "area": "建构区", "caption": "ref",
         "toys": [{"name": "磁力片", "level": "medium", "ground": "background", "aliases": ["磁性拼板"]},
                  {"name": "LEGO", "level": "low", "ground": "foreground"},
                  {"name": "天平", "level": "high", "ground": "foreground"}]},
        {"id": "y", "image": "y.png", "category": "outdoor", "area": "沙水区", "caption": "ref", "toys": []},
        {"id": "z", "image": "z.png", "category": "outdoor", "area": "沙水区", "caption": "ref",
         "toys": [{"name": "铲子", "level": "low", "ground": "foreground"}]},
    ]  # fmt: skip
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    preds = tmp_path / "p.jsonl"
    preds.write_text(
        json.dumps({"id": "x", "captions": ["孩子们用磁性拼板搭房子", "还有 ＬＥＧＯ 和 lego"]}, ensure_ascii=False)
        + "\n"
        + json.dumps({"id": "z", "error": "HTTP 500"})
        + "\n"
    )
    out = tmp_path / "per.jsonl"
    argv = ["score", "--data", str(data), "--predictions", str(preds), "--per-image", str(out), "--n-boot", "0"]
    assert main([*argv, "--allow-missing", "--allow-failed", "1"]) == 0
    x, y, z = read_per_image(out).rows
    magnet, lego, balance = x.toys
    assert (magnet.named, magnet.matched, magnet.caption, magnet.span) == (True, "磁性拼板", 0, (4, 8))
    assert (lego.named, lego.caption, lego.span) == (True, 1, (3, 7))
    assert [o[:3] for o in lego.occurrences] == [(1, 3, 7), (1, 10, 14)]
    assert (balance.named, balance.matched, balance.span, balance.occurrences) == (False, None, None, [])
    assert x.rate == pytest.approx(2 / 3) and x.reward == pytest.approx(0.5 * 2 + 1 * 1)
    assert (y.status, y.captions, y.rate, y.reward) == ("missing", [], None, 0.0)  # scored as an empty caption
    # a failed generation is marked failed, never scored: no statistics, no named flag, no rate
    assert (z.status, z.failure, z.stats, z.rate, z.reward) == ("failed", "error", None, None, None)
    assert z.toys[0].named is None


def test_bad_per_image_files_name_file_line_and_field(tmp_path: Path, sample_file: Path, capsys) -> None:
    lines = sample_file.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    row = json.loads(lines[1])
    row["toys"][0]["span"] = [0, 999]
    bad.write_text("\n".join([lines[0], json.dumps(row), lines[2], lines[2]]) + "\n")
    with pytest.raises(DataValidationError) as err:
        read_per_image(bad)
    text = str(err.value)
    assert f"{bad}:line 2: field" in text and "not inside a caption" in text
    assert f"{bad}:line 4: field 'id': duplicate id" in text
    not_one = tmp_path / "plain.jsonl"
    not_one.write_text('{"id": "a", "caption": "x"}\n')
    with pytest.raises(DataValidationError, match="not a per-image file"):
        read_per_image(not_one)


def test_judge_per_image_rows_hold_each_caption_s_answer(tmp_path: Path, monkeypatch) -> None:
    from judge_server import JudgeServer

    ids = [r.id for r in load_dataset().records[:3]]
    preds = tmp_path / "p.jsonl"
    rows = [{"id": ids[0], "captions": ["x @@score=80", "y @@score=60"]}, {"id": ids[1], "caption": "z @@garbagex9"}]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, report = tmp_path / "judge.jsonl", tmp_path / "judge.json"
    with JudgeServer(api_key="sk-test") as server:
        monkeypatch.setenv("ECAC_JUDGE_BASE_URL", server.base_url)
        monkeypatch.setenv("ECAC_JUDGE_API_KEY", "sk-test")
        monkeypatch.setenv("ECAC_JUDGE_MODEL", "test-judge")
        argv = ["judge", "--predictions", str(preds), "--allow-missing", "--cache-dir", str(tmp_path / "cache")]
        argv += ["--no-progress", "--n-boot", "0", "--per-image", str(out), "--json", str(report)]
        assert main(argv) == 0
    loaded = read_per_image(out)
    first, second, third = loaded.rows[:3]
    assert first.details == {
        "judge": [{"caption": 0, "score": 80.0, "error": None}, {"caption": 1, "score": 60.0, "error": None}]
    }
    assert second.details["judge"][0]["score"] is None and second.details["judge"][0]["error"]
    assert (third.status, third.stats, third.details) == ("missing", None, None)
    assert point_estimate(loaded.stats(), JUDGE) == json.loads(report.read_text())["metrics"]
    assert b"sk-test" not in out.read_bytes()


def test_per_image_work_stays_off_the_default_path() -> None:
    """`score` without --per-image never imports the per-image module (its offset maps and file format)."""
    import subprocess
    import sys

    code = (
        "import sys; from ecac_bench.cli import main; assert main(['score', '--n-boot', '0']) == 0; "
        "print('per_image' in ' '.join(m for m in sys.modules if m.startswith('ecac_bench')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")
