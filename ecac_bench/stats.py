"""Dataset make-up (the paper's Table I and Fig. 2): images per category and area, toys per level and ground."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from ecac_bench.data import CATEGORIES, GROUNDS, LEVELS, EcacDataset


@dataclass
class DatasetStats:
    images: int
    images_per_category: dict[str, int]
    images_per_area: dict[str, dict[str, Any]]
    images_per_split: dict[str, int]
    toys: int
    toys_per_level_ground: dict[str, dict[str, int]]
    toys_per_image: dict[int, int]
    distinct_toy_names: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "images_per_category": self.images_per_category,
            "images_per_area": self.images_per_area,
            "images_per_split": self.images_per_split,
            "toys": self.toys,
            "toys_per_level_ground": self.toys_per_level_ground,
            "toys_per_image": {str(k): v for k, v in self.toys_per_image.items()},
            "distinct_toy_names": self.distinct_toy_names,
        }


def dataset_stats(dataset: EcacDataset) -> DatasetStats:
    per_category = Counter(r.category for r in dataset)
    area_category: dict[str, Counter[str]] = {}
    for record in dataset:
        area_category.setdefault(record.area, Counter())[record.category] += 1
    level_ground = Counter((t.level, t.ground) for r in dataset for t in r.toys)
    return DatasetStats(
        images=len(dataset),
        images_per_category={c: per_category.get(c, 0) for c in CATEGORIES},
        images_per_area={
            area: {"images": sum(c.values()), "category": c.most_common(1)[0][0]}
            for area, c in sorted(area_category.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        },
        images_per_split=dict(sorted(Counter(str(r.split) for r in dataset).items())),
        toys=sum(level_ground.values()),
        toys_per_level_ground={lv: {g: level_ground.get((lv, g), 0) for g in GROUNDS} for lv in LEVELS},
        toys_per_image=dict(sorted(Counter(len(r.toys) for r in dataset).items())),
        distinct_toy_names=len({t.name for r in dataset for t in r.toys}),
    )
