"""Making CapRL questions for a dataset (``ecac-bench make-qa``): a data tool, not a metric.

A VLM writes multiple-choice questions per image (``prompts/qa_generate.<lang>.j2``); the quality filter keeps a
question when the VLM *with the image* answers it correctly in at least ``pass_visual_min`` of the shuffled rounds
and the LLM *without any caption* in at most ``pass_textual_max`` (a question answerable blind leaks its answer).
The questions then feed ``ecac-bench utility`` (``ecac_bench.utility``, docs/sibling_metrics.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ecac_bench.data import EcacDataset, Problem
from ecac_bench.llm import LLMClient, complete_parsed, list_answer, object_schema, user_message
from ecac_bench.prompts import load_prompt
from ecac_bench.utility import QAItem, RoundOutcome, answer_rounds, qa_item_from_row, shuffle_rounds


@dataclass(frozen=True)
class FilterDecision:
    item: QAItem
    visual_accuracy: float | None
    blind_accuracy: float | None
    kept: bool


def _accuracy_by_question(outcomes: Sequence[RoundOutcome]) -> dict[int, float | None]:
    by_q: dict[int, list[bool]] = {}
    for o in outcomes:
        if o.error is None:
            by_q.setdefault(o.question_index, []).append(o.is_correct)
    return {q: sum(v) / len(v) if v else None for q, v in by_q.items()}


async def filter_questions(
    client: LLMClient,
    vlm: LLMClient,
    items: Sequence[QAItem],
    images: Mapping[str, Path],
    *,
    rounds: int = 4,
    seed: int = 0,
    lang: str = "zh",
    pass_visual_min: float = 0.75,
    pass_textual_max: float = 0.25,
) -> list[FilterDecision]:
    """Keep questions the VLM answers with the image and the LLM cannot answer blind (thresholds on accuracy)."""
    shuffled = shuffle_rounds(items, rounds, seed, lang)
    visual = _accuracy_by_question(
        await answer_rounds(vlm, shuffled, context={}, images=images, lang=lang, desc="qa filter (image)")
    )
    blind = _accuracy_by_question(
        await answer_rounds(client, shuffled, context=None, lang=lang, desc="qa filter (blind)")
    )
    decisions = []
    for qi, item in enumerate(items):
        v, b = visual.get(qi), blind.get(qi)
        kept = v is not None and b is not None and v >= pass_visual_min and b <= pass_textual_max
        decisions.append(FilterDecision(item, v, b, kept))
    return decisions


_QUESTION_KEYS = ("question", "options", "answer")
# make-qa's answer as a JSON schema, sent as response_format where the server supports it (a list wrapped in an
# object: OpenAI's strict mode wants an object root); parse_generated_questions accepts its values, or the bare list.
QUESTIONS_SCHEMA = object_schema(
    "qa_questions",
    {
        "questions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "question": {"type": "string"},
                    "options": {"type": "array", "items": {"type": "string"}},
                    "answer": {"type": "string"},
                },
                "required": list(_QUESTION_KEYS),
                "additionalProperties": False,
            },
        }
    },
)


def parse_generated_questions(text: str, image_id: str) -> tuple[list[QAItem] | None, str | None]:
    """Questions from a VLM's ``make-qa`` answer, which must be exactly ``{"questions": [...]}`` or the list alone
    (a reasoning block and one code fence aside), each question an object with exactly ``question``, ``options``
    and ``answer`` that passes the questions-file validation. One bad question makes the answer unreadable (it
    gets the repair turn): questions are never dropped silently."""
    rows, error = list_answer(text, "questions")
    if error is not None:
        return None, error
    if not rows:
        return None, "no question"
    items = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict) or sorted(row) != sorted(_QUESTION_KEYS):
            return None, f"question {i}: must be an object with exactly question, options and answer"
        problems: list[Problem] = []
        item = qa_item_from_row({**row, "id": image_id}, "answer", i, problems)
        if item is None:
            return None, f"question {i}: {problems[0].field}: {problems[0].message}"
        items.append(item)
    return items, None


async def generate_questions(
    vlm: LLMClient, dataset: EcacDataset, *, per_image: int = 5, lang: str = "zh", retries: int = 2
) -> tuple[list[QAItem], dict[str, str]]:
    """Ask the VLM for ``per_image`` questions per image; returns the questions and, per failed image, why."""
    prompt = load_prompt("qa_generate", lang)
    repair = load_prompt("qa_generate_repair", lang)
    records = list(dataset)
    answers = await complete_parsed(
        vlm,
        ([user_message(prompt.render(n=per_image, area=r.area), [r.image])] for r in records),
        lambda text: parse_generated_questions(text, "?"),  # ids are set per image below
        lambda problem: repair.render(problem=problem, n=per_image),
        version=f"{prompt.tag}+{repair.tag}",
        retries=retries,
        desc="make-qa",
        response_format=QUESTIONS_SCHEMA,
    )
    items: list[QAItem] = []
    failed: dict[str, str] = {}
    for record, answer in zip(records, answers, strict=True):
        if answer.ok:
            items.extend(replace(item, id=record.id) for item in answer.value[:per_image])
        else:
            failed[record.id] = answer.error or "no questions"
    return items, failed
