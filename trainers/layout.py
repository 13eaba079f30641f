"""How big one RSRS step is on N training processes: one rule, written once, used by RSRSConfig.

The paper: 4 training GPUs, "4 candidate responses per step ... an effective global batch size of 4", i.e. one
image and its G = 4 captions per step, one caption per GPU; an SFT step as soon as the buffer holds "the training
batch size" of images, i.e. 4 reference captions, one per GPU.

The rule, for N processes and G captions per image (``min_images`` images asked for, default 1):

    rollouts per step   R = lcm(min_images x G, N)     (every process gets the same whole number of rollouts)
    images per step     R / G
    rows per process    R / N                          (one micro-step, one optimizer update)
    SFT batch           R images                       (= the training batch: as many sequences as a GRPO step,
                                                        so an SFT micro-batch has the same rows per process)

which gives the paper's setting on 4 processes and degrades as follows (G = 4, min_images = 1):

    N   rollouts  images  rows/process  SFT batch
    1       4       1         4            4
    2       4       1         2            4
    4       4       1         1            4       <- the paper
    8       8       2         1            8
    16     16       4         1           16

With more processes than rollouts of one image, each step takes as many images as it needs to give every process
a rollout (a process with nothing to do would still pay a full synchronised step).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class StepLayout:
    """One RSRS step on ``num_processes`` processes (see the module docstring for the rule)."""

    num_processes: int
    num_generations: int
    images_per_step: int
    per_device_batch: int
    sft_batch_size: int

    @property
    def rollouts_per_step(self) -> int:
        return self.images_per_step * self.num_generations

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rollouts_per_step": self.rollouts_per_step}


def step_layout(num_processes: int, num_generations: int = 4, min_images: int = 1) -> StepLayout:
    """The step layout of the rule for ``num_processes`` processes and G = ``num_generations``."""
    for name, value in (("num_processes", num_processes), ("num_generations", num_generations)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if min_images < 1:
        raise ValueError(f"rsrs_images_per_step must be >= 1, got {min_images}")
    rollouts = math.lcm(min_images * num_generations, num_processes)
    return StepLayout(
        num_processes=num_processes,
        num_generations=num_generations,
        images_per_step=rollouts // num_generations,
        per_device_batch=rollouts // num_processes,
        sft_batch_size=rollouts,
    )
