"""Every metric of ecac-bench, declared once: what it is called, what range it lives in, which way is better, which
report carries it, where the leaderboard shows it, where it is defined, and whether it gets a bootstrap CI.

Every surface reads this module instead of restating a metric's facts: the CLI tables (``ecac_bench.commands``),
the report schema's validation (``ecac_bench.report_schema``), the lmms-eval aggregations and the YAMLs'
``metric_list`` (checked by ``tests/test_registry.py``), and the leaderboard's columns, validation ranges, bold-best
and charts. Pure data: importing it costs nothing.

A **report kind** is what one command measures (``score``: TTS and the reward; ``judge``; ``toy-precision``; ...);
its metrics are computed together from one set of per-image statistics (``ecac_bench.imagestats``).
:func:`register_metric` and :func:`register_kind` extend the registry (docs/contributing.md: adding a metric).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

Direction = Literal["higher", "lower", "none"]  # "none": not a ranking direction (counts, spreads, averages)
Table = Literal["main", "fine", "siblings", "none"]  # the leaderboard table that shows the metric
Unit = Literal["percent", "reward", "score", "count", "names", "coefficient"]

LEADERBOARD_TABLES: tuple[Table, ...] = ("main", "fine", "siblings")


@dataclass(frozen=True)
class Metric:
    """One metric of one report kind. ``low``/``high`` bound a valid value (``None``: unbounded on that side)."""

    key: str
    kind: str
    label: str
    unit: Unit
    low: float | None
    high: float | None
    direction: Direction
    table: Table
    doc: str  # where it is defined: "docs/metrics.md#tts"
    ci: bool  # the report carries a bootstrap CI for it
    description: str = ""

    @property
    def is_count(self) -> bool:
        return self.unit == "count"

    def check(self, value: float) -> str | None:
        """Why ``value`` is not a valid value of this metric, or None."""
        if not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if self.low is not None and value < self.low:
            return f"{value!r} is below {self.low:g}" if self.high is None else f"{value!r} is outside {self.range}"
        if self.high is not None and value > self.high:
            return f"{value!r} is outside {self.range}"
        if self.is_count and not float(value).is_integer():
            return f"{value!r} is not a count"
        return None

    @property
    def range(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{low}-{high}"


@dataclass(frozen=True)
class Kind:
    """A report kind: the metrics one command (and one lmms-eval task) computes together.

    ``protocol`` names the signature fields (``ecac_bench.report_schema.Signature``) that change what the kind's
    numbers mean: runs of one dataset share a leaderboard ranking only when these agree (docs/leaderboard.md)."""

    name: str  # "toy-precision"
    title: str  # CLI table title
    headline: str  # the metric a report of this kind must carry
    protocol: tuple[str, ...]
    lmms_tasks: tuple[str, ...] = ()  # the lmms-eval tasks that report it
    leaderboard: bool = True  # the leaderboard reads reports of this kind

    @property
    def report_kind(self) -> str:
        return f"ecac-bench/{self.name}"


_METRICS: dict[tuple[str, str], Metric] = {}
_KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    if kind.name in _KINDS:
        raise ValueError(f"report kind {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def register_metric(metric: Metric) -> Metric:
    """Add a metric. Its kind must be registered; a metric shown on the leaderboard needs a key no other shown metric
    has (the leaderboard's columns are keyed by metric alone)."""
    if metric.kind not in _KINDS:
        raise ValueError(f"metric {metric.key!r}: unknown report kind {metric.kind!r}; register_kind it first")
    if (metric.kind, metric.key) in _METRICS:
        raise ValueError(f"metric {metric.key!r} of {metric.kind!r} is already registered")
    if metric.table != "none" and any(m.key == metric.key and m.table != "none" for m in _METRICS.values()):
        raise ValueError(f"metric {metric.key!r}: another leaderboard metric has that key")
    if metric.ci and metric.is_count:
        raise ValueError(f"metric {metric.key!r}: a count has no confidence interval")
    _METRICS[(metric.kind, metric.key)] = metric
    return metric


def unregister(kind: str) -> None:
    """Remove a kind and its metrics (for tests that register a dummy metric)."""
    _KINDS.pop(kind, None)
    for key in [k for k in _METRICS if k[0] == kind]:
        del _METRICS[key]


def kind(name: str) -> Kind:
    try:
        return _KINDS[name]
    except KeyError:
        raise KeyError(f"unknown report kind {name!r}; known: {', '.join(_KINDS)}") from None


def kinds() -> list[Kind]:
    return list(_KINDS.values())


def kind_of_report(report_kind: str) -> Kind | None:
    """The kind whose ``report_kind`` ("ecac-bench/score") this is."""
    return next((k for k in _KINDS.values() if k.report_kind == report_kind), None)


def metrics(kind_name: str) -> list[Metric]:
    """The metrics of one kind, in declaration order (the order of reports and tables)."""
    return [m for (k, _), m in _METRICS.items() if k == kind_name]


def metric(kind_name: str, key: str) -> Metric:
    try:
        return _METRICS[(kind_name, key)]
    except KeyError:
        raise KeyError(f"{kind_name!r} has no metric {key!r}") from None


def keys(kind_name: str) -> tuple[str, ...]:
    return tuple(m.key for m in metrics(kind_name))


def leaderboard_metrics(table: Table | None = None) -> list[Metric]:
    """The metrics the leaderboard shows (in one ``table``, or in any), in declaration order."""
    return [m for m in _METRICS.values() if m.table != "none" and (table is None or m.table == table)]


def leaderboard_metric(key: str) -> Metric:
    for m in _METRICS.values():
        if m.key == key and m.table != "none":
            return m
    raise KeyError(f"{key!r} is not a leaderboard metric")


def all_metrics() -> Iterator[Metric]:
    return iter(list(_METRICS.values()))


# ----------------------------------------------------------------------------------------------- the built-ins

_PCT = ("percent", 0.0, 100.0)
_COUNT = ("count", 0.0, None)


def _add(kind_name: str, rows: Sequence[tuple], doc: str) -> None:
    for key, label, (unit, low, high), direction, table, ci, description in rows:
        register_metric(Metric(key, kind_name, label, unit, low, high, direction, table, doc, ci, description))


register_kind(
    Kind(
        "score",
        "TTS (0-100) and reward",
        "tts",
        ("caption_prompt", "match"),
        ("ecac_tts", "ecac_tts_en", "ecac_tts_toys", "ecac_tts_toys_en"),
    )
)
_SUBSETS = {
    "tts": ("TTS", "all toys"),
    "tts_l": ("TTS-L", "low-precision toys"),
    "tts_m": ("TTS-M", "medium-precision toys"),
    "tts_h": ("TTS-H", "high-precision toys"),
    "tts_fl": ("TTS-FL", "foreground low"),
    "tts_fm": ("TTS-FM", "foreground medium"),
    "tts_fh": ("TTS-FH", "foreground high"),
    "tts_bl": ("TTS-BL", "background low"),
    "tts_bm": ("TTS-BM", "background medium"),
    "tts_bh": ("TTS-BH", "background high"),
}
_add(
    "score",
    [
        *(
            (key, label, _PCT, "higher", "main" if key in ("tts", "tts_l", "tts_m", "tts_h") else "fine", True, what)
            for key, (label, what) in _SUBSETS.items()
        ),
        ("reward", "Reward R(C)", ("reward", 0.0, None), "higher", "fine", True, "mean R(C) over images"),
    ],
    "docs/metrics.md#matching-and-metrics-the-normative-definition",
)

register_kind(Kind("judge", "MLLM judge", "judge_score", ("caption_prompt", "judge"), ("ecac_judge", "ecac_judge_en")))
_add(
    "judge",
    [
        ("judge_score", "Judge score", _PCT, "higher", "main", True, "mean judge score of the scored captions"),
        ("judge_score_std", "Judge score std", ("score", 0.0, 50.0), "none", "fine", False, "population std"),
        ("n", "captions scored", _COUNT, "none", "none", False, ""),
        ("n_failed", "captions failed", _COUNT, "none", "none", False, "no score after every repair turn"),
    ],
    "docs/judges.md#mllm-judge-score-ecac-bench-judge",
)

register_kind(
    Kind(
        "toy-precision",
        "toy precision",
        "toy_precision",
        ("caption_prompt", "match", "precision_match", "extractor", "judge"),
        ("ecac_toy_precision", "ecac_toy_precision_en"),
    )
)
_add(
    "toy-precision",
    [
        ("toy_precision", "Toy precision", _PCT, "higher", "main", True, "micro: pooled over every extracted name"),
        ("toy_precision_macro", "Toy precision (macro)", _PCT, "higher", "fine", True, "mean over images with names"),
        ("avg_toy_count", "Avg toy count", ("names", 0.0, None), "none", "fine", True, "names extracted per image"),
        ("n_images", "images", _COUNT, "none", "none", False, "images whose extraction succeeded"),
        ("n_images_with_names", "images with names", _COUNT, "none", "none", False, ""),
        ("n_extracted", "names extracted", _COUNT, "none", "none", False, ""),
        ("n_correct", "names correct", _COUNT, "none", "none", False, ""),
        ("n_failed", "images failed", _COUNT, "none", "none", False, "extraction failed after the repair turns"),
    ],
    "docs/judges.md#toy-precision-and-average-toy-count-ecac-bench-toy-precision",
)

register_kind(
    Kind(
        "utility",
        "caption utility (CapRL)",
        "utility",
        ("caption_prompt", "judge"),
        ("ecac_utility", "ecac_utility_en"),
    )
)
_add(
    "utility",
    [
        ("utility", "Utility (CapRL)", _PCT, "higher", "siblings", True, "mean over images of question accuracy"),
        ("utility_micro", "Utility (micro)", _PCT, "higher", "none", True, "over all question rounds"),
        ("n_images", "images", _COUNT, "none", "none", False, ""),
        ("n_questions", "questions", _COUNT, "none", "none", False, ""),
        ("n_rounds", "rounds answered", _COUNT, "none", "none", False, ""),
        ("n_failed", "rounds failed", _COUNT, "none", "none", False, "transport failures, excluded"),
        ("n_unparsed", "answers without a letter", _COUNT, "none", "none", False, "scored as wrong"),
    ],
    "docs/sibling_metrics.md#caption-utility-caprl--ecac-bench-utility",
)

register_kind(
    Kind(
        "balanced",
        "balanced score (BalCapRL)",
        "b_capscore",
        ("caption_prompt", "judge"),
        ("ecac_balanced", "ecac_balanced_en"),
    )
)
_add(
    "balanced",
    [
        ("balanced_precision", "Precision (BalCapRL)", _PCT, "higher", "siblings", True, ""),
        ("balanced_recall", "Recall (BalCapRL)", _PCT, "higher", "siblings", True, ""),
        ("linguistic", "Linguistic", _PCT, "higher", "siblings", True, ""),
        ("b_capscore", "b-CapScore", _PCT, "higher", "siblings", True, "harmonic mean of the three"),
        ("n", "images scored", _COUNT, "none", "none", False, ""),
        ("n_failed", "images failed", _COUNT, "none", "none", False, ""),
    ],
    "docs/sibling_metrics.md#balanced-score-balcaprl--ecac-bench-balanced",
)

# Agreement with human rankings: one set of these per scoring method (the report's metrics are keyed by method).
register_kind(Kind("agree", "agreement with human rankings", "kendall_tau", (), leaderboard=False))
_TAU = ("coefficient", -1.0, 1.0)
_add(
    "agree",
    [
        ("kendall_tau", "Kendall tau-b", _TAU, "higher", "none", True, "mean over images"),
        ("spearman_rho", "Spearman rho", _TAU, "higher", "none", True, "mean over images"),
        ("pooled_kendall_tau", "pooled tau-b", _TAU, "higher", "none", False, ""),
        ("pooled_spearman_rho", "pooled rho", _TAU, "higher", "none", False, ""),
        ("n_images", "images", _COUNT, "none", "none", False, ""),
        ("n_score_ties", "score ties", _COUNT, "none", "none", False, ""),
        ("n_skipped_human_ties", "human ties skipped", _COUNT, "none", "none", False, ""),
        ("n_skipped", "images skipped", _COUNT, "none", "none", False, ""),
    ],
    "docs/judges.md#agreement-with-human-rankings-ecac-bench-rank-ecac-bench-agree",
)

# Per-caption scores of candidate captions (the input of `agree`): the report holds counts; means are per method.
register_kind(Kind("rank", "per-caption scores", "n_captions", (), leaderboard=False))
_add(
    "rank",
    [
        ("n_captions", "captions", _COUNT, "none", "none", False, ""),
        ("n_images", "images", _COUNT, "none", "none", False, ""),
        ("n_failed_generations", "failed generations", _COUNT, "none", "none", False, "no score from any method"),
    ],
    "docs/judges.md#agreement-with-human-rankings-ecac-bench-rank-ecac-bench-agree",
)
