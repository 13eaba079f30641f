"""The evaluation protocol's fixed settings, declared once and read by every route.

TTS depends on what the model sees and how it decodes, so every route that produces captions (``vllm serve`` in the
baseline scripts, lmms-eval's ``qwen2_5_vl`` / ``vllm`` / ``openai`` backends, the trainer's rollouts and SFT data,
the judge client's image preparation) uses the same pixel budget and the same decoding parameters, and every report
records them. The paper states neither (docs/fidelity.md): these are ecac-bench's choices.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# Qwen2-VL/2.5-VL vision tokens: one token per 28 x 28 pixel patch (14 px patches merged 2 x 2).
PIXELS_PER_VISION_TOKEN = 28 * 28


@dataclass(frozen=True)
class PixelBudget:
    """Images are resized (aspect ratio kept) so that ``min_pixels <= width x height <= max_pixels``."""

    min_pixels: int
    max_pixels: int

    def __post_init__(self) -> None:
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")

    @property
    def max_vision_tokens(self) -> int:
        return math.ceil(self.max_pixels / PIXELS_PER_VISION_TOKEN)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def mm_processor_kwargs(self) -> str:
        """The ``vllm serve --mm-processor-kwargs`` value."""
        return f'{{"min_pixels": {self.min_pixels}, "max_pixels": {self.max_pixels}}}'


# 256 to 2048 vision tokens per image: lmms-eval's qwen2_5_vl defaults (0.2-1.6 MP), so its most used route is
# unchanged, and a 12 MP phone photo no longer costs 16,000 tokens (over vLLM's context: HTTP 400 on every request).
PIXEL_BUDGET = PixelBudget(min_pixels=256 * PIXELS_PER_VISION_TOKEN, max_pixels=2048 * PIXELS_PER_VISION_TOKEN)


@dataclass(frozen=True)
class Decoding:
    """How captions are decoded on every route: greedy, at most ``max_new_tokens``, and the checkpoint's own
    repetition penalty (``repetition_penalty=None``).

    Why the checkpoint's penalty and not "none": lmms-eval's ``qwen2_5_vl`` backend calls ``model.generate`` without
    one, so transformers applies the checkpoint's ``generation_config.json`` (Qwen2.5-VL-Instruct: 1.05) and no
    model argument can change that; vLLM applies the same file by default (``--generation-config auto``), so the
    checkpoint's value is the one choice every route can make. A number here overrides it on the routes that
    accept one (vLLM requests, the trainer, transformers ``generate``).
    """

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["repetition_penalty"] = "checkpoint" if self.repetition_penalty is None else self.repetition_penalty
        return out

    def transformers_kwargs(self) -> dict[str, Any]:
        """``model.generate`` / lmms-eval ``generation_kwargs`` form (greedy is ``do_sample=False``)."""
        out: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": False, "num_beams": 1}
        if self.repetition_penalty is not None:
            out["repetition_penalty"] = self.repetition_penalty
        return out

    def openai_kwargs(self) -> dict[str, Any]:
        """Chat-completions request fields (vLLM accepts ``repetition_penalty`` as an extra sampling parameter)."""
        out: dict[str, Any] = {"max_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p}
        if self.repetition_penalty is not None:
            out["repetition_penalty"] = self.repetition_penalty
        return out


DECODING = Decoding()

# Text tokens around the image: chat template, system prompt and the captioning instruction (~150 for the zh
# prompt), with room to spare.
PROMPT_TEXT_TOKENS = 512


def max_model_len(budget: PixelBudget = PIXEL_BUDGET, decoding: Decoding = DECODING, images: int = 1) -> int:
    """The context length a server needs for one request at this budget: image tokens + prompt + caption, rounded up
    to a multiple of 1024."""
    need = images * budget.max_vision_tokens + PROMPT_TEXT_TOKENS + decoding.max_new_tokens
    return 1024 * math.ceil(need / 1024)


def protocol_fields(budget: PixelBudget = PIXEL_BUDGET, decoding: Decoding = DECODING) -> dict[str, Any]:
    """What a report records about how its captions were made."""
    return {"pixel_budget": budget.to_dict(), "decoding": decoding.to_dict()}
