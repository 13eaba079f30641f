"""Terminal output of the commands: data is printed as text, never as markup.

Anything read from a file or answered by a model (toy names, areas, model names, paths, judge answers) may hold rich
markup (``[/]`` crashes rich, ``[link=...]`` makes a hyperlink) or terminal control sequences (ESC, bidi overrides).
Every value goes through :func:`text`, which makes a :class:`rich.text.Text` (never parsed as markup) with control
characters shown as escapes; the commands' own styling is applied around it.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Highlighting would restyle digits and quotes inside data; markup is never parsed from data anyway (Text objects).
console = Console(highlight=False)

# Characters that reorder or hide text without being "control" characters (Cc): bidi embeddings, overrides and
# isolates, the directional marks, and the zero-width characters that join or split words invisibly.
_INVISIBLE = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
)


def _escaped(ch: str) -> str:
    return ch.encode("unicode_escape").decode("ascii")


def plain(value: object) -> str:
    """``str(value)`` with control and invisible formatting characters written as escapes (``\\x1b``,
    ``\\u202e``, ``\\n``): one line, showing exactly what the data holds."""
    string = str(value)
    if string.isprintable() and not _INVISIBLE.intersection(string):
        return string
    return "".join(
        _escaped(ch) if ch in _INVISIBLE or (not ch.isprintable() and ch != " ") or unicodedata.category(ch) == "Cc"
        else ch
        for ch in string
    )  # fmt: skip


def text(value: object, style: str = "") -> Text:
    """A value as inert text (no markup, control characters escaped)."""
    return Text(plain(value), style=style)


def line(*parts: str | Text | tuple[str, str]) -> Text:
    """A line assembled from the command's own strings (trusted), ``(string, style)`` pairs and :func:`text`
    values. A bare string is the command's own wording: pass data through :func:`text`."""
    return Text.assemble(*parts)


def say(*parts: str | Text | tuple[str, str]) -> None:
    console.print(line(*parts))


def error(message: object) -> None:
    """``error: message`` on stderr, each of its lines escaped (it may quote a file's content)."""
    print("error: " + "\n".join(plain(part) for part in str(message).split("\n")), file=sys.stderr)


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return plain(value)


def table(title: str | Text, columns: Sequence[str], rows: Iterable[tuple[object, Mapping[str, Any]]]) -> Table:
    """One row per (label, values) and one column per key of ``columns``; labels and cells are inert text."""
    out = Table(title=title if isinstance(title, Text) else text(title), title_justify="left")
    out.add_column("")
    for key in columns:
        out.add_column(text(key), justify="right")
    for label, values in rows:
        out.add_row(text(label), *(text(fmt(values.get(k))) for k in columns))
    return out
