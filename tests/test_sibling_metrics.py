"""CapRL caption utility and BalCapRL balanced score: the pure parts, hand-computed."""

import json

import pytest

from ecac_bench.balanced import (
    BalancedImage,
    aggregate_balanced,
    harmonic_mean,
    parse_assertions,
    parse_coverage,
    parse_linguistic,
    parse_verdicts,
    score_components,
)
from ecac_bench.data import DataValidationError
from ecac_bench.prompts import Delimited, load_prompt
from ecac_bench.qa_tools import parse_generated_questions
from ecac_bench.utility import (
    CANNOT_ANSWER,
    QAItem,
    RoundOutcome,
    aggregate_utility,
    load_questions,
    parse_choice,
    shuffle_rounds,
)

OPTIONS = ("red ball", "blue car", "kite", "a doll", "Cannot be answered from the caption")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", 1),
        ("  a  ", 0),  # a lone lower-case letter is the letter
        ("(C)", 2),
        ("【D】", 3),
        ("**B**", 1),
        ("B.", 1),
        ("D. a doll", 3),  # the letter and its own option's text
        ("A red ball", 0),
        ("Answer: E", 4),
        ("The answer is C.", 2),
        ("答案：B", 1),
        ("答案是 B。", 1),
        ("选B", 1),
        ("（Ｂ）", 1),  # fullwidth
        ("```\nB\n```", 1),
        ("<think>A or B? The caption says blue.</think>\nB", 1),
    ],
)
def test_parse_choice_reads_a_letter_alone(text, expected):
    assert parse_choice(text, OPTIONS) == (expected, None)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty answer"),
        (None, "empty answer"),
        ("F", "not one of the shown options (A-E)"),
        ("I think it's b", "not an option letter alone"),
        ("A blue car", "not an option letter alone"),  # was read as A: "A" is the article here
        ("B. kite", "not an option letter alone"),  # the letter and another option's text
        ("B or C", "not an option letter alone"),  # was read as B
        ("The caption says: answer B. So C.", "not an option letter alone"),
        ("Blocks", "not an option letter alone"),
        ("我不知道", "no option letter"),
        ("...", "no option letter"),
    ],
)
def test_parse_choice_refuses_everything_else(text, error):
    assert parse_choice(text, OPTIONS) == (None, error)


def test_shuffle_rounds_is_seeded_and_tracks_the_answer():
    items = [QAItem("img1", "What toy?", ("blocks", "ball", "drum", "doll"), 2)]
    rounds = shuffle_rounds(items, rounds=4, seed=3, lang="en")
    assert len(rounds) == 4
    for r in rounds:
        assert r.options[-1] == CANNOT_ANSWER["en"] and len(r.options) == 5
        assert r.options[r.correct] == "drum"
        assert sorted(r.options[:-1]) == sorted(items[0].options)
    assert [r.options for r in shuffle_rounds(items, 4, 3, "en")] == [r.options for r in rounds]
    assert len({r.options for r in shuffle_rounds(items, 24, 3, "en")}) > 1  # rounds differ
    assert shuffle_rounds(items, 1, 0, "zh", add_cannot_answer=False)[0].options[-1] != CANNOT_ANSWER["zh"]


def test_aggregate_utility_hand_computed():
    o = [
        # image a, question 0: 3 of 4 rounds right; question 1: 1 of 2 scored (one round failed)
        *(RoundOutcome("a", 0, r, c, 1, None) for r, c in enumerate([1, 1, 1, 0])),
        RoundOutcome("a", 1, 0, 2, 2, None),
        RoundOutcome("a", 1, 1, None, 2, None),  # unparsed: wrong
        RoundOutcome("a", 1, 2, None, 2, "HTTP 500"),  # failed: excluded
        # image b: 0 of 1
        RoundOutcome("b", 0, 0, 0, 3, None),
    ]
    result = aggregate_utility(o)
    assert result.per_image == pytest.approx({"a": 100 * (0.75 + 0.5) / 2, "b": 0.0})
    assert result.utility == pytest.approx((62.5 + 0) / 2)
    assert result.utility_micro == pytest.approx(100 * 4 / 7)
    assert (result.n_images, result.n_questions, result.n_rounds, result.n_failed, result.n_unparsed) == (2, 3, 7, 1, 1)
    assert aggregate_utility([]).utility is None


def test_questions_file_validation(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"id": "a", "question": "Q?", "options": ["x", "y"], "answer": "B"}\n'
        '{"id": "b", "question": "Q?", "options": ["x", "y"], "answer": "y"}\n'
        '{"id": "c", "question": "", "options": ["x"], "answer": "Z"}\n'
    )
    with pytest.raises(DataValidationError) as info:
        load_questions(path)
    assert [(p.line, p.field) for p in info.value.problems] == [(3, "question"), (3, "options")]
    path.write_text(path.read_text().splitlines()[0] + "\n" + path.read_text().splitlines()[1] + "\n")
    items = load_questions(path)
    assert [i.answer for i in items] == [1, 1]


def test_parse_generated_questions():
    row = {"question": "Which toy?", "options": ["a", "b", "c", "d"], "answer": "C"}
    expected = [QAItem("img", "Which toy?", ("a", "b", "c", "d"), 2)]
    for text in (json.dumps({"questions": [row]}), json.dumps([row]), "```json\n" + json.dumps([row]) + "\n```"):
        assert parse_generated_questions(text, "img") == (expected, None)
    not_json = "not a JSON value alone (the answer must be the JSON and nothing else)"
    failures = {
        "no list here": not_json,
        "Sure!\n" + json.dumps([row]): not_json,  # was read: text around the list
        "[]": "no question",
        json.dumps([row, {"question": "q", "options": ["a"], "answer": "A"}]): (
            "question 2: options: must be a list of at least 2 non-empty strings"  # was dropped silently
        ),
        json.dumps([{**row, "id": "other"}]): "question 1: must be an object with exactly question, options and answer",
        json.dumps(
            [{**row, "answer": "E"}]
        ): "question 1: answer: must be the letter or the exact text of one of the options",
        json.dumps({"questions": [row], "note": "x"}): 'not a JSON list or {"questions": [...]}',
    }
    for text, error in failures.items():
        assert parse_generated_questions(text, "img") == (None, error), text


def test_harmonic_mean_and_components():
    assert harmonic_mean([1.0, 0.5, 0.25]) == pytest.approx(3 / (1 + 2 + 4))
    assert harmonic_mean([1.0, 0.0, 1.0]) == 0.0
    image = score_components(
        "x",
        verdicts=[(True, True), (True, False), (False, True), (True, True)],  # 2 of 4 verified AND pointable
        covered=[True, False, False],  # 1 of 3 reference assertions
        linguistic_scores={"clarity": 5, "fluency": 3, "coherence": 4},  # (1 + 0.5 + 0.75) / 3
    )
    assert image.precision == pytest.approx(0.5)
    assert image.recall == pytest.approx(1 / 3)
    assert image.linguistic == pytest.approx(0.75)
    assert image.b_capscore == pytest.approx(3 / (2 + 3 + 4 / 3))
    empty = score_components("y", [], [True], {"clarity": 1, "fluency": 1, "coherence": 1})
    assert empty.precision == 0.0 and empty.b_capscore == 0.0
    assert score_components("z", [(True, True)], [], {"clarity": 5, "fluency": 5, "coherence": 5}).error


def test_aggregate_balanced_excludes_failures():
    images = [
        BalancedImage("a", 1.0, 0.5, 0.5),
        BalancedImage("b", 0.5, 0.5, 1.0),
        BalancedImage("c", None, None, None, error="verify: HTTP 500"),
    ]
    result = aggregate_balanced(images)
    assert result.precision == pytest.approx(75.0) and result.recall == pytest.approx(50.0)
    assert result.b_capscore == pytest.approx(100 * (harmonic_mean([1, 0.5, 0.5]) + harmonic_mean([0.5, 0.5, 1])) / 2)
    assert (result.n, result.n_failed) == (2, 1)


def test_balanced_parsers():
    # verdicts: {"verdicts": [...]} or the list; exactly two JSON booleans per verdict, n of them
    assert parse_verdicts('{"verdicts": [{"verified": true, "pointable": false}]}', 1) == ([(True, False)], None)
    assert parse_verdicts('[{"pointable": true, "verified": false}]', 1) == ([(False, True)], None)
    assert parse_verdicts('[{"verified": true, "pointable": "yes"}]', 1) == (
        None,
        "'verified' and 'pointable' must be true or false",
    )  # was read as True
    assert parse_verdicts('[{"verified": 1, "pointable": true}]', 1)[0] is None
    assert parse_verdicts('[{"verified": true}]', 1)[0] is None
    assert parse_verdicts('[{"verified": true, "pointable": true, "why": "x"}]', 1)[0] is None
    assert "expected 2" in parse_verdicts('[{"verified": true, "pointable": true}]', 2)[1]
    # coverage: JSON booleans only, n of them, nothing around
    assert parse_coverage('{"covered": [true, false, true]}', 3) == ([True, False, True], None)
    assert parse_coverage("[true, false]", 2) == ([True, False], None)
    assert parse_coverage("答案：[true, false, true]", 3)[0] is None  # was read: text around the list
    assert parse_coverage("[true, false, 1]", 3)[0] is None  # was read as True
    assert parse_coverage("[true]", 2)[0] is None
    # linguistic: exactly the three aspects, whole numbers 1-5 as JSON integers
    expected = {"clarity": 4.0, "fluency": 5.0, "coherence": 3.0}
    assert parse_linguistic('```json\n{"clarity": 4, "fluency": 5, "coherence": 3}\n```') == (expected, None)
    assert parse_linguistic("{“clarity”: 4, “fluency”: 5, “coherence”: 3}") == (expected, None)
    assert parse_linguistic('{"clarity": 9, "fluency": 5, "coherence": 3}') == (
        None,
        "'clarity' must be a whole number 1-5",
    )
    for bad in ('"4"', "4.5", "true", "4e0"):  # strings and floats were read as numbers
        assert parse_linguistic(f'{{"clarity": {bad}, "fluency": 5, "coherence": 3}}')[0] is None, bad
    assert parse_linguistic('{"clarity": 4, "fluency": 5, "coherence": 3, "overall": 4}')[0] is None
    assert parse_linguistic('Rating: {"clarity": 4, "fluency": 5, "coherence": 3}')[0] is None
    # assertions: {"assertions": [...]} or the list, strings only
    assert parse_assertions('{"assertions": ["A child plays."]}') == (["A child plays."], None)
    assert parse_assertions('{"toys": ["A child plays."]}')[0] is None


def test_recall_prompt_asks_about_the_caption_s_assertions():
    """BalCapRL's recall: mentioned in OR reasonably inferable from the generated caption's atomic assertions."""
    en = load_prompt("balanced_recall", "en")
    text = " ".join(
        en.render(caption_assertions="1. A child stacks blocks.", reference_assertions="1. Blocks.").split()
    )
    assert en.version == "3"
    assert (
        "decide whether it is mentioned in, or can reasonably be inferred from, the generated caption's assertions"
        in text
    )
    claims = Delimited("1. A child stacks blocks.", "caption-assertions")
    refs = Delimited("1. Blocks.", "reference-assertions")
    assert f"{claims.open} 1. A child stacks blocks. {claims.close} {refs.open} 1. Blocks. {refs.close}" in text
    zh = load_prompt("balanced_recall", "zh").render(caption_assertions="1. 甲", reference_assertions="1. 乙")
    assert (
        "是否在生成描述的" in zh
        and "被提及，或能够从这些断言中合理推断出来" in zh
        and zh.index("1. 甲") < zh.index("1. 乙")
    )
