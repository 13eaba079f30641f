"""RSRS: GRPO with reward-conditional switching to SFT (Algorithm 1 of the KinderMM-Cap paper), on TRL.

Each RSRS step is one of two kinds, decided at its start on the zero-reward buffer (identically on every process):

* **GRPO** (the buffer holds fewer than ``rsrs_sft_batch_size`` images): TRL generates G captions for each image of
  the oldest sampled prompt batch, rewards them (``trainers.rewards``), and takes its clipped-ratio GRPO update
  (no KL term, no reference model); every image whose G rewards are all zero goes into the buffer. The step is TRL's
  generation cycle: ``steps_per_generation x num_iterations`` micro-steps (default 1 x 1, one optimizer update).
* **SFT**: "Sample (I,p,g) ~ Buffer; Buffer Pop": ``rsrs_sft_batch_size`` images drawn from the buffer (seeded
  random draw, or FIFO) and exactly one optimizer update (``gradient_accumulation_steps`` micro-steps) on the NLL of
  their reference captions, whatever ``num_iterations`` is.

The sampler delivers a new prompt batch once per generation cycle; delivered batches queue, and each GRPO step
trains the oldest, so a batch delivered during an SFT step waits for the next GRPO step: GRPO sees exactly the
sampler's order, as in Algorithm 1 where only GRPO steps sample. The step size follows one rule of the process
count (``trainers.layout``): the paper's 1 image x G = 4 rollouts per step and SFT batch 4 on 4 processes.

RSRSTrainer overrides a few GRPOTrainer internals; every private TRL/transformers name it touches is listed in
``TRL_PRIVATE_NAMES`` and checked against the pinned TRL by ``tests/test_rsrs.py``. Sampling, generation
(transformers or vLLM), advantages, the clipped loss, the optimizer, schedulers, DeepSpeed and checkpointing are
TRL's and transformers'.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from accelerate.utils import gather_object
from datasets import Dataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer, TrlParser
from trl.data_utils import apply_chat_template, prepare_multimodal_messages
from trl.trainer.utils import pad

from ecac_bench.protocol import DECODING
from ecac_bench.report import write_json_atomic
from trainers.buffer import SAMPLING, ZeroRewardBuffer
from trainers.data import (
    HybridDataArguments,
    grpo_dataset,
    load_model_and_processor,
    load_train_records,
    rollout_decoding,
    run_record,
    train_and_save,
    write_run_record,
)
from trainers.hardware import HardwareError, check_gpus, precision_of
from trainers.layout import StepLayout, step_layout
from trainers.rewards import RewardArguments, build_reward_funcs

# The TRL release whose GRPOTrainer internals this subclass is written against (tests/test_rsrs.py pins it).
TRL_VERSION = "1.16.0"
# Every private name of GRPOTrainer / transformers.Trainer that RSRSTrainer overrides, calls or reads. The pin test
# checks that each exists in the pinned TRL and that the list is complete (no other private inherited name is used).
TRL_PRIVATE_NAMES = (
    # overridden
    "_prepare_inputs",  # start each RSRS step: choose its kind, queue sampled batches, build SFT batches
    "_calculate_rewards",  # keep the rewards of all processes (TRL gathers them) for the buffer
    "_generate_and_score_completions",  # after TRL's own: push all-zero groups into the buffer
    "_save_checkpoint",  # the buffer and the queued prompt batches are saved with each checkpoint ...
    "_load_optimizer_and_scheduler",  # ... and restored on resume
    "_tag_names",  # model card tags
    "_name",  # model card trainer name
    # called
    "_get_output_dir",  # the checkpoint folder of _save_checkpoint
    # read or reset
    "_buffered_inputs",  # the micro-batches of the current step (TRL's generation cycle)
    "_metrics",  # TRL's per-step metric lists, averaged and logged by GRPOTrainer.log
    "_tokenizer",  # the processor's tokenizer (SFT batches)
)
RSRS_STATE = "rsrs_state.json"  # in each checkpoint, written before Trainer's trainer_state.json (its completion mark)


def launch_world_size() -> int:
    """The process count the launcher (accelerate, torchrun, DeepSpeed) announces, before devices are set up."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class RSRSConfig(GRPOConfig):
    """GRPOConfig plus the RSRS switch; defaults follow the paper (G = 4, 1 image per step on 4 processes, no KL, no
    reference model, one update per step) and ``ecac_bench.protocol.DECODING`` for the rollouts' length and top-p
    (sampled at ``temperature``: GRPO needs G different captions; no repetition penalty, stated explicitly so that
    the checkpoint's generation_config does not choose one)."""

    per_device_train_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Rollouts per process per step. None: derived from the process count (trainers/layout.py: the "
            "paper's 1 image x G = 4 on 4 processes). Setting it takes TRL's own batch arithmetic."
        },
    )
    rsrs_images_per_step: int = field(
        default=1,
        metadata={"help": "Images per GRPO step (at least; raised until every process gets a rollout). Paper: 1."},
    )
    rsrs_switch: bool = field(
        default=True,
        metadata={"help": "Switch to an SFT step when the zero-reward buffer is full enough. False: plain GRPO."},
    )
    rsrs_sft_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Images per SFT step (all processes together), taken as soon as the zero-reward buffer holds "
            "this many. None: the training batch, i.e. the rollouts of one GRPO step (paper: 4)."
        },
    )
    rsrs_buffer_size: int | None = field(
        default=None,
        metadata={
            "help": "Capacity of the zero-reward buffer; when full the oldest sample is evicted (logged as "
            "rsrs/buffer_evicted). None: unbounded (the buffer never holds more than sft batch + images per step)."
        },
    )
    rsrs_buffer_sampling: str = field(
        default="random",
        metadata={"help": "How an SFT batch is taken from the buffer: random (seeded draw, Algorithm 1) or fifo."},
    )
    num_generations: int | None = field(default=4, metadata={"help": "G, captions sampled per image (paper: 4)."})
    num_iterations: int = field(
        default=1,
        metadata={"help": "GRPO updates per generated batch (TRL's default 1); an SFT step is always one update."},
    )
    beta: float = field(default=0.0, metadata={"help": "KL coefficient; the paper uses no KL term (0)."})
    loss_type: str = field(
        default="grpo", metadata={"help": "GRPO's per-sequence mean of the clipped surrogate (DeepSeekMath)."}
    )
    max_completion_length: int | None = field(
        default=DECODING.max_new_tokens, metadata={"help": "Rollout length cap (the protocol's max_new_tokens)."}
    )
    repetition_penalty: float = field(
        default=1.0,
        metadata={
            "help": "Rollout repetition penalty (1.0: none; evaluation keeps the checkpoint's, protocol.DECODING)."
        },
    )
    top_p: float = field(default=DECODING.top_p, metadata={"help": "Rollout nucleus sampling (the protocol's)."})

    def __post_init__(self) -> None:
        self.rsrs_layout: StepLayout | None = None
        if self.per_device_train_batch_size is None:
            if self.gradient_accumulation_steps != 1 or self.steps_per_generation not in (None, 1):
                raise ValueError(
                    "the derived step layout takes one micro-step per step: set per_device_train_batch_size to use "
                    "gradient_accumulation_steps or steps_per_generation"
                )
            if self.generation_batch_size is not None:
                raise ValueError("generation_batch_size needs per_device_train_batch_size (TRL's batch arithmetic)")
            self.rsrs_layout = step_layout(launch_world_size(), self.num_generations or 4, self.rsrs_images_per_step)
            self.per_device_train_batch_size = self.rsrs_layout.per_device_batch
        try:
            super().__post_init__()
        finally:  # a layout derived for another process count also trips GRPOConfig's checks: say why first
            derived = self.rsrs_layout is not None and self.distributed_state is not None
            if derived and self.world_size != self.rsrs_layout.num_processes:
                raise ValueError(
                    f"the step layout was derived for WORLD_SIZE={self.rsrs_layout.num_processes} processes but the "
                    f"run has {self.world_size}: set per_device_train_batch_size explicitly"
                )
        if self.rsrs_sft_batch_size is None:
            self.rsrs_sft_batch_size = self.generation_batch_size  # the rollouts of one step: the training batch
        if self.rsrs_sft_batch_size < 1:
            raise ValueError(f"rsrs_sft_batch_size must be >= 1, got {self.rsrs_sft_batch_size}")
        if self.rsrs_buffer_size is not None and self.rsrs_buffer_size < self.rsrs_sft_batch_size:
            raise ValueError(
                f"rsrs_buffer_size ({self.rsrs_buffer_size}) must be >= rsrs_sft_batch_size "
                f"({self.rsrs_sft_batch_size}), or the buffer could never trigger an SFT step"
            )
        if self.rsrs_buffer_sampling not in SAMPLING:
            raise ValueError(f"rsrs_buffer_sampling must be one of {SAMPLING}, got {self.rsrs_buffer_sampling!r}")
        shards = self.world_size * self.gradient_accumulation_steps
        if self.rsrs_switch and self.rsrs_sft_batch_size % shards:
            raise ValueError(
                f"rsrs_sft_batch_size ({self.rsrs_sft_batch_size}) must be a multiple of processes x "
                f"gradient_accumulation_steps ({shards}): an SFT step is one update with an equal share per process"
            )
        if self.rsrs_switch and (self.steps_per_generation * self.num_iterations) % self.gradient_accumulation_steps:
            raise ValueError("steps_per_generation x num_iterations must be a multiple of gradient_accumulation_steps")

    def step_record(self) -> dict[str, Any]:
        """How big a step is (recorded in the run's ecac_run.json)."""
        g = self.num_generations
        return {
            "rule": "derived (trainers/layout.py)" if self.rsrs_layout else "per_device_train_batch_size given",
            "num_processes": self.world_size,
            "num_generations": g,
            "images_per_step": self.generation_batch_size // g,
            "rollouts_per_step": self.generation_batch_size,
            "per_device_train_batch_size": self.per_device_train_batch_size,
            "steps_per_generation": self.steps_per_generation,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "num_iterations": self.num_iterations,
            "rsrs_switch": self.rsrs_switch,
            "rsrs_sft_batch_size": self.rsrs_sft_batch_size,
            "rsrs_buffer_sampling": self.rsrs_buffer_sampling,
        }


class RSRSTrainer(GRPOTrainer):
    """GRPOTrainer that swaps a GRPO step for an SFT step on the zero-reward buffer (see the module docstring).

    Pass ``reward_funcs=ToyReward()`` (or several rewards) and a dataset from ``trainers.data.grpo_dataset``
    (columns id, prompt, image, caption, toys).
    """

    _tag_names: ClassVar[list[str]] = ["trl", "grpo", "rsrs", "ecac"]
    _name = "RSRS"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config: RSRSConfig = self.args
        self.rsrs_sft_batch_size: int = config.rsrs_sft_batch_size  # type: ignore[assignment]
        # The buffer and the queued batches hold row ids, not rows (whose decoded images would pile up in memory and
        # checkpoints); rows are read back from the dataset when they are trained on.
        self.rsrs_row_index = self.index_rows(self.train_dataset) if config.rsrs_switch else {}
        self.zero_reward_buffer = ZeroRewardBuffer(config.rsrs_buffer_size, config.rsrs_buffer_sampling, config.seed)
        self.pending_batches: deque[list[str]] = deque()  # this process's row ids of sampled, untrained batches
        self.rsrs_modes: list[str] = []  # one entry per RSRS step, "grpo" or "sft" (read by tests and callbacks)
        self.rsrs_fetches = 0  # training batches the dataloader delivered: the sampler's phase
        self.rsrs_step_start = 0  # fetch at which the current RSRS step started ...
        self.rsrs_step_end = 0  # ... and the one at which the next starts
        self.rsrs_rollout_rewards: torch.Tensor | None = None

    @staticmethod
    def index_rows(dataset: Any) -> dict[str, int]:
        if not isinstance(dataset, Dataset) or "id" not in dataset.column_names:
            raise ValueError(
                "RSRS needs a map-style train_dataset with a unique 'id' column (trainers.data.grpo_dataset makes one)"
            )
        index = {image_id: i for i, image_id in enumerate(dataset["id"])}
        if len(index) != len(dataset):
            raise ValueError("the train_dataset 'id' column has duplicates; RSRS needs one row per id")
        return index

    def rows(self, ids: list[str]) -> list[dict[str, Any]]:
        return [self.train_dataset[self.rsrs_row_index[image_id]] for image_id in ids]

    # -- step kind -------------------------------------------------------------------------------------------

    def sft_step_due(self) -> bool:
        """Whether this step is an SFT step; a collective, so every process takes the same branch."""
        size = torch.tensor([len(self.zero_reward_buffer)], device=self.accelerator.device)
        sizes = self.accelerator.gather(size)
        if bool((sizes != sizes[0]).any()):
            raise RuntimeError(f"RSRS buffers diverged across processes: sizes {sizes.tolist()}")
        return int(sizes[0]) >= self.rsrs_sft_batch_size

    def _prepare_inputs(self, generation_batch: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training or not self.args.rsrs_switch:
            return super()._prepare_inputs(generation_batch)
        # TRL's sampler repeats each prompt batch for a whole generation cycle, then delivers the next one.
        if self.rsrs_fetches % (self.args.steps_per_generation * self.num_iterations) == 0:
            self.pending_batches.append([row["id"] for row in generation_batch])
        if self.rsrs_fetches >= self.rsrs_step_end or self._buffered_inputs is None:
            self.start_step(generation_batch)
        inputs = self._buffered_inputs[(self.rsrs_fetches - self.rsrs_step_start) % len(self._buffered_inputs)]
        self.rsrs_fetches += 1
        return inputs

    def start_step(self, generation_batch: list[dict[str, Any]]) -> None:
        """Begin an RSRS step at this fetch: fill ``_buffered_inputs`` with its micro-batches."""
        self.rsrs_step_start = self.rsrs_fetches
        if self.sft_step_due():
            rows = self.rows(self.zero_reward_buffer.pop(self.rsrs_sft_batch_size))
            self._buffered_inputs = self.sft_micro_batches(rows)
            self.rsrs_step_end = self.rsrs_fetches + self.args.gradient_accumulation_steps
            self.log_step("sft")
            return
        delivered = [row["id"] for row in generation_batch]
        # After a resume in the middle of a generation cycle nothing may be queued: train the delivered batch.
        ids = self.pending_batches.popleft() if self.pending_batches else delivered
        self._buffered_inputs = None  # TRL generates and scores when it has no buffered inputs
        super()._prepare_inputs(generation_batch if ids == delivered else self.rows(ids))
        self.rsrs_step_end = self.rsrs_fetches + self.args.steps_per_generation * self.num_iterations

    def log_step(self, mode: str) -> None:
        self.rsrs_modes.append(mode)
        metrics = self._metrics["train"]
        metrics["rsrs/sft_step"].append(float(mode == "sft"))
        metrics["rsrs/buffer_size"].append(float(len(self.zero_reward_buffer)))
        metrics["rsrs/buffer_evicted"].append(float(self.zero_reward_buffer.evicted))
        metrics["rsrs/deferred_batches"].append(float(len(self.pending_batches)))

    # -- GRPO branch: watch the rewards ----------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self.rsrs_rollout_rewards = rewards_per_func  # gathered over processes, rows in process order
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self.after_rollouts(inputs)
        return output

    def after_rollouts(self, inputs: list[dict[str, Any]]) -> None:
        """Push all-zero groups to the buffer and log the zero-group fraction."""
        g = self.num_generations
        rewards_per_func = self.rsrs_rollout_rewards
        weights = self.reward_weights.to(rewards_per_func.device)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        scorable = ~torch.isnan(rewards_per_func).all(dim=1)
        zero_group = ((rewards == 0) & scorable).view(-1, g).all(dim=1)  # (global images,)

        # Rows are grouped G at a time in process order; each group's first row lives on exactly one process,
        # which contributes it, so the gathered list (same on every process) holds each zero group once, in order.
        if self.args.rsrs_switch:
            offset = self.accelerator.process_index * len(inputs)
            heads = [(i, row) for i, row in enumerate(inputs) if (offset + i) % g == 0]
            local = [row["id"] for i, row in heads if zero_group[(offset + i) // g]]
            self.zero_reward_buffer.push(gather_object(local))
        self._metrics["train"]["rsrs/zero_reward_group_frac"].append(zero_group.float().mean().item())
        self.log_step("grpo")

    # -- SFT branch ------------------------------------------------------------------------------------------

    def sft_micro_batches(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """This process's share of an SFT batch, as gradient_accumulation_steps model-input dicts (one update)."""
        share = len(rows) // self.accelerator.num_processes
        mine = rows[self.accelerator.process_index * share : (self.accelerator.process_index + 1) * share]
        per_step = share // self.args.gradient_accumulation_steps
        return [self.sft_inputs(mine[i : i + per_step]) for i in range(0, share, per_step)]

    def sft_inputs(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Model inputs laid out like TRL's GRPO batches: left-padded prompt, right-padded reference caption.

        ``labels`` are -100 everywhere but on the caption tokens (and the end-of-turn token that closes them),
        so the loss is the NLL of the reference caption given image and prompt.
        """
        device = self.accelerator.device
        prompts = [prepare_multimodal_messages(row["prompt"], images=[row["image"]]) for row in rows]
        images = [[row["image"]] for row in rows]
        prompt_texts, completion_ids = [], []
        for prompt, row in zip(prompts, rows, strict=True):
            rendered = apply_chat_template(
                {"prompt": prompt, "completion": [{"role": "assistant", "content": row["caption"]}]},
                self.processing_class,
                **self.chat_template_kwargs,
            )
            prompt_texts.append(rendered["prompt"])
            # The template may add a newline after the end-of-turn token; the caption ends at that token.
            ids = self._tokenizer(rendered["completion"].rstrip("\n"), add_special_tokens=False)["input_ids"]
            completion_ids.append(torch.tensor(ids))
        prompt_inputs = self.processing_class(
            images=images, text=prompt_texts, padding=True, padding_side="left", return_tensors="pt"
        )
        prompt_inputs = super(GRPOTrainer, self)._prepare_inputs(prompt_inputs)  # Trainer's: move to device
        completion_mask = pad([torch.ones_like(ids) for ids in completion_ids], padding_value=0, padding_side="right")
        completion = pad(completion_ids, padding_value=self._tokenizer.pad_token_id, padding_side="right")
        completion, completion_mask = completion.to(device), completion_mask.to(device)
        input_ids = torch.cat([prompt_inputs["input_ids"], completion], dim=1)
        attention_mask = torch.cat([prompt_inputs["attention_mask"], completion_mask], dim=1)
        labels = torch.full_like(input_ids, -100)
        labels[:, -completion.size(1) :] = completion.masked_fill(completion_mask == 0, -100)
        inputs = {"rsrs_sft": True, "input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        # Logits only where they predict a caption token (as TRL's losses do): over a 12 MP photo's ~15,000 image
        # tokens the full logits would take tens of GB.
        inputs["logits_to_keep"] = completion.size(1) + 1
        for key, value in prompt_inputs.items():
            if key in ("input_ids", "attention_mask"):
                continue
            if key in ("mm_token_type_ids", "token_type_ids"):  # per-token: the caption tokens are text (0)
                value = torch.cat([value, value.new_zeros(completion.shape)], dim=1)
            inputs[key] = value
        return inputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not inputs.get("rsrs_sft"):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        model_inputs = {k: v for k, v in inputs.items() if k not in ("rsrs_sft", "labels")}
        labels = inputs["labels"][:, -(inputs["logits_to_keep"] - 1) :]  # the caption tokens, -100 on padding
        with self.accelerator.autocast():
            logits = model(**model_inputs).logits[:, :-1]  # position t predicts token t + 1
        # Mean token NLL over the labelled (caption) tokens.
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        self._metrics["train"]["rsrs/sft_loss"].append(self.accelerator.gather(loss.detach()).mean().item())
        # GRPOTrainer declares its loss already scaled for gradient accumulation; keep that contract.
        return loss / self.current_gradient_accumulation_steps

    # -- checkpoints: the buffer and the queued prompt batches are training state ------------------------------

    def rsrs_state(self) -> dict[str, Any]:
        """The RSRS state of all processes (a collective: every process must call it)."""
        return {
            "world_size": self.accelerator.num_processes,
            "buffer": self.zero_reward_buffer.state_dict(),
            "pending": gather_object([list(self.pending_batches)]),  # one list of batches per process
            "modes": self.rsrs_modes,
            "fetches": self.rsrs_fetches,
        }

    def load_rsrs_state(self, state: dict[str, Any]) -> None:
        if state["world_size"] != self.accelerator.num_processes:
            raise ValueError(
                f"the checkpoint's RSRS state was saved by {state['world_size']} processes; resume with as many "
                f"(this run has {self.accelerator.num_processes})"
            )
        self.zero_reward_buffer.load_state_dict(state["buffer"])
        self.pending_batches = deque(state["pending"][self.accelerator.process_index])
        self.rsrs_modes = list(state["modes"])
        self.rsrs_fetches = self.rsrs_step_start = self.rsrs_step_end = int(state["fetches"])
        self._buffered_inputs = None

    def _save_checkpoint(self, model, trial):
        state = self.rsrs_state()
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            write_json_atomic(folder / RSRS_STATE, state)
        super()._save_checkpoint(model, trial)  # ends with trainer_state.json: the checkpoint is complete

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None and (Path(checkpoint) / RSRS_STATE).is_file():
            self.load_rsrs_state(json.loads((Path(checkpoint) / RSRS_STATE).read_text()))


def main(argv: list[str] | None = None) -> None:
    """Stage 2 of the recipe: ``accelerate launch -m trainers.rsrs --config trainers/configs/rsrs.yaml ...``."""
    parser = TrlParser((HybridDataArguments, RSRSConfig, RewardArguments))
    data_args, config, reward_args = parser.parse_args_and_config(args=argv)
    try:
        check_gpus(precision_of(config), uses_vllm=config.use_vllm)
    except HardwareError as error:
        print(f"trainers.rsrs: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    training = load_train_records(data_args)
    model, processor = load_model_and_processor(data_args.model_name_or_path, data_args.pixel_budget, fp16=config.fp16)
    trainer = RSRSTrainer(
        model=model,
        reward_funcs=build_reward_funcs(reward_args, processor.tokenizer),
        args=config,
        train_dataset=grpo_dataset(training.records, data_args.language),
        processing_class=processor,
    )
    record = run_record(
        "rsrs" if config.rsrs_switch else "grpo",
        data_args,
        training,
        config,
        step=config.step_record(),
        rollout_decoding=rollout_decoding(config),
        rewards={"names": reward_args.rewards, "weights": config.reward_weights},
    )
    write_run_record(config, record)
    train_and_save(trainer, processor, record)


if __name__ == "__main__":
    main()
