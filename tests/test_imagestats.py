"""The one metric protocol: per-image statistics -> aggregate -> bootstrap, and paired resampling."""

from __future__ import annotations

import numpy as np
import pytest

from ecac_bench import SAMPLE_PREDICTIONS, load_dataset, load_predictions, score_captions
from ecac_bench.imagestats import (
    BootstrapConfig,
    ImageStats,
    bootstrap_samples,
    evaluate,
    paired_bootstrap,
    point_estimate,
    resample_weights,
)
from ecac_bench.judge import JUDGE, judge_statistics
from ecac_bench.metrics import TTS
from ecac_bench.toy_precision import TOY_PRECISION, ImagePrecision, toy_precision_statistics


def test_resample_weights_draw_n_images_per_resample_and_are_seeded() -> None:
    chunks = list(resample_weights(7, 10, seed=3))
    weights = np.vstack(chunks)
    assert weights.shape == (10, 7) and (weights.sum(axis=1) == 7).all() and (weights >= 0).all()
    assert np.array_equal(weights, np.vstack(list(resample_weights(7, 10, seed=3))))
    assert not np.array_equal(weights, np.vstack(list(resample_weights(7, 10, seed=4))))


def test_judge_statistics_per_image_and_hand_computed_aggregate() -> None:
    # image a: captions 80 and 60; image b: 90 and a failure
    stats = judge_statistics(["a", "a", "b", "b"], [80, 60, 90, None])
    assert stats.ids == ("a", "b")
    assert stats.column("scored").tolist() == [2, 1] and stats.column("failed").tolist() == [0, 1]
    metrics = point_estimate(stats, JUDGE)
    assert metrics["judge_score"] == pytest.approx(230 / 3)
    assert metrics["judge_score_std"] == pytest.approx(np.std([80, 60, 90]))
    assert (metrics["n"], metrics["n_failed"]) == (3, 1)


def test_toy_precision_statistics_give_micro_macro_and_average_count() -> None:
    images = [ImagePrecision("a", ("x", "y"), (True, False)), ImagePrecision("b", (), ()), "c"]  # c: failed
    metrics = point_estimate(toy_precision_statistics(images), TOY_PRECISION)
    assert metrics["toy_precision"] == 50.0 and metrics["toy_precision_macro"] == 50.0
    assert metrics["avg_toy_count"] == 1.0 and (metrics["n_images"], metrics["n_failed"]) == (2, 1)


def test_bootstrap_resamples_images_not_captions() -> None:
    """One image with many captions weighs as one draw: its captions move together."""
    stats = judge_statistics(["a"] * 5 + ["b"], [100, 100, 100, 100, 100, 0])
    samples = bootstrap_samples(stats, JUDGE, BootstrapConfig(200, seed=1))["judge_score"]
    assert set(np.round(samples, 9)) <= {0.0, 100.0, round(500 / 6, 9), round(1000 / 11, 9), round(500 / 7, 9)}


def _sample_stats(system: str) -> ImageStats:
    dataset = load_dataset()
    return score_captions(dataset, load_predictions(SAMPLE_PREDICTIONS[system], dataset)).stats


def test_paired_bootstrap_uses_the_same_draws_for_both_systems() -> None:
    a, b = _sample_stats("system-a"), _sample_stats("system-b")
    config = BootstrapConfig(300, seed=5)
    paired_a, paired_b = paired_bootstrap(a, b, TTS, config)
    # each side alone, with the same seed, sees the same resamples: identical samples
    assert np.array_equal(paired_a["tts"], bootstrap_samples(a, TTS, config)["tts"], equal_nan=True)
    assert np.array_equal(paired_b["tts"], bootstrap_samples(b, TTS, config)["tts"], equal_nan=True)
    # a system paired with itself differs by exactly 0 on every resample
    self_a, self_b = paired_bootstrap(a, a, TTS, config)
    assert np.array_equal(self_a["reward"], self_b["reward"])
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap(a, a.take([1, 0, *range(2, len(a))]), TTS, config)


def test_evaluate_gives_point_estimates_and_cis_of_the_flagged_metrics() -> None:
    stats = _sample_stats("system-a")
    result = evaluate(stats, TTS, BootstrapConfig(100))
    assert set(result.ci) == set(result.metrics) and result.ci_config["n_boot"] == 100
    low, high = result.ci["tts"]
    assert low <= result.metrics["tts"] <= high
    assert evaluate(stats, TTS, None).ci is None
    with pytest.raises(ValueError, match="given to the"):
        evaluate(stats, JUDGE)
