"""Caption utility (CapRL): is a caption good enough for a text-only LLM to answer questions about the image?

Protocol (docs/sibling_metrics.md):

* Questions are multiple choice, per image (JSONL rows ``{"id", "question", "options", "answer"}``; ``answer`` is
  the letter of the correct option or its exact text).
* Each question is asked ``rounds`` times (default 4). In every round the options are shuffled with a seeded RNG
  (seed, image id, question number, round) and an extra last option "cannot be answered from the caption" is
  appended; the LLM sees only the caption, the question and the lettered options, and must reply with a letter.
* The answer must be an option letter alone (:func:`parse_choice`: a label, brackets or the option's own text
  around it are allowed, nothing else); an answer without a readable letter is wrong (CapRL scores accuracy) and
  counted (``n_unparsed``): excluding it instead would let a caption that confuses the answerer drop its own wrong
  rounds.
* A question's accuracy is the mean over its rounds; an image's is the mean over its questions; the reported
  ``utility`` is 100 x the mean over images (``utility_micro``: over all question rounds). Rounds whose request
  failed at the transport level are failures, excluded and counted, never scored.
* Per-image statistics (``ecac_bench.imagestats``): ``scored`` (1 when a round of the image was answered),
  ``accuracy`` (the image's accuracy, 0 when none), ``questions``, ``rounds`` and ``correct`` (answered ones),
  ``failed`` and ``unparsed`` rounds; ``utility`` = 100 x sum(accuracy) / sum(scored), ``utility_micro`` = 100 x
  sum(correct) / sum(rounds), the counts are the sums.

Making the questions (``make-qa``) is a data tool, not part of the metric: ``ecac_bench.qa_tools``.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecac_bench.data import DataValidationError, EcacDataset, Problem, jsonl_rows, problem_sink
from ecac_bench.imagestats import Estimator, ImageStats, Sums, point_estimate, ratio
from ecac_bench.llm import (
    ChatRequest,
    LLMClient,
    answer_payloads,
    normalized,
    user_message,
)
from ecac_bench.prompts import load_prompt

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CANNOT_ANSWER = {"zh": "根据描述无法回答", "en": "Cannot be answered from the caption"}


@dataclass(frozen=True)
class QAItem:
    """One multiple-choice question about one image; ``answer`` is the index of the correct option."""

    id: str
    question: str
    options: tuple[str, ...]
    answer: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "options": list(self.options), "answer": LETTERS[self.answer]}


def _answer_index(answer: Any, options: Sequence[str]) -> int | None:
    if isinstance(answer, str):
        letter = answer.strip().upper()
        if len(letter) == 1 and letter in LETTERS[: len(options)]:
            return LETTERS.index(letter)
        if answer in options:
            return options.index(answer)
    return None


def qa_item_from_row(row: Any, file: str, line: int, problems: list[Problem]) -> QAItem | None:
    """Validate one questions-file row, recording problems with file, line and field."""
    if not isinstance(row, dict):
        problems.append(Problem(file, line, "<record>", "must be a JSON object"))
        return None
    rec_id, question, options = row.get("id"), row.get("question"), row.get("options")
    n_before = len(problems)
    if not isinstance(rec_id, str) or not rec_id:
        problems.append(Problem(file, line, "id", "missing, empty or not a string"))
    if not isinstance(question, str) or not question.strip():
        problems.append(Problem(file, line, "question", "missing or empty"))
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) and o for o in options):
        problems.append(Problem(file, line, "options", "must be a list of at least 2 non-empty strings"))
    elif len(options) >= len(LETTERS):
        problems.append(Problem(file, line, "options", f"at most {len(LETTERS) - 1} options"))
    elif len(set(options)) != len(options):
        problems.append(Problem(file, line, "options", "options must be distinct"))
    elif _answer_index(row.get("answer"), options) is None:
        problems.append(Problem(file, line, "answer", "must be the letter or the exact text of one of the options"))
    if len(problems) != n_before:
        return None
    return QAItem(rec_id, question, tuple(options), _answer_index(row["answer"], options))  # type: ignore[arg-type]


def load_questions(path: str | Path, dataset: EcacDataset | None = None) -> list[QAItem]:
    """Read a questions JSONL; with ``dataset``, every id must be one of its images."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: questions file not found")
    problems: list[Problem] = []
    items: list[QAItem] = []
    for line, row in jsonl_rows(path, problem_sink(problems, path)):
        item = qa_item_from_row(row, str(path), line, problems)
        if item is not None:
            if dataset is not None and item.id not in dataset.by_id:
                problems.append(Problem(str(path), line, "id", f"{item.id!r} is not in dataset {dataset.path}"))
            else:
                items.append(item)
    if problems:
        raise DataValidationError(problems)
    return items


@dataclass(frozen=True)
class ShuffledQuestion:
    """One round of one question: options in shown order (the extra "cannot answer" option last)."""

    item: QAItem
    question_index: int
    round: int
    options: tuple[str, ...]
    correct: int  # index in ``options``

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]


def shuffle_rounds(
    items: Sequence[QAItem], rounds: int = 4, seed: int = 0, lang: str = "zh", add_cannot_answer: bool = True
) -> list[ShuffledQuestion]:
    """All rounds of all questions, each with its own seeded shuffle (stable across runs and machines)."""
    return list(iter_rounds(items, rounds, seed, lang, add_cannot_answer))


def iter_rounds(
    items: Iterable[QAItem], rounds: int = 4, seed: int = 0, lang: str = "zh", add_cannot_answer: bool = True
) -> Iterator[ShuffledQuestion]:
    """:func:`shuffle_rounds` one round at a time (a run over millions of rounds never holds them all)."""
    for qi, item in enumerate(items):
        for r in range(rounds):
            digest = hashlib.sha256(f"{seed}|{item.id}|{qi}|{r}".encode()).digest()
            order = list(range(len(item.options)))
            random.Random(digest).shuffle(order)
            options = [item.options[i] for i in order]
            if add_cannot_answer:
                options.append(CANNOT_ANSWER[lang])
            yield ShuffledQuestion(item, qi, r, tuple(options), order.index(item.answer))


# A letter answer is the letter alone, after an optional label; whitespace is collapsed first, so no two
# quantifiers of these patterns can match the same characters (linear time on any answer).
_LABEL = re.compile(
    r"(?:the correct answer is|the answer is|correct answer|answer is|answer|option|choice"
    r"|答案是|答案为|答案|答|选项|选择|选) ?[:：]?",
    re.I,
)
_LETTER = re.compile(r"[(\[【]?([A-Za-z])[)\]】]?")
_AFTER_LETTER = ".:、)。"  # what may separate the letter from a copy of its option's text


def parse_choice(text: str | None, options: Sequence[str]) -> tuple[int | None, str | None]:
    """The index of the option an answer chooses, or ``(None, reason)``. The answer (a reasoning block and one code
    fence aside, see :func:`~ecac_bench.llm.answer_payloads`; fullwidth forms read as ASCII, whitespace collapsed,
    ``**bold**`` dropped) must be an option letter within the shown options, in either case, alone: optionally after
    a label (``Answer:``, ``The answer is``, ``答案：``, ``选``), in brackets (``(B)``, ``[B]``, ``【B】``), followed
    by ``.``, or followed by the chosen option's own text (``B. red ball``). Anything else (``A red ball`` when A is
    not "red ball", two letters, prose) is unreadable: never a guess at the first capital letter
    (docs/sibling_metrics.md)."""
    payloads, error = answer_payloads(text)
    if error is not None:
        return None, error
    reason = "no option letter"
    for payload in payloads:
        index, reason = _choice(payload, options)
        if index is not None:
            return index, None
    return None, reason


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).rstrip(".。").strip() == " ".join(b.split()).rstrip(".。").strip()


def _choice(payload: str, options: Sequence[str]) -> tuple[int | None, str]:
    answer = " ".join(normalized(payload).split()).strip("*").strip()
    if label := _LABEL.match(answer):
        answer = answer[label.end() :].lstrip()
    letter = _LETTER.match(answer)
    if letter is None:
        return None, "no option letter"
    rest = answer[letter.end() :].lstrip()
    if rest and rest[0] in _AFTER_LETTER:
        rest = rest[1:]
    rest = rest.strip().strip("*").strip()
    chosen = letter.group(1).upper()
    valid = LETTERS[: len(options)]
    if chosen not in valid:
        return None, "not an option letter alone" if rest else f"not one of the shown options ({valid[0]}-{valid[-1]})"
    index = valid.index(chosen)
    if rest and not _same_text(rest, options[index]):
        return None, "not an option letter alone"
    return index, None


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    id: str
    question_index: int
    round: int
    chosen: int | None
    correct: int
    error: str | None  # transport failure: the round is excluded

    @property
    def is_correct(self) -> bool:
        return self.error is None and self.chosen == self.correct


def _aggregate(sums: Sums) -> dict[str, Any]:
    return {
        "utility": ratio(sums["accuracy"], sums["scored"], 100.0),
        "utility_micro": ratio(sums["correct"], sums["rounds"], 100.0),
        "n_images": sums["scored"],
        "n_questions": sums["questions"],
        "n_rounds": sums["rounds"],
        "n_failed": sums["failed"],
        "n_unparsed": sums["unparsed"],
    }


UTILITY = Estimator(
    "utility", ("scored", "accuracy", "questions", "rounds", "correct", "failed", "unparsed"), _aggregate
)


@dataclass(frozen=True)
class UtilityResult:
    """``utility``: 100 x mean over images of the mean over questions of the per-round accuracy."""

    utility: float | None
    utility_micro: float | None
    per_image: dict[str, float]
    n_images: int
    n_questions: int
    n_rounds: int
    n_failed: int
    n_unparsed: int
    stats: ImageStats = field(repr=False)

    def metrics(self) -> dict[str, Any]:
        return point_estimate(self.stats, UTILITY)


def aggregate_utility(outcomes: Sequence[RoundOutcome]) -> UtilityResult:
    """Pure aggregation of round outcomes (failed rounds excluded; an unparsed answer is wrong)."""
    by_image: dict[str, dict[int, list[RoundOutcome]]] = {}
    for o in outcomes:
        by_image.setdefault(o.id, {}).setdefault(o.question_index, []).append(o)
    rows = []
    for image_id, questions in by_image.items():
        scored = [[o.is_correct for o in rounds if o.error is None] for rounds in questions.values()]
        answered = [hits for hits in scored if hits]
        accuracy = sum(sum(hits) / len(hits) for hits in answered) / len(answered) if answered else 0.0
        rounds = sum(map(len, answered))
        failed = sum(o.error is not None for rounds in questions.values() for o in rounds)
        unparsed = sum(o.error is None and o.chosen is None for rounds in questions.values() for o in rounds)
        correct = sum(sum(hits) for hits in answered)
        rows.append((image_id, float(bool(answered)), accuracy, len(answered), rounds, correct, failed, unparsed))
    columns = {name: [row[j + 1] for row in rows] for j, name in enumerate(UTILITY.columns)}
    stats = ImageStats.from_columns("utility", [row[0] for row in rows], columns)
    per_image = {row[0]: 100.0 * row[2] for row in rows if row[1]}
    return UtilityResult(**point_estimate(stats, UTILITY), per_image=per_image, stats=stats)  # type: ignore[arg-type]


def _question_text(q: ShuffledQuestion) -> str:
    return q.item.question + "\n" + "\n".join(f"{letter}. {opt}" for letter, opt in zip(q.letters, q.options))


async def answer_rounds(
    client: LLMClient,
    rounds: Iterable[ShuffledQuestion],
    *,
    context: Mapping[str, str] | None,
    images: Mapping[str, Path] | None = None,
    lang: str = "zh",
    desc: str = "utility",
) -> list[RoundOutcome]:
    """Ask every round, in order. ``context``: id -> caption (None: no caption, for the leak filter); ``images``:
    id -> image path to show the image instead (the visual filter). Any answer text is an answer (a missing letter is
    a wrong answer, not a failure). ``rounds`` is consumed as the client admits requests: only the rounds in flight
    are held, next to the outcomes."""
    prompt = load_prompt("utility_answer", lang)
    outcomes: list[RoundOutcome | None] = []
    asked: dict[int, ShuffledQuestion] = {}

    def requests() -> Iterator[ChatRequest]:
        for i, q in enumerate(rounds):
            outcomes.append(None)
            asked[i] = q
            caption = None if context is None else context.get(q.item.id, "")
            question = _question_text(q)
            text = prompt.render(caption=caption, question=question, letters=q.letters, with_image=bool(images))
            yield ChatRequest((user_message(text, [images[q.item.id]] if images else []),), prompt.tag)

    async with contextlib.aclosing(client.astream(requests(), desc=desc)) as stream:
        async for i, result in stream:
            q = asked.pop(i)
            chosen = parse_choice(result.text, q.options)[0] if result.ok else None
            error = None if result.ok else result.error or "no answer"
            outcomes[i] = RoundOutcome(q.item.id, q.question_index, q.round, chosen, q.correct, error)
    return outcomes  # type: ignore[return-value]


async def caption_utility(
    client: LLMClient,
    items: Sequence[QAItem],
    captions: Mapping[str, Sequence[str]],
    *,
    rounds: int = 4,
    seed: int = 0,
    lang: str = "zh",
) -> UtilityResult:
    """The CapRL utility of one caption per image (the first, when a prediction row has several)."""
    context = {image_id: caps[0] if caps else "" for image_id, caps in captions.items()}
    shuffled = iter_rounds(items, rounds, seed, lang)
    return aggregate_utility(await answer_rounds(client, shuffled, context=context, lang=lang))
