"""The MLLM-judge score: a multimodal model rates each caption of an image from 0 to 100 (the paper's "Score").

The judge sees the image and one caption and is asked (``prompts/judge_score.<lang>.j2``) for strictly
``{"score": N}``. :func:`parse_score` reads the answer robustly; an answer without a usable score is repaired by
asking again in the same conversation (``prompts/judge_score_repair.<lang>.j2``) up to ``parse_retries`` times,
then recorded as a failure: never silently scored 0. :func:`judge_captions` does the I/O through
:class:`~ecac_bench.llm.LLMClient`, asking for :data:`SCORE_SCHEMA` where the server supports structured output.

The metric follows ``ecac_bench.imagestats``: an image's statistics are ``scored`` (its captions with a score),
``score_sum``, ``shifted_sq`` (the sum of (score - 50)^2) and ``failed`` (its captions without one);
``judge_score`` = sum(score_sum) / sum(scored), ``judge_score_std`` = the population std (ddof 0) of the scored
captions, sqrt(sum(shifted_sq) / n - (mean - 50)^2) (shifted by the scale's midpoint so that the difference does not
cancel), ``n`` = sum(scored), ``n_failed`` = sum(failed). Exact definitions: docs/judges.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecac_bench.data import EcacDataset
from ecac_bench.imagestats import Estimator, ImageStats, Sums, point_estimate, ratio
from ecac_bench.llm import JsonSchema, LLMClient, answer_blocks, complete_parsed, user_message
from ecac_bench.prompts import load_prompt

SCORE_MIN, SCORE_MAX = 0.0, 100.0
LANGS = ("zh", "en")

_OBJECT = re.compile(r"\{[^{}]*\}")
_NUMBER = r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))"
# "score": 80 / 'score': "80" / score=80 / "score:80 (the curly-quote case {”score:80}) / 分数：80
_FIELD = re.compile(r"(?:score|分数|评分|得分)[\"']?\s*[:=]\s*[\"']?\s*" + _NUMBER, re.I)
_BARE = re.compile(r"^[\"']?\s*" + _NUMBER + r"\s*[\"']?$")


@dataclass(frozen=True)
class ParsedScore:
    """A score in range, or ``error`` saying why there is none (``value`` keeps an out-of-range number)."""

    score: float | None
    error: str | None = None
    value: float | None = None

    @property
    def ok(self) -> bool:
        return self.score is not None


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and (m := _BARE.match(value.strip())):
        return float(m.group(1))
    return None


def _find_value(text: str) -> float | None:
    for obj in _OBJECT.findall(text):
        try:
            data = json.loads(obj)
        except ValueError:
            data = None
        if isinstance(data, dict):
            for key, value in data.items():
                if str(key).strip().lower() == "score" and (number := _as_number(value)) is not None:
                    return number
        if m := _FIELD.search(obj):
            return float(m.group(1))
    if m := _FIELD.search(text):
        return float(m.group(1))
    if m := _BARE.match(text.strip()):
        return float(m.group(1))
    return None


def parse_score(text: str | None) -> ParsedScore:
    """Read a 0-100 score from a judge answer: JSON or code-fenced JSON, stray text around it, curly or fullwidth
    quotes (``{”score:80}``), numbers as strings, ``score: 80`` without braces, or a bare number."""
    if text is None or not text.strip():
        return ParsedScore(None, "empty answer")
    value = None
    for block in answer_blocks(text):
        value = _find_value(block)
        if value is not None:
            break
    if value is None:
        return ParsedScore(None, "no score found")
    if not math.isfinite(value) or not SCORE_MIN <= value <= SCORE_MAX:
        return ParsedScore(None, "score out of range 0-100", value)
    return ParsedScore(value)


@dataclass(frozen=True)
class JudgeSummary:
    """``judge_score`` = mean of the scored captions, ``judge_score_std`` = their population std (ddof 0),
    ``n`` = captions scored, ``n_failed`` = captions with no score after all retries."""

    judge_score: float | None
    judge_score_std: float | None
    n: int
    n_failed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_MIDPOINT = (SCORE_MIN + SCORE_MAX) / 2


def _aggregate(sums: Sums) -> dict[str, Any]:
    mean = ratio(sums["score_sum"], sums["scored"])
    with np.errstate(invalid="ignore"):
        variance = ratio(sums["shifted_sq"], sums["scored"]) - (mean - _MIDPOINT) ** 2
    return {
        "judge_score": mean,
        "judge_score_std": np.sqrt(np.maximum(variance, 0.0)),
        "n": sums["scored"],
        "n_failed": sums["failed"],
    }


JUDGE = Estimator("judge", ("scored", "score_sum", "shifted_sq", "failed"), _aggregate)


def judge_statistics(ids: Sequence[str], scores: Sequence[float | None]) -> ImageStats:
    """Per-image statistics of (image id, score) pairs, one per caption (None: the caption failed); images in order
    of first appearance."""
    rows: dict[str, list[float]] = {}
    for image_id, score in zip(ids, scores, strict=True):
        row = rows.setdefault(image_id, [0.0, 0.0, 0.0, 0.0])
        if score is None:
            row[3] += 1
        else:
            row[0] += 1
            row[1] += score
            row[2] += (score - _MIDPOINT) ** 2
    values = np.array(list(rows.values()), dtype=np.float64).reshape(len(rows), 4)
    return ImageStats.from_columns("judge", list(rows), dict(zip(JUDGE.columns, values.T, strict=True)))


def aggregate_judge_scores(scores: Sequence[float | None]) -> JudgeSummary:
    """Pure aggregation of per-caption scores; ``None`` marks a failed caption (counted, never scored 0)."""
    metrics = point_estimate(judge_statistics([str(i) for i in range(len(scores))], scores), JUDGE)
    return JudgeSummary(**metrics)  # type: ignore[arg-type]


@dataclass(frozen=True)
class JudgeInput:
    """One caption to judge: ``index`` tells captions of the same image apart."""

    id: str
    caption: str
    image: Path | None
    index: int = 0


@dataclass(frozen=True)
class JudgeOutcome:
    id: str
    index: int
    score: float | None
    error: str | None
    rounds: int
    answer: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inputs_from_predictions(
    dataset: EcacDataset, predictions: Mapping[str, Sequence[str]], with_image: bool = True
) -> list[JudgeInput]:
    """One input per (image, caption) of the predictions, in dataset order."""
    inputs = [
        JudgeInput(record.id, caption, record.image if with_image else None, i)
        for record in dataset
        for i, caption in enumerate(predictions.get(record.id, ()))
    ]
    missing = sorted({str(x.image) for x in inputs if x.image is not None and not x.image.is_file()})
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise FileNotFoundError(f"{len(missing)} image(s) of {dataset.path} not found: {', '.join(missing[:5])}{more}")
    return inputs


# The judge's answer as a JSON schema, sent as response_format where the server supports it (the answer is parsed
# by parse_score either way).
SCORE_SCHEMA = JsonSchema(
    "judge_score",
    {
        "type": "object",
        "properties": {"score": {"type": "number", "minimum": SCORE_MIN, "maximum": SCORE_MAX}},
        "required": ["score"],
        "additionalProperties": False,
    },
)


def prompt_version(lang: str) -> str:
    return f"{load_prompt('judge_score', lang).tag}+{load_prompt('judge_score_repair', lang).tag}"


async def judge_captions(
    client: LLMClient, inputs: Sequence[JudgeInput], lang: str = "zh", parse_retries: int = 2
) -> list[JudgeOutcome]:
    """Score every input; answers without a usable score get up to ``parse_retries`` repair turns."""
    prompt, repair = load_prompt("judge_score", lang), load_prompt("judge_score_repair", lang)
    conversations = ([user_message(prompt.render(caption=x.caption), [x.image] if x.image else [])] for x in inputs)

    def parse(text: str) -> tuple[float | None, str | None]:
        parsed = parse_score(text)
        return parsed.score, parsed.error

    answers = await complete_parsed(
        client,
        conversations,
        parse,
        lambda problem: repair.render(problem=problem),
        version=prompt_version(lang),
        retries=parse_retries,
        desc="judge",
        response_format=SCORE_SCHEMA,
    )
    return [
        JudgeOutcome(x.id, x.index, a.value, a.error, a.rounds, a.answer) for x, a in zip(inputs, answers, strict=True)
    ]
