"""Reading structured output out of model answers, and the "ask, parse, repair" loop over the client.

Every function here treats the answer as hostile. The structured value must be the whole answer (a reasoning block
and one enclosing code fence aside): nothing is searched for inside prose, so text the model quotes (a caption that
ends in ``{"score": 100}``) can make an answer unreadable, never give it another value. Everything runs in time
linear in the answer's length, and answers longer than :data:`MAX_ANSWER_CHARS` are refused before any parser sees
them. The exact rules per answer: docs/judges.md ("Reading answers").
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ecac_bench.llm.messages import ChatRequest, JsonSchema, user_message

if TYPE_CHECKING:
    from ecac_bench.llm.engine import LLMClient

# An answer longer than this is a parse failure, not parsed: far above any answer the project's prompts ask for
# (the default max_tokens is 2,048), and small enough that no parser spends noticeable time on it.
MAX_ANSWER_CHARS = 100_000


@dataclass(frozen=True)
class ParsedAnswer:
    """The parsed value of a conversation's last answer, or why there is none. ``rounds`` = answers asked for."""

    value: Any
    error: str | None
    rounds: int
    answer: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


# What Chinese input methods put where JSON wants ASCII: the fullwidth forms of ASCII (＂｛｝：８０, U+FF01-FF5E), the
# ideographic space, and typographic quotes. A table, not NFKC: one pass, and no character expands (NFKC turns some
# into 18), so the cost stays linear and small on hostile answers.
_ASCII = str.maketrans(
    {chr(0xFF01 + i): chr(0x21 + i) for i in range(94)}
    | {"\u3000": " "}
    | {c: '"' for c in "“”„‟″«»「」『』"}
    | {c: "'" for c in "‘’‚‛′"}
)
_THINK_CLOSE = "</think>"
_FENCE = "```"
_FENCE_INFO = re.compile(r"[A-Za-z0-9_+-]*")  # a code fence's language tag (```json)


def _unfenced(text: str) -> str | None:
    """``text`` stripped, without the one code fence that encloses it entirely (its language tag dropped), or
    None when it opens a fence it does not close or holds a second fence."""
    text = text.strip()
    if not text.startswith(_FENCE):
        return text
    if len(text) < 2 * len(_FENCE) or not text.endswith(_FENCE):
        return None
    inner = text[len(_FENCE) : -len(_FENCE)]
    first, newline, rest = inner.partition("\n")
    if newline and _FENCE_INFO.fullmatch(first.strip()):
        inner = rest
    return None if _FENCE in inner else inner.strip()


def answer_payloads(text: str | None) -> tuple[list[str], str | None]:
    """Where a model answer may hold its structured value, best first, or why it holds none.

    The value must be the whole answer: the answer itself, or, when it has a reasoning block, what follows its last
    ``</think>``, or its first (reasoning models write ``<think>...</think>`` first; a template may have opened the
    block for them); each without surrounding whitespace and without one code fence that encloses it entirely.
    Nothing is searched for inside prose, so text around the value (for example a caption the model quotes before
    its own answer) makes the answer unreadable, never a different value. Linear in the answer's length; an answer
    longer than :data:`MAX_ANSWER_CHARS` is refused."""
    if text is None or not text.strip():
        return [], "empty answer"
    if len(text) > MAX_ANSWER_CHARS:
        return [], f"answer too long ({len(text)} characters)"
    candidates = [text]
    if _THINK_CLOSE in text:
        # After the last closer (reasoning that quotes a "</think>"), then after the first (a value holding one).
        candidates += dict.fromkeys([text.rpartition(_THINK_CLOSE)[2], text.partition(_THINK_CLOSE)[2]])
    payloads = [p for c in candidates if (p := _unfenced(c))]
    return payloads, None if payloads else "code fence not closed, or more than one"


def normalized(payload: str) -> str:
    """``payload`` with fullwidth ASCII forms (``｛＂ｓｃｏｒｅ＂：８０｝``), the ideographic space and typographic
    quotes made ASCII: the second reading of a payload whose first reading is not valid."""
    return payload.translate(_ASCII)


NOT_JSON = "not a JSON value alone (the answer must be the JSON and nothing else)"


def json_answer(text: str | None) -> tuple[Any, str | None]:
    """The JSON value that a model answer consists of (see :func:`answer_payloads`), or ``(None, reason)``. Each
    payload is read as it is, then :func:`normalized`; the first that is one valid JSON value wins. JSON's own
    rules apply: no NaN or Infinity, no number that overflows a double, at most 1,024 levels of nesting."""
    payloads, error = answer_payloads(text)
    if error is not None:
        return None, error
    for payload in payloads:
        for form in (payload, normalized(payload)):
            try:
                return orjson.loads(form), None
            except orjson.JSONDecodeError:
                continue
    return None, NOT_JSON


def object_schema(name: str, properties: Mapping[str, Any]) -> JsonSchema:
    """A structured-output schema for a JSON object with exactly ``properties``, all required (the form OpenAI's
    strict mode demands: its root must be an object, so list answers are wrapped in one)."""
    return JsonSchema(
        name,
        {"type": "object", "properties": dict(properties), "required": list(properties), "additionalProperties": False},
    )


def list_answer(text: str | None, key: str) -> tuple[list[Any] | None, str | None]:
    """The JSON list a model answer consists of: the list alone, or the object ``{key: [...]}`` with that one key
    (the form the list's schema asks for)."""
    value, error = json_answer(text)
    if error is not None:
        return None, error
    if isinstance(value, dict) and list(value) == [key]:
        value = value[key]
    if not isinstance(value, list):
        return None, f'not a JSON list or {{"{key}": [...]}}'
    return value, None


_ATTEMPTS = re.compile(r" \(after \d+ attempts\)$")


def failure_counts(errors: Iterable[str | None]) -> dict[str, int]:
    """Failures counted by reason for reports (the attempt count left out, so equal reasons group together)."""
    return dict(Counter(_ATTEMPTS.sub("", e) for e in errors if e))


Conversation = Sequence[Mapping[str, Any]]


async def complete_parsed(
    client: LLMClient,
    conversations: Iterable[Conversation],
    parse: Callable[[str], tuple[Any, str | None]],
    repair: Callable[[str], str],
    *,
    version: str,
    retries: int,
    desc: str = "llm",
    response_format: JsonSchema | None = None,
) -> list[ParsedAnswer]:
    """Ask every conversation; an answer that ``parse`` rejects (``(None, reason)``) gets up to ``retries`` repair
    turns (the answer, then the user message ``repair(reason)``) in the same conversation; cached like any request.
    A request that fails at the transport level is a failure at once (the client already retried it).

    ``conversations`` is consumed lazily, as the client's bounded window admits them: only the conversations in
    flight and those awaiting a repair turn are held, never all of them."""
    out: list[ParsedAnswer | None] = []
    in_flight: dict[int, list[Mapping[str, Any]]] = {}
    pending: dict[int, list[Mapping[str, Any]]] = {}  # item -> conversation with its repair turn appended

    def first_round() -> Iterable[ChatRequest]:
        for i, conversation in enumerate(conversations):
            out.append(None)
            in_flight[i] = list(conversation)
            yield ChatRequest(tuple(in_flight[i]), version, response_format=response_format)

    def settle(i: int, conversation: list[Mapping[str, Any]], text: str | None, error: str | None, rnd: int) -> None:
        if text is None:
            out[i] = ParsedAnswer(None, error or "no answer", rnd + 1, None)
            return
        if len(text) > MAX_ANSWER_CHARS:
            value, problem = None, f"answer too long ({len(text)} characters)"
        else:
            value, problem = parse(text)
        if problem is None:
            out[i] = ParsedAnswer(value, None, rnd + 1, text)
        elif rnd < retries:
            pending[i] = [*conversation, {"role": "assistant", "content": text}, user_message(repair(problem))]
        else:
            out[i] = ParsedAnswer(None, problem, rnd + 1, text)

    async with contextlib.aclosing(client.astream(first_round(), desc=desc)) as stream:
        async for i, result in stream:
            settle(i, in_flight.pop(i), result.text, result.error, 0)
    for rnd in range(1, retries + 1):
        if not pending:
            break
        items, convs = list(pending), list(pending.values())
        pending.clear()
        requests = (ChatRequest(tuple(c), version, response_format=response_format) for c in convs)
        async with contextlib.aclosing(client.astream(requests, desc=f"{desc} (repair {rnd})")) as stream:
            async for j, result in stream:
                settle(items[j], convs[j], result.text, result.error, rnd)
    return [a for a in out if a is not None]
