"""RSRS: GRPO with reward-conditional switching to SFT (Algorithm 1 of the KinderMM-Cap paper), on TRL.

Each RSRS step is one TRL generation cycle (``steps_per_generation x num_iterations`` micro-steps):

* if the zero-reward buffer holds fewer than ``rsrs_sft_batch_size`` samples: TRL samples a batch, generates G
  captions per image and rewards them with R(C) (``ecac_bench.toy_reward``); every image whose G rewards are all
  zero goes into the buffer; TRL takes its GRPO step (no KL term, clipped ratio);
* otherwise a batch is popped from the buffer and the same micro-step slots take an SFT step on its reference
  captions (NLL on the caption tokens only). The prompt batch the sampler delivered for that step is deferred
  (FIFO) to the next GRPO step, not dropped.

Only three GRPOTrainer seams are overridden: ``_prepare_inputs`` (choose the step mode, defer, build SFT
batches), ``_calculate_rewards`` / ``_generate_and_score_completions`` (watch the rewards to fill the buffer and
log rollout TTS) and ``compute_loss`` (NLL for SFT batches). Sampling, generation (transformers or vLLM),
advantages, the clipped loss, the optimizer, schedulers, DeepSpeed and checkpointing are TRL's and transformers'.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from accelerate.utils import gather_object
from datasets import Dataset
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer, TrlParser
from trl.data_utils import apply_chat_template, prepare_multimodal_messages
from trl.trainer.utils import pad

from ecac_bench import aggregate_scores, score_image, toy_reward
from ecac_bench.metrics import toy_from_mapping
from trainers.data import DataArguments, grpo_dataset, load_model_and_processor, load_train_records, train_and_save

# The TRL release whose GRPOTrainer internals this subclass is written against (tests/test_rsrs.py pins it).
TRL_VERSION = "1.16.0"
SEAMS = ("_prepare_inputs", "_generate_and_score_completions", "_calculate_rewards", "compute_loss")


def completion_text(completion: str | list[dict[str, Any]]) -> str:
    """The caption text of a TRL completion (plain string, or a conversational assistant turn)."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        content = message["content"]
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(block["text"] for block in content if block.get("type") == "text")
    return "".join(parts)


def ecac_reward(completions: list, toys: list[list[dict[str, Any]]], **_: Any) -> list[float]:
    """TRL reward function: R(C) of each completion against its image's toys, computed by ecac_bench.toy_reward.

    ``toys`` is the dataset column of that name, which TRL passes to reward functions as a keyword argument.
    """
    return [toy_reward(image_toys, completion_text(c)) for c, image_toys in zip(completions, toys, strict=True)]


@dataclass
class RSRSConfig(GRPOConfig):
    """GRPOConfig plus the RSRS switch; defaults follow the paper (G = 4, no KL, no reference model).

    The clipped ratio only acts when the policy that is optimised differs from the one that sampled. With TRL's
    ``num_iterations=1`` and ``steps_per_generation == gradient_accumulation_steps`` the old log-probs equal the
    new ones and the clip never bites, so the default here is ``num_iterations=2``: each generated batch is
    optimised twice and the second update is clipped against the first (PPO-style).
    """

    rsrs_switch: bool = field(
        default=True,
        metadata={"help": "Switch to an SFT step when the zero-reward buffer is full enough. False: plain GRPO."},
    )
    rsrs_sft_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Images per SFT step (all processes together); an SFT step is taken as soon as the zero-reward "
            "buffer holds this many. None: the number of images per GRPO step (generation_batch_size / G)."
        },
    )
    rsrs_buffer_size: int | None = field(
        default=None,
        metadata={
            "help": "Capacity of the zero-reward buffer; when full the oldest sample is evicted (logged as "
            "rsrs/buffer_evicted). None: unbounded (the buffer never holds more than sft batch + images per step)."
        },
    )
    num_generations: int | None = field(default=4, metadata={"help": "G, captions sampled per image (paper: 4)."})
    num_iterations: int = field(
        default=2, metadata={"help": "Updates per generated batch; > 1 makes the clipped ratio act."}
    )
    beta: float = field(default=0.0, metadata={"help": "KL coefficient; the paper uses no KL term (0)."})
    loss_type: str = field(
        default="grpo", metadata={"help": "GRPO's per-sequence mean of the clipped surrogate (DeepSeekMath)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rsrs_sft_batch_size is not None and self.rsrs_sft_batch_size < 1:
            raise ValueError(f"rsrs_sft_batch_size must be >= 1, got {self.rsrs_sft_batch_size}")
        if self.rsrs_buffer_size is not None and self.rsrs_buffer_size < (self.rsrs_sft_batch_size or 1):
            raise ValueError(
                f"rsrs_buffer_size ({self.rsrs_buffer_size}) must be >= rsrs_sft_batch_size "
                f"({self.rsrs_sft_batch_size}), or the buffer could never trigger an SFT step"
            )


class ZeroRewardBuffer:
    """FIFO of the ids of images whose G sampled captions all scored zero. Identical on every process."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.evicted = 0
        self.ids: deque[str] = deque()

    def __len__(self) -> int:
        return len(self.ids)

    def push(self, ids: list[str]) -> None:
        for image_id in ids:
            if self.capacity is not None and len(self.ids) == self.capacity:
                self.ids.popleft()
                self.evicted += 1
            self.ids.append(image_id)

    def pop(self, n: int) -> list[str]:
        if n > len(self.ids):
            raise ValueError(f"cannot pop {n} ids from a buffer of {len(self.ids)}")
        return [self.ids.popleft() for _ in range(n)]


class RSRSTrainer(GRPOTrainer):
    """GRPOTrainer that swaps a GRPO step for an SFT step on the zero-reward buffer (see the module docstring).

    Pass ``reward_funcs=ecac_reward`` and a dataset from ``trainers.data.grpo_dataset`` (columns prompt, image,
    caption, toys).
    """

    _tag_names: ClassVar[list[str]] = ["trl", "grpo", "rsrs", "ecac"]
    _name = "RSRS"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        args_: RSRSConfig = self.args
        images_per_step = args_.generation_batch_size // self.num_generations
        self.rsrs_sft_batch_size = args_.rsrs_sft_batch_size or images_per_step
        # Each process takes an equal share of an SFT batch, split over the cycle's steps_per_generation micro-steps.
        shards = self.accelerator.num_processes * args_.steps_per_generation
        if self.rsrs_sft_batch_size % shards:
            raise ValueError(
                f"rsrs_sft_batch_size ({self.rsrs_sft_batch_size}) must be a multiple of num_processes x "
                f"steps_per_generation ({shards})"
            )
        # The buffer and the deferred batches hold row ids, not rows (whose decoded images would pile up in memory
        # and checkpoints); rows are read back from the dataset when they are trained on.
        self._row_index = self._index_rows(self.train_dataset) if args_.rsrs_switch else {}
        self.zero_reward_buffer = ZeroRewardBuffer(args_.rsrs_buffer_size)
        self.deferred_batches: deque[list[str]] = deque()  # this process's row ids of each deferred batch
        self.rsrs_modes: list[str] = []  # one entry per RSRS step, "grpo" or "sft" (read by tests and callbacks)
        self._rollout_rewards: torch.Tensor | None = None
        self._rollout_texts: list[str] = []

    @staticmethod
    def _index_rows(dataset: Any) -> dict[str, int]:
        if not isinstance(dataset, Dataset) or "id" not in dataset.column_names:
            raise ValueError(
                "RSRS needs a map-style train_dataset with a unique 'id' column (trainers.data.grpo_dataset makes one)"
            )
        index = {image_id: i for i, image_id in enumerate(dataset["id"])}
        if len(index) != len(dataset):
            raise ValueError("the train_dataset 'id' column has duplicates; RSRS needs one row per id")
        return index

    def _rows(self, ids: list[str]) -> list[dict[str, Any]]:
        return [self.train_dataset[self._row_index[image_id]] for image_id in ids]

    # -- step mode -------------------------------------------------------------------------------------------

    def _sft_step_due(self) -> bool:
        """Whether this step is an SFT step; a collective, so every process takes the same branch."""
        size = torch.tensor([len(self.zero_reward_buffer)], device=self.accelerator.device)
        sizes = self.accelerator.gather(size)
        if bool((sizes != sizes[0]).any()):
            raise RuntimeError(f"RSRS buffers diverged across processes: sizes {sizes.tolist()}")
        return int(sizes[0]) >= self.rsrs_sft_batch_size

    def _prepare_inputs(self, generation_batch: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.model.training or not self.args.rsrs_switch:
            return super()._prepare_inputs(generation_batch)
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every == 0 or self._buffered_inputs is None:  # start of an RSRS step
            if self._sft_step_due():
                self.deferred_batches.append([row["id"] for row in generation_batch])
                sft_rows = self._rows(self.zero_reward_buffer.pop(self.rsrs_sft_batch_size))
                self._buffered_inputs = self._sft_micro_batches(sft_rows)
                self._log_step("sft")
                return self._buffered_inputs[self._step % self.args.steps_per_generation]
            if self.deferred_batches:  # GRPO on the oldest deferred prompts; the new batch waits its turn
                self.deferred_batches.append([row["id"] for row in generation_batch])
                generation_batch = self._rows(self.deferred_batches.popleft())
        return super()._prepare_inputs(generation_batch)

    def _log_step(self, mode: str) -> None:
        self.rsrs_modes.append(mode)
        metrics = self._metrics["train"]
        metrics["rsrs/sft_step"].append(float(mode == "sft"))
        metrics["rsrs/buffer_size"].append(float(len(self.zero_reward_buffer)))
        metrics["rsrs/buffer_evicted"].append(float(self.zero_reward_buffer.evicted))
        metrics["rsrs/deferred_batches"].append(float(len(self.deferred_batches)))

    # -- GRPO branch: watch the rewards ----------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._rollout_rewards = rewards_per_func  # gathered over processes, rows in process order
        self._rollout_texts = [completion_text(c) for c in completions]  # this process's rows
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self._after_rollouts(inputs)
        return output

    def _after_rollouts(self, inputs: list[dict[str, Any]]) -> None:
        """Push all-zero groups to the buffer and log the zero-group fraction and TTS of the rollouts."""
        g = self.num_generations
        rewards_per_func = self._rollout_rewards
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

        metrics = self._metrics["train"]
        metrics["rsrs/zero_reward_group_frac"].append(zero_group.float().mean().item())
        metrics["rsrs/reward_mean"].append(torch.nanmean(rewards[scorable]).item() if scorable.any() else 0.0)
        # TTS of the rollouts, each sampled caption scored on its own as an evaluation would score it.
        scores = [
            score_image([toy_from_mapping(t) for t in row["toys"]], text)
            for row, text in zip(inputs, self._rollout_texts, strict=True)
        ]
        tts = aggregate_scores(gather_object(scores))["tts"]
        if tts is not None:  # None when no rollout image has a toy
            metrics["rsrs/rollout_tts"].append(tts)
        self._log_step("grpo")

    # -- SFT branch ------------------------------------------------------------------------------------------

    def _sft_micro_batches(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """This process's share of an SFT batch, as steps_per_generation model-input dicts."""
        share = len(rows) // self.accelerator.num_processes
        mine = rows[self.accelerator.process_index * share : (self.accelerator.process_index + 1) * share]
        per_step = share // self.args.steps_per_generation
        return [self._sft_inputs(mine[i : i + per_step]) for i in range(0, share, per_step)]

    def _sft_inputs(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
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
        for key, value in prompt_inputs.items():
            if key in ("input_ids", "attention_mask"):
                continue
            if key in ("mm_token_type_ids", "token_type_ids"):  # per-token: the caption tokens are text (0)
                value = torch.cat([value, value.new_zeros(completion.shape)], dim=1)
            inputs[key] = value
        return inputs

    # -- checkpoints: the buffer and the deferred prompts are training state -----------------------------------

    def _rsrs_state_path(self, checkpoint_dir: str) -> str:
        return os.path.join(checkpoint_dir, f"rsrs_state_rank{self.accelerator.process_index}.pt")

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        checkpoint_dir = os.path.join(
            self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        )
        os.makedirs(checkpoint_dir, exist_ok=True)
        state = {
            "buffer": list(self.zero_reward_buffer.ids),
            "evicted": self.zero_reward_buffer.evicted,
            "deferred": list(self.deferred_batches),  # per process: each holds its own share of the batches
            "modes": self.rsrs_modes,
        }
        torch.save(state, self._rsrs_state_path(checkpoint_dir))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or not os.path.exists(self._rsrs_state_path(checkpoint)):
            return
        state = torch.load(self._rsrs_state_path(checkpoint))  # ids and counters only
        self.zero_reward_buffer = ZeroRewardBuffer(self.args.rsrs_buffer_size)
        self.zero_reward_buffer.push(state["buffer"])
        self.zero_reward_buffer.evicted = state["evicted"]
        self.deferred_batches = deque(state["deferred"])
        self.rsrs_modes = list(state["modes"])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not inputs.get("rsrs_sft"):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        model_inputs = {k: v for k, v in inputs.items() if k != "rsrs_sft"}
        with self.accelerator.autocast():
            loss = model(**model_inputs).loss  # mean token NLL over the labelled (caption) tokens
        self._metrics["train"]["rsrs/sft_loss"].append(self.accelerator.gather(loss.detach()).mean().item())
        # GRPOTrainer declares its loss already scaled for gradient accumulation; keep that contract.
        return loss / self.current_gradient_accumulation_steps


def main(argv: list[str] | None = None) -> None:
    """Stage 2 of the recipe: ``accelerate launch -m trainers.rsrs --config trainers/configs/rsrs.yaml ...``."""
    from trainers.rewards import RewardArguments, build_reward_funcs  # imports this module: import at call time

    parser = TrlParser((DataArguments, RSRSConfig, RewardArguments))
    data_args, config, reward_args = parser.parse_args_and_config(args=argv)
    model, processor = load_model_and_processor(data_args.model_name_or_path)
    trainer = RSRSTrainer(
        model=model,
        reward_funcs=build_reward_funcs(reward_args),
        args=config,
        train_dataset=grpo_dataset(load_train_records(data_args), data_args.language),
        processing_class=processor,
    )
    train_and_save(trainer, processor)


if __name__ == "__main__":
    main()
