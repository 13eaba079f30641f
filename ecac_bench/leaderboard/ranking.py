"""Turn entries into per-dataset boards: merge entries into rows, give rows unique names, rank them.

Rules (docs/leaderboard.md):

* Entries share a board only when their dataset identity (name, split, size, sha256) is equal.
* Reported entries of one model from one citation merge into one row; where two tables give one metric different
  values, the first (files sorted by name, entries in file order) is shown and the conflict is listed beside it.
* Measured files of one model merge into one row only when no metric is given twice; otherwise every file is its own
  row (two runs are never averaged or silently dropped). Reported and measured numbers are never merged.
* Equal display names within a board get a qualifier (the citation or the results file).
* Rank = 1 + the number of rows with a higher TTS, compared at the two decimals shown, so ties share a rank
  (1, 2, 2, 4). Rows without TTS are listed last, unranked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ecac_bench.leaderboard.entries import Conflict, DatasetId, Entry, Row

RANK_METRIC = "tts"
RANK_DECIMALS = 2


@dataclass
class Board:
    """One dataset's ranking."""

    dataset: DatasetId
    rows: list[Row] = field(default_factory=list)

    @property
    def has_reported(self) -> bool:
        return any(r.source == "reported" for r in self.rows)

    @property
    def has_measured(self) -> bool:
        return any(r.source == "measured" for r in self.rows)


def _new_row(first: Entry) -> Row:
    return Row(
        model=first.model,
        display_name=first.model,
        source=first.source,
        dataset=first.dataset,
        params_b=first.params_b,
        citation=first.citation,
        variant=first.variant,
    )


def _merge_reported(entries: Sequence[Entry]) -> Row:
    row = _new_row(entries[0])
    seen: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for entry in entries:
        row.provenance.append(entry.provenance)
        row.params_b = row.params_b if row.params_b is not None else entry.params_b
        row.variant = row.variant or entry.variant
        for key, value in entry.metrics.items():
            seen[key].append((value, entry.provenance.kind))
            if key not in row.metrics:
                row.metrics[key] = value
                row.metric_origin[key] = entry.provenance.kind
    for key, values in seen.items():
        if len({v for v, _ in values}) > 1:
            row.conflicts.append(Conflict(key, tuple(values)))
    return row


def _rows_measured(entries: Sequence[Entry]) -> list[Row]:
    given = [key for entry in entries for key in entry.metrics]
    if len(given) == len(set(given)):
        groups: list[Sequence[Entry]] = [entries]
    else:
        groups = [[entry] for entry in entries]
    rows = []
    for group in groups:
        row = _new_row(group[0])
        for entry in group:
            row.provenance.append(entry.provenance)
            row.metrics.update(entry.metrics)
            row.metric_origin.update(dict.fromkeys(entry.metrics, entry.provenance.origin))
        rows.append(row)
    return rows


def build_rows(entries: Sequence[Entry]) -> list[Row]:
    """Rows of one dataset's entries (input order matters only for reported precedence)."""
    groups: dict[tuple[str, str, str], list[Entry]] = defaultdict(list)
    for entry in entries:
        groups[entry.group_key].append(entry)
    rows: list[Row] = []
    for key in sorted(groups):
        group = groups[key]
        if key[0] == "reported":
            rows.append(_merge_reported(group))
        else:
            rows.extend(_rows_measured(sorted(group, key=lambda e: e.provenance.origin)))
    return rows


def _qualifier(row: Row) -> str:
    """What tells a row apart: its citation (reported; one row per citation and model) or its results files."""
    if row.source == "reported":
        return row.provenance[0].origin
    return ", ".join(p.origin.rsplit(".", 1)[0] for p in row.provenance)


def disambiguate(rows: Iterable[Row]) -> None:
    """Make display names unique within one board: qualify clashing names, then number what still clashes."""
    rows = list(rows)
    by_name: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_name[row.display_name.casefold()].append(row)
    for clashing in by_name.values():
        if len(clashing) > 1:
            for row in clashing:
                row.display_name = f"{row.model} [{_qualifier(row)}]"
    counts: dict[str, int] = defaultdict(int)
    for row in sorted(rows, key=lambda r: (r.display_name.casefold(), r.source, _qualifier(r))):
        counts[row.display_name.casefold()] += 1
        if counts[row.display_name.casefold()] > 1:
            row.display_name = f"{row.display_name} #{counts[row.display_name.casefold()]}"


def rank_rows(rows: Sequence[Row]) -> list[Row]:
    """Sort by TTS (descending, at the precision shown) and set competition ranks; unranked rows go last."""

    def shown(row: Row) -> float | None:
        value = row.metrics.get(RANK_METRIC)
        return None if value is None else round(value, RANK_DECIMALS)

    ranked = sorted(
        rows,
        key=lambda r: (shown(r) is None, -(shown(r) or 0.0), r.display_name.casefold(), r.display_name),
    )
    scores = [shown(r) for r in ranked]
    for row, score in zip(ranked, scores, strict=True):
        row.rank = None if score is None else 1 + sum(1 for s in scores if s is not None and s > score)
    return ranked


def build_boards(entries: Sequence[Entry]) -> list[Board]:
    """One ranked board per dataset; boards with reported numbers (the paper's test set) first."""
    by_dataset: dict[DatasetId, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_dataset[entry.dataset].append(entry)
    boards = []
    for dataset, group in by_dataset.items():
        rows = build_rows(group)
        disambiguate(rows)
        boards.append(Board(dataset, rank_rows(rows)))
    return sorted(boards, key=lambda b: (not b.has_reported, b.dataset.key))
