"""Shared pieces of the RSRS tests: a tiny dataset whose rewards are scripted through TRL's ``rollout_func``.

The rollouts are scripted, not sampled, so which images score zero is known in advance; everything else (reward by
``ecac_bench.toy_reward``, advantages, the clipped loss, the optimizer) is the trainer's real code path. Each prompt
carries its record id as a ``[id]`` tag so the rollout knows whose captions it writes.
"""

from __future__ import annotations

import re
from typing import Any

import datasets
import torch

from ecac_bench import load_dataset
from ecac_bench.protocol import PixelBudget
from ecac_bench.testing.tiny_qwen import TINY_PIXELS
from trainers.data import grpo_dataset, load_model_and_processor

_TAG = re.compile(r"^\[([^\]]+)\] ")
NEUTRAL_CAPTION = "孩子们在认真地活动。"  # names none of the sample toys
TINY_BUDGET = PixelBudget(**TINY_PIXELS)  # 4..16 image tokens: the protocol's budget would make CPU tests slow


def tiny_model_and_processor(path: Any):
    return load_model_and_processor(str(path), TINY_BUDGET)


def train_records(n: int) -> list:
    return load_dataset(split="train").records[:n]


def tagged_dataset(records: list) -> datasets.Dataset:
    """grpo_dataset rows whose prompt starts with ``[id] `` (read back by ScriptedRollout)."""
    ds = grpo_dataset(records)

    def tag(row: dict[str, Any]) -> dict[str, Any]:
        return {"prompt": [{"role": "user", "content": f"[{row['id']}] {row['prompt'][0]['content']}"}]}

    return ds.map(tag)


def _prompt_id(prompt: list[dict[str, Any]]) -> str:
    for message in prompt:
        content = message["content"]
        texts = [content] if isinstance(content, str) else [b["text"] for b in content if b.get("type") == "text"]
        for text in texts:
            if match := _TAG.match(text):
                return match.group(1)
    raise AssertionError(f"no [id] tag in prompt {prompt!r}")


class ScriptedRollout:
    """TRL rollout_func: for images in ``zero_ids`` (and images without toys) every caption names no toy; for the
    others only the caption at group position ``named_slot`` names the image's first toy (so the group's rewards
    differ and GRPO learns)."""

    def __init__(self, records: list, zero_ids: set[str], named_slot: int = 0) -> None:
        self.toys = {r.id: r.toys for r in records}
        self.zero_ids = zero_ids
        self.named_slot = named_slot
        self.seen: list[str] = []  # record id of every rollout group this process generated, in order

    def __call__(self, prompts: list, trainer: Any) -> dict[str, Any]:
        processor = trainer.processing_class
        g = trainer.num_generations
        offset = trainer.accelerator.process_index * len(prompts)
        tokenized = processor.apply_chat_template(prompts, add_generation_prompt=True, tokenize=True, return_dict=True)
        completion_ids = []
        for i, prompt in enumerate(prompts):
            image_id = _prompt_id(prompt)
            slot = (offset + i) % g
            if slot == 0 or i == 0:
                self.seen.append(image_id)
            text = NEUTRAL_CAPTION
            if image_id not in self.zero_ids and slot == self.named_slot and self.toys[image_id]:
                text = f"孩子们在玩{self.toys[image_id][0].name}。"
            completion_ids.append(processor.tokenizer(text + "<|im_end|>", add_special_tokens=False)["input_ids"])
        return {"prompt_ids": list(tokenized["input_ids"]), "completion_ids": completion_ids, "logprobs": None}


def flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])
