"""Per-image results: one JSONL row per image of what a metric command measured, and where each toy was named.

``ecac-bench score --per-image FILE`` (and every metric command's ``--per-image``) writes a **per-image file**
(docs/viewer.md, "The per-image file"): a header line saying what was measured (kind, model, dataset identity,
signature, the statistics' columns), then one row per image of the dataset, in dataset order: its id, category,
area, image, reference caption, the model's captions, whether it was scored, failed or missing, and its per-image
statistics (``ecac_bench.imagestats``: the metrics and their bootstrap are a function of these rows alone, so
``ecac-bench compare`` can test two such files against each other). A ``score`` row also lists every toy with its
level, ground, whether it was named, which accepted name matched and the character spans of every occurrence in
the **raw** caption; ``ecac-bench view`` highlights them.

Spans are found on the normalised caption (the matching rule's own text, ``ecac_bench.matching``) and mapped back
to the raw caption through an offset map (:func:`normalize_with_offsets`). None of this is on the scoring path:
it runs only when a per-image file is asked for.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, model_validator

from ecac_bench import registry
from ecac_bench.data import (
    MAX_PROBLEMS,
    DataValidationError,
    EcacDataset,
    Problem,
    jsonl_rows,
    problem_sink,
)
from ecac_bench.imagestats import ImageStats
from ecac_bench.matching import MatchConfig, ToyMatcher, normalize_text
from ecac_bench.predictions import Predictions
from ecac_bench.report import write_bytes_atomic
from ecac_bench.report_schema import field_path, validation_message

# The per-image file's format version, the value of the header's marker key.
FORMAT = 1
MARKER = "ecac_per_image"
Status = Literal["scored", "failed", "missing"]


# ----------------------------------------------------------------------------------------------- offset map


@dataclass(frozen=True)
class NormalizedText:
    """``text`` = ``normalize_text(raw)``; normalised character ``i`` came from ``raw[starts[i]:ends[i]]``."""

    raw: str
    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def raw_span(self, start: int, end: int) -> tuple[int, int]:
        """The raw span ``[start, end)`` that the normalised span ``[start, end)`` came from (``end > start``)."""
        return self.starts[start], self.ends[end - 1]


def _nfkc_units(raw: str) -> list[tuple[int, int, str]]:
    """``raw`` cut into units ``(start, end, NFKC of raw[start:end])`` whose forms, joined, are NFKC(raw).

    Units start at each character with canonical combining class 0 (a starter); a unit is merged into the one
    before when normalising the two together differs from normalising them apart (a composition across them, as in
    Hangul jamo). The result is verified against NFKC(raw) as a whole; if it ever disagreed, the whole caption is
    one unit (every span then covers the caption: coarse, never wrong)."""
    if unicodedata.is_normalized("NFKC", raw):
        return [(i, i + 1, ch) for i, ch in enumerate(raw)]
    cuts = [i for i, ch in enumerate(raw) if i == 0 or unicodedata.combining(ch) == 0]
    units: list[tuple[int, int, str]] = []
    for start, end in zip(cuts, [*cuts[1:], len(raw)]):
        form = unicodedata.normalize("NFKC", raw[start:end])
        if units:
            first, _, before = units[-1]
            joined = unicodedata.normalize("NFKC", raw[first:end])
            if joined != before + form:
                units[-1] = (first, end, joined)
                continue
        units.append((start, end, form))
    if "".join(form for _, _, form in units) != unicodedata.normalize("NFKC", raw):
        return [(0, len(raw), unicodedata.normalize("NFKC", raw))]
    return units


class _CharForms(dict[int, str]):
    """Code point -> NFKC of that one character, filled as characters are met (``str.translate`` reads it)."""

    def __missing__(self, code: int) -> str:
        form = unicodedata.normalize("NFKC", chr(code))
        self[code] = form
        return form


_CHAR_FORMS = _CharForms()
_NON_SPACE = re.compile(r"\S+")  # what str.split() keeps (both use Unicode's whitespace property)


def _one_to_one(raw: str) -> NormalizedText | None:
    """The common case, in a few C-level passes: every character's NFKC and lower-case forms are one character
    (full-width punctuation, ASCII, CJK), so normalised character ``i`` of a word is raw character ``i``; only the
    whitespace runs collapse. None when a character expands or composes (the general path then runs)."""
    mapped = raw.translate(_CHAR_FORMS)
    # An NFKC form is never empty, so equal lengths mean one character each; mapping characters one by one to their
    # own forms keeps NFKD, so when the result is NFKC-normalised it is NFKC(raw) (as matching.nfkc argues).
    if len(mapped) != len(raw) or not unicodedata.is_normalized("NFKC", mapped):
        return None
    lowered = mapped.lower()
    if len(lowered) != len(raw):
        return None
    starts: list[int] = []
    ends: list[int] = []
    words: list[str] = []
    previous_end = 0
    for word in _NON_SPACE.finditer(lowered):
        start, end = word.span()
        if words:  # the one space a whitespace run becomes: its first character
            starts.append(previous_end)
            ends.append(previous_end + 1)
        starts.extend(range(start, end))
        ends.extend(range(start + 1, end + 1))
        words.append(word.group())
        previous_end = end
    return NormalizedText(raw, " ".join(words), tuple(starts), tuple(ends))


def normalize_with_offsets(raw: str) -> NormalizedText:
    """:func:`ecac_bench.matching.normalize_text` of ``raw`` (NFKC, lower-case, whitespace runs to one space,
    trimmed) with, for every character of the result, the span of ``raw`` it came from.

    A character produced by an expansion (``ﬁ`` -> ``fi``, ``㈱`` -> ``(株)``, ``İ`` -> ``i̇``) maps to the whole raw
    character; a composed one (``e`` + combining acute -> ``é``) to all the raw characters it was composed from; the
    one space a whitespace run becomes maps to the run's first character. Spans are in code points of the Python
    string (not UTF-16 units). The result is checked against ``normalize_text(raw)``; should the two ever differ,
    every character maps to the whole caption."""
    expected = normalize_text(raw)
    simple = _one_to_one(raw)
    if simple is not None and simple.text == expected:
        return simple
    units = _nfkc_units(raw)
    chars: list[str] = []
    owner: list[int] = []  # the unit each lower-cased character came from
    for k, (_, _, form) in enumerate(units):
        for ch in form:
            low = ch.lower()
            chars.append(low)
            owner.extend([k] * len(low))
    lowered = "".join(chars)
    whole = "".join(form for _, _, form in units).lower()
    if lowered != whole and len(lowered) == len(whole):
        lowered = whole  # str.lower's one context rule (Greek final sigma) maps one character to one
    out: list[str] = []
    out_owner: list[int] = []
    space_owner: int | None = None
    if len(lowered) == len(owner):
        for ch, k in zip(lowered, owner):
            if ch.isspace():  # what str.split() splits on
                if out and space_owner is None:
                    space_owner = k
                continue
            if space_owner is not None:
                out.append(" ")
                out_owner.append(space_owner)
                space_owner = None
            out.append(ch)
            out_owner.append(k)
    if "".join(out) != expected:
        return NormalizedText(raw, expected, (0,) * len(expected), (len(raw),) * len(expected))
    return NormalizedText(raw, expected, tuple(units[k][0] for k in out_owner), tuple(units[k][1] for k in out_owner))


# ----------------------------------------------------------------------------------------------- toys in captions


@dataclass(frozen=True)
class Occurrence:
    """One accepted name of a toy found in one caption: raw span ``[start, end)`` of caption number ``caption``."""

    caption: int
    start: int
    end: int
    name: str

    def to_list(self) -> list[Any]:
        return [self.caption, self.start, self.end, self.name]


def toy_occurrences(matcher: ToyMatcher, names: Iterable[str], captions: Sequence[NormalizedText]) -> list[Occurrence]:
    """Every place where one of ``names`` (a toy's accepted names) is mentioned in the captions, by the matcher's
    rule, as raw spans; sorted by caption and position; a span found by two names is listed once (the first name)."""
    found: dict[tuple[int, int, int], Occurrence] = {}
    for name in dict.fromkeys(names):
        for k, caption in enumerate(captions):
            for start, end in matcher.occurrences(name, caption.text):
                if end <= start:  # an empty fuzzy alignment (threshold 0): named, but nowhere to point at
                    continue
                raw_start, raw_end = caption.raw_span(start, end)
                found.setdefault((k, raw_start, raw_end), Occurrence(k, raw_start, raw_end, name))
    return sorted(found.values(), key=lambda o: (o.caption, o.start, o.end))


def _first_match(names: Sequence[str], occurrences: Sequence[Occurrence]) -> Occurrence | None:
    """The first occurrence of the first accepted name (name, then aliases in order) that occurs anywhere."""
    for name in names:
        for occurrence in occurrences:
            if occurrence.name == name:
                return occurrence
    return None


def _rate(stats: Mapping[str, float] | None) -> float | None:
    if stats is None or not stats.get("covered_tts"):
        return None
    return stats["rate_tts"]


def score_details(
    dataset: EcacDataset, predictions: Predictions, match: MatchConfig, stats: ImageStats
) -> dict[str, dict[str, Any]]:
    """The ``score`` part of each image's row: its toys (named or missed, which name matched, where) and the
    image's rate (named / toys, null without toys) and reward R(C), both read from the per-image statistics."""
    matcher = ToyMatcher(match)
    values = _stats_by_id(stats)
    out: dict[str, dict[str, Any]] = {}
    for record in dataset:
        row_stats = values.get(record.id)
        failed = record.id in predictions.failed
        captions = [] if failed else [normalize_with_offsets(c) for c in predictions.get(record.id, ())]
        named = [None] * len(record.toys) if failed else matcher.named_flags(record.toys, [c.text for c in captions])
        toys = []
        for toy, is_named in zip(record.toys, named):
            names = toy.accepted_names
            occurrences = toy_occurrences(matcher, names, captions) if is_named else []
            first = _first_match(names, occurrences)
            toys.append(
                {
                    **toy.to_dict(),
                    "named": is_named,
                    "matched": first.name if first else None,
                    "caption": first.caption if first else None,
                    "span": [first.start, first.end] if first else None,
                    "occurrences": [o.to_list() for o in occurrences],
                }
            )
        out[record.id] = {
            "toys": toys,
            "rate": _rate(row_stats),
            "reward": None if row_stats is None else row_stats["reward"],
        }
    return out


# ----------------------------------------------------------------------------------------------- writing


def _stats_by_id(stats: ImageStats) -> dict[str, dict[str, float]]:
    rows = stats.values.tolist()
    return {image_id: dict(zip(stats.columns, row)) for image_id, row in zip(stats.ids, rows)}


def _image_locator(base: Path) -> Callable[[str], str]:
    """The per-image file's name for an image: relative to the file's folder ``base`` when possible (absolute on
    another drive). Images share folders, so each folder's relative path is worked out once."""
    folders: dict[str, str] = {}

    def locate(image_file: str) -> str:
        folder, name = os.path.split(image_file)
        prefix = folders.get(folder)
        if prefix is None:
            try:
                relative = Path(os.path.relpath(folder, base)).as_posix()
            except ValueError:  # another drive (Windows)
                relative = Path(folder).as_posix()
            prefix = folders[folder] = "" if relative == "." else relative + "/"
        return prefix + name

    return locate


def image_rows(
    dataset: EcacDataset,
    predictions: Predictions,
    stats: ImageStats,
    details: Mapping[str, Mapping[str, Any]] | None,
    base: Path,
) -> Iterator[dict[str, Any]]:
    """One row per record of ``dataset``, in its order (docs/viewer.md lists the fields)."""
    values = _stats_by_id(stats)
    locate = _image_locator(base)
    for record in dataset:
        failure = predictions.failed.get(record.id)
        captions = predictions.get(record.id)
        status: Status = "failed" if failure else ("scored" if captions is not None else "missing")
        row: dict[str, Any] = {
            "id": record.id,
            "category": record.category,
            "area": record.area,
            "image": locate(record.image_file),
            "reference": record.caption,
            "status": status,
            "failure": failure,
            "captions": list(captions or ()),
            "stats": values.get(record.id),
        }
        if details is not None and record.id in details:
            row.update(details[record.id])
        yield row


def per_image_header(report: Mapping[str, Any], columns: Sequence[str]) -> dict[str, Any]:
    """The header line: what the rows were measured with, taken from the command's report."""
    return {
        MARKER: FORMAT,
        "kind": report["kind"],
        "model": report["model"],
        "date": report["date"],
        "signature": report["signature"],
        "dataset": report["dataset"],
        "protocol": report["protocol"],
        "predictions": report.get("predictions"),
        "metrics": report["metrics"],
        "columns": list(columns),
    }


def write_per_image(path: Path, header: Mapping[str, Any], rows: Iterable[Mapping[str, Any]]) -> None:
    """Header line, then the rows: written atomically (a reader never sees half a file)."""
    option = orjson.OPT_SERIALIZE_NUMPY
    lines = [orjson.dumps(header, option=option)]
    lines += [orjson.dumps(row, option=option) for row in rows]
    write_bytes_atomic(path, b"\n".join(lines) + b"\n")


# ----------------------------------------------------------------------------------------------- reading


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Header(_Model):
    ecac_per_image: Literal[1]
    kind: str
    model: str
    date: str
    signature: str
    dataset: dict[str, Any]
    protocol: dict[str, Any]
    predictions: dict[str, Any] | None = None
    metrics: dict[str, Any]
    columns: list[str]

    @model_validator(mode="after")
    def _known(self) -> Header:
        if registry.kind_of_report(self.kind) is None:
            raise ValueError(f"unknown kind {self.kind!r}")
        for key in ("name", "size", "sha256"):
            if key not in self.dataset:
                raise ValueError(f"dataset.{key}: missing")
        return self


class ToyRow(_Model):
    name: str
    level: Literal["low", "medium", "high"]
    ground: Literal["foreground", "background"]
    aliases: list[str] = []
    named: StrictBool | None
    matched: str | None
    caption: StrictInt | None = Field(default=None, ge=0)
    span: tuple[StrictInt, StrictInt] | None = None
    occurrences: list[tuple[StrictInt, StrictInt, StrictInt, str]] = []


class ImageRow(_Model):
    id: str = Field(min_length=1)
    category: str
    area: str
    image: str | None
    reference: str
    status: Status
    failure: str | None = None
    captions: list[str]
    stats: dict[str, StrictInt | StrictFloat] | None
    # score
    toys: list[ToyRow] | None = None
    rate: StrictInt | StrictFloat | None = None
    reward: StrictInt | StrictFloat | None = None
    # other kinds: what their command adds (judge answers per caption, extracted names, ...)
    details: dict[str, Any] | None = None


def _span_problem(row: ImageRow) -> tuple[str, str] | None:
    """(field, message) of the first toy span that is not inside one of the row's captions."""
    for j, toy in enumerate(row.toys or ()):
        spans = [(f"toys[{j}].occurrences[{k}]", o[:3]) for k, o in enumerate(toy.occurrences)]
        if toy.span is not None:
            spans.append((f"toys[{j}].span", (-1 if toy.caption is None else toy.caption, *toy.span)))
        for where, (caption, start, end) in spans:
            if not (0 <= caption < len(row.captions) and 0 <= start < end <= len(row.captions[caption])):
                return where, f"span {[caption, start, end]} (caption, start, end) is not inside a caption of the row"
    return None


def _row_problem(exc: ValidationError) -> tuple[str, str]:
    """(field, message) of a row's first validation error."""
    first = exc.errors(include_url=False)[0]
    where = field_path([p for p in first["loc"] if not str(p).startswith(("function-", "union["))])
    message = "missing" if first["type"] == "missing" else first["msg"].removeprefix("Value error, ")
    return where or "<record>", "unknown field" if first["type"] == "extra_forbidden" else message


@dataclass
class PerImageFile:
    """A per-image file as read back: its header and rows (file order = dataset order)."""

    path: Path
    header: Header
    rows: list[ImageRow]

    @property
    def kind(self) -> str:
        """The registry kind name ("score")."""
        kind = registry.kind_of_report(self.header.kind)
        assert kind is not None
        return kind.name

    @property
    def model(self) -> str:
        return self.header.model

    def stats(self) -> ImageStats:
        """The per-image statistics of the images that have them, in file order."""
        scored = [row for row in self.rows if row.stats is not None]
        columns = {c: [row.stats[c] for row in scored] for c in self.header.columns}  # type: ignore[index]
        return ImageStats.from_columns(self.kind, [row.id for row in scored], columns)


def read_per_image(path: str | Path) -> PerImageFile:
    """Read and check a per-image file; :class:`DataValidationError` names file, line and field of each problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: per-image file not found")
    problems: list[Problem] = []
    header: Header | None = None
    rows: list[ImageRow] = []
    seen: dict[str, int] = {}
    for line, raw in jsonl_rows(path, problem_sink(problems, path)):
        if len(problems) >= MAX_PROBLEMS:
            break
        if header is None:
            if not isinstance(raw, dict) or MARKER not in raw:
                raise DataValidationError(
                    [
                        Problem(
                            str(path), line, MARKER,
                            "not a per-image file (its first line must be the header written by --per-image)",
                        )
                    ]
                )  # fmt: skip
            try:
                header = Header.model_validate(raw)
            except ValidationError as exc:
                raise DataValidationError([Problem(str(path), line, "<header>", validation_message(exc))]) from None
            continue
        try:
            row = ImageRow.model_validate(raw)
        except ValidationError as exc:
            problems.append(Problem(str(path), line, *_row_problem(exc)))
            continue
        span_problem = _span_problem(row)
        if span_problem is not None:
            problems.append(Problem(str(path), line, *span_problem))
            continue
        if row.id in seen:
            problems.append(Problem(str(path), line, "id", f"duplicate id {row.id!r} (first at line {seen[row.id]})"))
            continue
        seen[row.id] = line
        if row.stats is not None and list(row.stats) != header.columns:
            problems.append(Problem(str(path), line, "stats", f"expected the header's columns {header.columns}"))
            continue
        rows.append(row)
    if header is None:
        problems.append(Problem(str(path), None, "<file>", "holds no header line (empty file)"))
    if problems:
        raise DataValidationError(problems[:MAX_PROBLEMS], len(problems) > MAX_PROBLEMS)
    assert header is not None
    return PerImageFile(path, header, rows)
