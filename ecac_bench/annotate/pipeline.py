"""The annotation pipeline: per photo, a caption, the toys, and (when the input lacks them) category and area.

Each step is one conversation about the photo, asked through :class:`~ecac_bench.llm.LLMClient` (concurrent,
retried, cached: a killed run asks again only what was never answered). The caption prompt is the evaluation's own
``caption.<lang>.j2`` (the reconstruction of the paper's annotation prompt); the toys come from
``annotate_toys.<lang>.j2`` with :data:`~ecac_bench.annotate.answers.TOYS_SCHEMA`; category and area from
``annotate_scene.<lang>.j2``. Structured answers that do not parse get repair turns (``annotate_repair``); a photo
with any step still failed is left out of the output and listed, never written with made-up values.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ecac_bench.annotate.answers import (
    TOYS_SCHEMA,
    parse_caption,
    parse_scene,
    parse_toys,
    scene_schema,
)
from ecac_bench.annotate.inputs import Photo
from ecac_bench.data import CATEGORIES
from ecac_bench.llm import LLMClient, ParsedAnswer, complete_parsed, user_message
from ecac_bench.prompts import PromptTemplate, load_prompt

LANGS = ("zh", "en")
# How much of a failed answer the failure list keeps (enough to see what went wrong).
ANSWER_EXCERPT = 300


@dataclass(frozen=True)
class Prompts:
    """The templates of one language."""

    caption: PromptTemplate
    toys: PromptTemplate
    scene: PromptTemplate
    repair: PromptTemplate

    @classmethod
    def load(cls, lang: str) -> Prompts:
        return cls(
            *(load_prompt(task, lang) for task in ("caption", "annotate_toys", "annotate_scene", "annotate_repair"))
        )

    def identities(self) -> dict[str, dict[str, str]]:
        return {step: getattr(self, step).identity() for step in ("caption", "toys", "scene", "repair")}


@dataclass(frozen=True)
class Failure:
    """A photo left out: the step whose answer failed, why, and the end of the last answer (if any)."""

    id: str
    image: str
    step: str
    error: str
    answer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Annotation:
    """The records written (input order) and the photos left out."""

    records: list[dict[str, Any]]
    failures: list[Failure]
    asked: dict[str, int] = field(default_factory=dict)  # conversations per step

    @property
    def failed_ids(self) -> list[str]:
        return list(dict.fromkeys(f.id for f in self.failures))


def image_reference(image: Path, out_dir: Path) -> str:
    """How a record names its photo: relative to the output's folder when the photo is inside it (the two move
    together), else the absolute path."""
    relative = os.path.relpath(image, out_dir)
    outside = relative == os.pardir or relative.startswith(os.pardir + os.sep)
    return str(image) if outside else Path(relative).as_posix()


def _failure(photo: Photo, step: str, answer: ParsedAnswer) -> Failure:
    text = answer.answer
    excerpt = text if text is None or len(text) <= ANSWER_EXCERPT else text[:ANSWER_EXCERPT] + "…"
    return Failure(photo.id, str(photo.image), step, answer.error or "failed", excerpt)


async def annotate_photos(
    client: LLMClient, photos: Sequence[Photo], out_dir: Path, *, lang: str = "zh", parse_retries: int = 2
) -> Annotation:
    """Annotate every photo (see the module docstring); records name their photos relative to ``out_dir``."""
    prompts = Prompts.load(lang)
    repair_version = prompts.repair.tag

    def repair(problem: str) -> str:
        return prompts.repair.render(problem=problem)

    captions = await complete_parsed(
        client,
        ([user_message(prompts.caption.render(), [p.image])] for p in photos),
        parse_caption,
        repair,
        version=prompts.caption.tag,
        retries=0,  # free text: an empty caption at temperature 0 would come back empty
        desc=f"1/3 captions of {len(photos)} photos",
    )
    toys = await complete_parsed(
        client,
        ([user_message(prompts.toys.render(), [p.image])] for p in photos),
        parse_toys,
        repair,
        version=f"{prompts.toys.tag}+{repair_version}",
        retries=parse_retries,
        desc=f"2/3 toys of {len(photos)} photos",
        response_format=TOYS_SCHEMA,
    )
    # Category and area: asked only for photos that lack one, with a given category fixed in the schema's enum.
    scene: dict[int, ParsedAnswer] = {}
    for category in (None, *CATEGORIES):
        wanted = [i for i, p in enumerate(photos) if p.category == category and (p.category is None or p.area is None)]
        if not wanted:
            continue
        allowed = CATEGORIES if category is None else (category,)
        answers = await complete_parsed(
            client,
            (
                [
                    user_message(
                        prompts.scene.render(category=photos[i].category, area=photos[i].area), [photos[i].image]
                    )
                ]
                for i in wanted
            ),
            lambda text, allowed=allowed: parse_scene(text, allowed),
            repair,
            version=f"{prompts.scene.tag}+{repair_version}",
            retries=parse_retries,
            desc=f"3/3 category and area of {len(wanted)} photos",
            response_format=scene_schema(allowed),
        )
        scene.update(zip(wanted, answers, strict=True))

    out_dir = out_dir.resolve()
    records, failures = [], []
    for i, photo in enumerate(photos):
        answers = {"caption": captions[i], "toys": toys[i], "scene": scene.get(i)}
        failed = [_failure(photo, step, a) for step, a in answers.items() if a is not None and not a.ok]
        if failed:
            failures.extend(failed)
            continue
        where = scene[i].value if i in scene else {}
        record: dict[str, Any] = {
            "id": photo.id,
            "image": image_reference(photo.image, out_dir),
            "category": photo.category or where["category"],
            "area": photo.area or where["area"],
            "caption": captions[i].value,
        }
        if photo.group is not None:
            record["group"] = photo.group
        record["toys"] = toys[i].value
        records.append(record)
    return Annotation(records, failures, {"caption": len(photos), "toys": len(photos), "scene": len(scene)})
