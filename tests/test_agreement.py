"""Agreement with human rankings: tau-b / rho against hand-computed values, file loading, agree and rank."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from ecac_bench import SAMPLE_DATA, load_dataset
from ecac_bench.agreement import agreement, load_candidates, load_human_rankings, load_scores
from ecac_bench.commands import agree as agree_command
from ecac_bench.commands import rank as rank_command
from ecac_bench.data import DataValidationError
from ecac_bench.metrics import toy_reward

# Image A: mean ranks 1, 2.5, 2.5, 4 (c2/c3 tied), scores 10, 8, 9, 1.
#   Pairs of (-rank, score): 5 concordant, 0 discordant, 1 tied in rank only:
#   tau_b = 5 / sqrt((6 - 1) * (6 - 0)) = 5 / sqrt(30)
#   rank vectors (4, 2.5, 2.5, 1) and (4, 2, 3, 1): rho = 4.5 / sqrt(4.5 * 5)
# Image B: the score orders 3 captions exactly against the humans: tau = rho = -1.
HUMAN = {
    "A": {"c1": 1.0, "c2": 2.5, "c3": 2.5, "c4": 4.0},
    "B": {"c1": 1.0, "c2": 2.0, "c3": 3.0},
    "C": {"c1": 1.0, "c2": 2.0},  # all scores tied: the method cannot tell them apart: tau = rho = 0
    "D": {"c1": 1.0},  # one caption: skipped
    "E": {"c1": 1.0, "c2": 2.0},  # a caption without a score: skipped
    "F": {"c1": 1.5, "c2": 1.5},  # all human ranks tied: no human signal, skipped
}
SCORES = {
    "A": {"c1": 10.0, "c2": 8.0, "c3": 9.0, "c4": 1.0},
    "B": {"c1": 1.0, "c2": 2.0, "c3": 3.0},
    "C": {"c1": 5.0, "c2": 5.0},
    "D": {"c1": 1.0},
    "E": {"c1": 1.0},
    "F": {"c1": 1.0, "c2": 2.0},
}
TAU_A, RHO_A = 5 / math.sqrt(30), 4.5 / math.sqrt(4.5 * 5)


def test_per_image_and_mean_by_hand():
    result = agreement(HUMAN, SCORES, "m", n_boot=200)
    by_id = {im.id: im for im in result.images}
    assert math.isclose(by_id["A"].kendall_tau, TAU_A) and math.isclose(by_id["A"].spearman_rho, RHO_A)
    assert math.isclose(by_id["B"].kendall_tau, -1) and math.isclose(by_id["B"].spearman_rho, -1)
    assert (by_id["C"].kendall_tau, by_id["C"].spearman_rho, by_id["C"].score_tied) == (0.0, 0.0, True)
    assert math.isclose(result.kendall_tau, (TAU_A - 1 + 0) / 3)
    assert math.isclose(result.spearman_rho, (RHO_A - 1 + 0) / 3)
    assert (result.n_images, result.n_score_ties, result.n_skipped_human_ties, result.n_skipped) == (3, 1, 1, 3)


def test_skip_ties_keeps_the_old_rule():
    result = agreement(HUMAN, SCORES, "m", n_boot=200, skip_ties=True)
    assert math.isclose(result.kendall_tau, (TAU_A - 1) / 2)
    assert math.isclose(result.spearman_rho, (RHO_A - 1) / 2)
    assert (result.n_images, result.n_score_ties, result.n_skipped_human_ties, result.n_skipped) == (2, 1, 1, 4)
    assert "skip_ties" not in result.metrics()


def test_pooled_follows_the_same_rule_by_hand():
    # A agrees (tau = rho = 1); B's scores are tied (0). Pooled (-rank, score) over both images:
    # (-1,2) (-2,1) (-1,5) (-2,5): 2 concordant, 1 discordant, 2 pairs tied in rank only, 1 tied in score only:
    # tau_b = (2 - 1) / sqrt((6 - 2) * (6 - 1)) = 1 / sqrt(20). Average ranks: x (3.5, 1.5, 3.5, 1.5),
    # y (2, 1, 3.5, 3.5): rho = 1 / sqrt(4 * 4.5).
    human = {"A": {"a": 1, "b": 2}, "B": {"a": 1, "b": 2}}
    scores = {"A": {"a": 2, "b": 1}, "B": {"a": 5, "b": 5}}
    result = agreement(human, scores, n_boot=100)
    assert math.isclose(result.kendall_tau, 0.5) and math.isclose(result.spearman_rho, 0.5)
    assert math.isclose(result.pooled_kendall_tau, 1 / math.sqrt(20))
    assert math.isclose(result.pooled_spearman_rho, 1 / math.sqrt(18))
    skipped = agreement(human, scores, n_boot=100, skip_ties=True)  # B out of the means and of the pooled pairs
    assert (skipped.kendall_tau, skipped.pooled_kendall_tau) == (1.0, 1.0)
    assert skipped.pooled_spearman_rho == pytest.approx(1.0)
    only_ties = agreement({"B": human["B"]}, {"B": scores["B"]}, n_boot=100)  # every score alike: 0, not NaN
    assert (only_ties.kendall_tau, only_ties.pooled_kendall_tau, only_ties.pooled_spearman_rho) == (0.0, 0.0, 0.0)


def test_pooled_by_hand():
    # Each image alone agrees perfectly (tau = rho = 1); pooled (-rank, score) = (-1,2) (-2,1) (-1,4) (-2,3):
    # 3 concordant, 1 discordant, 2 tied in rank: tau_b = 2 / sqrt(4 * 6); rho = 2 / sqrt(4 * 5).
    human = {"A": {"a": 1, "b": 2}, "B": {"a": 1, "b": 2}}
    scores = {"A": {"a": 2, "b": 1}, "B": {"a": 4, "b": 3}}
    result = agreement(human, scores, n_boot=100)
    assert math.isclose(result.kendall_tau, 1) and math.isclose(result.spearman_rho, 1)
    assert math.isclose(result.pooled_kendall_tau, 2 / math.sqrt(24))
    assert math.isclose(result.pooled_spearman_rho, 2 / math.sqrt(20))
    assert result.kendall_tau_ci is None  # no spread to resample


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    human = {f"i{k}": {"a": 1, "b": 2, "c": 3} for k in range(12)}
    scores = {f"i{k}": {"a": 3, "b": 2 + (k % 3 == 0) * 2, "c": 1 + (k % 2)} for k in range(12)}
    first = agreement(human, scores, n_boot=500, seed=1)
    assert first.kendall_tau_ci[0] <= first.kendall_tau <= first.kendall_tau_ci[1]
    assert first.spearman_rho_ci[0] <= first.spearman_rho <= first.spearman_rho_ci[1]
    assert agreement(human, scores, n_boot=500, seed=1).kendall_tau_ci == first.kendall_tau_ci


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_loaders_average_ranks_and_report_problems(tmp_path):
    human = write_jsonl(tmp_path / "h.jsonl", [{"id": "A", "caption_id": "c1", "ranks": [1, 2, 2]}])
    assert load_human_rankings(human) == {"A": {"c1": 5 / 3}}
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [{"id": "A", "caption_id": "c1", "ranks": []}, {"id": "A", "caption_id": "c1", "ranks": [1]}, {"id": "B"}],
    )
    with pytest.raises(DataValidationError) as info:
        load_human_rankings(bad)
    text = str(info.value)
    assert "bad.jsonl:line 1: field 'ranks'" in text and "bad.jsonl:line 3: field 'caption_id'" in text
    scores = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"id": "A", "caption_id": "c1", "scores": {"reward": 1.5, "judge_score": None}},
            {"id": "A", "caption_id": "c2", "scores": {"reward": 2, "judge_score": 70}},
        ],
    )
    assert load_scores(scores) == {"reward": {"A": {"c1": 1.5, "c2": 2.0}}, "judge_score": {"A": {"c2": 70.0}}}
    with pytest.raises(DataValidationError, match=r"scores\.reward"):
        load_scores(write_jsonl(tmp_path / "s2.jsonl", [{"id": "A", "caption_id": "c", "scores": {"reward": "x"}}]))


def run(module, name, argv):
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    args = parser.parse_args([name, *argv])
    return args.func(args)


def test_rank_then_agree(tmp_path):
    dataset = load_dataset(SAMPLE_DATA)
    records = [r for r in dataset.records if r.toys][:4]
    candidates, human = [], []
    for record in records:
        names = [t.name for t in record.toys]
        texts = ["孩子们在玩", f"孩子们在玩{names[0]}", f"孩子们在玩{'和'.join(names)}"]
        for k, text in enumerate(texts):
            candidates.append({"id": record.id, "caption_id": f"c{k}", "caption": text})
            human.append({"id": record.id, "caption_id": f"c{k}", "ranks": [3 - k, 3 - k]})
    cand_path = write_jsonl(tmp_path / "cands.jsonl", candidates)
    scores_path = tmp_path / "scores.jsonl"
    assert run(rank_command, "rank", ["--candidates", str(cand_path), "--out", str(scores_path)]) == 0
    rows = [json.loads(line) for line in scores_path.read_text().splitlines()]
    assert len(rows) == len(candidates)
    for row, cand in zip(rows, candidates, strict=True):
        assert row["scores"]["reward"] == toy_reward(dataset.by_id[cand["id"]].toys, cand["caption"])
    human_path = write_jsonl(tmp_path / "human.jsonl", human)
    report_path = tmp_path / "agree.json"
    argv = ["--human", str(human_path), "--scores", str(scores_path), "--json", str(report_path), "--n-boot", "100"]
    assert run(agree_command, "agree", argv) == 0
    report = json.loads(report_path.read_text())
    assert report["kind"] == "ecac-bench/agree"
    reward = report["metrics"]["reward"]
    # More toys named -> higher reward -> better human rank; ties (one toy) only where both captions name all toys.
    assert reward["kendall_tau"] > 0.8 and reward["n_images"] + reward["n_skipped"] == len(records)
    assert report["config"]["skip_ties"] is False and reward["n_score_ties"] == 0
    assert run(agree_command, "agree", [*argv, "--method", "clip"]) == 2
    assert run(agree_command, "agree", [*argv, "--skip-ties"]) == 0
    assert json.loads(report_path.read_text())["config"]["skip_ties"] is True


def test_rank_gives_failed_generations_no_score(tmp_path):
    record = next(r for r in load_dataset(SAMPLE_DATA).records if r.toys)
    marker = "[LMMS_EVAL_REQUEST_FAILED after 5 retries] Error code: 500"
    cands = [
        {"id": record.id, "caption_id": "ok", "caption": f"孩子们在玩{record.toys[0].name}"},
        {"id": record.id, "caption_id": "empty", "caption": " "},
        {"id": record.id, "caption_id": "failed", "caption": marker},
    ]
    out, report = tmp_path / "scores.jsonl", tmp_path / "rank.json"
    argv = ["--candidates", str(write_jsonl(tmp_path / "c.jsonl", cands)), "--out", str(out), "--json", str(report)]
    assert run(rank_command, "rank", argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["scores"]["reward"] is None for r in rows] == [False, True, True]  # old: 0.0 for both failures
    assert json.loads(report.read_text())["metrics"]["n_failed_generations"] == 2


def test_candidates_must_be_in_the_dataset(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "zz", "caption_id": "a", "caption": "x"}])
    with pytest.raises(DataValidationError, match="'zz' is not in the dataset"):
        load_candidates(path, {"A"})


def test_rank_with_judge_scores(tmp_path, monkeypatch):
    from judge_server import JudgeServer

    record = load_dataset(SAMPLE_DATA).records[0]
    cands = [
        {"id": record.id, "caption_id": "good", "caption": "@@score=90"},
        {"id": record.id, "caption_id": "bad", "caption": "@@garbagex9"},  # judge failure -> null score
    ]
    cand_path = write_jsonl(tmp_path / "cands.jsonl", cands)
    out, report = tmp_path / "scores.jsonl", tmp_path / "rank.json"
    with JudgeServer() as server:
        monkeypatch.setenv("ECAC_JUDGE_BASE_URL", server.base_url)
        argv = ["--candidates", str(cand_path), "--out", str(out), "--methods", "reward,judge_score", "--no-progress"]
        argv += ["--judge-model", "j", "--cache-dir", str(tmp_path / "cache"), "--json", str(report)]
        assert run(rank_command, "rank", argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["scores"]["judge_score"] for r in rows] == [90, None]
    methods = json.loads(report.read_text())["methods"]
    assert methods == {"reward": {"mean": methods["reward"]["mean"], "n": 2}, "judge_score": {"mean": 90, "n": 1}}
    assert run(rank_command, "rank", ["--candidates", str(cand_path), "--out", str(out), "--methods", "bleu"]) == 2
    with pytest.raises(ValueError, match="--clip-model: required with --methods clip"):
        run(rank_command, "rank", ["--candidates", str(cand_path), "--out", str(out), "--methods", "clip"])
