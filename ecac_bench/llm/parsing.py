"""Reading structured output out of model answers, and the "ask, parse, repair" loop over the client.

Every function here treats the answer as hostile: it runs in time linear in the answer's length, and
:func:`complete_parsed` refuses answers longer than :data:`MAX_ANSWER_CHARS` before any parser sees them.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
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


# Quotes that models (or input methods) put where JSON wants '"'; NFKC already maps fullwidth ＂｛｝：.
_QUOTES = str.maketrans({c: '"' for c in "“”„‟″«»「」『』"} | {c: "'" for c in "‘’‚‛′"})
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_FENCE = "```"
_FENCE_INFO = re.compile(r"[a-zA-Z]*\s*")  # the language tag and blank after an opening fence


def _without_think(text: str) -> str:
    """``text`` with every ``<think>...</think>`` removed (each opener paired with the nearest closer after it, as the
    lazy regex ``<think>.*?</think>`` would), in one pass: an opener repeated 20,000 times costs microseconds."""
    out, pos = [], 0
    while (start := text.find(_THINK_OPEN, pos)) != -1:
        end = text.find(_THINK_CLOSE, start + len(_THINK_OPEN))
        if end == -1:  # no closer after this opener: none after any later opener either
            break
        out.append(text[pos:start])
        pos = end + len(_THINK_CLOSE)
    out.append(text[pos:])
    return "".join(out)


def _fenced(text: str) -> list[str]:
    """The contents of the code fences of ``text`` (what ``re.findall(r"```[a-zA-Z]*\\s*(.*?)```", text, re.S)``
    returns), in one pass."""
    out, pos = [], 0
    while (start := text.find(_FENCE, pos)) != -1:
        body = _FENCE_INFO.match(text, start + len(_FENCE)).end()  # type: ignore[union-attr]
        end = text.find(_FENCE, body)
        if end == -1:  # no closing fence after this one: none for any later opening either
            break
        out.append(text[body:end])
        pos = end + len(_FENCE)
    return out


def answer_blocks(text: str) -> list[str]:
    """Where to look for structured output in a model answer, best first: the contents of code fences, then the
    whole answer; NFKC-normalised, typographic quotes made ASCII, reasoning ``<think>`` blocks removed."""
    clean = _without_think(unicodedata.normalize("NFKC", text)).translate(_QUOTES)
    return [*_fenced(clean), clean]


def json_in_answer(text: str, opener: str = "[") -> Any:
    """The JSON list (``opener="["``) or object (``"{"``) in a model answer, or None: the outermost span from the
    first opener to the last closer, tried in the answer as it is (quotes inside strings intact), then in each of
    :func:`answer_blocks` (code fences, typographic quotes made ASCII, reasoning removed)."""
    closer = {"[": "]", "{": "}"}[opener]
    for block in (text, *answer_blocks(text)):
        start, end = block.find(opener), block.rfind(closer)
        if start == -1 or end <= start:
            continue
        try:
            return orjson.loads(block[start : end + 1])
        except orjson.JSONDecodeError:
            continue
    return None


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
