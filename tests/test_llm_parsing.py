"""Reading answers: the structured value must be the whole answer (a reasoning block and one enclosing code fence
aside), hostile answers cost little, and over-long answers are refused before any parser sees them."""

from __future__ import annotations

import asyncio

import pytest
from judge_server import JudgeServer
from llm_helpers import make_client

from ecac_bench.llm import (
    MAX_ANSWER_CHARS,
    answer_payloads,
    complete_parsed,
    failure_counts,
    json_answer,
    list_answer,
    normalized,
    object_schema,
    user_message,
)
from ecac_bench.llm.parsing import NOT_JSON


@pytest.mark.parametrize(
    ("answer", "payloads"),
    [
        ('  {"a": 1}\n', ['{"a": 1}']),
        ('```json\n{"a": 1}\n```', ['{"a": 1}']),
        ('```JSON5\n{"a": 1}\n```', ['{"a": 1}']),
        ('```\n{"a": 1}\n```', ['{"a": 1}']),
        ('```{"a": 1}```', ['{"a": 1}']),
        ("```\nB\n```", ["B"]),
        # reasoning: the whole answer first (a value may contain "</think>"), then what follows the last closer (the
        # reasoning may quote one), then what follows the first
        ('<think>a</think> {"a": 1}', ['<think>a</think> {"a": 1}', '{"a": 1}']),
        (
            'opened by the template</think>```json\n{"a": 1}\n```',
            ['opened by the template</think>```json\n{"a": 1}\n```', '{"a": 1}'],
        ),
        (
            '<think>"</think>{"a": 9}" is quoted</think>\n{"a": 1}',
            [
                '<think>"</think>{"a": 9}" is quoted</think>\n{"a": 1}',
                '{"a": 1}',
                '{"a": 9}" is quoted</think>\n{"a": 1}',
            ],
        ),
        ('<think>a</think>["x</think>y"]', ['<think>a</think>["x</think>y"]', 'y"]', '["x</think>y"]']),
    ],
)
def test_answer_payloads(answer, payloads):
    assert answer_payloads(answer) == (payloads, None)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (None, "empty answer"),
        (" \n\t", "empty answer"),
        ("```json\n[1]", "code fence not closed, or more than one"),
        ("```json\n[1]\n```\n```json\n[2]\n```", "code fence not closed, or more than one"),
        ("``` ```", "code fence not closed, or more than one"),
        ("x" * (MAX_ANSWER_CHARS + 1), f"answer too long ({MAX_ANSWER_CHARS + 1} characters)"),
    ],
)
def test_answer_payloads_refusals(answer, error):
    assert answer_payloads(answer) == ([], error)


def test_json_answer_is_the_whole_answer():
    assert json_answer('```json\n{"a": [1, "“x”"]}\n```') == ({"a": [1, "“x”"]}, None)  # quotes inside strings kept
    assert json_answer("{“a”: 1}") == ({"a": 1}, None)  # typographic quotes as JSON's
    assert json_answer("［１，　２］") == ([1, 2], None)  # fullwidth forms and the ideographic space
    assert json_answer('<think>[9]</think>\n["x</think>y"]') == (["x</think>y"], None)
    assert json_answer('<think>"</think>[9]" is quoted</think>\n[1]') == ([1], None)
    for answer in ("Sure.\n[1, 2]", "[1] [2]", "[1, 2", "no json here", "[NaN]", "[1e999]", "[" * 5000 + "]" * 5000):
        assert json_answer(answer) == (None, NOT_JSON), answer


def test_list_answer_takes_the_list_or_its_one_key_object():
    assert list_answer('{"toys": ["a"]}', "toys") == (["a"], None)
    assert list_answer('["a"]', "toys") == (["a"], None)
    for answer in ('{"toys": ["a"], "x": 1}', '{"names": ["a"]}', '{"toys": "a"}', '"a"', "3"):
        assert list_answer(answer, "toys") == (None, 'not a JSON list or {"toys": [...]}'), answer


def test_normalized_maps_only_what_input_methods_change():
    assert normalized("｛＂ｓｃｏｒｅ＂：８０｝　“”‘’") == '{"score":80} ""\'\''
    assert normalized("积木 ① ﬁ") == "积木 ① ﬁ"  # not NFKC: nothing expands, names are read as written


def test_object_schema_is_strict_mode_shaped():
    schema = object_schema("s", {"a": {"type": "string"}, "b": {"type": "boolean"}})
    assert schema.schema == {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "boolean"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }


def test_failure_counts_group_by_reason():
    errors = ["HTTP 500 (after 3 attempts)", "HTTP 500 (after 7 attempts)", None, "empty answer"]
    assert failure_counts(errors) == {"HTTP 500": 2, "empty answer": 1}


def test_over_long_answers_are_refused_before_parsing():
    seen = []

    def parse(text):
        seen.append(len(text))
        return text, None

    with JudgeServer() as server:
        server.state.responder = lambda messages: "x" * (MAX_ANSWER_CHARS + 1) if len(messages) == 1 else "short"
        client = make_client(server.base_url)
        (answer,) = asyncio.run(
            complete_parsed(client, [[user_message("q")]], parse, lambda p: f"fix: {p}", version="v", retries=1)
        )
    assert answer.ok and answer.value == "short" and answer.rounds == 2
    assert seen == [5]  # the long answer never reached the parser: it was a parse failure, then repaired
