"""The leaderboard's data model: what one input file says (Entry) and one table row built from entries (Row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ecac_bench import METRIC_KEYS

Source = Literal["reported", "measured"]

JUDGE_KEYS: tuple[str, ...] = ("judge_score", "judge_score_std")
PRECISION_KEYS: tuple[str, ...] = ("toy_precision", "toy_precision_macro", "avg_toy_count")
# The sibling methods' scores (docs/sibling_metrics.md): optional columns, shown where a board has them.
UTILITY_KEYS: tuple[str, ...] = ("utility",)
BALANCED_KEYS: tuple[str, ...] = ("balanced_precision", "balanced_recall", "linguistic", "b_capscore")
# Every metric the leaderboard knows, in display order; all but reward, avg_toy_count and judge_score_std are 0-100.
LEADERBOARD_KEYS: tuple[str, ...] = (*METRIC_KEYS, *JUDGE_KEYS, *PRECISION_KEYS, *UTILITY_KEYS, *BALANCED_KEYS)
UNBOUNDED_KEYS: frozenset[str] = frozenset({"reward", "avg_toy_count", "judge_score_std"})

LABELS: dict[str, str] = {
    "tts": "TTS",
    "tts_l": "TTS-L",
    "tts_m": "TTS-M",
    "tts_h": "TTS-H",
    "tts_fl": "TTS-FL",
    "tts_fm": "TTS-FM",
    "tts_fh": "TTS-FH",
    "tts_bl": "TTS-BL",
    "tts_bm": "TTS-BM",
    "tts_bh": "TTS-BH",
    "reward": "Reward R(C)",
    "judge_score": "Judge score",
    "judge_score_std": "Judge score std",
    "toy_precision": "Toy precision",
    "toy_precision_macro": "Toy precision (macro)",
    "avg_toy_count": "Avg toy count",
    "utility": "Utility (CapRL)",
    "balanced_precision": "Precision (BalCapRL)",
    "balanced_recall": "Recall (BalCapRL)",
    "linguistic": "Linguistic",
    "b_capscore": "b-CapScore",
}


@dataclass(frozen=True, order=True)
class DatasetId:
    """What a number was measured on. Entries share a ranking only when all four fields are equal."""

    name: str
    split: str | None = None
    size: int | None = None
    sha256: str | None = None

    @property
    def key(self) -> str:
        return "|".join(
            str(part) if part is not None else "" for part in (self.name, self.split, self.size, self.sha256)
        )

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
    kind: str  # "Table III", "ecac-bench/score", "lmms-eval", ...
    harness: str | None = None  # "ecac-bench 0.1.0", "lmms-eval 0.7.3"
    judge_model: str | None = None
    date: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "kind": self.kind,
            "harness": self.harness,
            "judge_model": self.judge_model,
            "date": self.date,
            "note": self.note,
        }


@dataclass(frozen=True)
class Entry:
    """One model's numbers from one input: a paper table entry or one measured results file."""

    model: str
    source: Source
    dataset: DatasetId
    metrics: dict[str, float]
    provenance: Provenance
    params_b: float | None = None  # parameters in billions
    citation: str | None = None  # full citation text (reported)
    variant: str | None = None  # the paper's own name for an ablation variant

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
    metric_origin: dict[str, str] = field(default_factory=dict)  # metric -> table or file it came from
    provenance: list[Provenance] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    params_b: float | None = None
    citation: str | None = None
    variant: str | None = None
    rank: int | None = None

    @property
    def date(self) -> str | None:
        dates = sorted({p.date for p in self.provenance if p.date})
        return dates[-1] if dates else None
