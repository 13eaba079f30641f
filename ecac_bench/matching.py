"""When does a caption *name* a toy? The one home of ECAC's matching rules.

Exact rule (the default, see docs/metrics.md):

* Captions and names are normalised: Unicode NFKC, lower-case, runs of whitespace to one space, trimmed.
* A name made only of characters below U+3000 (Latin letters, digits, punctuation, spaces) matches on word
  boundaries: the characters just before and after an occurrence may not be ASCII letters or digits.
* Any other name (it contains CJK or another character at or above U+3000) matches as a plain substring.
* A toy is named when any of its accepted names (name or aliases) occurs in any of the image's captions.

Fuzzy rule (``--match fuzzy``): a name is mentioned when rapidfuzz's ``partial_ratio`` between the normalised name
and the normalised caption reaches the threshold (0-100).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

from rapidfuzz import fuzz


class MatchableToy(Protocol):
    """What matching needs of a toy (``ecac_bench.data.ToyAnnotation`` is one): its accepted names as
    :func:`match_plan` prepares them. A protocol, so that this module does not import the data format's."""

    @property
    def match_names(self) -> tuple[tuple[str, bool], ...]: ...


MatchMode = Literal["exact", "fuzzy"]

# Names made only of code points below this one are "Latin-like" and match on word boundaries.
_BOUNDARY_LIMIT = 0x3000


@lru_cache(maxsize=1)
def _nfkc_changing_chars() -> tuple[re.Pattern[str], dict[str, str]]:
    """A pattern matching every BMP character whose NFKC form differs from itself (about 3,000), and that form."""
    table = {}
    for code in range(0x10000):
        if 0xD800 <= code < 0xE000:  # surrogates are not characters
            continue
        char = chr(code)
        form = unicodedata.normalize("NFKC", char)
        if form != char:
            table[char] = form
    return re.compile("[" + re.escape("".join(sorted(table))) + "]"), table


def nfkc(text: str) -> str:
    """Exactly ``unicodedata.normalize("NFKC", text)``, faster on typical captions.

    Why it is exact: mapping characters one by one to their own NFKC forms leaves the full compatibility
    decomposition (NFKD) of the string unchanged, so NFKC(mapped) == NFKC(text); and when ``mapped`` is already in
    NFKC (checked exactly by ``is_normalized``) it is its own NFKC. Chinese captions usually only need the per-character
    step (full-width punctuation), which a regex substitution does several times faster than a full normalisation.
    """
    if unicodedata.is_normalized("NFKC", text):
        return text
    pattern, table = _nfkc_changing_chars()
    mapped = pattern.sub(lambda match: table[match.group()], text)
    return mapped if unicodedata.is_normalized("NFKC", mapped) else unicodedata.normalize("NFKC", mapped)


def normalize_text(text: str) -> str:
    """NFKC, lower-case, collapse runs of whitespace to one space, trim."""
    # str.split() with no argument splits on runs of Unicode whitespace and drops leading/trailing ones.
    return " ".join(nfkc(text).lower().split())


def needs_word_boundary(normalized_name: str) -> bool:
    """True when every character of the name is below U+3000 (the word-boundary rule applies)."""
    return all(ord(ch) < _BOUNDARY_LIMIT for ch in normalized_name)


_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def occurs_on_word_boundary(name: str, text: str) -> bool:
    """Whether ``name`` occurs in ``text`` with no ASCII letter/digit right before or after (both normalised)."""
    start = text.find(name)
    size = len(name)
    while start != -1:
        end = start + size
        if (start == 0 or text[start - 1] not in _ASCII_ALNUM) and (end == len(text) or text[end] not in _ASCII_ALNUM):
            return True
        start = text.find(name, start + 1)
    return False


@lru_cache(maxsize=65536)
def _normalized_name(name: str) -> tuple[str, bool]:
    """Normalised name and whether it needs the word-boundary rule; toy vocabularies are small, so cache."""
    norm = normalize_text(name)
    return norm, needs_word_boundary(norm)


def match_plan(names: Iterable[str]) -> tuple[tuple[str, bool], ...]:
    """Each name normalised, with whether it needs the word-boundary rule (names that normalise to "" dropped).

    ``ToyAnnotation.match_names`` holds this for its accepted names, computed once per toy.
    """
    return tuple(p for p in map(_normalized_name, names) if p[0])


@dataclass(frozen=True)
class MatchConfig:
    """Which matching rule to apply. ``threshold`` only matters for ``mode="fuzzy"``."""

    mode: MatchMode = "exact"
    threshold: float = 90.0

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "fuzzy"):
            raise ValueError(f"unknown match mode {self.mode!r}; expected 'exact' or 'fuzzy'")
        if not 0 <= self.threshold <= 100:
            raise ValueError(f"fuzzy threshold must be within 0-100, got {self.threshold}")

    def describe(self) -> dict[str, object]:
        if self.mode == "exact":
            return {"match": "exact", "rule": "NFKC+lower+whitespace; Latin names on ASCII word boundaries"}
        return {"match": "fuzzy", "threshold": self.threshold, "rule": "rapidfuzz partial_ratio >= threshold"}


class ToyMatcher:
    """Applies one :class:`MatchConfig` to toys and captions. Stateless apart from its caches."""

    def __init__(self, config: MatchConfig | None = None) -> None:
        self.config = config or MatchConfig()

    def mention_in_normalized(self, name: str, normalized_text: str) -> bool:
        """Whether raw ``name`` is mentioned in an already normalised text."""
        norm, boundary = _normalized_name(name)
        if not norm:
            return False
        if self.config.mode == "fuzzy":
            return fuzz.partial_ratio(norm, normalized_text) >= self.config.threshold
        if boundary:
            return occurs_on_word_boundary(norm, normalized_text)
        return norm in normalized_text

    def occurrences(self, name: str, normalized_text: str) -> list[tuple[int, int]]:
        """Where raw ``name`` is mentioned in an already normalised text: ``[start, end)`` character spans of that
        text. Exact rule: every occurrence that the rule accepts (word boundaries for a Latin name), overlapping
        ones included; fuzzy rule: rapidfuzz's best partial alignment when it reaches the threshold. Non-empty
        exactly when :meth:`mention_in_normalized` is true (tests/test_per_image.py checks it). Not on the scoring
        path: the per-image results (``ecac_bench.per_image``) call it to show *where* a name was found."""
        norm, boundary = _normalized_name(name)
        if not norm:
            return []
        if self.config.mode == "fuzzy":
            found = fuzz.partial_ratio_alignment(norm, normalized_text)
            if found is None or found.score < self.config.threshold:
                return []
            return [(found.dest_start, found.dest_end)]
        spans = []
        size, length = len(norm), len(normalized_text)
        start = normalized_text.find(norm)
        while start != -1:
            end = start + size
            if not boundary or (
                (start == 0 or normalized_text[start - 1] not in _ASCII_ALNUM)
                and (end == length or normalized_text[end] not in _ASCII_ALNUM)
            ):
                spans.append((start, end))
            start = normalized_text.find(norm, start + 1)
        return spans

    def mentions(self, name: str, caption: str) -> bool:
        """Whether one raw name is mentioned in one raw caption."""
        return self.mention_in_normalized(name, normalize_text(caption))

    def names_normalized(self, toy: MatchableToy, normalized_captions: Sequence[str]) -> bool:
        """Whether any accepted name of ``toy`` is mentioned in any of the normalised captions."""
        return self.named_flags((toy,), normalized_captions)[0]

    def named_flags(self, toys: Sequence[MatchableToy], normalized_captions: Sequence[str]) -> list[bool]:
        """For each toy, whether it is named by any of the normalised captions (one call per image: hot path)."""
        if self.config.mode == "fuzzy":
            return [
                any(
                    self.mention_in_normalized(name, text)
                    for text in normalized_captions
                    for name in toy.accepted_names
                )
                for toy in toys
            ]
        # The exact rule, inlined: this is the hot loop of scoring and of every RL reward call.
        flags = []
        for toy in toys:
            hit = False
            for norm, boundary in toy.match_names:
                for text in normalized_captions:
                    if occurs_on_word_boundary(norm, text) if boundary else norm in text:
                        hit = True
                        break
                if hit:
                    break
            flags.append(hit)
        return flags

    def names(self, toy: MatchableToy, captions: Sequence[str]) -> bool:
        """Whether ``toy`` is named by any of the raw captions."""
        return self.names_normalized(toy, [normalize_text(c) for c in captions])
