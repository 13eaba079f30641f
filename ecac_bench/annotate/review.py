"""Expert review of the toy annotations in a spreadsheet: a CSV export, and the import of the corrected CSV.

The CSV has one row per toy: ``id, toy, image, name, level, ground, aliases, caption_excerpt`` (``toy`` numbers
the image's toys from 1; aliases are separated by ``|``). An image without toys gets one row with empty toy cells,
so that toys can be added to it. It is written as UTF-8 with a byte-order mark (Excel then reads Chinese
correctly) and every cell that a spreadsheet would run as a formula (it starts with ``= + - @``, their fullwidth
forms, a tab or a carriage return) is prefixed with ``'``, as OWASP recommends against CSV injection; the import
removes exactly that prefix.

On import, for every image that has at least one row:

* a row with a ``toy`` number edits that toy (its name, level, ground, aliases); the same row with all four toy
  cells cleared removes it, as does deleting the row;
* a row without a ``toy`` number and with toy cells adds a toy; one with empty toy cells adds nothing;
* the image's toys become the rows' toys, in row order, and ``"toys"`` joins the record's ``reviewed`` list.

An image with no row is left as it was (and not marked reviewed). ``image`` and ``caption_excerpt`` are context:
edits there are not applied (each one is reported). Every problem names the CSV line and column; nothing is
written when there is one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecac_bench.csv_safety import neutralise, restore
from ecac_bench.data import GROUNDS, LEVELS, REVIEWABLE, DataValidationError, Problem, toy_list_problems

COLUMNS = ("id", "toy", "image", "name", "level", "ground", "aliases", "caption_excerpt")
REQUIRED = ("id", "toy", "name", "level", "ground", "aliases")
TOY_CELLS = ("name", "level", "ground", "aliases")
ALIAS_SEPARATOR = "|"
EXCERPT_CHARS = 60
BOM = "\ufeff"


class ReviewProblem(Problem):
    """A problem of a review CSV: located by line and column."""

    __slots__ = ()

    def __str__(self) -> str:
        where = f"{self.file}:line {self.line}" if self.line is not None else self.file
        return f"{where}: column '{self.field}': {self.message}"


def caption_excerpt(caption: str) -> str:
    return caption if len(caption) <= EXCERPT_CHARS else caption[:EXCERPT_CHARS] + "…"


def export_review(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The review CSV of the records ``rows`` (see the module docstring)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")  # what spreadsheets write
    writer.writerow(COLUMNS)
    for row in rows:
        context = (row["image"], caption_excerpt(row["caption"]))
        toys = row["toys"]
        if not toys:
            writer.writerow(map(neutralise, (row["id"], "", context[0], "", "", "", "", context[1])))
        for number, toy in enumerate(toys, start=1):
            aliases = toy.get("aliases") or []
            if any(ALIAS_SEPARATOR in a for a in aliases):
                raise ValueError(
                    f"record {row['id']!r}: an alias of {toy['name']!r} contains {ALIAS_SEPARATOR!r}, the CSV's "
                    "alias separator; rename it before the review export"
                )
            cells = (row["id"], str(number), context[0], toy["name"], toy["level"], toy["ground"])
            writer.writerow(map(neutralise, (*cells, f" {ALIAS_SEPARATOR} ".join(aliases), context[1])))
    return (BOM + buffer.getvalue()).encode("utf-8")


@dataclass(frozen=True)
class ToyChange:
    """One change to one image's toys: ``kind`` is added, removed or edited (``fields`` say which)."""

    id: str
    kind: str
    name: str
    fields: tuple[str, ...] = ()
    detail: str = ""

    def __str__(self) -> str:
        sign = {"added": "+", "removed": "-", "edited": "~"}[self.kind]
        return f"{sign} {self.id}: {self.name}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class ReviewResult:
    rows: list[dict[str, Any]]
    changes: list[ToyChange]
    reviewed_images: int
    untouched_images: int
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        kinds = [c.kind for c in self.changes]
        return {k: kinds.count(k) for k in ("added", "removed", "edited")}


@dataclass
class _CsvToy:
    line: int
    number: int | None
    toy: dict[str, Any] | None  # None: the row names no toy (empty toy cells)


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problem = ReviewProblem(
            str(path), line, "<file>", "not UTF-8 text; save the sheet as 'CSV UTF-8' (Excel) or UTF-8 CSV"
        )
        raise DataValidationError([problem]) from None


def _csv_rows(reader: Any, path: Path) -> Iterator[list[str]]:
    """The rows of ``reader``; a CSV the module cannot read (a NUL byte, a cell over the size limit, ...) is a
    problem at the line where reading stopped."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problem = ReviewProblem(str(path), reader.line_num, "<file>", f"not a readable CSV ({exc})")
            raise DataValidationError([problem]) from None


def _toy_of(cells: Mapping[str, str], line: int, problem: Any) -> dict[str, Any] | None:
    name = restore(cells["name"]).strip()
    level, ground = cells["level"].strip(), cells["ground"].strip()
    aliases = [a.strip() for a in restore(cells["aliases"]).split(ALIAS_SEPARATOR) if a.strip()]
    ok = True
    if not name:
        problem(line, "name", "missing toy name (to remove a toy, clear its name, level, ground and aliases)")
        ok = False
    if level not in LEVELS:
        problem(line, "level", f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
        ok = False
    if ground not in GROUNDS:
        problem(line, "ground", f"unknown ground {ground!r}; expected one of {', '.join(GROUNDS)}")
        ok = False
    if not ok:
        return None
    toy: dict[str, Any] = {"name": name, "level": level, "ground": ground}
    if aliases:
        toy["aliases"] = aliases
    return toy


def _describe_edit(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[tuple[str, ...], str]:
    fields, parts = [], []
    for key in TOY_CELLS:
        before, after = (
            old.get(key) or ([] if key == "aliases" else ""),
            new.get(key) or ([] if key == "aliases" else ""),
        )
        if before != after:
            fields.append(key)
            parts.append(f"{key}: {before} -> {after}")
    return tuple(fields), "; ".join(parts)


def import_review(rows: Sequence[Mapping[str, Any]], path: Path) -> ReviewResult:
    """Apply the review CSV at ``path`` to the records ``rows`` (see the module docstring). Raises
    :class:`DataValidationError` with every problem (CSV line and column) and changes nothing then."""
    problems: list[Problem] = []

    def problem(line: int | None, column: str, message: str) -> None:
        problems.append(ReviewProblem(str(path), line, column, message))

    text = _decode(path, path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""))
    records = _csv_rows(reader, path)
    header = next(records, None)
    if header is None:
        problem(None, "<file>", "empty: no header row")
        raise DataValidationError(problems)
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    duplicated = sorted({h for h in header if h and header.count(h) > 1})
    if missing or duplicated:
        if missing:
            problem(1, "<header>", f"missing column(s) {', '.join(missing)}; the export has {', '.join(COLUMNS)}")
        if duplicated:
            problem(1, "<header>", f"column(s) {', '.join(duplicated)} appear more than once")
        raise DataValidationError(problems)
    index = {name: header.index(name) for name in COLUMNS if name in header}
    by_id = {row["id"]: row for row in rows}
    listed: dict[str, list[_CsvToy]] = {}
    seen_number: dict[tuple[str, int], int] = {}
    notes: list[str] = []
    line = reader.line_num
    for cells_raw in records:
        start, line = line + 1, reader.line_num  # a quoted cell may span lines: a row starts after the last one
        if not any(c.strip() for c in cells_raw):
            continue
        cells = {name: (cells_raw[i] if i < len(cells_raw) else "") for name, i in index.items()}
        image_id = restore(cells["id"]).strip()
        record = by_id.get(image_id)
        if record is None:
            problem(start, "id", f"unknown image id {image_id!r} (not in the data file)")
            continue
        number_text = cells["toy"].strip()
        number = None
        if number_text:
            n_toys = len(record["toys"])
            if not (number_text.isascii() and number_text.isdigit()) or not 1 <= int(number_text) <= n_toys:
                problem(
                    start,
                    "toy",
                    f"{number_text!r} is not a toy of image {image_id!r} (it has {n_toys}); "
                    "leave it empty for an added toy",
                )
                continue
            number = int(number_text)
            first = seen_number.setdefault((image_id, number), start)
            if first != start:
                problem(start, "toy", f"toy {number} of image {image_id!r} is listed twice (first at line {first})")
                continue
        for column, value in (("image", record["image"]), ("caption_excerpt", caption_excerpt(record["caption"]))):
            if column in cells and restore(cells[column]) != value:
                notes.append(f"{path}:line {start}: column '{column}' was edited; not applied (context only)")
        toy = None
        if any(cells[c].strip() for c in TOY_CELLS):
            toy = _toy_of(cells, start, problem)
            if toy is None:
                continue
        listed.setdefault(image_id, []).append(_CsvToy(start, number, toy))
    # Each image's new toys must still be a set, with nameable names (the data format's own check).
    for entries in listed.values():
        kept = [e for e in entries if e.toy is not None]
        for p in toy_list_problems([e.toy for e in kept]):
            where, _, rest = p.field.partition("].")  # toys[j].name / toys[j].aliases[k]
            entry = kept[int(where.removeprefix("toys["))]
            problem(entry.line, rest.split("[", 1)[0], p.message)
    if problems:
        raise DataValidationError(problems[:100], truncated=len(problems) > 100)
    return _apply(rows, listed, notes)


def _apply(rows: Sequence[Mapping[str, Any]], listed: Mapping[str, list[_CsvToy]], notes: list[str]) -> ReviewResult:
    out, changes = [], []
    for row in rows:
        entries = listed.get(row["id"])
        if entries is None:
            out.append(dict(row))
            continue
        old = row["toys"]
        referenced = {e.number for e in entries if e.number is not None and e.toy is not None}
        for number, toy in enumerate(old, start=1):
            if number not in referenced:
                changes.append(ToyChange(row["id"], "removed", toy["name"]))
        for e in entries:
            if e.toy is None:
                continue
            if e.number is None:
                changes.append(
                    ToyChange(row["id"], "added", e.toy["name"], detail=f"{e.toy['level']}, {e.toy['ground']}")
                )
                continue
            fields, detail = _describe_edit(old[e.number - 1], e.toy)
            if fields:
                changes.append(ToyChange(row["id"], "edited", old[e.number - 1]["name"], fields, detail))
        reviewed = set(row.get("reviewed") or ()) | {"toys"}
        new = {key: value for key, value in row.items() if key != "reviewed"}
        new["toys"] = [e.toy for e in entries if e.toy is not None]
        new["reviewed"] = [f for f in REVIEWABLE if f in reviewed]
        out.append(new)
    return ReviewResult(out, changes, len(listed), len(rows) - len(listed), notes)
