"""The zero-reward buffer of RSRS (Algorithm 1): images whose G sampled captions all scored zero.

"Sample (I,p,g) ~ Buffer; Buffer Pop (I,p,g)": an SFT batch is a seeded random draw from the buffer (default) or
its oldest entries (``fifo``). Every process holds the same buffer (it is filled from rewards gathered over all
processes) and the same generator state, so every process draws the same batch; the state (ids, eviction count,
generator) goes into checkpoints, so a resumed run draws what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

SAMPLING = ("random", "fifo")


class ZeroRewardBuffer:
    """Ids of zero-reward images, oldest first; ``capacity`` evicts the oldest when full."""

    def __init__(self, capacity: int | None = None, sampling: str = "random", seed: int = 0) -> None:
        if sampling not in SAMPLING:
            raise ValueError(f"buffer sampling must be one of {SAMPLING}, got {sampling!r}")
        self.capacity = capacity
        self.sampling = sampling
        self.evicted = 0
        self.ids: deque[str] = deque()
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def push(self, ids: list[str]) -> None:
        for image_id in ids:
            if self.capacity is not None and len(self.ids) == self.capacity:
                self.ids.popleft()
                self.evicted += 1
            self.ids.append(image_id)

    def pop(self, n: int) -> list[str]:
        """Remove and return ``n`` ids: a uniform draw without replacement (``random``), or the oldest ``n``."""
        if n > len(self.ids):
            raise ValueError(f"cannot pop {n} ids from a buffer of {len(self.ids)}")
        if self.sampling == "fifo":
            return [self.ids.popleft() for _ in range(n)]
        picked = self._rng.sample(range(len(self.ids)), n)
        drawn = [self.ids[i] for i in picked]
        chosen = set(picked)
        self.ids = deque(image_id for i, image_id in enumerate(self.ids) if i not in chosen)
        return drawn

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self._rng.getstate()
        return {
            "ids": list(self.ids),
            "evicted": self.evicted,
            "sampling": self.sampling,
            "rng": [version, list(internal), gauss],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ids = deque(state["ids"])
        self.evicted = int(state["evicted"])
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
