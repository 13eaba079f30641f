"""Balanced caption score (BalCapRL): precision with pointability, recall, linguistic quality, b-CapScore.

Per image (docs/sibling_metrics.md has the full text):

* the caption and the reference caption are decomposed into atomic assertions by an LLM;
* **precision** = share of the caption's assertions that a VLM, looking at the image, verifies as true AND judges
  *pointable* (about something one could point at in the image: an object, a person, an action, a place; not a
  mood of the photographer, an inference about intentions or a generic remark). A caption with no assertion has
  precision 0: it says nothing that can be checked;
* **recall** = share of the reference's assertions that the LLM finds mentioned in, or reasonably inferable from,
  the caption's atomic assertions (BalCapRL compares assertions with assertions, not with the raw caption); a
  caption with no assertion covers nothing;
* **linguistic** = mean of clarity, fluency and coherence, each scored 1-5 by the LLM and mapped to [0, 1] by
  (s - 1) / 4;
* **b-CapScore** = the harmonic mean of the three (0 when any is 0).

Reported values are 100 x the mean over images. An image whose calls failed (transport, or unreadable answers after
the repair turns), or whose reference has no assertion, is excluded and counted in ``n_failed``. In the terms of
``ecac_bench.imagestats``, an image's statistics are ``ok`` (1 when scored), its four components (0 when not) and
``failed``; each reported value is 100 x sum(component) / sum(ok).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecac_bench.data import EcacDataset
from ecac_bench.imagestats import Estimator, ImageStats, Sums, point_estimate, ratio
from ecac_bench.llm import LLMClient, complete_parsed, json_answer, list_answer, object_schema, user_message
from ecac_bench.prompts import load_prompt
from ecac_bench.toy_precision import parse_name_list

LINGUISTIC_ASPECTS = ("clarity", "fluency", "coherence")
# Every prompt the balanced score asks with (the report's judge identity names them all).
BALANCED_PROMPTS = (
    "balanced_decompose",
    "balanced_verify",
    "balanced_recall",
    "balanced_linguistic",
    "balanced_repair",
)


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean of non-negative values; 0 when any value is 0."""
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


@dataclass(frozen=True)
class BalancedImage:
    """Per-image components in [0, 1]; ``error`` set (and components None) when the image could not be scored."""

    id: str
    precision: float | None
    recall: float | None
    linguistic: float | None
    n_assertions: int = 0
    n_reference_assertions: int = 0
    error: str | None = None

    @property
    def b_capscore(self) -> float | None:
        if self.error is not None or None in (self.precision, self.recall, self.linguistic):
            return None
        return harmonic_mean([self.precision, self.recall, self.linguistic])  # type: ignore[list-item]


def score_components(
    image_id: str,
    verdicts: Sequence[tuple[bool, bool]],
    covered: Sequence[bool],
    linguistic_scores: Mapping[str, float],
) -> BalancedImage:
    """Pure per-image scoring. ``verdicts``: (verified, pointable) per caption assertion; ``covered``: per reference
    assertion; ``linguistic_scores``: 1-5 per aspect."""
    if not covered:
        return BalancedImage(image_id, None, None, None, len(verdicts), 0, "reference has no assertion")
    precision = sum(v and p for v, p in verdicts) / len(verdicts) if verdicts else 0.0
    recall = sum(covered) / len(covered)
    linguistic = sum((linguistic_scores[a] - 1.0) / 4.0 for a in LINGUISTIC_ASPECTS) / len(LINGUISTIC_ASPECTS)
    return BalancedImage(image_id, precision, recall, linguistic, len(verdicts), len(covered))


COMPONENTS = {"balanced_precision": "precision", "balanced_recall": "recall", "linguistic": "linguistic"}


def _aggregate(sums: Sums) -> dict[str, Any]:
    out = {key: ratio(sums[column], sums["ok"], 100.0) for key, column in COMPONENTS.items()}
    return {
        **out,
        "b_capscore": ratio(sums["b_capscore"], sums["ok"], 100.0),
        "n": sums["ok"],
        "n_failed": sums["failed"],
    }


BALANCED = Estimator("balanced", ("ok", "precision", "recall", "linguistic", "b_capscore", "failed"), _aggregate)


@dataclass(frozen=True)
class BalancedResult:
    precision: float | None
    recall: float | None
    linguistic: float | None
    b_capscore: float | None
    n: int
    n_failed: int
    per_image: tuple[BalancedImage, ...]
    stats: ImageStats = field(repr=False)

    def metrics(self) -> dict[str, Any]:
        return point_estimate(self.stats, BALANCED)


def aggregate_balanced(images: Sequence[BalancedImage]) -> BalancedResult:
    """100 x the mean of each component over the images that could be scored."""
    columns: dict[str, list[float]] = {name: [] for name in BALANCED.columns}
    for image in images:
        ok = image.error is None
        values = (float(ok), image.precision, image.recall, image.linguistic, image.b_capscore, float(not ok))
        for name, value in zip(BALANCED.columns, values, strict=True):
            columns[name].append(value if ok or name in ("ok", "failed") else 0.0)
    stats = ImageStats.from_columns("balanced", [i.id for i in images], columns)
    m = point_estimate(stats, BALANCED)
    return BalancedResult(
        m["balanced_precision"], m["balanced_recall"], m["linguistic"], m["b_capscore"], m["n"], m["n_failed"],
        tuple(images), stats,
    )  # fmt: skip


# -- answer parsers ---------------------------------------------------------------------------------------------

# The answers as JSON schemas, sent as response_format where the server supports it (lists wrapped in an object:
# OpenAI's strict mode wants an object root). Each parser below accepts exactly its schema's values (or, for a list,
# the bare list): JSON booleans, whole numbers, no other key, nothing around the JSON.
ASSERTIONS_SCHEMA = object_schema("atomic_assertions", {"assertions": {"type": "array", "items": {"type": "string"}}})
_VERDICT = {
    "type": "object",
    "properties": {"verified": {"type": "boolean"}, "pointable": {"type": "boolean"}},
    "required": ["verified", "pointable"],
    "additionalProperties": False,
}
VERDICTS_SCHEMA = object_schema("assertion_verdicts", {"verdicts": {"type": "array", "items": _VERDICT}})
COVERAGE_SCHEMA = object_schema("reference_coverage", {"covered": {"type": "array", "items": {"type": "boolean"}}})
LINGUISTIC_SCHEMA = object_schema(
    "linguistic_quality", {a: {"type": "integer", "minimum": 1, "maximum": 5} for a in LINGUISTIC_ASPECTS}
)


def parse_assertions(text: str) -> tuple[list[str] | None, str | None]:
    """``{"assertions": [strings]}`` or the list alone; ``[]`` is valid, blank assertions are dropped."""
    return parse_name_list(text, "assertions")


def parse_verdicts(text: str, n: int) -> tuple[list[tuple[bool, bool]] | None, str | None]:
    """``{"verdicts": [...]}`` or the list alone: ``n`` objects with exactly the JSON booleans ``verified`` and
    ``pointable``, in assertion order."""
    items, error = list_answer(text, "verdicts")
    if error is not None:
        return None, error
    if len(items) != n:
        return None, f"expected {n} verdicts, got {len(items)}"
    verdicts = []
    for item in items:
        if not isinstance(item, dict) or sorted(item) != ["pointable", "verified"]:
            return None, "each verdict must be an object with exactly 'verified' and 'pointable'"
        verified, pointable = item["verified"], item["pointable"]
        if not isinstance(verified, bool) or not isinstance(pointable, bool):
            return None, "'verified' and 'pointable' must be true or false"
        verdicts.append((verified, pointable))
    return verdicts, None


def parse_coverage(text: str, n: int) -> tuple[list[bool] | None, str | None]:
    """``{"covered": [...]}`` or the list alone: ``n`` JSON booleans, one per reference assertion."""
    items, error = list_answer(text, "covered")
    if error is not None:
        return None, error
    if len(items) != n or not all(isinstance(x, bool) for x in items):
        return None, f"expected a list of {n} true/false values"
    return items, None


def parse_linguistic(text: str) -> tuple[dict[str, float] | None, str | None]:
    """Exactly ``{"clarity": k, "fluency": k, "coherence": k}``, each k a whole number 1-5 written as a JSON integer
    (not ``"4"``, ``4.5`` or ``true``)."""
    data, error = json_answer(text)
    if error is not None:
        return None, error
    if not isinstance(data, dict) or sorted(data) != sorted(LINGUISTIC_ASPECTS):
        return None, "not a JSON object with exactly 'clarity', 'fluency' and 'coherence'"
    out = {}
    for aspect in LINGUISTIC_ASPECTS:
        value = data[aspect]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            return None, f"'{aspect}' must be a whole number 1-5"
        out[aspect] = float(value)
    return out, None


# -- the I/O ----------------------------------------------------------------------------------------------------


def _numbered(items: Sequence[str]) -> str:
    return "\n".join(f"{i + 1}. {text}" for i, text in enumerate(items))


# The answer schema of each task.
_SCHEMAS = {
    "balanced_decompose": ASSERTIONS_SCHEMA,
    "balanced_verify": VERDICTS_SCHEMA,
    "balanced_recall": COVERAGE_SCHEMA,
    "balanced_linguistic": LINGUISTIC_SCHEMA,
}


async def _ask(
    client: LLMClient, task: str, lang: str, conversations: Iterable[list[dict[str, Any]]], parse: Any, retries: int
) -> list[Any]:
    prompt, repair = load_prompt(task, lang), load_prompt("balanced_repair", lang)
    return await complete_parsed(
        client,
        conversations,
        parse,
        lambda problem: repair.render(problem=problem),
        version=f"{prompt.tag}+{repair.tag}",
        retries=retries,
        desc=task,
        response_format=_SCHEMAS[task],
    )


async def balanced_scores(
    llm: LLMClient,
    vlm: LLMClient,
    items: Sequence[tuple[str, str, str, Path]],
    *,
    lang: str = "zh",
    retries: int = 2,
) -> list[BalancedImage]:
    """Score (id, caption, reference caption, image) items, in order: decompose, verify, match, rate.

    Items are independent: several captions of one image (a GRPO group) are several items.
    """
    decompose = load_prompt("balanced_decompose", lang)
    texts = sorted({t for _, caption, reference, _ in items for t in (caption, reference)})
    decomposed = await _ask(
        llm,
        "balanced_decompose",
        lang,
        ([user_message(decompose.render(text=t))] for t in texts),
        parse_assertions,
        retries,
    )
    assertions = dict(zip(texts, decomposed, strict=True))
    ready = [k for k, (_, caption, ref, _) in enumerate(items) if assertions[caption].ok and assertions[ref].ok]
    claims = {k: assertions[items[k][1]].value for k in ready}
    refs = {k: assertions[items[k][2]].value for k in ready}

    verify, cover, rate = (load_prompt(t, lang) for t in ("balanced_verify", "balanced_recall", "balanced_linguistic"))
    verified = await _ask_each(
        vlm,
        "balanced_verify",
        lang,
        [
            (k, [user_message(verify.render(assertions=_numbered(claims[k])), [items[k][3]])], len(claims[k]))
            for k in ready
            if claims[k]
        ],
        parse_verdicts,
        retries,
    )
    covered = await _ask_each(
        llm,
        "balanced_recall",
        lang,
        [
            (
                k,
                [
                    user_message(
                        cover.render(caption_assertions=_numbered(claims[k]), reference_assertions=_numbered(refs[k]))
                    )
                ],
                len(refs[k]),
            )
            for k in ready
            if refs[k] and claims[k]
        ],
        parse_coverage,
        retries,
    )
    rated = await _ask(
        llm,
        "balanced_linguistic",
        lang,
        ([user_message(rate.render(caption=items[k][1]))] for k in ready),
        parse_linguistic,
        retries,
    )
    rated_by_item = dict(zip(ready, rated, strict=True))

    out = []
    for k, (image_id, caption, reference, _) in enumerate(items):
        answers = {
            "decompose caption": assertions[caption],
            "decompose reference": assertions[reference],
            "verify": verified.get(k),
            "recall": covered.get(k),
            "linguistic": rated_by_item.get(k),
        }
        failures = [f"{what}: {a.error}" for what, a in answers.items() if a is not None and not a.ok]
        if failures:
            out.append(BalancedImage(image_id, None, None, None, error="; ".join(failures)))
            continue
        verdicts = answers["verify"].value if answers["verify"] is not None else []
        # No recall call: either the reference has no assertion (flags stay empty: excluded) or the caption has none
        # (nothing is covered).
        flags = answers["recall"].value if answers["recall"] is not None else [False] * len(refs[k])
        out.append(score_components(image_id, verdicts, flags, answers["linguistic"].value))
    return out


async def _ask_each(
    client: LLMClient,
    task: str,
    lang: str,
    jobs: Sequence[tuple[int, list[dict[str, Any]], int]],
    parse: Any,
    retries: int,
) -> dict[int, Any]:
    """Like ``_ask`` for (item, conversation, expected answer length) jobs; answers by item position."""
    # A parser sees only the answer text, so jobs are asked in groups that expect the same number of items.
    out: dict[int, Any] = {}
    for n in sorted({size for _, _, size in jobs}):
        group = [(k, conv) for k, conv, size in jobs if size == n]
        answers = await _ask(client, task, lang, (c for _, c in group), lambda text, n=n: parse(text, n), retries)
        out.update({k: a for (k, _), a in zip(group, answers, strict=True)})
    return out


def balanced_items(dataset: EcacDataset, predictions: Mapping[str, Sequence[str]]) -> list[tuple[str, str, str, Path]]:
    """(id, first caption, reference caption, image) per predicted image, in dataset order."""
    return [(r.id, predictions[r.id][0], r.caption, r.image) for r in dataset if predictions.get(r.id)]
