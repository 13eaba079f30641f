"""RSRS on TRL: the switching rule, the SFT branch, plain-GRPO equivalence, the reward and the TRL pin.

A tiny random Qwen2.5-VL runs on CPU; rollouts are scripted through TRL's rollout_func (tests/rsrs_helpers.py) so
which images score zero under ecac_bench.toy_reward is known in advance.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import trl
from rsrs_helpers import NEUTRAL_CAPTION, ScriptedRollout, flat_params, tagged_dataset, train_records
from transformers import TrainerCallback
from trl import GRPOTrainer, SFTConfig, SFTTrainer

import ecac_bench
from ecac_bench import SAMPLE_PREDICTIONS, load_dataset, load_predictions, score_captions
from trainers import rsrs
from trainers.data import grpo_dataset, load_model_and_processor, sft_dataset
from trainers.rsrs import RSRSConfig, RSRSTrainer, ecac_reward

ITERATIONS = 2  # RSRSConfig's default num_iterations: optimizer steps per RSRS step


pytestmark = pytest.mark.usefixtures("quiet_trl_experimental")


class StepRecorder(TrainerCallback):
    """Per optimizer step: the gradient norm just before the update and the parameter change it made."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.grad_norms: list[float] = []
        self.param_deltas: list[float] = []
        self._before = flat_params(model)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        grads = [p.grad.flatten() for p in self.model.parameters() if p.grad is not None]
        self.grad_norms.append(float(torch.cat(grads).norm()) if grads else 0.0)

    def on_optimizer_step(self, args, state, control, **kwargs):
        after = flat_params(self.model)
        self.param_deltas.append(float((after - self._before).abs().max()))
        self._before = after


class RecordingRSRSTrainer(RSRSTrainer):
    """Records the ids of every SFT batch and whether GRPO batches carry the sampling policy's log-probs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sft_batches: list[list[str]] = []
        self.grpo_has_old_logps: list[bool] = []

    def _sft_micro_batches(self, rows):
        self.sft_batches.append([row["id"] for row in rows])
        return super()._sft_micro_batches(rows)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not inputs.get("rsrs_sft"):
            self.grpo_has_old_logps.append("old_per_token_logps" in inputs)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def _config(tmp_path: Path, rsrs_steps: int, **overrides) -> RSRSConfig:
    values = {
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "bf16": False,
        "per_device_train_batch_size": 4,  # = G: one image per step on one process
        "max_completion_length": 16,
        "max_steps": rsrs_steps * ITERATIONS,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "shuffle_dataset": False,
        "seed": 0,
        "rsrs_sft_batch_size": 2,
    }
    values.update(overrides)
    return RSRSConfig(**values)


def _trainer(cls, tiny_qwen: Path, config, records, zero_ids: set[str]):
    model, processor = load_model_and_processor(str(tiny_qwen))
    rollout = ScriptedRollout(records, zero_ids)
    trainer = cls(
        model=model,
        processing_class=processor,
        reward_funcs=ecac_reward,
        args=config,
        train_dataset=tagged_dataset(records),
        rollout_func=rollout,
    )
    recorder = StepRecorder(model)
    trainer.add_callback(recorder)
    return trainer, rollout, recorder


def test_zero_reward_images_fill_the_buffer_and_trigger_sft_exactly_at_batch_size(
    tiny_qwen: Path, tmp_path: Path
) -> None:
    records = train_records(6)
    ids = [r.id for r in records]
    zero = {ids[1], ids[3]}
    trainer, rollout, recorder = _trainer(
        RecordingRSRSTrainer, tiny_qwen, _config(tmp_path, rsrs_steps=6), records, zero
    )
    trainer.train()

    # Buffer after steps 1-4: 0, 1, 1, 2 -> step 5 is SFT on exactly the two zero-reward images, in order.
    assert trainer.rsrs_modes == ["grpo", "grpo", "grpo", "grpo", "sft", "grpo"]
    assert trainer.sft_batches == [[ids[1], ids[3]]]
    assert len(trainer.zero_reward_buffer) == 0
    # The prompt batch displaced by the SFT step (ids[4]) is trained at step 6; the next one (ids[5]) waits.
    assert rollout.seen == ids[:5]
    assert [batch[0] for batch in trainer.deferred_batches] == [ids[5]]

    logged = [h for h in trainer.state.log_history if "rsrs/sft_step" in h]
    assert [h["rsrs/sft_step"] for h in logged] == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert [h["rsrs/buffer_size"] for h in logged] == [0.0, 1.0, 1.0, 2.0, 0.0, 0.0]
    assert [h["rsrs/zero_reward_group_frac"] for h in logged if "rsrs/zero_reward_group_frac" in h] == [
        0.0,
        1.0,
        0.0,
        1.0,
        0.0,
    ]
    # One caption of four names the image's only toy: TTS on rollouts 25, mean reward = R / 4.
    first = logged[0]
    assert first["rsrs/rollout_tts"] == pytest.approx(25.0)
    assert first["rsrs/reward_mean"] == pytest.approx(ecac_bench.toy_reward(records[0].toys, "x 天平") / 4)
    assert any("rsrs/sft_loss" in h for h in trainer.state.log_history)

    # Optimizer steps 2k and 2k+1 belong to RSRS step k. Parameters move under both modes; an all-zero GRPO
    # group has zero advantage and so no gradient, which is why RSRS turns those images into SFT data.
    modes = [m for m in trainer.rsrs_modes for _ in range(ITERATIONS)]
    assert len(recorder.grad_norms) == len(modes)
    assert recorder.grad_norms[0] > 0 and recorder.param_deltas[0] > 0  # GRPO, informative group
    assert recorder.grad_norms[2] == 0.0  # GRPO, all-zero group
    sft = [i for i, m in enumerate(modes) if m == "sft"]
    assert all(recorder.grad_norms[i] > 0 and recorder.param_deltas[i] > 0 for i in sft)
    # num_iterations=2: GRPO losses are taken against the sampling policy's log-probs, so the clip acts: the first
    # update of step 1 is on-policy (ratio 1, nothing clipped), the second one is clipped.
    assert trainer.grpo_has_old_logps and all(trainer.grpo_has_old_logps)
    clipped = [h["clip_ratio/region_mean"] for h in trainer.state.log_history if "clip_ratio/region_mean" in h]
    assert clipped[0] == 0.0 and clipped[1] > 0.0


def test_sft_loss_is_the_nll_of_the_caption_tokens_only(tiny_qwen: Path, tmp_path: Path) -> None:
    records = train_records(2)
    trainer, _, _ = _trainer(RSRSTrainer, tiny_qwen, _config(tmp_path, rsrs_steps=1), records, set())
    row = grpo_dataset(records)[0]
    inputs = trainer._sft_inputs([row])
    labels = inputs["labels"][0]
    labelled = labels[labels != -100]
    tokenizer = trainer.processing_class.tokenizer
    assert tokenizer.decode(labelled) == records[0].caption + "<|im_end|>"
    # The labelled tokens are the tail of the sequence: nothing of the prompt or the image is trained on.
    first = int((labels != -100).nonzero()[0])
    assert torch.equal(inputs["input_ids"][0, first:], labelled)

    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this test does not run
    loss = trainer.compute_loss(trainer.model, inputs)
    logits = trainer.model(**{k: v for k, v in inputs.items() if k not in ("rsrs_sft", "labels")}).logits
    shifted = labels[1:]
    expected = torch.nn.functional.cross_entropy(logits[0, :-1][shifted != -100], shifted[shifted != -100])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_warmup_sft_trains_on_caption_tokens_only(tiny_qwen: Path, tmp_path: Path) -> None:
    records = train_records(2)
    model, processor = load_model_and_processor(str(tiny_qwen))
    config = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", max_length=None)
    trainer = SFTTrainer(model=model, args=config, train_dataset=sft_dataset(records), processing_class=processor)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = batch["labels"][0]
    assert processor.tokenizer.decode(labels[labels != -100]).rstrip("\n") == records[0].caption + "<|im_end|>"


def test_switch_off_is_plain_grpo(tiny_qwen: Path, tmp_path: Path) -> None:
    records = train_records(3)
    zero = {records[1].id}
    config = _config(tmp_path, rsrs_steps=3, rsrs_switch=False)
    rsrs_trainer, _, _ = _trainer(RSRSTrainer, tiny_qwen, config, records, zero)
    rsrs_trainer.train()
    grpo_trainer, _, _ = _trainer(GRPOTrainer, tiny_qwen, config, records, zero)
    grpo_trainer.train()

    assert rsrs_trainer.rsrs_modes == ["grpo"] * 3
    assert len(rsrs_trainer.zero_reward_buffer) == 0 and not rsrs_trainer.deferred_batches
    assert torch.equal(flat_params(rsrs_trainer.model), flat_params(grpo_trainer.model))


def test_reward_is_the_core_toy_reward() -> None:
    # One implementation: the trainer's reward function calls the object ecac_bench exports ...
    assert rsrs.toy_reward is ecac_bench.toy_reward
    # ... and over a whole prediction file it gives the `reward` that `ecac-bench score` reports.
    dataset = load_dataset()
    predictions = load_predictions(SAMPLE_PREDICTIONS["system-a"], dataset)
    ids = sorted(predictions)
    toys = [[t.to_dict() for t in dataset.by_id[i].toys] for i in ids]
    completions = [[{"role": "assistant", "content": " ".join(predictions[i])}] for i in ids]
    rewards = ecac_reward(completions=completions, toys=toys)
    reported = score_captions(dataset, {i: [" ".join(predictions[i])] for i in ids}).metrics["reward"]
    assert sum(rewards) / len(rewards) == pytest.approx(reported)
    assert ecac_reward(completions=[NEUTRAL_CAPTION], toys=[toys[0]]) == [0.0]


def test_trl_pin_and_seams() -> None:
    """Fails on a TRL upgrade that moves the GRPOTrainer internals RSRSTrainer overrides or relies on."""
    assert trl.__version__ == rsrs.TRL_VERSION, "re-check trainers/rsrs.py against the new GRPOTrainer"
    expected = {
        "_prepare_inputs": ["self", "generation_batch"],
        "_generate_and_score_completions": ["self", "inputs"],
        "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
        "compute_loss": ["self", "model", "inputs", "return_outputs", "num_items_in_batch"],
    }
    assert set(expected) == set(rsrs.SEAMS)
    # The checkpoint hooks that carry the buffer and the deferred prompts across a resume.
    expected["_save_checkpoint"] = ["self", "model", "trial"]
    expected["_load_optimizer_and_scheduler"] = ["self", "checkpoint"]
    for name, params in expected.items():
        assert list(inspect.signature(getattr(GRPOTrainer, name)).parameters) == params, name
        assert name in RSRSTrainer.__dict__, name
    source = inspect.getsource(GRPOTrainer._prepare_inputs)
    for state in ("self._buffered_inputs", "self._step", "steps_per_generation", "self.num_iterations"):
        assert state in source, state
    assert "self._calculate_rewards(" in inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "current_gradient_accumulation_steps" in inspect.getsource(GRPOTrainer._compute_loss)
    assert GRPOTrainer.loss_is_scaled_for_ga is True


def test_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rsrs_buffer_size"):
        _config(tmp_path, rsrs_steps=1, rsrs_buffer_size=1)
    with pytest.raises(ValueError, match="rsrs_sft_batch_size"):
        _config(tmp_path, rsrs_steps=1, rsrs_sft_batch_size=0)
    config = RSRSConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=4)
    assert (config.beta, config.num_generations, config.num_iterations) == (0.0, 4, 2)


def test_a_resumed_run_keeps_the_zero_reward_buffer(tiny_qwen: Path, tmp_path: Path) -> None:
    records = train_records(6)
    ids = [r.id for r in records]
    zero = {ids[1], ids[3]}
    # Stop after RSRS step 4 with two images in the buffer, saving a checkpoint there ...
    first, _, _ = _trainer(
        RSRSTrainer, tiny_qwen, _config(tmp_path, rsrs_steps=4, save_strategy="steps", save_steps=8), records, zero
    )
    first.train()
    assert len(first.zero_reward_buffer) == 2
    checkpoint = tmp_path / "out" / "checkpoint-8"
    assert (checkpoint / "rsrs_state_rank0.pt").is_file()

    # ... then resume with a budget of 6 steps: step 5 is the SFT step on the restored buffer.
    second, rollout, _ = _trainer(RecordingRSRSTrainer, tiny_qwen, _config(tmp_path, rsrs_steps=6), records, zero)
    second.train(resume_from_checkpoint=str(checkpoint))
    assert second.rsrs_modes == ["grpo", "grpo", "grpo", "grpo", "sft", "grpo"]
    assert second.sft_batches == [[ids[1], ids[3]]]
    assert rollout.seen == [ids[4]]  # the sampler resumed where it stopped; step 5's prompts went to step 6
