"""lone_surrogate_at: the one check that a string from a model or a file is Unicode text."""

from __future__ import annotations

import pytest

from ecac_bench.unicode_text import lone_surrogate_at


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("", None),
        ("plain ascii", None),
        ("幼儿在建构区搭积木", None),
        ("emoji 😀 outside the BMP", None),
        ("ab\ud800c", 2),
        ("\udfff", 0),
        ("幼儿 \udc00 \ud800", 3),  # the first one
        ("\ud83d\ude00", 0),  # a surrogate pair written as two code points is not the emoji: both are lone
    ],
)
def test_lone_surrogate_at(text, at):
    assert lone_surrogate_at(text) == at
