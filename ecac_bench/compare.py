"""Comparing two systems on the same images: for every metric, B - A, a paired bootstrap 95% CI of the difference,
and two-sided p-values by paired bootstrap and by approximate randomisation (sacrebleu's ``--paired-bs`` and
``--paired-ar``; the definitions are in docs/compare.md, the resampling in ``ecac_bench.imagestats``).

A side is a per-image file (``--per-image`` of any metric command: its rows carry the per-image statistics) or a
predictions file (a captions JSONL or an lmms-eval samples file), which is scored with TTS here. Both sides must be
of one kind, measured alike (the kind's protocol fields other than the caption prompt), on the same dataset identity
and the same images.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ecac_bench import registry
from ecac_bench.data import EcacDataset
from ecac_bench.imagestats import (
    MAX_EXACT_IMAGES,
    BootstrapConfig,
    Estimator,
    ImageStats,
    all_swap_masks,
    bootstrap_p_value,
    observed_differences,
    paired_bootstrap_differences,
    percentile_interval,
    point_estimate,
    randomization_differences,
    randomization_p_value,
    swap_masks,
)
from ecac_bench.lmms_adapter import estimator_of
from ecac_bench.matching import MatchConfig
from ecac_bench.per_image import MARKER, read_per_image
from ecac_bench.predictions import load_predictions
from ecac_bench.report import file_sha256, harness

FORMAT = "ecac-bench/compare@1"
DEFAULT_BOOTSTRAP = 1000
DEFAULT_TRIALS = 10000


class CompareError(ValueError):
    """The two sides cannot be compared (other data, other images, another kind or protocol)."""


@dataclass
class Side:
    """One system as the comparison sees it: its per-image statistics and what they were measured on and with."""

    label: str  # "A" or "B"
    model: str
    source: Path
    kind: str
    stats: ImageStats
    dataset: dict[str, Any]  # name, split, size, sha256
    protocol: dict[str, Any]
    signature: str | None = None
    left_out: dict[str, int] = field(default_factory=dict)  # failed / missing images, by status

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": {"path": str(self.source), "sha256": file_sha256(self.source)},
            "signature": self.signature,
            "images": len(self.stats),
            "left_out": self.left_out,
        }


def is_per_image_file(path: Path) -> bool:
    """Whether the first non-blank line of ``path`` is a per-image file's header."""
    with path.open("rb") as fh:
        for raw in fh:
            if raw.strip():
                try:
                    first = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    return False
                return isinstance(first, dict) and MARKER in first
    return False


def _refuse_report(path: Path) -> None:
    """A schema-2 report holds aggregates, not per-image statistics: say what to compare instead."""
    if path.suffix != ".json":
        return
    try:
        body = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError:
        return
    if isinstance(body, dict) and "schema_version" in body and "kind" in body:
        raise CompareError(
            f"{path}: a report (schema {body['schema_version']}) carries aggregates, not per-image statistics; "
            "rerun its command with --per-image FILE and compare those files, or compare the predictions files"
        )


def side_from_per_image(label: str, path: Path) -> Side:
    loaded = read_per_image(path)
    left_out: dict[str, int] = {}
    for row in loaded.rows:
        if row.stats is None:
            left_out[row.status] = left_out.get(row.status, 0) + 1
    header = loaded.header
    return Side(
        label,
        loaded.model,
        path,
        loaded.kind,
        loaded.stats(),
        {k: header.dataset.get(k) for k in ("name", "split", "size", "sha256")},
        header.protocol,
        header.signature,
        left_out,
    )


def side_from_predictions(
    label: str, path: Path, dataset: EcacDataset, match: MatchConfig, allow_missing: bool
) -> Side:
    """Score a predictions file (captions JSONL or lmms-eval samples) with TTS; failed images have no statistics."""
    from ecac_bench.commands._common import match_tag  # the report's name of the rule
    from ecac_bench.metrics import score_captions

    predictions = load_predictions(path, dataset, allow_missing=allow_missing)
    result = score_captions(dataset, predictions, match=match)
    left_out = {"failed": len(predictions.failed)} if predictions.failed else {}
    described = dataset.describe()
    return Side(
        label,
        path.stem,
        path,
        "score",
        result.stats,
        {k: described[k] for k in ("name", "split", "size", "sha256")},
        {"match": match_tag(match)},
        None,
        left_out,
    )


def load_side(label: str, path: Path, dataset: EcacDataset | None, match: MatchConfig, allow_missing: bool) -> Side:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    _refuse_report(path)
    if is_per_image_file(path):
        side = side_from_per_image(label, path)
        if dataset is not None and side.dataset["sha256"] != dataset.sha256:
            raise CompareError(
                f"{path} was measured on {side.dataset['name']} (sha256 {str(side.dataset['sha256'])[:12]}), not on "
                f"--data {dataset.name} (sha256 {dataset.sha256[:12]})"
            )
        return side
    if dataset is None:
        raise CompareError(f"{path}: a predictions file needs the data it was made on (--data)")
    return side_from_predictions(label, path, dataset, match, allow_missing)


def _protocol_differences(kind: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The kind's protocol fields (but the caption prompt, often what is compared) that the two sides state
    differently; a field one side does not state is not checked."""
    fields = [f for f in registry.kind(kind).protocol if f != "caption_prompt"]
    return [f"{f}: {a[f]!r} vs {b[f]!r}" for f in fields if f in a and f in b and a[f] != b[f]]


def align(a: Side, b: Side, common_images: bool = False) -> tuple[ImageStats, ImageStats, dict[str, int]]:
    """Both sides' statistics on the same images in A's order, after checking that they can be compared.
    ``common_images``: keep the images both have statistics for (else a difference in images is an error)."""
    if a.kind != b.kind:
        raise CompareError(f"A is a {a.kind} result and B a {b.kind} one: compare results of one kind")
    if a.dataset["sha256"] != b.dataset["sha256"]:
        raise CompareError(
            f"A and B were measured on different data: A on {a.dataset['name']} ({a.dataset['size']} images, "
            f"sha256 {str(a.dataset['sha256'])[:12]}), B on {b.dataset['name']} ({b.dataset['size']} images, "
            f"sha256 {str(b.dataset['sha256'])[:12]}); compare runs of the same records"
        )
    differences = _protocol_differences(a.kind, a.protocol, b.protocol)
    if differences:
        raise CompareError(f"A and B were measured differently ({'; '.join(differences)}): not comparable")
    ids_a, ids_b = set(a.stats.ids), set(b.stats.ids)
    only_a, only_b = sorted(ids_a - ids_b), sorted(ids_b - ids_a)
    dropped = {"only_a": len(only_a), "only_b": len(only_b)}
    if (only_a or only_b) and not common_images:
        shown = ", ".join(repr(i) for i in (only_a or only_b)[:5])
        raise CompareError(
            f"A and B have statistics for different images ({len(only_a)} only in A, {len(only_b)} only in B, "
            f"first: {shown}; a failed generation has none): compare needs the same images, or pass "
            "--common-images to compare on the images both have"
        )
    common = [i for i in a.stats.ids if i in ids_b]
    if not common:
        raise CompareError("A and B have no image in common with statistics")
    index_a = {image_id: k for k, image_id in enumerate(a.stats.ids)}
    index_b = {image_id: k for k, image_id in enumerate(b.stats.ids)}
    return a.stats.take([index_a[i] for i in common]), b.stats.take([index_b[i] for i in common]), dropped


@dataclass(frozen=True)
class CompareConfig:
    n_boot: int = DEFAULT_BOOTSTRAP
    trials: int = DEFAULT_TRIALS
    seed: int = 0
    level: float = 0.95


@dataclass
class MetricComparison:
    key: str
    a: float | None
    b: float | None
    difference: float | None
    ci: tuple[float, float] | None
    p_bootstrap: float | None
    p_randomization: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "difference": self.difference,
            "ci": None if self.ci is None else list(self.ci),
            "p_bootstrap": self.p_bootstrap,
            "p_randomization": self.p_randomization,
        }


@dataclass
class Comparison:
    kind: str
    images: int
    metrics: list[MetricComparison]
    methods: dict[str, Any]


def compared_metrics(kind: str) -> list[str]:
    """The metrics a comparison tests: those the registry gives a CI (counts and spreads are not tested)."""
    return [m.key for m in registry.metrics(kind) if m.ci]


def compare_stats(a: ImageStats, b: ImageStats, estimator: Estimator, config: CompareConfig) -> Comparison:
    """Every tested metric of A and B, B - A, its paired bootstrap CI and the two p-values (docs/compare.md)."""
    n = len(a)
    bootstrap = BootstrapConfig(config.n_boot, config.seed, config.level)
    boot = paired_bootstrap_differences(a, b, estimator, bootstrap) if config.n_boot else {}
    exact = n <= MAX_EXACT_IMAGES and (1 << n) <= config.trials
    if config.trials:
        masks = all_swap_masks(n) if exact else swap_masks(n, config.trials, config.seed)
        swapped = randomization_differences(a, b, estimator, masks)
    else:
        swapped = {}
    observed = observed_differences(a, b, estimator)
    metrics_a, metrics_b = point_estimate(a, estimator), point_estimate(b, estimator)
    rows = []
    for key in compared_metrics(a.kind):
        diff = observed[key]
        defined = bool(np.isfinite(diff))
        rows.append(
            MetricComparison(
                key,
                metrics_a.get(key),  # type: ignore[arg-type]
                metrics_b.get(key),  # type: ignore[arg-type]
                diff if defined else None,
                percentile_interval(boot[key], config.level) if key in boot and defined else None,
                bootstrap_p_value(boot[key], diff) if key in boot else None,
                randomization_p_value(swapped[key], diff, exact=exact) if key in swapped else None,
            )
        )
    methods = {
        "bootstrap": {
            "method": "paired percentile bootstrap over images",
            "n_boot": config.n_boot,
            "seed": config.seed,
            "level": config.level,
        },
        "randomization": {
            "method": f"exact randomisation (all 2^{n} swaps)" if exact else "approximate randomisation (paired swaps)",
            "trials": (1 << n) if exact else config.trials,
            "seed": None if exact else config.seed,
        },
    }
    return Comparison(a.kind, n, rows, methods)


def compare_sides(a: Side, b: Side, config: CompareConfig, common_images: bool = False) -> dict[str, Any]:
    """The comparison of two loaded sides as the JSON document ``compare --json`` writes (docs/compare.md)."""
    stats_a, stats_b, dropped = align(a, b, common_images)
    result = compare_stats(stats_a, stats_b, estimator_of(a.kind), config)
    return {
        "format": FORMAT,
        "harness": harness(),
        "date": dt.date.today().isoformat(),
        "kind": registry.kind(a.kind).report_kind,
        "dataset": a.dataset,
        "images": result.images,
        "images_left_out": dropped,
        "a": a.describe(),
        "b": b.describe(),
        "methods": result.methods,
        "metrics": {m.key: m.to_dict() for m in result.metrics},
    }


def load_sides(
    paths: Sequence[Path], dataset: EcacDataset | None, match: MatchConfig, allow_missing: bool
) -> tuple[Side, Side]:
    if len(paths) != 2:
        raise CompareError(f"compare takes exactly two systems (A and B), got {len(paths)}")
    return (
        load_side("A", paths[0], dataset, match, allow_missing),
        load_side("B", paths[1], dataset, match, allow_missing),
    )
