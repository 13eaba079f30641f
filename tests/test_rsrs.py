"""RSRS on TRL: the switching rule, one update per step, the buffer draw, the SFT branch, plain-GRPO equivalence,
resuming, the reward and the TRL pin.

A tiny random Qwen2.5-VL runs on CPU; rollouts are scripted through TRL's rollout_func (tests/rsrs_helpers.py) so
which images score zero under ecac_bench.toy_reward is known in advance.
"""

from __future__ import annotations

import ast
import inspect
import json
import pickle
from pathlib import Path

import pytest
import torch
import transformers
import trl
from rsrs_helpers import (
    NEUTRAL_CAPTION,
    ScriptedRollout,
    flat_params,
    tagged_dataset,
    tiny_model_and_processor,
    train_records,
)
from transformers import TrainerCallback
from trl import GRPOTrainer, SFTConfig, SFTTrainer

import ecac_bench
from ecac_bench import SAMPLE_PREDICTIONS, load_dataset, load_predictions, score_captions
from trainers import rewards, rsrs
from trainers.buffer import ZeroRewardBuffer
from trainers.data import grpo_dataset, sft_dataset
from trainers.rewards import ToyReward
from trainers.rsrs import RSRSConfig, RSRSTrainer

REPO = Path(__file__).resolve().parents[1]

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
    """Records the ids of every SFT batch, the optimizer step at which each RSRS step starts, and whether GRPO
    batches carry the sampling policy's log-probs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sft_batches: list[list[str]] = []
        self.step_starts: list[int] = []
        self.grpo_has_old_logps: list[bool] = []

    def sft_micro_batches(self, rows):
        self.sft_batches.append([row["id"] for row in rows])
        return super().sft_micro_batches(rows)

    def log_step(self, mode):
        self.step_starts.append(self.state.global_step)  # before the step's first update, in both modes
        super().log_step(mode)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not inputs.get("rsrs_sft"):
            self.grpo_has_old_logps.append("old_per_token_logps" in inputs)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def updates_per_step(self) -> list[int]:
        ends = [*self.step_starts[1:], self.state.global_step]
        return [end - start for start, end in zip(self.step_starts, ends, strict=True)]


def _config(tmp_path: Path, max_steps: int, **overrides) -> RSRSConfig:
    values = {
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "bf16": False,
        "max_completion_length": 16,
        "max_steps": max_steps,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "shuffle_dataset": False,
        "seed": 0,
    }
    values.update(overrides)
    return RSRSConfig(**values)


def _trainer(cls, tiny_qwen: Path, config, records, zero_ids: set[str]):
    model, processor = tiny_model_and_processor(tiny_qwen)
    rollout = ScriptedRollout(records, zero_ids)
    trainer = cls(
        model=model,
        processing_class=processor,
        reward_funcs=ToyReward(),
        args=config,
        train_dataset=tagged_dataset(records),
        rollout_func=rollout,
    )
    recorder = StepRecorder(model)
    trainer.add_callback(recorder)
    return trainer, rollout, recorder


def test_default_step_sft_at_the_training_batch_one_update_each(tiny_qwen: Path, tmp_path: Path) -> None:
    """The defaults on one process: 1 image x G = 4 rollouts per step, SFT batch = the training batch (4 images),
    drawn at random from the buffer, and exactly one optimizer update per RSRS step of either kind."""
    records = train_records(9)
    ids = [r.id for r in records]
    zero = {ids[1], ids[3], ids[5], ids[6]}
    config = _config(tmp_path, max_steps=9)
    assert (config.per_device_train_batch_size, config.generation_batch_size, config.rsrs_sft_batch_size) == (4, 4, 4)
    trainer, rollout, recorder = _trainer(RecordingRSRSTrainer, tiny_qwen, config, records, zero)
    trainer.train()

    # Buffer after steps 1-7: 0 1 1 2 2 3 4 -> step 8 is SFT on the four zero-reward images; step 9 trains ids[7].
    assert trainer.rsrs_modes == ["grpo"] * 7 + ["sft", "grpo"]
    assert trainer.updates_per_step() == [1] * 9
    (batch,) = trainer.sft_batches
    assert sorted(batch) == sorted(zero)
    # "Sample ~ Buffer": a seeded draw (random.Random(0).sample(range(4), 4) = [3, 1, 0, 2]), not the oldest first.
    buffered = [ids[1], ids[3], ids[5], ids[6]]
    assert batch == [buffered[i] for i in (3, 1, 0, 2)]
    assert rollout.seen == ids[:8] and [b[0] for b in trainer.pending_batches] == [ids[8]]

    logged = [h for h in trainer.state.log_history if "rsrs/sft_step" in h]
    assert [h["rsrs/sft_step"] for h in logged] == [0.0] * 7 + [1.0, 0.0]
    assert [h["rsrs/buffer_size"] for h in logged] == [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 4.0, 0.0, 0.0]
    # One caption of four names the image's only toy: TTS of the rollouts 25 (logged by the reward via log_metric).
    assert logged[0]["rewards/toy/rollout_tts"] == pytest.approx(25.0)
    assert any("rsrs/sft_loss" in h for h in trainer.state.log_history)
    # An all-zero GRPO group has zero advantage and so no gradient, which is why RSRS turns it into SFT data.
    assert recorder.grad_norms[0] > 0 and recorder.param_deltas[0] > 0
    assert recorder.grad_norms[1] == 0.0
    assert recorder.grad_norms[7] > 0 and recorder.param_deltas[7] > 0  # the SFT update
    # One update per batch: the policy that is optimised is the one that sampled, the ratio is 1 and nothing clips.
    clipped = [h["clip_ratio/region_mean"] for h in trainer.state.log_history if "clip_ratio/region_mean" in h]
    assert clipped and all(c == 0.0 for c in clipped)


def test_num_iterations_repeats_grpo_updates_never_sft(tiny_qwen: Path, tmp_path: Path) -> None:
    """num_iterations=2 (a GRPO-only option): each GRPO step takes two updates, each SFT step exactly one, and the
    prompt batches still reach GRPO in the sampler's order."""
    records = train_records(6)
    ids = [r.id for r in records]
    config = _config(tmp_path, max_steps=11, num_iterations=2, rsrs_sft_batch_size=2, rsrs_buffer_sampling="fifo")
    trainer, rollout, recorder = _trainer(RecordingRSRSTrainer, tiny_qwen, config, records, {ids[1], ids[3]})
    trainer.train()

    assert trainer.rsrs_modes == ["grpo", "grpo", "grpo", "grpo", "sft", "grpo"]
    assert trainer.updates_per_step() == [2, 2, 2, 2, 1, 2]
    assert trainer.sft_batches == [[ids[1], ids[3]]]  # fifo: oldest first, once
    assert len(recorder.param_deltas) == 11
    # The batch delivered during the SFT step (ids[4]) is step 6's; the next one (ids[5]) waits, nothing repeats.
    assert rollout.seen == ids[:5] and [b[0] for b in trainer.pending_batches] == [ids[5]]
    # The second update of a generated batch is clipped against the sampling policy's log-probs.
    assert trainer.grpo_has_old_logps and all(trainer.grpo_has_old_logps)
    clipped = [h["clip_ratio/region_mean"] for h in trainer.state.log_history if "clip_ratio/region_mean" in h]
    assert clipped[0] == 0.0 and clipped[1] > 0.0


def test_buffer_draw_is_seeded_fifo_optional_and_resumable() -> None:
    ids = [f"img{i}" for i in range(10)]
    a, b = ZeroRewardBuffer(seed=7), ZeroRewardBuffer(seed=7)
    for buffer in (a, b):
        buffer.push(ids)
    first = a.pop(4)
    assert first == b.pop(4) and len(a) == 6 and set(first) <= set(ids)
    assert first != ids[:4]  # a draw, not the oldest
    # Resumable: a buffer restored from the state continues exactly as the original.
    restored = ZeroRewardBuffer(seed=0)
    restored.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert restored.pop(3) == a.pop(3) and list(restored.ids) == list(a.ids)
    fifo = ZeroRewardBuffer(sampling="fifo")
    fifo.push(ids)
    assert fifo.pop(3) == ids[:3]
    capped = ZeroRewardBuffer(capacity=3, sampling="fifo")
    capped.push(ids[:5])
    assert list(capped.ids) == ids[2:5] and capped.evicted == 2
    with pytest.raises(ValueError, match="cannot pop 4"):
        capped.pop(4)
    with pytest.raises(ValueError, match="buffer sampling"):
        ZeroRewardBuffer(sampling="lifo")


def test_sft_loss_is_the_nll_of_the_caption_tokens_only(tiny_qwen: Path, tmp_path: Path) -> None:
    records = train_records(2)
    trainer, _, _ = _trainer(RSRSTrainer, tiny_qwen, _config(tmp_path, max_steps=1), records, set())
    row = grpo_dataset(records)[0]
    inputs = trainer.sft_inputs([row])
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
    plain = {k: v for k, v in inputs.items() if k not in ("rsrs_sft", "labels", "logits_to_keep")}
    logits = trainer.model(**plain).logits
    shifted = labels[1:]
    expected = torch.nn.functional.cross_entropy(logits[0, :-1][shifted != -100], shifted[shifted != -100])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # ... and it is the model's own causal-LM loss on these labels, computed from the caption's logits only.
    full = {k: v for k, v in inputs.items() if k not in ("rsrs_sft", "logits_to_keep")}
    assert loss.item() == pytest.approx(trainer.model(**full).loss.item(), rel=1e-5)


def test_warmup_sft_trains_on_caption_tokens_only(tiny_qwen: Path, tmp_path: Path) -> None:
    records = train_records(2)
    model, processor = tiny_model_and_processor(tiny_qwen)
    config = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", max_length=None)
    trainer = SFTTrainer(model=model, args=config, train_dataset=sft_dataset(records), processing_class=processor)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = batch["labels"][0]
    assert processor.tokenizer.decode(labels[labels != -100]).rstrip("\n") == records[0].caption + "<|im_end|>"


def test_switch_off_is_plain_grpo(tiny_qwen: Path, tmp_path: Path) -> None:
    records = train_records(3)
    zero = {records[1].id}
    config = _config(tmp_path, max_steps=3, rsrs_switch=False)
    rsrs_trainer, _, _ = _trainer(RSRSTrainer, tiny_qwen, config, records, zero)
    rsrs_trainer.train()
    grpo_trainer, _, _ = _trainer(GRPOTrainer, tiny_qwen, config, records, zero)
    grpo_trainer.train()

    assert rsrs_trainer.rsrs_modes == ["grpo"] * 3
    assert len(rsrs_trainer.zero_reward_buffer) == 0 and not rsrs_trainer.pending_batches
    assert torch.equal(flat_params(rsrs_trainer.model), flat_params(grpo_trainer.model))


def test_a_resumed_run_restores_the_buffer_and_its_draws(tiny_qwen: Path, tmp_path: Path) -> None:
    records = train_records(8)
    ids = [r.id for r in records]
    zero = {ids[1], ids[2], ids[4], ids[5]}
    # Steps 1-4: buffer 0, 1, 2, then an SFT draw of 2 at step 4; checkpoint after step 4 ...
    overrides = {"rsrs_sft_batch_size": 2, "save_strategy": "steps", "save_steps": 4}
    first, _, _ = _trainer(RecordingRSRSTrainer, tiny_qwen, _config(tmp_path, 4, **overrides), records, zero)
    first.train()
    assert first.rsrs_modes == ["grpo", "grpo", "grpo", "sft"]
    checkpoint = tmp_path / "out" / "checkpoint-4"
    state = json.loads((checkpoint / rsrs.RSRS_STATE).read_text())
    assert state["buffer"] == first.zero_reward_buffer.state_dict() and state["pending"] == [[[ids[3]] * 4]]

    # ... then resume with a budget of 8 steps: step 5 trains the deferred ids[3], step 8 draws from the buffer
    # with the generator state the first run left (not a reseeded one).
    second, rollout, _ = _trainer(
        RecordingRSRSTrainer, tiny_qwen, _config(tmp_path, 8, rsrs_sft_batch_size=2), records, zero
    )
    second.train(resume_from_checkpoint=str(checkpoint))
    assert second.rsrs_modes == ["grpo", "grpo", "grpo", "sft", "grpo", "grpo", "grpo", "sft"]
    assert rollout.seen == [ids[3], ids[4], ids[5]]
    replay = ZeroRewardBuffer(seed=0)  # the uninterrupted run's buffer, replayed
    replay.push([ids[1], ids[2]])
    assert replay.pop(2) == first.sft_batches[0]
    replay.push([ids[4], ids[5]])
    assert second.sft_batches == [replay.pop(2)]


def test_reward_is_the_core_toy_reward() -> None:
    # One implementation: the trainer's reward function calls the object ecac_bench exports ...
    assert rewards.toy_reward is ecac_bench.toy_reward
    # ... and over a whole prediction file it gives the `reward` that `ecac-bench score` reports.
    dataset = load_dataset()
    predictions = load_predictions(SAMPLE_PREDICTIONS["system-a"], dataset)
    ids = sorted(predictions)
    toys = [[t.to_dict() for t in dataset.by_id[i].toys] for i in ids]
    completions = [[{"role": "assistant", "content": " ".join(predictions[i])}] for i in ids]
    reward = ToyReward()
    values = reward(completions=completions, toys=toys)
    reported = score_captions(dataset, {i: [" ".join(predictions[i])] for i in ids}).metrics["reward"]
    assert sum(values) / len(values) == pytest.approx(reported)
    assert reward(completions=[NEUTRAL_CAPTION], toys=[toys[0]]) == [0.0]
    # A callable class, as TRL recommends for rewards that must pickle (e.g. to worker processes).
    assert pickle.loads(pickle.dumps(reward))(completions=completions[:3], toys=toys[:3]) == values[:3]


def _inherited_private_names() -> set[str]:
    """Private names GRPOTrainer / transformers.Trainer define: class attributes and ``self._x =`` assignments."""
    names = {name for name in dir(GRPOTrainer) if name.startswith("_") and not name.startswith("__")}
    for cls in (GRPOTrainer, transformers.Trainer):
        for node in ast.walk(ast.parse(inspect.getsource(inspect.getmodule(cls)))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr.startswith("_"):
                names.add(node.attr)
    return {name for name in names if not name.startswith("__")}


def test_trl_pin_and_every_private_name_used() -> None:
    """Fails on a TRL upgrade that moves a private name RSRSTrainer relies on, or when RSRSTrainer starts using a
    private inherited name that TRL_PRIVATE_NAMES does not list."""
    assert trl.__version__ == rsrs.TRL_VERSION, "re-check trainers/rsrs.py against the new GRPOTrainer"
    inherited = _inherited_private_names()
    assert set(rsrs.TRL_PRIVATE_NAMES) <= inherited, set(rsrs.TRL_PRIVATE_NAMES) - inherited
    # Complete: every private name RSRSTrainer touches that TRL/transformers define is listed.
    (cls_node,) = [
        n for n in ast.parse(Path(rsrs.__file__).read_text()).body if getattr(n, "name", "") == "RSRSTrainer"
    ]
    used = {n.attr for n in ast.walk(cls_node) if isinstance(n, ast.Attribute) and n.attr.startswith("_")}
    used |= {n.name for n in cls_node.body if isinstance(n, ast.FunctionDef)}
    used |= {t.id for n in cls_node.body if isinstance(n, ast.AnnAssign | ast.Assign) for t in ast.walk(n)
             if isinstance(t, ast.Name)}  # fmt: skip
    private = {name for name in used if name.startswith("_") and not name.startswith("__")}
    assert private & inherited == set(rsrs.TRL_PRIVATE_NAMES)
    # The overridden methods keep their signatures.
    expected = {
        "_prepare_inputs": ["self", "generation_batch"],
        "_generate_and_score_completions": ["self", "inputs"],
        "_calculate_rewards": ["self", "inputs", "prompts", "completions", "completion_ids_list"],
        "_save_checkpoint": ["self", "model", "trial"],
        "_load_optimizer_and_scheduler": ["self", "checkpoint"],
        "compute_loss": ["self", "model", "inputs", "return_outputs", "num_items_in_batch"],
    }
    for name, params in expected.items():
        assert list(inspect.signature(getattr(GRPOTrainer, name)).parameters) == params, name
        assert name in RSRSTrainer.__dict__, name
    # What the overrides rely on inside TRL: regeneration when nothing is buffered, the rewards call, the GA scale.
    assert "self._buffered_inputs is None" in inspect.getsource(GRPOTrainer._prepare_inputs)
    assert "self._calculate_rewards(" in inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "current_gradient_accumulation_steps" in inspect.getsource(GRPOTrainer._compute_loss)
    assert GRPOTrainer.loss_is_scaled_for_ga is True
    # TRL's RepeatSampler delivers one prompt batch per steps_per_generation x num_iterations fetches.
    assert "repeat_count=self.num_iterations * self.args.steps_per_generation" in inspect.getsource(
        GRPOTrainer._get_train_sampler
    )


def _imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` that ``path`` imports anywhere (function level and TYPE_CHECKING included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == package:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == package}
    return found


def test_trainers_has_no_import_cycle() -> None:
    modules = {f"trainers.{p.stem}": p for p in (REPO / "trainers").glob("*.py") if p.stem != "__init__"}
    graph = {name: {m for m in _imports(path, "trainers") if m in modules} for name, path in modules.items()}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph[start])

    cycles = [name for name in graph if reaches(name, name, set())]
    assert not cycles, {name: graph[name] for name in cycles}
    assert graph["trainers.rsrs"] >= {"trainers.rewards"} and "trainers.rsrs" not in graph["trainers.rewards"]
