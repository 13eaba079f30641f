"""CapRL caption utility and BalCapRL balanced score: the pure parts, hand-computed."""

import pytest

from ecac_bench.balanced import (
    BalancedImage,
    aggregate_balanced,
    harmonic_mean,
    parse_coverage,
    parse_linguistic,
    parse_verdicts,
    score_components,
)
from ecac_bench.data import DataValidationError
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


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("B", 5, 1),
        ("(C)", 5, 2),
        ("D. a red ball", 5, 3),
        ("Answer: E", 5, 4),
        ("答案：B", 5, 1),
        ("选B", 5, 1),
        ("The answer is C.", 5, 2),
        ("I think it's b", 5, None),  # lower-case inside prose is not an option letter
        ("F", 5, None),  # outside the shown options
        ("", 5, None),
        (None, 5, None),
        ("  a  ", 5, 0),  # a lone lower-case letter is the letter
    ],
)
def test_parse_choice(text, n, expected):
    assert parse_choice(text, n) == expected


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
    text = 'Sure!\n```json\n[{"question": "Which toy?", "options": ["a", "b", "c", "d"], "answer": "C"}]\n```'
    items, error = parse_generated_questions(text, "img")
    assert error is None and items == [QAItem("img", "Which toy?", ("a", "b", "c", "d"), 2)]
    assert parse_generated_questions("no list here", "img")[0] is None
    assert parse_generated_questions('[{"question": "q", "options": ["a"], "answer": "A"}]', "img")[0] is None


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
    assert parse_verdicts('[{"verified": true, "pointable": "yes"}]', 1) == ([(True, True)], None)
    assert parse_verdicts('[{"verified": true}]', 1)[0] is None
    assert "expected 2" in parse_verdicts('[{"verified": true, "pointable": true}]', 2)[1]
    assert parse_coverage("答案：[true, false, 1]", 3) == ([True, False, True], None)
    assert parse_coverage("[true]", 2)[0] is None
    assert parse_linguistic('```json\n{"clarity": "4", "fluency": 5, "coherence": 3}\n```')[0] == {
        "clarity": 4.0,
        "fluency": 5.0,
        "coherence": 3.0,
    }
    assert "within 1-5" in parse_linguistic('{"clarity": 9, "fluency": 5, "coherence": 3}')[1]


def test_json_in_answer_forms():
    from ecac_bench.llm import json_in_answer

    assert json_in_answer("Sure.\n```json\n[1, 2]\n```") == [1, 2]
    assert json_in_answer("{“clarity”: 4}", "{") == {"clarity": 4}  # typographic quotes
    assert json_in_answer('[{"q": "他说“好”"}]') == [{"q": "他说“好”"}]  # quotes inside strings kept
    assert json_in_answer("<think>[nope</think> answer: [true]") == [True]
    assert json_in_answer("no json here") is None and json_in_answer("[1, 2", "[") is None
    assert parse_linguistic("{“clarity”: 4, “fluency”: 5, “coherence”: 3}")[0] == {
        "clarity": 4.0,
        "fluency": 5.0,
        "coherence": 3.0,
    }


def test_recall_prompt_asks_about_the_caption_s_assertions():
    """BalCapRL's recall: mentioned in OR reasonably inferable from the generated caption's atomic assertions."""
    from ecac_bench.prompts import load_prompt

    en = load_prompt("balanced_recall", "en")
    text = " ".join(
        en.render(caption_assertions="1. A child stacks blocks.", reference_assertions="1. Blocks.").split()
    )
    assert en.version == "2"
    assert (
        "decide whether it is mentioned in, or can reasonably be inferred from, the generated caption's assertions"
        in text
    )
    assert "Caption assertions: 1. A child stacks blocks. Reference assertions: 1. Blocks." in text
    zh = load_prompt("balanced_recall", "zh").render(caption_assertions="1. 甲", reference_assertions="1. 乙")
    assert (
        "是否在生成描述的" in zh
        and "被提及，或能够从这些断言中合理推断出来" in zh
        and zh.index("1. 甲") < zh.index("1. 乙")
    )
