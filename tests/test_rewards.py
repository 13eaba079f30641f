"""Several rewards on the RSRS trainer: c-GDPO vs GRPO aggregation (TRL's), length-conditional masking of the
linguistic reward, and judged rewards reaching the trainer through the local test server."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fake_judge import fake_model
from judge_server import JudgeServer
from rsrs_helpers import NEUTRAL_CAPTION, ScriptedRollout, tagged_dataset, train_records

from ecac_bench.llm import ClientConfig, Endpoint, LLMClient, ResponseCache
from trainers.data import load_model_and_processor
from trainers.rewards import RewardArguments, build_reward_funcs, length_ratio, mask_outside_length_band
from trainers.rsrs import RSRSConfig, RSRSTrainer

G = 4


pytestmark = pytest.mark.usefixtures("quiet_trl_experimental")


def by_slot(name: str, values: list[float | None]):
    """A reward function giving the k-th caption of each group values[k]."""

    def func(completions, **_):
        return [values[k % G] for k in range(len(completions))]

    func.__name__ = name
    return func


class AdvantageRecorder(RSRSTrainer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.advantages: list[torch.Tensor] = []
        self.rewards_per_func: list[torch.Tensor] = []

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        self.advantages.append(output["advantages"].detach().clone())
        self.rewards_per_func.append(self._rollout_rewards.detach().clone())
        return output


def run_one_step(tiny_qwen: Path, tmp_path: Path, reward_funcs, **config) -> AdvantageRecorder:
    records = train_records(1)
    model, processor = load_model_and_processor(str(tiny_qwen))
    args = RSRSConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=G,
        max_completion_length=16,
        max_steps=2,  # one RSRS step (num_iterations=2)
        learning_rate=1e-3,
        report_to="none",
        save_strategy="no",
        shuffle_dataset=False,
        seed=0,
        rsrs_switch=False,
        **config,
    )
    trainer = AdvantageRecorder(
        model=model,
        processing_class=processor,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=tagged_dataset(records),
        rollout_func=ScriptedRollout(records, set()),
    )
    trainer.train()
    return trainer


# BalCapRL's Proposition 1 in miniature: three rewards whose sum ties across the group (every caption gets 1), so
# summed GRPO sees no signal, while per-reward group normalisation does not cancel (the rewards' spreads differ).
TIED = [by_slot("r1", [1, 0, 0, 0]), by_slot("r2", [0, 1, 0, 0]), by_slot("r3", [0, 0, 1, 1])]


def test_c_gdpo_advantages_differ_from_grpo_when_sums_tie(tiny_qwen: Path, tmp_path: Path) -> None:
    grpo = run_one_step(tiny_qwen, tmp_path / "grpo", TIED, multi_objective_aggregation="sum_then_normalize")
    gdpo = run_one_step(tiny_qwen, tmp_path / "gdpo", TIED, multi_objective_aggregation="normalize_then_sum")
    assert torch.allclose(grpo.advantages[0], torch.zeros(G))
    # By hand (sample std, as TRL's nanstd): r1 -> (1.5, -.5, -.5, -.5), r2 -> (-.5, 1.5, -.5, -.5),
    # r3 -> (-.866, -.866, .866, .866); sum -> (.134, .134, -.134, -.134); batch-normalised -> +-0.866.
    expected = torch.tensor([1.0, 1.0, -1.0, -1.0]) * (3**0.5 / 2)
    assert torch.allclose(gdpo.advantages[0], expected, atol=2e-3)


def test_length_mask_unit() -> None:
    linguistic = by_slot("linguistic", [1.0, 1.0, 1.0, 1.0])
    masked = mask_outside_length_band(linguistic, 0.5, 1.5)
    reference = "一二三四五六七八九十"  # 10 characters
    completions = ["一二三", "一二三四五", "一二三四五六七八九十一二三四五", "一二三四五六七八九十一二三四五六"]
    assert [length_ratio(c, reference) for c in completions] == [0.3, 0.5, 1.5, 1.6]
    assert masked(completions=completions, caption=[reference] * 4) == [None, 1.0, 1.0, None]
    assert masked.__name__ == "linguistic"
    only_low = mask_outside_length_band(linguistic, 0.5, None)
    assert only_low(completions=completions, caption=[reference] * 4) == [None, 1.0, 1.0, 1.0]


def test_masking_removes_the_linguistic_term_in_the_trainer(tiny_qwen: Path, tmp_path: Path) -> None:
    """Masked values reach TRL as NaN: excluded from the reward, not counted as zero."""
    records = train_records(1)
    reference = records[0].caption
    texts = [rollout_text(records[0], slot) for slot in range(G)]
    ratios = [length_ratio(t, reference) for t in texts]
    band = (min(ratios) + 1e-9, max(ratios) + 1)  # masks exactly the shortest caption(s)
    linguistic = mask_outside_length_band(by_slot("linguistic", [0.9, 0.8, 0.7, 0.6]), *band)
    trainer = run_one_step(tiny_qwen, tmp_path, [by_slot("toy", [1, 0, 0, 0]), linguistic])
    column = trainer.rewards_per_func[0][:, 1]
    masked = [r <= band[0] for r in ratios]
    assert any(masked) and not all(masked)
    assert torch.isnan(column).tolist() == masked
    kept = [v for v, m in zip([0.9, 0.8, 0.7, 0.6], masked, strict=True) if not m]
    logged = [h["rewards/linguistic/mean"] for h in trainer.state.log_history if "rewards/linguistic/mean" in h]
    assert logged[0] == pytest.approx(sum(kept) / len(kept))


def rollout_text(record, slot: int) -> str:
    """The caption ScriptedRollout writes for a record at a group slot (it names the first toy at slot 0)."""
    return f"孩子们在玩{record.toys[0].name}。" if slot == 0 and record.toys else NEUTRAL_CAPTION


def test_judged_rewards_reach_the_trainer(tiny_qwen: Path, tmp_path: Path) -> None:
    with JudgeServer() as server:
        server.state.responder = fake_model
        config = ClientConfig(Endpoint((server.base_url,), "fake", "sk-test"))
        cache = ResponseCache.in_dir(tmp_path / "cache")
        clients = (LLMClient(config, cache, progress=False), LLMClient(config, cache, progress=False))
        args = RewardArguments(rewards=["toy", "precision", "recall", "linguistic"], judge_lang="en")
        funcs = build_reward_funcs(args, clients)
        trainer = run_one_step(
            tiny_qwen,
            tmp_path,
            funcs,
            reward_weights=[1.0, 0.5, 0.5, 0.25],
            multi_objective_aggregation="normalize_then_sum",
        )
        assert server.state.requests > 0
    rewards = trainer.rewards_per_func[0]
    assert rewards.shape == (G, 4)
    judged = rewards[:, 1:]
    assert not torch.isnan(judged).any() and ((judged >= 0) & (judged <= 1)).all()
    # the fake judge rates every caption's language 5 / 4 / 3 -> (1 + .75 + .5) / 3
    assert torch.allclose(rewards[:, 3], torch.full((G,), 0.75))
    assert [n for n in trainer.reward_func_names] == ["ecac_reward", "precision", "recall", "linguistic"]


def test_reward_arguments_validation() -> None:
    with pytest.raises(ValueError, match="unknown reward"):
        RewardArguments(rewards=["toy", "bleu"])
    with pytest.raises(ValueError, match="utility_questions"):
        RewardArguments(rewards=["utility"])
    with pytest.raises(ValueError, match="linguistic_tau_low"):
        RewardArguments(linguistic_tau_low=2.0, linguistic_tau_high=1.0)


def test_utility_reward_per_completion(tmp_path: Path) -> None:
    from ecac_bench.utility import QAItem
    from trainers.rewards import UtilityReward

    questions = [
        QAItem("img", "Which toy?", ("TRUE:drum", "bell", "kite"), 0),
        QAItem("img", "Which place?", ("TRUE:garden", "kitchen"), 0),
    ]
    with JudgeServer() as server:
        server.state.responder = fake_model
        config = ClientConfig(Endpoint((server.base_url,), "fake", "sk-test"))
        reward = UtilityReward(LLMClient(config, None, progress=False), questions, rounds=2, lang="en")
        completions = ["A drum in the garden.", "A drum.", "Nothing to see.", "A kite in the garden."]
        values = reward(completions=completions, id=["img"] * 4)
        assert values == [1.0, 0.5, 0.0, 0.5]
        assert reward(completions=["A drum."], id=["no-questions"]) == [None]  # no question: no signal


def test_rl_stage_parses_the_reward_flags() -> None:
    """The flags rsrs.sh passes to the RL stage reach RewardArguments and GRPOConfig (TRL's own parser)."""
    from trl import TrlParser

    from trainers.data import DataArguments

    parser = TrlParser((DataArguments, RSRSConfig, RewardArguments))
    argv = [
        "--model_name_or_path", "m", "--output_dir", "/tmp/unused", "--use_cpu", "true",
        "--rewards", "toy", "precision", "linguistic",
        "--reward_weights", "1", "0.5", "0.25",
        "--multi_objective_aggregation", "normalize_then_sum",
        "--linguistic_tau_low", "0.5", "--linguistic_tau_high", "1.5",
    ]  # fmt: skip
    _, config, rewards = parser.parse_args_and_config(args=argv)
    assert rewards.rewards == ["toy", "precision", "linguistic"]
    assert (rewards.linguistic_tau_low, rewards.linguistic_tau_high) == (0.5, 1.5)
    assert config.reward_weights == [1.0, 0.5, 0.25] and config.multi_objective_aggregation == "normalize_then_sum"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--aggregation", "sum"], "--aggregation must be grpo or c-gdpo"),
        (["--linguistic-band", "0.5"], "--linguistic-band must be LOW,HIGH"),
    ],
)
def test_rsrs_sh_rejects_bad_reward_flags(flags: list[str], message: str, tmp_path: Path) -> None:
    import subprocess

    script = Path(__file__).resolve().parent.parent / "trainers" / "rsrs.sh"
    done = subprocess.run(["bash", str(script), "--output", str(tmp_path), *flags], capture_output=True, text=True)
    assert done.returncode == 2 and message in done.stderr
