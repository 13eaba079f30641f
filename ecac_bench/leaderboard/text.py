"""How text from an input (model names, variants, dataset names, notes, file names) appears in the site's files.

Every such text is hostile. On the page it is shown with control and invisible formatting characters as escapes
(``\\x1b``, ``\\u202e``: ``commands._output.plain``, the one definition the commands print with) inside ``<bdi>``, so a
right-to-left override or a right-to-left name cannot reorder the page around it; in Markdown it is escaped so that
it cannot split a table row or start an image, a link, an autolink, an HTML tag or a code span; the CSV neutralises
formula cells (``ecac_bench.csv_safety``); the JSON keeps every value as it is.
"""

from __future__ import annotations

import re

from markupsafe import Markup

from ecac_bench.commands._output import plain


def shown(value: object) -> str:
    """An input's text as the site shows it: one line, control and invisible formatting characters as escapes."""
    return plain(value)


def bdi(value: object) -> Markup:
    """An input's text for the page: escaped, isolated in ``<bdi>``."""
    return Markup("<bdi>%s</bdi>") % shown(value)


def words(value: object) -> Markup:
    """Like :func:`bdi`, for names that may wrap only between words, never inside one (not even after a hyphen:
    ``Qwen2.5-VL-3B`` stays whole)."""
    parts = Markup(" ").join(Markup('<span class="w">%s</span>') % w for w in shown(value).split(" ") if w)
    return Markup("<bdi>%s</bdi>") % parts


# Characters that start Markdown syntax (emphasis, code spans, links and images, HTML, entities, autolinks, table
# cells): each is written backslash-escaped, which CommonMark and GitHub show as the character itself.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|!~&:@()#])")
_MD_WWW = re.compile(r"(?i)(?<=www)\.")  # GitHub links a bare "www.example.com"


def md_text(value: object) -> str:
    """An input's text for a Markdown table cell: one line (line breaks and other control characters as escapes),
    no syntax (no image, link, autolink, HTML tag, code span or cell separator)."""
    return _MD_WWW.sub(r"\\.", _MD_SPECIAL.sub(r"\\\1", shown(value)))
