"""Several rewards on the RSRS trainer: c-GDPO vs GRPO aggregation (TRL's), length-conditional masking of the
linguistic reward (a penalty, in policy tokens), judged rewards reaching the trainer through the local test server,
and rewards that pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from fake_judge import fake_model
from judge_server import JudgeServer
from rsrs_helpers import NEUTRAL_CAPTION, ScriptedRollout, tagged_dataset, tiny_model_and_processor, train_records

from ecac_bench.llm import Settings
from trainers.rewards import (
    BalancedReward,
    JudgeConnection,
    LengthBand,
    RewardArguments,
    ToyReward,
    UtilityReward,
    build_reward_funcs,
)
from trainers.rsrs import RSRSConfig, RSRSTrainer

G = 4


def judge_settings(base_url: str, cache_dir: Path) -> Settings:
    """The fake judge at ``base_url`` as the judge (and VLM) endpoint, nothing from the real environment."""
    env = {"ECAC_JUDGE_BASE_URL": base_url, "ECAC_JUDGE_API_KEY": "sk-test", "ECAC_JUDGE_MODEL": "fake"}
    return Settings.from_env(env, cache_dir=str(cache_dir), no_progress=True)


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
        self.rewards_per_func.append(self.rsrs_rollout_rewards.detach().clone())
        return output


def run_one_step(tiny_qwen: Path, tmp_path: Path, reward_funcs, **config) -> AdvantageRecorder:
    records = train_records(1)
    model, processor = tiny_model_and_processor(tiny_qwen)
    args = RSRSConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        max_completion_length=16,
        max_steps=1,  # one RSRS step: one image, G = 4 captions
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


class WordTokenizer:
    """A stand-in for the policy's tokenizer: one token per space-separated word."""

    def __call__(self, texts, add_special_tokens=True):
        return {"input_ids": [text.split() for text in texts]}


def test_length_band_is_a_penalty_measured_in_policy_tokens() -> None:
    linguistic = by_slot("linguistic", [1.0, 1.0, 1.0, 1.0])
    reference = "a b c d e f g h i j"  # 10 tokens, 19 characters
    completions = ["a b c", "a b c d e", "a b c d e f g h i j k l m n o", "abcdefghijklmnopqrs"]
    band = LengthBand(linguistic, WordTokenizer(), 0.5, 1.5)
    assert band.ratios(completions, [reference] * 4) == [0.3, 0.5, 1.5, 0.1]
    # Outside the band the linguistic reward is masked to 0 (BalCapRL's penalty). The last caption has exactly the
    # reference's 19 characters, a ratio of 1 in characters, but 1 token of 10: outside.
    logged: list[tuple[str, float]] = []
    values = band(completions=completions, caption=[reference] * 4, log_metric=lambda k, v: logged.append((k, v)))
    assert values == [0.0, 1.0, 1.0, 0.0]
    assert logged == [("rewards/linguistic/outside_band", 0.5)]
    assert band.__name__ == "linguistic"
    excluded = LengthBand(linguistic, WordTokenizer(), 0.5, 1.5, outside="exclude")
    assert excluded(completions=completions, caption=[reference] * 4) == [None, 1.0, 1.0, None]
    only_low = LengthBand(linguistic, WordTokenizer(), 0.5, None)
    assert only_low(completions=completions, caption=[reference] * 4) == [0.0, 1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="outside"):
        LengthBand(linguistic, WordTokenizer(), 0.5, 1.5, outside="drop")


@pytest.mark.parametrize(("outside", "masked_value"), [("zero", 0.0), ("exclude", None)])
def test_masked_linguistic_reward_reaches_trl(outside: str, masked_value, tiny_qwen: Path, tmp_path: Path) -> None:
    """Masked values reach TRL as 0 (default: the caption is penalised) or as NaN (exclude: not scored)."""
    records = train_records(1)
    reference = records[0].caption
    _, processor = tiny_model_and_processor(tiny_qwen)
    texts = [rollout_text(records[0], slot) for slot in range(G)]
    probe = LengthBand(by_slot("linguistic", [1] * G), processor.tokenizer, None, None)
    ratios = probe.ratios(texts, [reference] * G)  # in the tiny policy's tokens
    band = (min(ratios) + 1e-9, max(ratios) + 1)  # masks exactly the shortest caption(s)
    linguistic = LengthBand(by_slot("linguistic", [0.9, 0.8, 0.7, 0.6]), processor.tokenizer, *band, outside=outside)
    trainer = run_one_step(tiny_qwen, tmp_path, [by_slot("toy", [1, 0, 0, 0]), linguistic])
    column = trainer.rewards_per_func[0][:, 1]
    masked = [r <= band[0] for r in ratios]
    assert any(masked) and not all(masked)
    values = [masked_value if m else v for v, m in zip([0.9, 0.8, 0.7, 0.6], masked, strict=True)]
    if masked_value is None:
        assert torch.isnan(column).tolist() == masked
    else:
        assert torch.allclose(column, torch.tensor(values))
    kept = [v for v in values if v is not None]
    logged = next(h for h in trainer.state.log_history if "rewards/linguistic/mean" in h)
    assert logged["rewards/linguistic/mean"] == pytest.approx(sum(kept) / len(kept))
    assert logged["rewards/linguistic/outside_band"] == pytest.approx(sum(masked) / G)


def rollout_text(record, slot: int) -> str:
    """The caption ScriptedRollout writes for a record at a group slot (it names the first toy at slot 0)."""
    return f"孩子们在玩{record.toys[0].name}。" if slot == 0 and record.toys else NEUTRAL_CAPTION


def test_judged_rewards_reach_the_trainer(tiny_qwen: Path, tmp_path: Path) -> None:
    with JudgeServer() as server:
        server.state.responder = fake_model
        connection = JudgeConnection(judge_settings(server.base_url, tmp_path / "cache"))
        args = RewardArguments(rewards=["toy", "precision", "recall", "linguistic"], judge_lang="en")
        funcs = build_reward_funcs(args, connection=connection)
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
    assert trainer.reward_func_names == ["toy", "precision", "recall", "linguistic"]
    # Callable classes that pickle (the judge connection reconnects in the new process).
    for func in funcs:
        copy = pickle.loads(pickle.dumps(func))
        assert type(copy) is type(func) and copy.__name__ == func.__name__
    assert pickle.loads(pickle.dumps(connection))._clients is None


def test_reward_arguments_validation() -> None:
    with pytest.raises(ValueError, match="unknown reward"):
        RewardArguments(rewards=["toy", "bleu"])
    with pytest.raises(ValueError, match="utility_questions"):
        RewardArguments(rewards=["utility"])
    with pytest.raises(ValueError, match="linguistic_tau_low"):
        RewardArguments(linguistic_tau_low=2.0, linguistic_tau_high=1.0)
    with pytest.raises(ValueError, match="linguistic_outside"):
        RewardArguments(linguistic_outside="drop")
    banded = RewardArguments(rewards=["linguistic"], linguistic_tau_low=0.5)
    with pytest.raises(ValueError, match="policy's tokenizer"):
        build_reward_funcs(banded)
    assert [type(f) for f in build_reward_funcs(RewardArguments())] == [ToyReward]
    assert isinstance(build_reward_funcs(banded, WordTokenizer())[0].reward, BalancedReward)


def test_utility_reward_per_completion(tmp_path: Path) -> None:
    from ecac_bench.utility import QAItem

    questions = [
        QAItem("img", "Which toy?", ("TRUE:drum", "bell", "kite"), 0),
        QAItem("img", "Which place?", ("TRUE:garden", "kitchen"), 0),
    ]
    with JudgeServer() as server:
        server.state.responder = fake_model
        connection = JudgeConnection(judge_settings(server.base_url, tmp_path / "cache"))
        reward = UtilityReward(connection, questions, rounds=2, lang="en")
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
        "--linguistic_tau_low", "0.5", "--linguistic_tau_high", "1.5", "--linguistic_outside", "exclude",
    ]  # fmt: skip
    _, config, rewards = parser.parse_args_and_config(args=argv)
    assert rewards.rewards == ["toy", "precision", "linguistic"]
    assert (rewards.linguistic_tau_low, rewards.linguistic_tau_high, rewards.linguistic_outside) == (
        0.5,
        1.5,
        "exclude",
    )
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
