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
from itertools import compress
from operator import not_
from typing import Literal, Protocol

import numpy as np
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


# normalize_many joins the texts it normalises with these separators. Each is a "stable" character: NFKC never
# combines it with a neighbour or produces it, lower() leaves it alone and it breaks the final-sigma context (it is
# neither cased nor case-ignorable), and it is not whitespace; so normalising the joined text normalises each text
# on its own. The ASCII texts get an ASCII separator, so that lower() takes CPython's ASCII path.
_ASCII_SEPARATOR = "\x00"
_SEPARATOR = "\u2400"  # SYMBOL FOR NULL
# The whitespace that can survive NFKC, but the ASCII space (every other kind folds to U+0020 under NFKC).
_ASCII_OTHER_WHITESPACE = b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"


def normalize_many(texts: Sequence[str]) -> list[str]:
    """``[normalize_text(t) for t in texts]``, computed on all of them at once: several times faster at scale.

    Exact by construction: the texts are joined with a stable separator (see _SEPARATOR), each step (NFKC, lower,
    whitespace) is applied to the joined text only in a way that equals applying it to each text, and any case the
    shortcut does not cover (a text holding the separator, a character outside the BMP, ...) takes the per-text
    path. ASCII texts are NFKC already; the others get NFKC by mapping the characters that NFKC changes, found from
    the text's distinct code units (as :func:`nfkc` does, per text)."""
    ascii_flags = list(map(str.isascii, texts))
    ascii_texts = list(compress(texts, ascii_flags))
    other_texts = list(compress(texts, map(not_, ascii_flags)))
    ascii_out = _normalize_ascii(ascii_texts)
    other_out = _normalize_other(other_texts)
    if not other_out:
        return ascii_out
    if not ascii_out:
        return other_out
    merged = np.empty(len(texts), dtype=object)
    is_ascii = np.asarray(ascii_flags)
    merged[is_ascii] = ascii_out
    merged[~is_ascii] = other_out
    return merged.tolist()


def _joined(texts: list[str], sep: str) -> str | None:
    """The texts joined by ``sep``, or None when batching cannot be exact (fewer than two texts, or ``sep`` inside
    one of them): the caller then normalises text by text."""
    if len(texts) < 2:
        return None
    joined = sep.join(texts)
    return joined if joined.count(sep) == len(texts) - 1 else None


def _normalize_ascii(texts: list[str]) -> list[str]:
    sep = _ASCII_SEPARATOR
    if (joined := _joined(texts, sep)) is None:
        return list(map(normalize_text, texts))
    joined = joined.lower()  # ASCII is NFKC already
    other_whitespace = len(joined.encode("ascii").translate(None, _ASCII_OTHER_WHITESPACE)) != len(joined)
    return _collapsed(joined, sep, other_whitespace).split(sep)


def _normalize_other(texts: list[str]) -> list[str]:
    sep = _SEPARATOR
    if (joined := _joined(texts, sep)) is None:
        return list(map(normalize_text, texts))
    units = np.bincount(np.frombuffer(joined.encode("utf-16-le", "surrogatepass"), dtype=np.uint16), minlength=1)
    present = {chr(code) for code in np.flatnonzero(units).tolist()}
    if any("\ud800" <= ch <= "\udfff" for ch in present):  # a character outside the BMP: the per-text path
        return list(map(normalize_text, texts))
    _, table = _nfkc_changing_chars()
    for ch in present & table.keys():  # NFKC output never holds one of these: each is replaced once and for all
        joined = joined.replace(ch, table[ch])
        present.discard(ch)
        present.update(table[ch])
    if not unicodedata.is_normalized("NFKC", joined):  # a sequence that NFKC changes as a whole
        return list(map(normalize_text, texts))
    if any(ch.lower() != ch for ch in present):
        joined = joined.lower()
        present = set("".join(ch.lower() for ch in present))
    other_whitespace = any(ch.isspace() for ch in present - {" "})
    return _collapsed(joined, sep, other_whitespace).split(sep)


def _collapsed(joined: str, sep: str, other_whitespace: bool) -> str:
    """``joined`` with whitespace collapsed and each text trimmed, when some text needs it (whitespace other than a
    space, a double space, or a space at a text's start or end)."""
    if (
        other_whitespace
        or "  " in joined
        or " " + sep in joined
        or sep + " " in joined
        or joined[:1] == " "
        or joined[-1:] == " "
    ):
        return _collapse_whitespace(joined, sep)
    return joined


def _collapse_whitespace(joined: str, sep: str) -> str:
    """Runs of whitespace to one space and each text trimmed, on texts joined by ``sep`` (not whitespace)."""
    return " ".join(joined.split()).replace(" " + sep, sep).replace(sep + " ", sep)


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


def _on_word_boundaries(names: list[str], name_of: np.ndarray, text_of: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """``occurs_on_word_boundary(names[name_of[k]], texts[text_of[k]])`` for every k, with C-level passes: each text
    is padded with a space at both ends (so that the characters around the first occurrence are at valid indices,
    and a space is a boundary as the text's ends are), the first occurrence's neighbours are looked up for all pairs
    at once, and only where it is not on boundaries are the later occurrences looked for, one pair at a time."""
    used = np.unique(text_of)
    padded_used = [f" {text} " for text in map(texts.__getitem__, used.tolist())]
    padded = list(map(padded_used.__getitem__, np.searchsorted(used, text_of).tolist()))
    pair_names = list(map(names.__getitem__, name_of.tolist()))
    starts = np.fromiter(map(str.find, padded, pair_names), dtype=np.int64, count=len(padded))
    hit = np.flatnonzero(starts > 0)  # a normalised name never starts or ends with a space
    hit_texts = list(map(padded.__getitem__, hit.tolist()))
    lengths = np.array(list(map(len, names)), dtype=np.int64)[name_of[hit]]
    before = map(str.__getitem__, hit_texts, (starts[hit] - 1).tolist())
    after = map(str.__getitem__, hit_texts, (starts[hit] + lengths).tolist())
    alnum = _ASCII_ALNUM.__contains__
    blocked = np.fromiter(map(alnum, before), dtype=bool, count=len(hit))
    blocked |= np.fromiter(map(alnum, after), dtype=bool, count=len(hit))
    out = np.zeros(len(padded), dtype=bool)
    out[hit[~blocked]] = True
    for k in hit[blocked].tolist():
        out[k] = occurs_on_word_boundary(pair_names[k], padded[k])
    return out


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

    def named_pairs(
        self, toys: Sequence[MatchableToy], toy_of: np.ndarray, image_of: np.ndarray, normalized_texts: Sequence[str]
    ) -> np.ndarray:
        """For each pair k, whether toy ``toys[toy_of[k]]`` is named by ``normalized_texts[image_of[k]]``, under the
        exact rule: :meth:`named_flags` for a whole dataset at once, its per-pair work done by C-level passes (each
        pair's accepted names against its text, then the word-boundary check where a Latin-like name was found)."""
        if self.config.mode != "exact":
            raise ValueError("named_pairs applies the exact rule")
        plans = [toy.match_names for toy in toys]
        names = [norm for plan in plans for norm, _ in plan]
        bounded = np.array([boundary for plan in plans for _, boundary in plan], dtype=bool)
        per_toy = np.array(list(map(len, plans)), dtype=np.int64)
        first_name = np.cumsum(per_toy) - per_toy
        counts = per_toy[toy_of]  # accepted names of each pair
        pair = np.repeat(np.arange(len(toy_of)), counts)
        within = np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
        name_of = np.repeat(first_name[toy_of], counts) + within
        image_of_pair = np.repeat(image_of, counts)
        found = np.zeros(len(pair), dtype=bool)
        edged = bounded[name_of]
        plain = np.flatnonzero(~edged)
        texts = map(normalized_texts.__getitem__, image_of_pair[plain].tolist())
        found[plain] = np.fromiter(
            map(str.__contains__, texts, map(names.__getitem__, name_of[plain].tolist())), dtype=bool, count=len(plain)
        )
        edged = np.flatnonzero(edged)
        if edged.size:
            found[edged] = _on_word_boundaries(names, name_of[edged], image_of_pair[edged], normalized_texts)
        return np.bincount(pair[found], minlength=len(toy_of)) > 0

    def names(self, toy: MatchableToy, captions: Sequence[str]) -> bool:
        """Whether ``toy`` is named by any of the raw captions."""
        return self.names_normalized(toy, [normalize_text(c) for c in captions])
