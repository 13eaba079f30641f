"""Comparing two systems: paired bootstrap and randomisation tests (hand-computed cases) and `ecac-bench compare`."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from ecac_bench import SAMPLE_DATA, SAMPLE_PREDICTIONS, load_dataset, load_predictions, score_captions
from ecac_bench.cli import main
from ecac_bench.compare import CompareConfig, compare_stats
from ecac_bench.imagestats import (
    BootstrapConfig,
    ImageStats,
    all_swap_masks,
    bootstrap_p_value,
    observed_differences,
    paired_bootstrap_differences,
    point_estimate,
    randomization_differences,
    randomization_p_value,
    resample_weights,
    swap_masks,
)
from ecac_bench.judge import JUDGE, judge_statistics
from ecac_bench.metrics import TTS
from ecac_bench.toy_precision import TOY_PRECISION, ImagePrecision, toy_precision_statistics

SAMPLE_A, SAMPLE_B = SAMPLE_PREDICTIONS["system-a"], SAMPLE_PREDICTIONS["system-b"]


def judged(scores: list[float]) -> ImageStats:
    """One judged caption per image: the judge score is the mean of ``scores``."""
    return judge_statistics([f"img{i}" for i in range(len(scores))], scores)


# --------------------------------------------------------------------------------------------- randomisation


def test_exhaustive_randomisation_gives_the_hand_computed_p_value() -> None:
    """A scores 0, 0, 0 and B 30, 60, 90 (mean difference 60). Swapping image i flips the sign of its difference
    d_i = 30, 60, 90 in the mean difference (1/3) sum(+-d_i); of the 8 sign patterns only +++ (60) and --- (-60)
    reach |60|: the exact p-value is 2/8."""
    a, b = judged([0, 0, 0]), judged([30, 60, 90])
    assert observed_differences(a, b, JUDGE)["judge_score"] == 60
    swapped = randomization_differences(a, b, JUDGE, all_swap_masks(3))["judge_score"]
    by_hand = sorted((30 * s1 + 60 * s2 + 90 * s3) / 3 for s1, s2, s3 in itertools.product((1, -1), repeat=3))
    assert sorted(swapped.tolist()) == pytest.approx(by_hand)
    assert randomization_p_value(swapped, 60, exact=True) == 2 / 8
    # ... and approximate randomisation converges to it: (1 + hits) / (1 + trials)
    trials = randomization_differences(a, b, JUDGE, swap_masks(3, 40_000, seed=1))["judge_score"]
    assert randomization_p_value(trials, 60) == pytest.approx(0.25, abs=0.01)
    # compare_stats enumerates every swap when 2^n does not exceed the trials asked for
    result = compare_stats(a, b, JUDGE, CompareConfig(n_boot=0, trials=8))
    assert result.metrics[0].key == "judge_score" and result.metrics[0].p_randomization == 2 / 8
    assert result.methods["randomization"] == {
        "method": "exact randomisation (all 2^3 swaps)",
        "trials": 8,
        "seed": None,
    }


def test_ties_count_towards_the_p_value() -> None:
    """Four equal differences of 10: only ++++ and ---- reach |10| (the others give 5, 0, -5): 2/16."""
    a, b = judged([50, 50, 50, 50]), judged([60, 60, 60, 60])
    swapped = randomization_differences(a, b, JUDGE, all_swap_masks(4))["judge_score"]
    assert randomization_p_value(swapped, 10, exact=True) == 2 / 16
    # a system against itself: every assignment ties with the observed 0, p = 1 (not 1/(trials+1))
    same = randomization_differences(a, a, JUDGE, swap_masks(4, 99, seed=0))["judge_score"]
    assert randomization_p_value(same, 0.0) == 1.0


def test_randomisation_swaps_statistics_not_metric_values() -> None:
    """A ratio metric (micro toy precision = sum correct / sum extracted) under swaps, by hand:
    A = (2 of 2 correct), (0 of 2) -> 2/4; B = (1 of 1), (3 of 3) -> 4/4; observed B - A = 50.
    swap image 1: A' = 1/1 + 0/2 = 1/3, B' = 2/2 + 3/3 = 5/5 -> +66.7; swap image 2: A' = 5/5, B' = 1/3 -> -66.7;
    swap both: -50. All four reach |50|: p = 4/4 (a swap of one image's values would give other numbers)."""
    a = toy_precision_statistics(
        [ImagePrecision("x", ("p", "q"), (True, True)), ImagePrecision("y", ("r", "s"), (False, False))]
    )
    b = toy_precision_statistics(
        [ImagePrecision("x", ("p",), (True,)), ImagePrecision("y", ("r", "s", "t"), (True,) * 3)]
    )
    swapped = randomization_differences(a, b, TOY_PRECISION, all_swap_masks(2))["toy_precision"]
    assert swapped.tolist() == pytest.approx([50, 100 - 100 / 3, 100 / 3 - 100, -50])
    assert randomization_p_value(swapped, 50, exact=True) == 1.0


def test_swap_masks_are_seeded_and_fair() -> None:
    masks = np.vstack(list(swap_masks(5, 2000, seed=7)))
    assert masks.shape == (2000, 5) and set(np.unique(masks)) <= {0.0, 1.0}
    assert abs(masks.mean() - 0.5) < 0.02
    assert np.array_equal(masks, np.vstack(list(swap_masks(5, 2000, seed=7))))
    every = np.vstack(list(all_swap_masks(4)))
    assert len({tuple(row) for row in every.tolist()}) == 16
    with pytest.raises(ValueError, match="too large"):
        next(all_swap_masks(17))


# --------------------------------------------------------------------------------------------- paired bootstrap


def test_paired_bootstrap_p_values_and_ci_on_degenerate_cases() -> None:
    a = judged([10, 40, 70, 20, 90])
    config = BootstrapConfig(500, seed=3)
    # B = A + 10 on every image: every resample differs by exactly 10; shifted to mean 0 nothing reaches 10
    shifted = paired_bootstrap_differences(a, judged([20, 50, 80, 30, 100]), JUDGE, config)["judge_score"]
    assert np.allclose(shifted, 10) and bootstrap_p_value(shifted, 10.0) == 1 / 501
    # a system against itself: differences all 0, p = 1
    same = paired_bootstrap_differences(a, a, JUDGE, config)["judge_score"]
    assert not same.any() and bootstrap_p_value(same, 0.0) == 1.0
    result = compare_stats(a, a, JUDGE, CompareConfig(n_boot=200, trials=100))
    assert result.metrics[0].ci == (0.0, 0.0) and result.metrics[0].p_randomization == 1.0


def _sample_stats(path: Path) -> ImageStats:
    dataset = load_dataset()
    return score_captions(dataset, load_predictions(path, dataset)).stats


def test_paired_bootstrap_follows_its_definition_on_the_sample() -> None:
    """The p-value and CI computed from scratch: resample b draws image i weights[b, i] times (the same draws for
    both systems), TTS of a resample = 100 x sum(w x rate) / sum(w x covered)."""
    a, b = _sample_stats(SAMPLE_A), _sample_stats(SAMPLE_B)
    weights = np.vstack(list(resample_weights(len(a), 300, seed=11)))

    def tts(stats: ImageStats) -> np.ndarray:
        return 100 * (weights @ stats.column("rate_tts")) / (weights @ stats.column("covered_tts"))

    by_hand = tts(b) - tts(a)
    observed = point_estimate(b, TTS)["tts"] - point_estimate(a, TTS)["tts"]
    p_by_hand = (1 + np.sum(np.abs(by_hand - by_hand.mean()) >= abs(observed))) / 301
    result = compare_stats(a, b, TTS, CompareConfig(n_boot=300, trials=0, seed=11))
    tts_row = next(m for m in result.metrics if m.key == "tts")
    assert tts_row.difference == pytest.approx(observed)
    assert tts_row.p_bootstrap == pytest.approx(p_by_hand)
    assert tts_row.ci == pytest.approx((np.quantile(by_hand, 0.025), np.quantile(by_hand, 0.975)))
    assert tts_row.p_randomization is None and [m.key for m in result.metrics][-1] == "reward"


# --------------------------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def per_image_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("compare")
    files = {}
    for name, preds in (("a", SAMPLE_A), ("b", SAMPLE_B)):
        files[name] = folder / f"{name}.jsonl"
        argv = ["score", "--predictions", str(preds), "--per-image", str(files[name]), "--n-boot", "0"]
        assert main(argv) == 0
    return files


def _compare(argv: list[str], out: Path) -> dict:
    assert main(["compare", *argv, "--json", str(out), "--n-boot", "200", "--trials", "500", "--seed", "4"]) == 0
    return json.loads(out.read_text())


def test_compare_predictions_per_image_files_and_lmms_eval_samples_agree(per_image_files, tmp_path, capsys) -> None:
    from_predictions = _compare(["--predictions", str(SAMPLE_A), "--predictions", str(SAMPLE_B)], tmp_path / "1.json")
    from_files = _compare([str(per_image_files["a"]), str(per_image_files["b"])], tmp_path / "2.json")
    assert from_predictions["metrics"] == from_files["metrics"]
    assert from_files["a"]["model"] == "system-a" and from_files["images"] == 60
    assert from_files["methods"]["bootstrap"] == {
        "method": "paired percentile bootstrap over images", "n_boot": 200, "seed": 4, "level": 0.95,
    }  # fmt: skip
    assert from_files["methods"]["randomization"]["trials"] == 500 and from_files["format"] == "ecac-bench/compare@1"
    tts = from_files["metrics"]["tts"]
    dataset = load_dataset()
    a = score_captions(dataset, load_predictions(SAMPLE_A, dataset)).metrics["tts"]
    b = score_captions(dataset, load_predictions(SAMPLE_B, dataset)).metrics["tts"]
    assert (tts["a"], tts["b"]) == (a, b) and tts["difference"] == pytest.approx(b - a)
    assert tts["ci"][0] <= tts["difference"] <= tts["ci"][1] and 0 < tts["p_randomization"] <= 1

    # lmms-eval samples files (--log_samples) are predictions files too
    samples = {}
    for name, preds in (("a", SAMPLE_A), ("b", SAMPLE_B)):
        rows = [json.loads(line) for line in preds.read_text().splitlines()]
        samples[name] = tmp_path / f"2026_samples_ecac_tts_{name}.jsonl"
        samples[name].write_text(
            "".join(
                json.dumps({"doc_id": i, "filtered_resps": row.get("captions") or row["caption"],
                            "tts": {"id": row["id"]}}, ensure_ascii=False) + "\n"
                for i, row in enumerate(rows)
            )
        )  # fmt: skip
    from_samples = _compare([str(samples["a"]), str(samples["b"])], tmp_path / "3.json")
    assert from_samples["metrics"] == from_files["metrics"]
    out = capsys.readouterr().out
    assert "p rand" in out and "200 resamples, seed 4" in out and "500 trials, seed 4" in out


def test_compare_refuses_other_data_images_kind_protocol_and_reports(per_image_files, tmp_path, capsys) -> None:
    def refused(argv: list[str], message: str) -> None:
        assert main(["compare", *argv, "--n-boot", "10", "--trials", "10"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err

    test_only, test_data = tmp_path / "test.jsonl", tmp_path / "test_data.jsonl"
    test_rows = [line for line in SAMPLE_DATA.read_text().splitlines() if '"split": "test"' in line]
    test_data.write_text("\n".join(test_rows) + "\n")
    argv = ["score", "--data", str(test_data), "--allow-missing", "--predictions", str(SAMPLE_A), "--n-boot", "0"]
    assert main([*argv, "--per-image", str(test_only)]) == 2  # ids not in the data: refused before anything
    preds = tmp_path / "test_preds.jsonl"
    ids = {json.loads(line)["id"] for line in test_rows}
    preds.write_text(
        "".join(line + "\n" for line in SAMPLE_A.read_text().splitlines() if json.loads(line)["id"] in ids)
    )
    argv = ["score", "--data", str(test_data), "--predictions", str(preds), "--n-boot", "0"]
    assert main([*argv, "--per-image", str(test_only)]) == 0
    capsys.readouterr()
    refused([str(per_image_files["a"]), str(test_only)], "different data")
    # a predictions file is scored on --data: the same data as A's per-image file, or refused
    refused([str(per_image_files["a"]), str(preds), "--data", str(test_data)], "not on --data test_data")
    refused([str(per_image_files["a"]), str(per_image_files["b"]), "--data", str(test_data)], "not on --data")
    fuzzy = tmp_path / "fuzzy.jsonl"
    assert main(["score", "--match", "fuzzy", "--per-image", str(fuzzy), "--n-boot", "0"]) == 0
    refused([str(per_image_files["a"]), str(fuzzy)], "measured differently (match: 'exact' vs 'fuzzy@90')")
    precision = tmp_path / "precision.jsonl"
    assert main(["toy-precision", "--extractor", "lexicon", "--per-image", str(precision), "--n-boot", "0"]) == 0
    refused([str(per_image_files["a"]), str(precision)], "A is a score result and B a toy-precision one")
    report = tmp_path / "report.json"
    assert main(["score", "--json", str(report), "--n-boot", "0"]) == 0
    refused([str(report), str(per_image_files["b"])], "carries aggregates, not per-image statistics")
    refused([str(per_image_files["a"])], "exactly two systems")

    # B failed on two images: different images, unless asked to compare the common ones
    rows = [json.loads(line) for line in SAMPLE_B.read_text().splitlines()]
    rows[0] = {"id": rows[0]["id"], "error": "timeout"}
    rows[5] = {"id": rows[5]["id"], "caption": ""}
    failed = tmp_path / "failed.jsonl"
    failed.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    refused(["--predictions", str(SAMPLE_A), "--predictions", str(failed)], "2 only in A, 0 only in B")
    out = tmp_path / "common.json"
    argv = ["--predictions", str(SAMPLE_A), "--predictions", str(failed), "--common-images"]
    result = _compare(argv, out)
    assert result["images"] == 58 and result["images_left_out"] == {"only_a": 2, "only_b": 0}
    assert result["b"]["left_out"] == {"failed": 2}


def test_compare_judged_kinds_from_their_per_image_files(tmp_path) -> None:
    """Any metric command's --per-image file can be compared: toy precision with the lexicon extractor here."""
    files = []
    for name, preds in (("a", SAMPLE_A), ("b", SAMPLE_B)):
        files.append(tmp_path / f"{name}.jsonl")
        argv = ["toy-precision", "--extractor", "lexicon", "--predictions", str(preds), "--n-boot", "0"]
        assert main([*argv, "--per-image", str(files[-1]), "--json", str(tmp_path / f"{name}.json")]) == 0
    result = _compare([str(f) for f in files], tmp_path / "c.json")
    assert result["kind"] == "ecac-bench/toy-precision"
    assert set(result["metrics"]) == {"toy_precision", "toy_precision_macro", "avg_toy_count"}
    for side, name in (("a", "a"), ("b", "b")):
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["metrics"]["toy_precision"][side] == report["metrics"]["toy_precision"]
    rows = [json.loads(line) for line in files[0].read_text().splitlines()[1:]]
    assert all(set(row["details"]) == {"extracted", "correct"} for row in rows if row["stats"] is not None)
