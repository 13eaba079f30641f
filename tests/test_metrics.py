"""TTS aggregation and the reward, against hand-computed numbers."""

import math

import pytest

from ecac_bench import (
    METRIC_KEYS,
    EcacRecord,
    ImageScore,
    MatchConfig,
    ToyAnnotation,
    aggregate_scores,
    bootstrap_ci,
    metric_coverage,
    score_captions,
    score_image,
    toy_reward,
)

T = ToyAnnotation


def rec(rid, toys, category="classroom", area="a"):
    return EcacRecord(rid, f"/x/{rid}.png", category, area, "ref", "test", tuple(toys))


# Image 1: fg-low "car" (named), fg-medium "unit blocks" (not), bg-high "pink tower" (named via alias)
# Image 2: bg-low "积木" (named), fg-high "蒙氏粉红塔" (not)
# Image 3: no toys
# Image 4: fg-medium "彩泥" (not named)
RECORDS = [
    rec(
        "1",
        [
            T("car", "low", "foreground"),
            T("unit blocks", "medium", "foreground"),
            T("Montessori pink tower", "high", "background", ("pink tower",)),
        ],
    ),
    rec("2", [T("积木", "low", "background"), T("蒙氏粉红塔", "high", "foreground")], category="specialty"),
    rec("3", []),
    rec("4", [T("彩泥", "medium", "foreground")], category="outdoor"),
]
CAPTIONS = {
    "1": ["A child pushes a car next to a pink tower; some blocks."],
    "2": ["孩子们在搭积木。"],
    "3": ["nothing here"],
    "4": ["孩子们在画画。"],
}


def test_score_image_counts_and_reward():
    s = score_image(RECORDS[0], CAPTIONS["1"])
    # subsets: tts, l, m, h, fl, fm, fh, bl, bm, bh
    assert s.total == (3, 1, 1, 1, 1, 1, 0, 0, 0, 1)
    assert s.named == (2, 1, 0, 1, 1, 0, 0, 0, 0, 1)
    assert s.reward == pytest.approx(1 * 1 + 0.5 * 3)  # fg low 1x1, bg high 0.5x3


def test_hand_computed_metrics():
    m = score_captions(RECORDS, CAPTIONS).metrics
    # per-image "all toys" rates: 2/3, 1/2, (skipped), 0/1 -> mean over 3 images
    assert m["tts"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 0) / 3)
    assert m["tts_l"] == pytest.approx(100 * (1 + 1) / 2)  # images 1 and 2 have a low toy, both named
    assert m["tts_m"] == pytest.approx(100 * (0 + 0) / 2)  # images 1 and 4
    assert m["tts_h"] == pytest.approx(100 * (1 + 0) / 2)  # images 1 and 2
    assert m["tts_fl"] == pytest.approx(100.0)
    assert m["tts_fm"] == pytest.approx(0.0)
    assert m["tts_fh"] == pytest.approx(0.0)  # only image 2's 蒙氏粉红塔
    assert m["tts_bl"] == pytest.approx(100.0)  # image 2's 积木
    assert m["tts_bm"] is None  # no image has a background medium toy
    assert m["tts_bh"] == pytest.approx(100.0)
    # rewards: 2.5, 0.5 (bg low), 0, 0 -> mean over all 4 images
    assert m["reward"] == pytest.approx((2.5 + 0.5 + 0 + 0) / 4)
    assert set(m) == set(METRIC_KEYS)


def test_coverage_counts_images_per_metric():
    result = score_captions(RECORDS, CAPTIONS)
    cov = result.coverage["metric_images"]
    assert cov["tts"] == 3 and cov["tts_l"] == 2 and cov["tts_bm"] == 0 and cov["reward"] == 4
    assert result.coverage["predicted"] == 4 and result.coverage["missing"] == 0


def test_missing_predictions_score_as_empty_captions():
    partial = {k: v for k, v in CAPTIONS.items() if k != "1"}
    result = score_captions(RECORDS, partial)
    assert result.coverage["missing"] == 1
    assert result.metrics["tts"] == pytest.approx(100 * (0 + 1 / 2 + 0) / 3)


def test_toy_reward_hand_computed_and_dict_form():
    toys = [T("car", "low", "foreground"), T("drum", "medium", "background"), T("xylophone", "high", "foreground")]
    assert toy_reward(toys, "a car, a drum and a xylophone") == pytest.approx(1 * 1 + 0.5 * 2 + 1 * 3)
    assert toy_reward(toys, ["a car", "a drum"]) == pytest.approx(1 + 1)
    assert toy_reward(toys, "nothing") == 0.0
    as_dicts = [t.to_dict() for t in toys]
    assert toy_reward(as_dicts, "a xylophone") == pytest.approx(3.0)
    assert toy_reward([{"name": "car", "level": "low", "ground": "background", "aliases": None}], "car") == 0.5


def test_aggregate_round_trips_through_dicts():
    scores = score_captions(RECORDS, CAPTIONS).per_image
    again = [ImageScore.from_dict(s.to_dict()) for s in scores]
    assert aggregate_scores(again) == score_captions(RECORDS, CAPTIONS).metrics
    assert metric_coverage(again)["tts"] == 3


def test_aggregate_of_nothing_is_null():
    assert all(v is None for v in aggregate_scores([]).values())


def test_per_image_equals_score_image():
    result = score_captions(RECORDS, CAPTIONS)
    for record, score in zip(RECORDS, result.per_image):
        assert score == score_image(record, CAPTIONS[record.id])


def test_breakdown_by_category():
    result = score_captions(RECORDS, CAPTIONS, by=["category"])
    groups = result.breakdown["category"]
    assert set(groups) == {"classroom", "outdoor", "specialty"}
    assert groups["specialty"]["metrics"]["tts"] == pytest.approx(50.0)
    assert groups["classroom"]["images"] == 2
    assert groups["classroom"]["metrics"]["tts"] == pytest.approx(100 * 2 / 3)  # image 3 has no toys
    with pytest.raises(ValueError, match="break down"):
        score_captions(RECORDS, CAPTIONS, by=["split"])


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    result = score_captions(RECORDS, CAPTIONS, ci=True, n_boot=300, seed=7)
    again = score_captions(RECORDS, CAPTIONS, ci=True, n_boot=300, seed=7)
    assert result.ci == again.ci
    low, high = result.ci["tts"]
    assert low <= result.metrics["tts"] <= high
    assert result.ci["tts_bm"] is None
    # A constant per-image rate has a zero-width interval.
    same = [ImageScore(str(i), (1,) * 10, (2,) * 10, 1.0) for i in range(5)]
    ci = bootstrap_ci(same, n_boot=50)
    assert ci["tts"] == pytest.approx((50.0, 50.0)) and ci["reward"] == pytest.approx((1.0, 1.0))


def test_fuzzy_mode_is_recorded_and_changes_matching():
    records = [rec("1", [T("xylophone", "high", "foreground")])]
    exact = score_captions(records, {"1": ["a xylofone"]})
    fuzzy = score_captions(records, {"1": ["a xylofone"]}, match=MatchConfig("fuzzy", 80))
    assert exact.metrics["tts"] == 0.0 and fuzzy.metrics["tts"] == 100.0
    assert fuzzy.match.describe()["match"] == "fuzzy" and fuzzy.match.describe()["threshold"] == 80


def test_metrics_are_finite_numbers_or_none():
    for value in score_captions(RECORDS, CAPTIONS).metrics.values():
        assert value is None or math.isfinite(value)


def _report(argv):
    """`ecac-bench score ARGV --json R` in this process: (exit code, the report's bytes)."""
    import contextlib
    import io
    import tempfile
    from pathlib import Path

    from ecac_bench.cli import main

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        report = Path(tmp) / "report.json"
        code = main([*map(str, argv), "--json", str(report)])
        return code, report.read_bytes()


def _detailed(patch):
    """Turn the typed paths off: the detailed loaders and scoring record by record (the code before them)."""
    import ecac_bench.data as data_module
    import ecac_bench.predictions as predictions_module

    patch.setattr(data_module, "typed_jsonl_rows", lambda data, decoder: None)
    patch.setattr(predictions_module, "typed_jsonl_rows", lambda data, decoder: None)


def test_fast_and_detailed_paths_write_byte_identical_reports_on_the_adversarial_set(tmp_path, monkeypatch):
    """The adversarial Unicode / word-boundary set (ecac_bench.testing.adversarial): every report byte for byte the
    same through the column-wise fast path and the detailed one, with its several-caption, missing and failed
    images (the typed predictions path declines that file), and with one-caption rows only (it reads that one)."""
    import json

    from ecac_bench.testing.adversarial import CASES, write_adversarial_set

    data, predictions = write_adversarial_set(tmp_path, 3 * len(CASES))
    single = tmp_path / "single.jsonl"
    rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").split("\n") if line]
    kept = [r for r in rows if "caption" in r and r["caption"].strip()]  # the rows of the typed path
    single.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    for preds in (predictions, single):
        argv = ["score", "--data", data, "--predictions", preds, "--allow-missing", "--allow-failed", "1000"]
        argv += ["--by", "category", "--by", "area", "--n-boot", "50"]
        fast = _report(argv)
        with monkeypatch.context() as patch:
            _detailed(patch)
            assert _report(argv) == fast
        assert fast[0] == 0 and json.loads(fast[1])["coverage"]["images"] == 3 * len(CASES)


def test_a_second_process_changes_no_byte_of_the_report(tmp_path, monkeypatch):
    """The work child processes take over (ecac_bench.forking: the dataset identity, half of the matching) gives the
    report of one process, and a child that fails only means that the parent does the work."""
    import ecac_bench.forking as forking
    from ecac_bench.testing.adversarial import CASES, write_adversarial_set

    data, predictions = write_adversarial_set(tmp_path, 2 * len(CASES))
    argv = ["score", "--data", data, "--predictions", predictions, "--allow-missing", "--allow-failed", "1000"]
    alone = _report(argv)
    monkeypatch.setattr(forking, "MIN_RECORDS", 0)
    monkeypatch.setattr(forking, "can_fork", lambda: True)  # also when the test runner has threads
    results = []
    real_result = forking.Forked.result
    monkeypatch.setattr(forking.Forked, "result", lambda self: results.append(real_result(self)) or results[-1])
    assert _report(argv) == alone and len(results) == 2 and all(r is not None for r in results)

    def failed(self):  # as if the child had failed
        real_result(self)

    monkeypatch.setattr(forking.Forked, "result", failed)
    assert _report(argv) == alone
