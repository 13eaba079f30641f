"""The leaderboard's data model: what one input says (Entry) and one table row built from entries (Row).

Which metrics exist, their labels, ranges, directions and tables come from ``ecac_bench.registry``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Source = Literal["reported", "measured"]
Weights = Literal["open", "api", "not released"]


@dataclass(frozen=True, order=True)
class DatasetId:
    """What a number was measured on. With a record-level ``sha256`` (every measured run has one), entries share a
    board when hash, split and size agree, whatever the file was called; without one (the paper's test set), when
    name, split and size agree."""

    name: str
    split: str | None = None
    size: int | None = None
    sha256: str | None = None

    @property
    def board_key(self) -> tuple[str, ...]:
        if self.sha256:
            return ("sha256", self.sha256, self.split or "", str(self.size))
        return ("name", self.name, self.split or "", "" if self.size is None else str(self.size))

    @property
    def key(self) -> str:
        return "|".join(self.board_key)

    @property
    def label(self) -> str:
        parts = [self.name]
        if self.split:
            parts.append(f"split {self.split}")
        if self.size is not None:
            parts.append(f"{self.size:,} images")
        if self.sha256:
            parts.append(f"sha256 {self.sha256[:12]}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Provenance:
    """Where an entry's numbers come from: a paper table, or a results file and the run that made it."""

    origin: str  # citation key (reported) or the results file, relative to its --results folder (measured)
    kind: str  # "Table III", "ecac-bench/score", "lmms-eval ecac_tts", ...
    harness: str | None = None  # "ecac-bench 0.1.0", "ecac-bench 0.1.0 via lmms-eval 0.7.3"
    judge_model: str | None = None
    date: str | None = None
    note: str | None = None
    signature: str | None = None  # the report's signature (measured)

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "kind": self.kind,
            "harness": self.harness,
            "judge_model": self.judge_model,
            "date": self.date,
            "note": self.note,
            "signature": self.signature,
        }


@dataclass(frozen=True)
class Citation:
    """A paper reported numbers come from. ``authors`` and ``title`` (when the baselines file gives them) make its
    BibTeX entry; nothing else is ever added to it (no guessed venue or year)."""

    key: str
    text: str
    authors: tuple[str, ...] = ()
    title: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "text": self.text, "authors": list(self.authors), "title": self.title}


@dataclass(frozen=True)
class ModelFacts:
    """What is known about a model beyond its numbers (a ``models:`` list in a baselines file), with its source.
    ``ids`` are other names results files give the model (e.g. its Hugging Face repository id); None = unknown."""

    name: str
    source: str
    ids: tuple[str, ...] = ()
    params_b: float | None = None
    weights: Weights | None = None
    url: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params_b": self.params_b,
            "weights": self.weights,
            "url": self.url,
            "source": self.source,
        }


@dataclass(frozen=True)
class ViewerPage:
    """A measured run's caption-viewer page: ``source`` is the page beside the results file (``X.viewer.html`` next
    to ``X.json``); the site carries its copy at ``path`` (``viewer/<origin>.html``), linked as ``href`` (the same
    path, URL-quoted), both relative to index.html."""

    path: str
    href: str
    source: Path


@dataclass(frozen=True)
class Entry:
    """One model's numbers from one input: a paper table entry or one measured report.

    ``protocol`` holds the signature's protocol fields of the entry's kind as text (``caption_prompt``, ``match``,
    ``judge``, ...): rows rank together only when these agree (ranking.py). ``ci`` holds the 95% intervals the
    report carries (reported numbers have none)."""

    model: str
    source: Source
    dataset: DatasetId
    metrics: dict[str, float]
    provenance: Provenance
    protocol: dict[str, str] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    params_b: float | None = None  # parameters in billions
    citation: Citation | None = None  # reported
    variant: str | None = None  # the paper's own name for an ablation variant
    facts: ModelFacts | None = None
    viewer: ViewerPage | None = None  # measured

    @property
    def group_key(self) -> tuple[str, str, str]:
        """Entries with the same key are candidates for one row (see ranking.build_rows)."""
        return (self.source, self.provenance.origin if self.source == "reported" else "", self.model)


@dataclass(frozen=True)
class Conflict:
    """Two reported entries give one metric of one model different values; both are shown."""

    metric: str
    values: tuple[tuple[float, str], ...]  # (value, table) in precedence order


@dataclass
class Row:
    """One line of a leaderboard table."""

    model: str
    display_name: str
    source: Source
    dataset: DatasetId
    metrics: dict[str, float] = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    metric_origin: dict[str, str] = field(default_factory=dict)  # metric -> table or file it came from
    provenance: list[Provenance] = field(default_factory=list)
    protocol: dict[str, str] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    params_b: float | None = None
    citation: Citation | None = None
    variant: str | None = None
    facts: ModelFacts | None = None
    viewer: ViewerPage | None = None  # the first of its results files' viewer pages
    rank: int | None = None
    # Rows of the same ranking whose rank-metric CI overlaps this row's: their order is not established.
    not_separable_from: list[str] = field(default_factory=list)

    @property
    def date(self) -> str | None:
        dates = sorted({p.date for p in self.provenance if p.date})
        return dates[-1] if dates else None

    @property
    def signatures(self) -> list[str]:
        return [p.signature for p in self.provenance if p.signature]
