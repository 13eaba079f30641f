"""Whether a Python string is Unicode text.

A Python ``str`` may hold a lone surrogate (U+D800-U+DFFF on its own): the standard library's JSON reader turns a
``"\\ud800"`` escape into one, where orjson refuses it. No UTF-8 file, report, SQLite row or JSON request can hold
it, so a string from a model or a file is checked here before it is kept.
"""

from __future__ import annotations


def lone_surrogate_at(text: str) -> int | None:
    """The index of the first lone surrogate in ``text``, or None when it is Unicode text."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None
