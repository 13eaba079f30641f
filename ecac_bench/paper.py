"""Facts the ECAC paper states about its data and training sets, declared once (docs/fidelity.md, "Dataset").

Source: Li, Gu, Zhang, "Captioning Daily Activity Images in Early Childhood Education: Benchmark and Algorithm"
(numbers as transcribed in the project's notes on the paper). ``ecac-bench stats --paper`` prints them beside the
loaded data's; the trainer's hybrid stage takes its default size from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class PaperDatasetFacts:
    """The dataset as the paper describes it (the real data is not public)."""

    images: int
    images_per_category: MappingProxyType[str, int]
    areas: int
    sft_images: int  # warm-up SFT: "the ECAC training set, which comprises 247,579 annotated images"
    hybrid_images: int  # the RSRS hybrid stage: "12,000 images from ECAC"

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "images_per_category": dict(self.images_per_category),
            "areas": self.areas,
            "sft_images": self.sft_images,
            "hybrid_images": self.hybrid_images,
        }


PAPER_DATASET = PaperDatasetFacts(
    images=256_121,
    images_per_category=MappingProxyType({"outdoor": 56_665, "classroom": 195_397, "specialty": 4_059}),
    areas=35,
    sft_images=247_579,
    hybrid_images=12_000,
)
