"""The MLLM-judge score: a multimodal model rates each caption of an image from 0 to 100 (the paper's "Score").

The judge sees the image and one caption and is asked (``prompts/judge_score.<lang>.j2``, the paper's prompt)
for strictly ``{"score":80}``. :func:`parse_score` accepts that object alone and nothing else, so a caption the
judge quotes cannot set the score; an answer without a usable score is repaired by asking again in the same
conversation (``prompts/judge_score_repair.<lang>.j2``) up to ``parse_retries`` times,
then recorded as a failure: never silently scored 0. :func:`aggregate_judge_scores` is the pure aggregation
(mean, population std, n, n_failed); :func:`judge_captions` does the I/O through
:class:`~ecac_bench.llm.LLMClient`, asking for :data:`SCORE_SCHEMA` where the server supports structured output.

The metric follows ``ecac_bench.imagestats``: an image's statistics are ``scored`` (its captions with a score),
``score_sum``, ``shifted_sq`` (the sum of (score - 50)^2) and ``failed`` (its captions without one);
``judge_score`` = sum(score_sum) / sum(scored), ``judge_score_std`` = the population std (ddof 0) of the scored
captions, sqrt(sum(shifted_sq) / n - (mean - 50)^2) (shifted by the scale's midpoint so that the difference does not
cancel), ``n`` = sum(scored), ``n_failed`` = sum(failed). Exact definitions: docs/judges.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ecac_bench.data import EcacDataset
from ecac_bench.imagestats import Estimator, ImageStats, Sums, point_estimate, ratio
from ecac_bench.llm import (
    JsonSchema,
    LLMClient,
    answer_payloads,
    complete_parsed,
    normalized,
    user_message,
)
from ecac_bench.prompts import load_prompt

SCORE_MIN, SCORE_MAX = 0.0, 100.0
LANGS = ("zh", "en")

# The one accepted form: an object with the single key "score" and a plain decimal number (JSON's grammar, without
# an exponent), any whitespace. Linear: the pieces cannot overlap.
_SCORE_OBJECT = re.compile(r'\{\s*"score"\s*:\s*(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?)\s*\}')


@dataclass(frozen=True)
class ParsedScore:
    """A score in range, or ``error`` saying why there is none (``value`` keeps an out-of-range number)."""

    score: float | None
    error: str | None = None
    value: float | None = None

    @property
    def ok(self) -> bool:
        return self.score is not None


def parse_score(text: str | None) -> ParsedScore:
    """The judge's score: the answer must be exactly ``{"score": N}`` (see :func:`~ecac_bench.llm.answer_payloads`:
    a reasoning block before it and one code fence around it are allowed, nothing else), N a plain decimal number
    in 0-100 (``80``, ``80.5``; not ``"80"``, ``8e1``, ``8/10``). Fullwidth ASCII forms and typographic quotes are
    read as ASCII. Two scores, a quoted caption, prose around the object: no score (docs/judges.md)."""
    payloads, error = answer_payloads(text)
    if error is not None:
        return ParsedScore(None, error)
    reason = None  # why there is no score, for the report's failure counts and the repair turn
    for payload in payloads:
        for form in (payload, normalized(payload)):
            if match := _SCORE_OBJECT.fullmatch(form):
                value = float(match.group(1))
                if not SCORE_MIN <= value <= SCORE_MAX:  # float() of a long digit string is large, never an error
                    return ParsedScore(None, "score out of range 0-100", value)
                return ParsedScore(value)
            reason = reason or _why_not(form)
    return ParsedScore(None, reason or 'not a JSON object {"score": N} alone')


def _why_not(form: str) -> str | None:
    """Why a payload that is valid JSON is not a score object (None when it is not valid JSON)."""
    try:
        value = orjson.loads(form)
    except orjson.JSONDecodeError:
        return None
    if isinstance(value, dict) and list(value) == ["score"]:
        return "score is not a plain number"
    return 'not a JSON object {"score": N}'


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


# The judge's answer as a JSON schema, sent as response_format where the server supports it; parse_score accepts
# every answer it allows that is written without an exponent (and nothing else), with or without it.
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
