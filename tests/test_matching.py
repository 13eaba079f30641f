"""The exact matching rule, pinned case by case (docs/metrics.md, "Matching")."""

import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecac_bench import MatchConfig, ToyAnnotation, ToyMatcher, normalize_text
from ecac_bench.matching import needs_word_boundary, nfkc


def toy(name, *aliases, level="low", ground="foreground"):
    return ToyAnnotation(name, level, ground, tuple(aliases))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Unit   Blocks\t\n", "unit blocks"),
        ("ＬＥＧＯ　积木", "lego 积木"),  # full-width letters and the ideographic space fold under NFKC
        ("孩子们，玩", "孩子们,玩"),  # full-width comma -> ASCII comma (NFKC)
        ("Ⅳ", "iv"),  # compatibility decomposition, then lower-case
        ("", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


@pytest.mark.parametrize(
    ("name", "caption", "named"),
    [
        ("car", "a red car.", True),
        ("car", "a cart", False),  # letter after
        ("car", "a scar", False),  # letter before
        ("car", "car2 is here", False),  # digit after
        ("car", "cars", False),
        ("lego", "lego-like bricks", True),  # punctuation is a boundary
        ("lego", "(lego)", True),
        ("Unit Blocks", "they stack UNIT  BLOCKS", True),  # case and whitespace normalised on both sides
        ("unit blocks", "unitblocks", False),
        ("car", "car", True),  # occurrence at both ends of the text
        ("car", "cart and car", True),  # a later occurrence on boundaries counts
        ("lego", "ＬＥＧＯ bricks", True),  # full-width caption
        ("ＬＥＧＯ", "lego bricks", True),  # full-width name
        ("car", "玩car玩", True),  # CJK neighbours are not ASCII letters/digits
        ("car", "écar", True),  # only ASCII letters/digits block: é does not
        ("积木", "孩子们在玩单元积木", True),  # CJK: plain substring, even inside a longer word
        ("单元积木", "孩子们在玩积木", False),
        ("彩泥", "彩 泥", False),
        ("3d拼图", "做3d拼图游戏", True),  # contains CJK: substring rule, no boundaries
        ("3d拼图", "a3d拼图", True),
    ],
)
def test_exact_rule(name, caption, named):
    assert ToyMatcher().mentions(name, caption) is named
    assert ToyMatcher().names(toy(name), [caption]) is named


def test_boundary_rule_applies_below_u3000():
    assert needs_word_boundary("lego")
    assert needs_word_boundary("café-2")  # Latin-1 letters are below U+3000 too
    assert not needs_word_boundary("积木")
    assert not needs_word_boundary("3d拼图")


def test_aliases_count_as_names():
    playdough = toy("彩泥", "橡皮泥")
    assert ToyMatcher().names(playdough, ["孩子们在捏橡皮泥"])
    assert not ToyMatcher().names(playdough, ["孩子们在捏泥巴"])
    en = toy("play dough", "playdough", "plasticine")
    assert ToyMatcher().names(en, ["Kids shape PLASTICINE."])
    assert not ToyMatcher().names(en, ["Kids shape plasticines."])


def test_any_of_several_captions_names_the_toy():
    drum = toy("drum")
    assert ToyMatcher().names(drum, ["a tambourine", "a small drum"])
    assert not ToyMatcher().names(drum, ["a tambourine", "drums"])
    assert not ToyMatcher().names(drum, [])


def test_fuzzy_mode_tolerates_typos_and_threshold():
    matcher = ToyMatcher(MatchConfig("fuzzy", 80))
    assert matcher.mentions("xylophone", "the child plays a xylofone")
    assert not ToyMatcher().mentions("xylophone", "the child plays a xylofone")
    assert not ToyMatcher(MatchConfig("fuzzy", 100)).mentions("xylophone", "the child plays a xylofone")


def test_match_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown match mode"):
        MatchConfig("regex")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0-100"):
        MatchConfig("fuzzy", 120)


def test_plan_cache_is_per_object_identity():
    matcher = ToyMatcher()
    a, b = toy("car"), toy("drum")
    assert matcher.named_flags([a, b, a], ["a car"]) == [True, False, True]
    assert matcher.named_flags([b], ["a drum"]) == [True]


# Characters that exercise NFKC: full-width forms, ligatures, combining marks (reordering and composition),
# Hangul jamo, compatibility ideographs, ideographic and other Unicode spaces, CJK, ASCII.
_TRICKY = "ＡＢｃ１，。、ﬁ①Ⅻ㍿\u0301\u0323\u0307e\u00e9\u1100\u1161\u11a8가\uf900\u3000\u00a0\u2028\t 积木Lego-"


@given(st.text(alphabet=st.sampled_from(_TRICKY) | st.characters(), max_size=40))
@settings(max_examples=400, deadline=None)
def test_fast_nfkc_equals_unicodedata(text):
    assert nfkc(text) == unicodedata.normalize("NFKC", text)
    assert normalize_text(text) == " ".join(unicodedata.normalize("NFKC", text).lower().split())


# What a batched normaliser must not get wrong: its separators inside texts, marks and jamo at a text's edges (they
# must not combine across texts), the final sigma at the edges, dotted capital I, whitespace of every kind (some
# survive NFKC), characters outside the BMP (NFKC-changing and cased), zero-width characters, CJK and full width.
_EDGES = (
    _TRICKY + "\x00\u2400\u0301\u1161\u11a8ΣσςΟΔİI\u1e9e\u2003\u0085\x1c\x1f\u200b\u200d\ufeff\U0001d400\U00010400😀 a"
)


@given(st.lists(st.text(alphabet=st.sampled_from(_EDGES) | st.characters(), max_size=12), max_size=12))
@settings(max_examples=500, deadline=None)
def test_normalize_many_is_normalize_text_of_each(texts):
    from ecac_bench.matching import normalize_many

    assert normalize_many(texts) == [normalize_text(t) for t in texts]
    ascii_only = [t.encode("ascii", "ignore").decode() for t in texts]
    assert normalize_many(ascii_only) == [normalize_text(t) for t in ascii_only]


@pytest.mark.parametrize(
    "texts",
    [
        ["ΣΟΦΙΑΣ", "Σ", "AΣ", "Σa", "ΑΣ\u0301"],  # the final sigma at the edges of texts
        ["e", "\u0301", "\u1100", "\u1161", "가", "\u11a8"],  # marks and jamo that would combine across texts
        ["a\x00b", "c"],  # the ASCII separator in a text: each text on its own
        ["积木\u2400", "玩"],  # the other separator
        ["  x  ", "\t", "", " ", "y\u3000\u3000z"],
        ["\U0001d40b\U0001d404\U0001d406\U0001d40e", "积木"],  # outside the BMP
    ],
)
def test_normalize_many_edge_cases(texts):
    from ecac_bench.matching import normalize_many

    assert normalize_many(texts) == [normalize_text(t) for t in texts]


_NAME_PARTS = ["car", "lego", "a", "1", "积木", "é", " ", "-", "ｌｅｇｏ", "Σ", "s", "\u0301"]
_NAMES = st.lists(st.sampled_from(_NAME_PARTS), min_size=1, max_size=4).map("".join)
_TEXTS = st.lists(st.sampled_from([*_NAME_PARTS, "x", "y", ".", "(", "2", "玩", "  "]), max_size=10).map("".join)


@given(
    st.lists(st.lists(_NAMES, min_size=1, max_size=3), min_size=1),
    st.lists(st.tuples(st.integers(0, 20), _TEXTS)),
)
@settings(max_examples=300, deadline=None)
def test_named_pairs_is_named_flags_for_every_image(names, images):
    """Toys (each a name and aliases) and images (a text and which toys they have): named_pairs, all pairs at once,
    says what named_flags says image by image."""
    toys = [toy(*accepted) for accepted in names if any(normalize_text(n) for n in accepted)]
    if not toys:
        return
    matcher = ToyMatcher()
    texts = [normalize_text(text) for _, text in images]
    toy_of = np.array([k % len(toys) for k, _ in images for _ in range(1 + k % 3)], dtype=np.int64)
    image_of = np.array([i for i, (k, _) in enumerate(images) for _ in range(1 + k % 3)], dtype=np.int64)
    expected = [matcher.named_flags([toys[t]], [texts[i]])[0] for t, i in zip(toy_of, image_of)]
    assert matcher.named_pairs(toys, toy_of, image_of, texts).tolist() == expected
