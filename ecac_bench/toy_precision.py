"""Toy precision and average toy count (Table VI of the paper): how many of the toys a caption names are really
in the image.

Two extractors turn captions into the toy names they mention:

* ``llm``: a model reads each caption (``prompts/toy_extract.<lang>.j2``) and answers ``{"toys": [...]}``
  (:data:`TOYS_SCHEMA`); :func:`parse_name_list` accepts that answer alone; a broken answer is repaired, then
  recorded as a failure.
* ``lexicon`` (:class:`LexiconExtractor`): no model. The dataset's toy vocabulary (names + aliases) becomes a jieba
  user dictionary; a CJK name is extracted when jieba cuts it out of the caption as one token, a Latin name when
  the core matcher finds it on word boundaries. It can only find names the dataset knows.

:func:`toy_precision` is the pure metric, the paper's Eq. 7 (see docs/judges.md): |T_caption ∩ T_groundtruth| /
|T_caption| with set semantics. An extracted name is correct when, after the normalisation of docs/metrics.md, it
*equals* an annotated name or alias of the image (``precision_match="equal"``, the default). The lenient variant
``"contains"`` (an extension, never the paper's number) counts a name as correct when the core
:class:`~ecac_bench.matching.ToyMatcher` finds an annotated name inside it ("积木区" for 积木).

Per-image statistics (``ecac_bench.imagestats``), over the images whose names were extracted (or failed to be):
``ok`` (1 when extraction succeeded), ``extracted`` and ``correct`` (distinct names, correct ones), ``precision``
(correct / extracted, 0 without names), ``with_names`` (1 when at least one name) and ``failed``. Then
``toy_precision`` = 100 x sum(correct) / sum(extracted) (micro, pooled), ``toy_precision_macro`` = 100 x
sum(precision) / sum(with_names), ``avg_toy_count`` = sum(extracted) / sum(ok); the counts are the sums.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jieba

from ecac_bench.data import EcacDataset
from ecac_bench.imagestats import Estimator, ImageStats, Sums, point_estimate, ratio
from ecac_bench.llm import LLMClient, complete_parsed, list_answer, object_schema, user_message
from ecac_bench.matching import MatchConfig, ToyMatcher, needs_word_boundary, normalize_text
from ecac_bench.prompts import load_prompt

EXTRACTORS = ("llm", "lexicon")
PrecisionMatch = Literal["equal", "contains"]
PRECISION_MATCHES: tuple[str, ...] = ("equal", "contains")

# The extractor's answer as a JSON schema (a list wrapped in an object: OpenAI's strict mode wants an object root),
# sent as response_format where the server supports it; parse_name_list accepts exactly its values, or the bare list.
TOYS_SCHEMA = object_schema("toy_names", {"toys": {"type": "array", "items": {"type": "string"}}})


def parse_name_list(text: str | None, key: str = "toys") -> tuple[list[str] | None, str | None]:
    """Names from an extractor answer, which must be exactly ``{"toys": [...]}`` or the list alone, every item a
    string (a reasoning block before it and one code fence around it are allowed, nothing else; see
    :func:`~ecac_bench.llm.list_answer`). ``[]`` is a valid empty answer; blank names are dropped. ``key`` names
    the object's one key (``balanced`` reads its assertion lists with this parser)."""
    items, error = list_answer(text, key)
    if error is not None:
        return None, error
    if not all(isinstance(item, str) for item in items):
        return None, "every item must be a string"
    return [name for item in items if (name := item.strip())], None


class LexiconExtractor:
    """Offline extractor over a fixed vocabulary (see the module docstring)."""

    def __init__(self, vocabulary: Iterable[str], match: MatchConfig | None = None) -> None:
        self.matcher = ToyMatcher(match or MatchConfig())
        names = sorted({normalize_text(n) for n in vocabulary} - {""})
        # Latin names, and any name with a space (jieba splits on spaces), go through the core matcher.
        self._by_matcher = [n for n in names if needs_word_boundary(n) or " " in n]
        self._by_token = set(names) - set(self._by_matcher)
        logging.getLogger("jieba").setLevel(logging.WARNING)  # it logs its dictionary loading at INFO
        self._tokenizer = jieba.Tokenizer()
        for name in sorted(self._by_token):
            # No frequency: jieba then suggests one high enough to keep the name as one token.
            self._tokenizer.add_word(name)

    @classmethod
    def for_dataset(cls, dataset: EcacDataset, match: MatchConfig | None = None) -> LexiconExtractor:
        return cls(dataset.toy_vocabulary(), match)

    def extract(self, caption: str) -> list[str]:
        """Vocabulary names found in one caption, in normalised form, tokens in caption order first."""
        text = normalize_text(caption)
        found = [t for t in dict.fromkeys(self._tokenizer.cut(text, HMM=False)) if t in self._by_token]
        latin = [n for n in self._by_matcher if self.matcher.mention_in_normalized(n, text)]
        # Longest match wins, as in jieba: "toy car" in the caption yields "toy car", not also "car".
        found += [n for n in latin if not any(m != n and self.matcher.mention_in_normalized(n, m) for m in latin)]
        return found


def extract_with_lexicon(extractor: LexiconExtractor, predictions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    return {image_id: [n for c in captions for n in extractor.extract(c)] for image_id, captions in predictions.items()}


async def extract_with_llm(
    client: LLMClient, predictions: Mapping[str, Sequence[str]], lang: str = "zh", parse_retries: int = 1
) -> tuple[dict[str, list[str] | None], dict[str, str]]:
    """Names per image (the union over its captions) and, for images whose extraction failed, why (value None)."""
    prompt, repair = load_prompt("toy_extract", lang), load_prompt("toy_extract_repair", lang)
    pairs = [(image_id, caption) for image_id, captions in predictions.items() for caption in captions]
    answers = await complete_parsed(
        client,
        ([user_message(prompt.render(caption=caption))] for _, caption in pairs),
        parse_name_list,
        lambda problem: repair.render(problem=problem),
        version=f"{prompt.tag}+{repair.tag}",
        retries=parse_retries,
        desc="toy extraction",
        response_format=TOYS_SCHEMA,
    )
    names: dict[str, list[str] | None] = {image_id: [] for image_id in predictions}
    errors: dict[str, str] = {}
    for (image_id, _), answer in zip(pairs, answers, strict=True):
        if not answer.ok:
            names[image_id] = None
            errors[image_id] = answer.error or "failed"
        elif names[image_id] is not None:
            names[image_id].extend(answer.value)
    return names, errors


@dataclass(frozen=True)
class ImagePrecision:
    id: str
    extracted: tuple[str, ...]
    correct: tuple[bool, ...]

    @property
    def precision(self) -> float | None:
        return 100.0 * sum(self.correct) / len(self.correct) if self.correct else None


def _aggregate(sums: Sums) -> dict[str, Any]:
    return {
        "toy_precision": ratio(sums["correct"], sums["extracted"], 100.0),
        "toy_precision_macro": ratio(sums["precision"], sums["with_names"], 100.0),
        "avg_toy_count": ratio(sums["extracted"], sums["ok"]),
        "n_images": sums["ok"],
        "n_images_with_names": sums["with_names"],
        "n_extracted": sums["extracted"],
        "n_correct": sums["correct"],
        "n_failed": sums["failed"],
    }


TOY_PRECISION = Estimator(
    "toy-precision", ("ok", "extracted", "correct", "precision", "with_names", "failed"), _aggregate
)


@dataclass(frozen=True)
class ToyPrecisionResult:
    """``toy_precision`` (micro, the leaderboard number), ``toy_precision_macro`` and ``avg_toy_count``;
    precisions in 0-100, None when nothing was extracted. ``images`` holds the successful extractions."""

    toy_precision: float | None
    toy_precision_macro: float | None
    avg_toy_count: float | None
    n_images: int
    n_images_with_names: int
    n_extracted: int
    n_correct: int
    n_failed: int
    images: tuple[ImagePrecision, ...]
    stats: ImageStats = field(repr=False)

    def metrics(self) -> dict[str, Any]:
        return point_estimate(self.stats, TOY_PRECISION)


def toy_precision_statistics(images: Sequence[ImagePrecision | str]) -> ImageStats:
    """Per-image statistics; an image given by its id alone is one whose extraction failed."""
    rows = []
    for image in images:
        if isinstance(image, str):
            rows.append((image, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0))
            continue
        n, correct = len(image.correct), sum(image.correct)
        rows.append((image.id, 1.0, n, correct, correct / n if n else 0.0, float(n > 0), 0.0))
    columns = {name: [row[j + 1] for row in rows] for j, name in enumerate(TOY_PRECISION.columns)}
    return ImageStats.from_columns("toy-precision", [row[0] for row in rows], columns)


def _dedupe(names: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(normalize_text(name), name.strip())
    return tuple(v for k, v in seen.items() if k)


def describe_precision_match(precision_match: PrecisionMatch) -> str:
    """How a report states the rule that made an extracted name correct."""
    if precision_match == "equal":
        return "equal (Eq. 7: the normalised name equals an annotated name or alias)"
    return "contains (lenient: an annotated name occurs inside the extracted name; not the paper's Eq. 7)"


def toy_precision(
    dataset: EcacDataset,
    extracted: Mapping[str, Sequence[str] | None],
    match: MatchConfig | None = None,
    precision_match: PrecisionMatch = "equal",
) -> ToyPrecisionResult:
    """The metric over the images in ``extracted`` (a value of None = extraction failed: counted in ``n_failed``,
    left out of everything else). Names are deduplicated per image after normalisation. ``match`` only matters for
    ``precision_match="contains"``, where it is the rule that finds an annotated name inside an extracted one."""
    if precision_match not in PRECISION_MATCHES:
        raise ValueError(f"unknown precision match {precision_match!r}; expected one of {', '.join(PRECISION_MATCHES)}")
    matcher = ToyMatcher(match or MatchConfig())
    unknown = [i for i in extracted if i not in dataset.by_id]
    if unknown:
        raise KeyError(f"{len(unknown)} id(s) not in dataset {dataset.path}: {', '.join(unknown[:5])}")
    per_image: list[ImagePrecision | str] = []
    for image_id, names in extracted.items():
        if names is None:
            per_image.append(image_id)
            continue
        record = dataset.by_id[image_id]
        unique = _dedupe(names)
        if precision_match == "equal":
            annotated = frozenset().union(*(toy.name_set for toy in record.toys))
            correct = tuple(normalize_text(name) in annotated for name in unique)
        else:
            correct = tuple(any(matcher.names(toy, [name]) for toy in record.toys) for name in unique)
        per_image.append(ImagePrecision(image_id, unique, correct))
    stats = toy_precision_statistics(per_image)
    images = tuple(im for im in per_image if not isinstance(im, str))
    return ToyPrecisionResult(**point_estimate(stats, TOY_PRECISION), images=images, stats=stats)  # type: ignore[arg-type]
