"""Reading answers: the linear-time block extraction equals the regexes it replaced, hostile answers cost little, and
over-long answers are refused before any parser sees them."""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from judge_server import JudgeServer
from llm_helpers import make_client

from ecac_bench.llm import (
    MAX_ANSWER_CHARS,
    answer_blocks,
    complete_parsed,
    failure_counts,
    json_in_answer,
    user_message,
)
from ecac_bench.llm.parsing import _QUOTES

# The regexes answer_blocks used before it became linear (quadratic on repeated openers).
_OLD_THINK = re.compile(r"<think>.*?</think>", re.S)
_OLD_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)


def old_answer_blocks(text: str) -> list[str]:
    clean = _OLD_THINK.sub("", unicodedata.normalize("NFKC", text)).translate(_QUOTES)
    return [*_OLD_FENCE.findall(clean), clean]


_PIECES = ["<think>", "</think>", "```", "```json", "json", " ", "\n", "\u3000", "a", "{", "}", "[", "]", '"', "“", "1"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join))
def test_answer_blocks_equal_the_old_regexes(text):
    assert answer_blocks(text) == old_answer_blocks(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_answer_blocks_on_any_text(text):
    assert answer_blocks(text) == old_answer_blocks(text)


@pytest.mark.parametrize(
    "hostile",
    ["<think>" * 20_000, "```" * 20_000, "```json" * 20_000, "[" * 20_000, "{" * 20_000, "<think>```[" * 10_000],
)
def test_hostile_answers_are_read_in_linear_time(hostile):
    start = time.perf_counter()
    answer_blocks(hostile)
    json_in_answer(hostile, "[")
    json_in_answer(hostile, "{")
    # The regexes took 20 s and more on these; linear scans take milliseconds (a loose bound for busy machines).
    assert time.perf_counter() - start < 2.0


def test_failure_counts_group_by_reason():
    errors = ["HTTP 500 (after 3 attempts)", "HTTP 500 (after 7 attempts)", None, "no score found"]
    assert failure_counts(errors) == {"HTTP 500": 2, "no score found": 1}


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
