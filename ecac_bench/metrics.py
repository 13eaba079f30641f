"""The TTS metric family and the RSRS reward R(C). Pure functions: no I/O.

Definitions (docs/metrics.md has the full text):

* For a subset S of toys (all; one level; one level and one ground) an image's rate is named / |S in the image|;
  the metric is 100 x the mean of that rate over the images with at least one toy in S (others are skipped).
* R(C) = sum over the image's toys of w(ground) x s(level) x named, with w(fg)=1, w(bg)=0.5, s(low)=1, s(medium)=2,
  s(high)=3; ``reward`` is its mean over all images.

The per-image statistics (``ecac_bench.imagestats``) of an image: for each subset ``x``, ``rate_x`` = named / toys
in the subset (0 when the image has none) and ``covered_x`` = 1 when it has one; ``reward`` = R(C); ``images`` = 1.
The aggregate: ``x`` = 100 x sum(rate_x) / sum(covered_x), ``reward`` = sum(reward) / sum(images).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, islice, repeat
from operator import is_
from typing import Any

import numpy as np

from ecac_bench.data import LEVELS, TOY_CLASSES, EcacDataset, EcacRecord, ToyAnnotation, ToyColumn
from ecac_bench.forking import fork_call
from ecac_bench.gc_pause import no_gc
from ecac_bench.imagestats import BootstrapConfig, Estimator, ImageStats, Sums, evaluate, point_estimate, ratio
from ecac_bench.imagestats import bootstrap_ci as _bootstrap_ci
from ecac_bench.matching import MatchConfig, ToyMatcher, normalize_many, normalize_text
from ecac_bench.predictions import Predictions

# Column order of the per-image count vectors; the metric key of column i is SUBSET_KEYS[i].
SUBSET_KEYS: tuple[str, ...] = (
    "tts",
    "tts_l",
    "tts_m",
    "tts_h",
    "tts_fl",
    "tts_fm",
    "tts_fh",
    "tts_bl",
    "tts_bm",
    "tts_bh",
)
METRIC_KEYS: tuple[str, ...] = (*SUBSET_KEYS, "reward")

GROUND_WEIGHT: dict[str, float] = {"foreground": 1.0, "background": 0.5}
LEVEL_SCORE: dict[str, float] = {"low": 1.0, "medium": 2.0, "high": 3.0}

_N = len(SUBSET_KEYS)


def _subset_counts(per_class: np.ndarray) -> np.ndarray:
    """Per-class counts (images, 6; TOY_CLASSES: the six ground x level classes, foreground ones first) -> per-subset
    counts (images, 10; SUBSET_KEYS: all toys, the three levels, then the six classes)."""
    out = np.empty((len(per_class), _N), dtype=np.int64)
    out[:, 4:] = per_class
    for level in range(len(LEVELS)):
        np.add(per_class[:, level], per_class[:, len(LEVELS) + level], out=out[:, 1 + level])
    np.sum(out[:, 1:4], axis=1, out=out[:, 0])
    return out


_CLASS_REWARD = np.array([GROUND_WEIGHT[ground] * LEVEL_SCORE[level] for ground, level in TOY_CLASSES])
_DEFAULT_MATCHER = ToyMatcher()


@dataclass(frozen=True, slots=True)
class ImageScore:
    """Per-image TTS data: named and total toy counts per subset (SUBSET_KEYS order) and the reward R(C)."""

    id: str
    named: tuple[int, ...]
    total: tuple[int, ...]
    reward: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "named": list(self.named), "total": list(self.total), "reward": self.reward}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageScore:
        return cls(str(data["id"]), tuple(data["named"]), tuple(data["total"]), float(data["reward"]))


def _as_list(captions: str | Sequence[str]) -> Sequence[str]:
    return [captions] if isinstance(captions, str) else captions


@dataclass(frozen=True)
class _Arrays:
    """Per-image counts of a set of images, as arrays (the form every aggregate is computed from)."""

    ids: Sequence[str]
    named: np.ndarray  # (images, subsets) int
    total: np.ndarray  # (images, subsets) int
    reward: np.ndarray  # (images,) float

    @classmethod
    def count(
        cls, images: Iterable[tuple[str, Sequence[ToyAnnotation], Sequence[str]]], matcher: ToyMatcher
    ) -> _Arrays:
        """Match every toy of every (id, toys, raw captions) image: the one place where toys get counted."""
        ids: list[str] = []
        slots: list[int] = []  # image index x 6 + toy class, one per toy
        hits: list[bool] = []
        named_flags = matcher.named_flags
        for i, (image_id, toys, captions) in enumerate(images):
            ids.append(image_id)
            if not toys:
                continue
            hits += named_flags(toys, [normalize_text(c) for c in captions])
            base = 6 * i
            slots += [base + toy.toy_class for toy in toys]
        return cls._of_slots(ids, np.asarray(slots, dtype=np.int64), np.asarray(hits, dtype=np.float64))

    @classmethod
    def count_columns(
        cls, ids: list[str], toys: ToyColumn, captions: list[Sequence[str]], matcher: ToyMatcher
    ) -> _Arrays:
        """What :meth:`count` gives for the images ``ids`` (their toys, their raw captions) under the exact rule,
        computed column by column: every caption normalised at once (normalize_many), every (toy, image) pair
        matched at once (ToyMatcher.named_pairs). An image's normalised captions are joined with a newline: no
        normalised name holds one, and it is no ASCII letter or digit, so a name occurs in the joined text exactly
        when it occurs in one of the captions, on the same boundaries."""
        n = len(ids)
        image_of = np.repeat(np.arange(n), toys.counts)
        first_toy = np.concatenate([[0], np.cumsum(toys.counts)])

        def named(lo: int, hi: int) -> np.ndarray:  # the toys of images lo..hi-1: named or not
            texts = _normalized_texts(captions[lo:hi])
            at = slice(first_toy[lo], first_toy[hi])
            return matcher.named_pairs(toys.table, toys.index[at], image_of[at] - lo, texts)

        # A large set is shared with a child process (ecac_bench.forking): it takes the second half of the images.
        half = n // 2
        child = fork_call(lambda: named(half, n), n)
        first = named(0, half if child is not None else n)
        second = child.result() if child is not None else None
        if child is not None and second is None:  # the child failed: do its part here
            second = named(half, n)
        hits = first if second is None else np.concatenate([first, second])
        classes = np.array([toy.toy_class for toy in toys.table], dtype=np.int64)
        return cls._of_slots(ids, image_of * 6 + classes[toys.index], hits.astype(np.float64))

    @classmethod
    def _of_slots(cls, ids: Sequence[str], slot: np.ndarray, hits: np.ndarray) -> _Arrays:
        """From one (image index x 6 + toy class, named 0/1) entry per toy."""
        n = len(ids)
        total6 = np.bincount(slot, minlength=6 * n).reshape(n, 6)
        named6 = np.bincount(slot, weights=hits, minlength=6 * n).reshape(n, 6)
        return cls(ids, _subset_counts(named6.astype(np.int64)), _subset_counts(total6), named6 @ _CLASS_REWARD)

    @classmethod
    def of(cls, scores: Sequence[ImageScore]) -> _Arrays:
        if not scores:
            empty = np.zeros((0, _N), dtype=np.int64)
            return cls([], empty, empty, np.zeros(0))
        return cls(
            [s.id for s in scores],
            np.array([s.named for s in scores], dtype=np.int64),
            np.array([s.total for s in scores], dtype=np.int64),
            np.array([s.reward for s in scores], dtype=np.float64),
        )

    def take(self, index: Sequence[int]) -> _Arrays:
        idx = np.asarray(index, dtype=np.int64)
        return _Arrays([self.ids[i] for i in idx], self.named[idx], self.total[idx], self.reward[idx])

    def scores(self) -> list[ImageScore]:
        return [
            ImageScore(i, tuple(n), tuple(t), float(r))
            for i, n, t, r in zip(self.ids, self.named.tolist(), self.total.tolist(), self.reward.tolist())
        ]

    def rates(self) -> np.ndarray:
        """Per-image rate per subset, 0 where the image has no toy in the subset."""
        covered = self.total > 0
        return np.divide(self.named, self.total, out=np.zeros(self.total.shape), where=covered)


def _normalized_texts(captions: Sequence[Sequence[str]]) -> list[str]:
    """Each image's captions normalised (normalize_many) and joined with a newline (see _Arrays.count_columns)."""
    lengths = list(map(len, captions))
    normalized = normalize_many(list(chain.from_iterable(captions)))
    if len(normalized) == len(lengths) and min(lengths, default=1) == 1:  # one caption per image
        return normalized
    parts = iter(normalized)
    return list(map("\n".join, map(islice, repeat(parts), lengths)))


def score_image(
    record_or_toys: EcacRecord | Sequence[ToyAnnotation],
    captions: str | Sequence[str],
    matcher: ToyMatcher | None = None,
) -> ImageScore:
    """Score one image's caption(s) against its toys. A toy counts as named when any caption names it."""
    if isinstance(record_or_toys, EcacRecord):
        image = (record_or_toys.id, record_or_toys.toys, _as_list(captions))
    else:
        image = ("", record_or_toys, _as_list(captions))
    return _Arrays.count([image], matcher or _DEFAULT_MATCHER).scores()[0]


def toy_reward(
    toys: Sequence[ToyAnnotation] | Sequence[Mapping[str, Any]],
    captions: str | Sequence[str],
    matcher: ToyMatcher | None = None,
) -> float:
    """R(C) of one image: sum over toys of w(ground) x s(level) x named (fg 1, bg 0.5; low 1, medium 2, high 3).

    ``toys`` may be ToyAnnotation objects or their dict form (as a dataset column reaches a TRL reward function).
    """
    annotations = [t if isinstance(t, ToyAnnotation) else toy_from_mapping(t) for t in toys]
    return score_image(annotations, captions, matcher).reward


def toy_from_mapping(data: Mapping[str, Any]) -> ToyAnnotation:
    """A ToyAnnotation from its dict form (aliases may be missing or None)."""
    return ToyAnnotation(data["name"], data["level"], data["ground"], tuple(data.get("aliases") or ()))


def _aggregate(sums: Sums) -> dict[str, Any]:
    out = {key: ratio(sums[f"rate_{key}"], sums[f"covered_{key}"], 100.0) for key in SUBSET_KEYS}
    out["reward"] = ratio(sums["reward"], sums["images"])
    return out


TTS = Estimator(
    "score", (*(f"{p}_{k}" for k in SUBSET_KEYS for p in ("rate", "covered")), "reward", "images"), _aggregate
)


def tts_statistics(arrays: _Arrays) -> ImageStats:
    """The per-image statistics of TTS and the reward (the module docstring defines them)."""
    # Built in place, in TTS.columns' order (rate_x, covered_x for each subset, then reward, images), Fortran order
    # as ImageStats.from_columns builds it: at ECAC scale, one column at a time costs a tenth of a second.
    values = np.empty((len(arrays.reward), 2 * _N + 2), dtype=np.float64, order="F")
    values[:, 0 : 2 * _N : 2] = arrays.rates()
    values[:, 1 : 2 * _N : 2] = arrays.total > 0
    values[:, 2 * _N] = arrays.reward
    values[:, 2 * _N + 1] = 1.0
    return ImageStats("score", tuple(arrays.ids), TTS.columns, values)


def _coverage_from_arrays(arrays: _Arrays) -> dict[str, int]:
    covered = (arrays.total > 0).sum(axis=0)
    out = {key: int(covered[col]) for col, key in enumerate(SUBSET_KEYS)}
    out["reward"] = len(arrays.reward)
    return out


def aggregate_scores(scores: Sequence[ImageScore]) -> dict[str, float | None]:
    """Metrics (METRIC_KEYS) from per-image scores; a metric with no covered image is None."""
    return point_estimate(tts_statistics(_Arrays.of(scores)), TTS)  # type: ignore[return-value]


def metric_coverage(scores: Sequence[ImageScore]) -> dict[str, int]:
    """How many images each metric averages over."""
    return _coverage_from_arrays(_Arrays.of(scores))


def bootstrap_ci(
    scores: Sequence[ImageScore], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap CI per metric, resampling images with replacement (seeded; ``ecac_bench.imagestats``)."""
    return _bootstrap_ci(tts_statistics(_Arrays.of(scores)), TTS, BootstrapConfig(n_boot, seed, level))


@dataclass
class TTSResult:
    """The result of scoring a set of captions: metrics, their coverage, and optional CIs and breakdowns."""

    metrics: dict[str, float | None]
    coverage: dict[str, Any]
    match: MatchConfig
    stats: ImageStats
    ci: dict[str, tuple[float, float] | None] | None = None
    ci_config: dict[str, Any] | None = None
    breakdown: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _arrays: _Arrays | None = field(default=None, repr=False)

    @property
    def per_image(self) -> list[ImageScore]:
        """Per-image counts and rewards, in dataset order."""
        return self._arrays.scores() if self._arrays is not None else []


def score_captions(
    dataset: EcacDataset | Iterable[EcacRecord],
    predictions: Mapping[str, Sequence[str]],
    match: MatchConfig | None = None,
    by: Sequence[str] = (),
    ci: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
) -> TTSResult:
    """Score captions (id -> one or more captions) against a dataset's toys.

    Images absent from ``predictions`` score as an empty caption (loading decides whether that is allowed, see
    ``load_predictions``). Images whose generation failed (``Predictions.failed``) are left out of every metric
    and counted in the coverage. ``by`` lists record fields (``category``, ``area``) to break the metrics down by;
    ``ci`` adds bootstrap CIs (``n_boot`` resamples, ``seed``).
    """
    with no_gc():
        return _score_captions(dataset, predictions, match or MatchConfig(), by, ci, n_boot, seed)


def _score_captions(
    dataset: EcacDataset | Iterable[EcacRecord],
    predictions: Mapping[str, Sequence[str]],
    match: MatchConfig,
    by: Sequence[str],
    ci: bool,
    n_boot: int,
    seed: int,
) -> TTSResult:
    for field_name in by:
        if field_name not in ("category", "area"):
            raise ValueError(f"cannot break down by {field_name!r}; expected 'category' or 'area'")
    # A plain mapping has no failed images (no copy into a Predictions: a 250k-image dict would cost time).
    loaded = predictions if isinstance(predictions, Predictions) else Predictions()
    failed = loaded.failed
    matcher = ToyMatcher(match)
    no_caption: tuple[str, ...] = ()
    columns = dataset.columns if isinstance(dataset, EcacDataset) else None
    groups_of: dict[str, Sequence[str]] = {}
    if columns is not None and match.mode == "exact":  # a dataset read column by column, scored that way
        n_images, ids, toys = len(columns), columns.ids, columns.toys
        if failed:
            kept = np.fromiter(map(failed.__contains__, ids), dtype=bool, count=len(ids)) ^ True
            ids, toys = list(compress(ids, kept.tolist())), toys.take(kept)
        if isinstance(predictions, dict) and len(predictions) == len(ids) and list(predictions) == ids:
            captions, predicted = list(predictions.values()), len(ids)  # in the dataset's order: no lookups
        else:
            captions = list(map(predictions.get, ids, repeat(no_caption)))
            predicted = len(ids) - sum(map(is_, captions, repeat(no_caption)))
        arrays = _Arrays.count_columns(ids, toys, captions, matcher)
        for field_name in by:
            values = columns.categories if field_name == "category" else columns.areas
            groups_of[field_name] = list(compress(values, kept.tolist())) if failed else values
    else:
        all_records = list(dataset)
        n_images = len(all_records)
        records = [r for r in all_records if r.id not in failed] if failed else all_records
        arrays = _Arrays.count(((r.id, r.toys, predictions.get(r.id, no_caption)) for r in records), matcher)
        predicted = len(predictions.keys() & set(arrays.ids))
        groups_of = {field_name: [getattr(r, field_name) for r in records] for field_name in by}
    coverage: dict[str, Any] = {
        "images": n_images,
        "predicted": predicted,
        **loaded.failure_summary(),
        "missing": len(arrays.ids) - predicted,
        "fraction_predicted": predicted / n_images if n_images else None,
        "metric_images": _coverage_from_arrays(arrays),
    }
    stats = tts_statistics(arrays)
    measured = evaluate(stats, TTS, BootstrapConfig(n_boot, seed) if ci else None)
    result = TTSResult(measured.metrics, coverage, match, stats, measured.ci, measured.ci_config, _arrays=arrays)  # type: ignore[arg-type]
    for field_name in by:
        groups: dict[str, list[int]] = {}
        for i, value in enumerate(groups_of[field_name]):
            groups.setdefault(value, []).append(i)
        result.breakdown[field_name] = {
            value: {
                "metrics": point_estimate(stats.take(idx), TTS),
                "metric_images": _coverage_from_arrays(arrays.take(idx)),
                "images": len(idx),
            }
            for value, idx in sorted(groups.items())
        }
    return result
