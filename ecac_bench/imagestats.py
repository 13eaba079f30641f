"""The one metric protocol: per-image statistics -> pure aggregate -> metrics, plus a seeded bootstrap over images.

Every metric family (TTS and the reward, the judge score, toy precision, caption utility, the balanced score) is
computed the same way, in sacrebleu's shape:

1. **Statistics.** Each image contributes a fixed vector of numbers (:class:`ImageStats`: one row per image, one
   column per statistic, in dataset order). What the columns are is the family's definition (docs/metrics.md,
   docs/judges.md, docs/sibling_metrics.md), e.g. toy precision's ``(extracted, correct, ...)`` per image.
2. **Aggregate.** The family's :class:`Estimator` turns the *column sums* over a set of images into its metrics
   (micro precision = sum correct / sum extracted; TTS = sum of rates / number of covered images; ...). Pure and
   vectorised: the same function gives the point estimate (sums over the images) and every bootstrap resample.
3. **Bootstrap.** :func:`bootstrap_ci` resamples images with replacement (``n_boot`` resamples, seeded): resample
   ``b``'s column sums are ``weights[b] @ statistics``, where ``weights[b, i]`` counts how often image ``i`` was
   drawn; the 2.5th and 97.5th percentiles of each metric over the resamples are its 95% interval (a resample where
   a metric is undefined, e.g. no covered image, is left out of that metric's percentiles).

Because everything is a function of aligned per-image rows, two systems scored on the same images can be resampled
with the *same* draws (:func:`paired_bootstrap`), which is what a paired significance test needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecac_bench import registry

Sums = Mapping[str, np.ndarray]  # column name -> sums (a scalar for the point estimate, (resamples,) in a bootstrap)
CI_LEVEL = 0.95
BOOTSTRAP_METHOD = "percentile bootstrap over images"
# Resample weights are built this many cells (resamples x images) at a time, so memory stays bounded at ECAC scale.
_CELLS_PER_CHUNK = 4_000_000


@dataclass(frozen=True)
class Estimator:
    """How a report kind's metrics follow from the column sums of its per-image statistics."""

    kind: str
    columns: tuple[str, ...]
    aggregate: Callable[[Sums], dict[str, Any]]

    @property
    def metric_keys(self) -> tuple[str, ...]:
        return registry.keys(self.kind)


@dataclass(frozen=True)
class ImageStats:
    """Per-image statistics of one kind: ``values[i, j]`` is statistic ``columns[j]`` of image ``ids[i]``."""

    kind: str
    ids: tuple[str, ...]
    columns: tuple[str, ...]
    values: np.ndarray = field(repr=False)

    @classmethod
    def from_columns(cls, kind: str, ids: Sequence[str], columns: Mapping[str, Any]) -> ImageStats:
        """From one array (or list) per statistic, each with one value per image."""
        names = tuple(columns)
        # Fortran order: each statistic is contiguous, so its sum is numpy's pairwise sum over that column alone.
        values = np.empty((len(ids), len(names)), dtype=np.float64, order="F")
        for j, name in enumerate(names):
            values[:, j] = np.asarray(columns[name], dtype=np.float64)
        return cls(kind, tuple(ids), names, values)

    def __len__(self) -> int:
        return len(self.ids)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.columns.index(name)]

    def take(self, index: Sequence[int]) -> ImageStats:
        idx = np.asarray(index, dtype=np.int64)
        return ImageStats(self.kind, tuple(self.ids[i] for i in idx), self.columns, np.asfortranarray(self.values[idx]))

    def sums(self) -> dict[str, np.ndarray]:
        totals = self.values.sum(axis=0)
        return {name: totals[j] for j, name in enumerate(self.columns)}


def ratio(numerator: np.ndarray, denominator: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``scale x numerator / denominator``, NaN where the denominator is 0 (an undefined metric)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, scale * (numerator / np.where(denominator > 0, denominator, 1.0)), np.nan)


def _as_value(value: Any, is_count: bool) -> float | int | None:
    number = float(value)
    if np.isnan(number):
        return None
    return round(number) if is_count else number


@dataclass(frozen=True)
class BootstrapConfig:
    n_boot: int = 1000
    seed: int = 0
    level: float = CI_LEVEL

    def to_dict(self) -> dict[str, Any]:
        return {"method": BOOTSTRAP_METHOD, "n_boot": self.n_boot, "seed": self.seed, "level": self.level}


@dataclass
class MetricResult:
    """A kind's metrics (registry order), their CIs (metrics whose registry entry has ``ci``; None when not asked),
    and the statistics they came from."""

    kind: str
    metrics: dict[str, float | int | None]
    ci: dict[str, tuple[float, float] | None] | None
    ci_config: dict[str, Any] | None
    stats: ImageStats


def point_estimate(stats: ImageStats, estimator: Estimator) -> dict[str, float | int | None]:
    """The metrics of ``stats`` (a metric with an undefined value is None), in registry order."""
    raw = estimator.aggregate(stats.sums())
    return {m.key: _as_value(raw[m.key], m.is_count) for m in registry.metrics(stats.kind) if m.key in raw}


def resample_weights(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Resample weights in chunks: row ``b`` counts how often each of the ``n`` images is drawn in resample ``b``
    (``n`` draws with replacement, uniform). The draws depend only on (n, n_boot, seed)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _CELLS_PER_CHUNK // max(n, 1)))
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        drawn = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        yield np.bincount(drawn.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def bootstrap_samples(stats: ImageStats, estimator: Estimator, config: BootstrapConfig) -> dict[str, np.ndarray]:
    """Each metric on every resample: ``(n_boot,)`` arrays, NaN where a resample leaves the metric undefined."""
    out: dict[str, list[np.ndarray]] = {}
    if len(stats) == 0 or config.n_boot < 1:
        return {}
    for weights in resample_weights(len(stats), config.n_boot, config.seed):
        sums = weights @ stats.values
        for key, values in estimator.aggregate({c: sums[:, j] for j, c in enumerate(stats.columns)}).items():
            out.setdefault(key, []).append(np.broadcast_to(np.asarray(values, dtype=np.float64), (len(weights),)))
    return {key: np.concatenate(parts) for key, parts in out.items()}


def paired_bootstrap(
    a: ImageStats, b: ImageStats, estimator: Estimator, config: BootstrapConfig
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Both systems' metrics on the *same* resamples of their shared images (the basis of a paired bootstrap test):
    ``a`` and ``b`` must hold the same images in the same order. Returns (a's samples, b's samples)."""
    if a.ids != b.ids or a.columns != b.columns or a.kind != b.kind:
        raise ValueError("paired resampling needs the same images in the same order, and statistics of one kind")
    joined = ImageStats(
        a.kind, a.ids, (*a.columns, *(f"b:{c}" for c in b.columns)), np.asfortranarray(np.hstack([a.values, b.values]))
    )

    def aggregate_both(sums: Sums) -> dict[str, Any]:
        first = estimator.aggregate({c: sums[c] for c in a.columns})
        second = estimator.aggregate({c: sums[f"b:{c}"] for c in a.columns})
        return {**{f"a:{k}": v for k, v in first.items()}, **{f"b:{k}": v for k, v in second.items()}}

    samples = bootstrap_samples(joined, Estimator(a.kind, joined.columns, aggregate_both), config)
    side = {s: {k[2:]: v for k, v in samples.items() if k.startswith(f"{s}:")} for s in "ab"}
    return side["a"], side["b"]


def percentile_interval(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float] | None:
    finite = samples[np.isfinite(samples)]
    if not finite.size:
        return None
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(finite, alpha)), float(np.quantile(finite, 1.0 - alpha))


def bootstrap_ci(
    stats: ImageStats, estimator: Estimator, config: BootstrapConfig
) -> dict[str, tuple[float, float] | None]:
    """The percentile interval of every metric whose registry entry asks for a CI."""
    samples = bootstrap_samples(stats, estimator, config)
    wanted = [m.key for m in registry.metrics(stats.kind) if m.ci]
    return {key: percentile_interval(samples[key], config.level) if key in samples else None for key in wanted}


def evaluate(stats: ImageStats, estimator: Estimator, config: BootstrapConfig | None = None) -> MetricResult:
    """Point estimates and (unless ``config`` is None or asks for no resample) bootstrap CIs."""
    if stats.kind != estimator.kind:
        raise ValueError(f"statistics of {stats.kind!r} given to the {estimator.kind!r} estimator")
    metrics = point_estimate(stats, estimator)
    if config is None or config.n_boot < 1:
        return MetricResult(stats.kind, metrics, None, None, stats)
    return MetricResult(stats.kind, metrics, bootstrap_ci(stats, estimator, config), config.to_dict(), stats)


# ----------------------------------------------------------------------------------------------- paired tests
#
# Two systems scored on the same images: is B's metric different from A's beyond what the choice of images explains?
# docs/compare.md states the definitions; they follow sacrebleu's --paired-bs and --paired-ar (two-sided, the
# observed assignment counted in the null distribution: p = (1 + hits) / (1 + trials)).

# Exhaustive randomisation enumerates every swap when there are at most this many images (2^16 assignments).
MAX_EXACT_IMAGES = 16
# Two differences closer than this (relative to the larger) are equal: a resample's sums add the same numbers as the
# observed sums in another order, so an exact tie can differ in the last bits.
TIE_TOLERANCE = 1e-9


def _same_images(a: ImageStats, b: ImageStats) -> None:
    if a.ids != b.ids or a.columns != b.columns or a.kind != b.kind:
        raise ValueError("a paired test needs the same images in the same order, and statistics of one kind")


def _metric_arrays(estimator: Estimator, columns: Sequence[str], sums: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of each row of ``sums`` (rows: resamples or assignments; columns: the statistics)."""
    raw = estimator.aggregate({c: sums[:, j] for j, c in enumerate(columns)})
    return {key: np.broadcast_to(np.asarray(v, dtype=np.float64), (len(sums),)) for key, v in raw.items()}


def observed_differences(a: ImageStats, b: ImageStats, estimator: Estimator) -> dict[str, float]:
    """B - A of every metric on all the images (NaN where either is undefined)."""
    _same_images(a, b)
    first = _metric_arrays(estimator, a.columns, a.values.sum(axis=0)[None, :])
    second = _metric_arrays(estimator, b.columns, b.values.sum(axis=0)[None, :])
    return {key: float(second[key][0] - first[key][0]) for key in first}


def paired_bootstrap_differences(
    a: ImageStats, b: ImageStats, estimator: Estimator, config: BootstrapConfig
) -> dict[str, np.ndarray]:
    """B - A of every metric on each of ``config.n_boot`` paired resamples (:func:`paired_bootstrap`: both systems
    see the same draws); NaN where either side is undefined on the resample."""
    first, second = paired_bootstrap(a, b, estimator, config)
    return {key: second[key] - first[key] for key in first}


def swap_masks(n: int, trials: int, seed: int) -> Iterator[np.ndarray]:
    """Random swap assignments in chunks: row ``t`` holds 1 for each of the ``n`` images whose two systems' rows are
    exchanged in trial ``t`` (each image independently, with probability 1/2; seeded)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, min(trials, _CELLS_PER_CHUNK // max(n, 1)))
    for start in range(0, trials, chunk):
        yield rng.integers(0, 2, size=(min(chunk, trials - start), n)).astype(np.float64)


def all_swap_masks(n: int) -> Iterator[np.ndarray]:
    """Every one of the 2^n swap assignments of ``n`` images, in chunks (row ``t`` is the binary digits of ``t``)."""
    if n > MAX_EXACT_IMAGES:
        raise ValueError(f"exhaustive randomisation of {n} images (2^{n} assignments) is too large")
    total = 1 << n
    chunk = max(1, min(total, _CELLS_PER_CHUNK // max(n, 1)))
    bits = 1 << np.arange(n)
    for start in range(0, total, chunk):
        codes = np.arange(start, min(total, start + chunk))
        yield ((codes[:, None] & bits) > 0).astype(np.float64)


def randomization_differences(
    a: ImageStats, b: ImageStats, estimator: Estimator, masks: Iterable[np.ndarray]
) -> dict[str, np.ndarray]:
    """B' - A' of every metric for each swap assignment: A' holds B's statistics for the swapped images and its own
    for the others, B' the reverse (sacrebleu's --paired-ar shuffles the same way, per segment)."""
    _same_images(a, b)
    delta = b.values - a.values
    total_a, total_b = a.values.sum(axis=0), b.values.sum(axis=0)
    out: dict[str, list[np.ndarray]] = {}
    for mask in masks:
        moved = mask @ delta
        first = _metric_arrays(estimator, a.columns, total_a + moved)
        second = _metric_arrays(estimator, b.columns, total_b - moved)
        for key in first:
            out.setdefault(key, []).append(second[key] - first[key])
    return {key: np.concatenate(parts) for key, parts in out.items()}


def _at_least(null: np.ndarray, observed: float) -> np.ndarray:
    """``|null| >= |observed|``, ties within TIE_TOLERANCE counted as equal."""
    size = abs(observed)
    return np.abs(null) >= size - TIE_TOLERANCE * max(1.0, size)


def randomization_p_value(differences: np.ndarray, observed: float, *, exact: bool = False) -> float | None:
    """Two-sided p-value of approximate randomisation: (1 + #{|d'| >= |d|}) / (1 + trials) over the trials where the
    metric is defined; with ``exact`` (``differences`` holds every one of the 2^n assignments, the observed one among
    them) the exact permutation p-value #{|d'| >= |d|} / 2^n. None when the observed difference is undefined."""
    if not np.isfinite(observed):
        return None
    finite = differences[np.isfinite(differences)]
    hits = int(np.count_nonzero(_at_least(finite, observed)))
    if exact:
        return hits / len(finite) if len(finite) else None
    return (hits + 1) / (len(finite) + 1)


def bootstrap_p_value(differences: np.ndarray, observed: float) -> float | None:
    """Two-sided p-value of the paired bootstrap: the resampled differences shifted to mean 0 stand for the null
    hypothesis (no difference), and p = (1 + #{|d* - mean(d*)| >= |d|}) / (1 + resamples), over the resamples where
    the metric is defined. None when the observed difference is undefined or no resample defines it."""
    finite = differences[np.isfinite(differences)]
    if not np.isfinite(observed) or not finite.size:
        return None
    hits = int(np.count_nonzero(_at_least(finite - finite.mean(), observed)))
    return (hits + 1) / (len(finite) + 1)
