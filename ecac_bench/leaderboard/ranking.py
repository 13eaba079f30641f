"""Turn entries into per-dataset boards: merge entries into rows, give rows unique names, rank them.

Rules (docs/leaderboard.md, "the board rule"):

* **Boards.** Entries share a board when their dataset identity agrees: the record-level sha256, split and size
  (so the same records under two file names are one board), or, without a hash (the paper's test set), name, split
  and size.
* **Rankings.** Rows are ranked by TTS, so on a board they share a ranking only when the protocol fields TTS depends
  on agree (``registry.kind("score").protocol``: the caption prompt and the match rule, from the signature). The
  largest such group is the board's main ranking; every other group is ranked on its own, labelled by what differs
  from the main one. A row without TTS joins the ranking of its caption prompt. A judged column (judge score, toy
  precision by an LLM, the sibling metrics) is compared only between rows judged alike: where a ranking's rows name
  different judges for a metric, no value of it is marked best.
* Reported entries of one model from one citation merge into one row; where two tables give one metric different
  values, the first (files sorted by name, entries in file order) is shown and the conflict is listed beside it.
* Measured entries of one model merge into one row only when no metric is given twice and their protocols agree;
  otherwise every entry is its own row (two runs are never averaged or silently dropped). Reported and measured
  numbers are never merged.
* Equal display names within a board get a qualifier (the citation or the results file).
* Rank = 1 + the number of rows of the ranking with a higher TTS, compared at the two decimals shown, so ties share
  a rank (1, 2, 2, 4). Rows without TTS are listed last, unranked. Two measured rows whose TTS CIs overlap are
  marked as not separable (``Row.not_separable_from``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ecac_bench import registry
from ecac_bench.leaderboard.entries import Conflict, DatasetId, Entry, Row

RANK_METRIC = "tts"
RANK_DECIMALS = 2
PROTOCOL_LABELS = {
    "caption_prompt": "caption prompt",
    "match": "match rule",
    "precision_match": "precision match",
    "extractor": "toy extractor",
    "judge": "judge",
}


@dataclass
class Ranking:
    """Rows of one board that share a protocol, ranked together. ``differs`` says how the protocol differs from the
    board's main ranking (empty for the main ranking itself)."""

    protocol: dict[str, str]
    rows: list[Row] = field(default_factory=list)
    differs: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "; ".join(self.differs)


@dataclass
class Board:
    """One dataset's rows, in rankings (the main one first)."""

    dataset: DatasetId
    rankings: list[Ranking] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # every dataset name its entries gave (file names differ)

    @property
    def rows(self) -> list[Row]:
        return [row for ranking in self.rankings for row in ranking.rows]

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
        facts=first.facts,
    )


def _merge_reported(entries: Sequence[Entry]) -> Row:
    row = _new_row(entries[0])
    seen: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for entry in entries:
        row.provenance.append(entry.provenance)
        row.protocol.update(entry.protocol)
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


def _mergeable(entries: Sequence[Entry]) -> bool:
    """Entries can be one row: no metric given twice, and no protocol field with two values."""
    given = [key for entry in entries for key in entry.metrics]
    values: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        for name, value in entry.protocol.items():
            values[name].add(value)
    return len(given) == len(set(given)) and all(len(v) == 1 for v in values.values())


def _rows_measured(entries: Sequence[Entry]) -> list[Row]:
    """One row for all of a model's entries when they can merge; else one row per results file (an lmms-eval file
    holds several tasks), and one per entry where even a file's entries cannot merge."""
    groups: list[Sequence[Entry]]
    if _mergeable(entries):
        groups = [entries]
    else:
        by_file: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_file[entry.provenance.origin].append(entry)
        groups = []
        for unit in by_file.values():
            groups += [unit] if _mergeable(unit) else [[entry] for entry in unit]
    rows = []
    for group in groups:
        row = _new_row(group[0])
        for entry in group:
            row.provenance.append(entry.provenance)
            row.metrics.update(entry.metrics)
            row.ci.update(entry.ci)
            row.protocol.update(entry.protocol)
            row.metric_origin.update(dict.fromkeys(entry.metrics, entry.provenance.origin))
        row.viewer = next((entry.viewer for entry in group if entry.viewer), None)
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
            rows.extend(_rows_measured(sorted(group, key=lambda e: (e.provenance.origin, e.provenance.kind))))
    return rows


def _qualifier(row: Row) -> str:
    """What tells a row apart: its citation (reported; one row per citation and model) or its results files."""
    if row.source == "reported":
        return row.provenance[0].origin
    return ", ".join(dict.fromkeys(p.origin.rsplit(".", 1)[0] for p in row.provenance))


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


def _shown(row: Row) -> float | None:
    value = row.metrics.get(RANK_METRIC)
    return None if value is None else round(value, RANK_DECIMALS)


def rank_rows(rows: Sequence[Row]) -> list[Row]:
    """Sort by TTS (descending, at the precision shown) and set competition ranks; unranked rows go last. Rows whose
    TTS CIs overlap are marked as not separable from each other."""
    ranked = sorted(
        rows,
        key=lambda r: (_shown(r) is None, -(_shown(r) or 0.0), r.display_name.casefold(), r.display_name),
    )
    scores = [_shown(r) for r in ranked]
    for row, score in zip(ranked, scores, strict=True):
        row.rank = None if score is None else 1 + sum(1 for s in scores if s is not None and s > score)
    for row in ranked:
        mine = row.ci.get(RANK_METRIC)
        row.not_separable_from = [
            other.display_name
            for other in ranked
            if other is not row and mine and (theirs := other.ci.get(RANK_METRIC)) and _overlap(mine, theirs)
        ]
    return ranked


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def rank_protocol() -> tuple[str, ...]:
    """The protocol fields the ranking metric depends on (its kind's, in the registry)."""
    return next(k.protocol for k in registry.kinds() if RANK_METRIC in registry.keys(k.name))


def _rankings(rows: Sequence[Row]) -> list[Ranking]:
    """Rows grouped by the rank metric's protocol; the main ranking (most rows, then the first protocol in sort
    order) first. A row without the rank metric joins the largest group of its caption prompt, if there is one."""
    fields = rank_protocol()
    by_protocol: dict[tuple[tuple[str, str], ...], list[Row]] = defaultdict(list)
    unranked = []
    for row in rows:
        if RANK_METRIC in row.metrics:
            by_protocol[tuple((f, row.protocol[f]) for f in fields if f in row.protocol)].append(row)
        else:
            unranked.append(row)
    for row in unranked:
        prompt = row.protocol.get("caption_prompt")
        same = [k for k in by_protocol if dict(k).get("caption_prompt") == prompt]
        key = (
            max(same, key=lambda k: (len(by_protocol[k]), k))
            if same
            else tuple((f, row.protocol[f]) for f in fields if f in row.protocol)
        )
        by_protocol[key].append(row)
    order = sorted(by_protocol, key=lambda k: (-len(by_protocol[k]), k))
    main = dict(order[0]) if order else {}
    out = []
    for key in order:
        protocol = dict(key)
        differs = [
            f"{PROTOCOL_LABELS.get(name, name)}: {protocol.get(name, 'not stated')}"
            for name in sorted(set(protocol) | set(main))
            if protocol.get(name) != main.get(name)
        ]
        out.append(Ranking(protocol, rank_rows(by_protocol[key]), differs))
    return out


def build_boards(entries: Sequence[Entry]) -> list[Board]:
    """One board per dataset identity, each with its rankings; boards with reported numbers (the paper's test set)
    first."""
    by_dataset: dict[tuple[str, ...], list[Entry]] = defaultdict(list)
    for entry in entries:
        by_dataset[entry.dataset.board_key].append(entry)
    boards = []
    for group in by_dataset.values():
        names = Counter(e.dataset.name for e in group)
        # The board is named by the name most entries give (ties: the first alphabetically).
        name = min(names, key=lambda n: (-names[n], n))
        first = group[0].dataset
        rows = build_rows(group)
        disambiguate(rows)
        dataset = DatasetId(name, first.split, first.size, first.sha256)
        boards.append(Board(dataset, _rankings(rows), sorted(names)))
    return sorted(boards, key=lambda b: (not b.has_reported, b.dataset.key))
