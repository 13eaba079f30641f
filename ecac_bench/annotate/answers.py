"""Reading the annotator's answers, strictly: a caption, the toy list, the scene (category and area).

A structured answer must be the JSON value alone, read by the project's one strict reader
(``ecac_bench.llm.parsing.json_answer``: a reasoning block before it and one code fence around it aside). Every item
is checked against the data format's rules (ecac_bench.data: level and ground vocabulary, a visible name, an image's
toys a set); the first problems found are the reason given in the repair turn, and an answer that stays broken is a
failure, never a record with made-up toys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ecac_bench.data import CATEGORIES, GROUNDS, LEVELS, has_visible_character, toy_list_problems
from ecac_bench.llm import JsonSchema
from ecac_bench.llm.parsing import json_answer, object_schema

TOY_KEYS = ("name", "level", "ground", "aliases")
# Problems named in one repair turn: enough to fix an answer, short enough for the prompt.
MAX_REASONS = 5

# The toy answer's JSON schema (response_format where the server supports it). An object at the root, as OpenAI's
# strict structured output requires; every key required there, so `aliases` is [] when a toy has none.
TOY_ITEM = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "level": {"type": "string", "enum": list(LEVELS)},
        "ground": {"type": "string", "enum": list(GROUNDS)},
        "aliases": {"type": "array", "items": {"type": "string"}},
    },
    "required": list(TOY_KEYS),
    "additionalProperties": False,
}
TOYS_SCHEMA = object_schema("ecac_toys", {"toys": {"type": "array", "items": TOY_ITEM}})


def scene_schema(categories: Sequence[str] = CATEGORIES) -> JsonSchema:
    """The scene answer's schema: ``category`` from ``categories`` (the given one when the input has it), ``area``
    free text."""
    return object_schema(
        "ecac_scene", {"category": {"type": "string", "enum": list(categories)}, "area": {"type": "string"}}
    )


def without_think(text: str) -> tuple[str | None, str | None]:
    """``text`` stripped, without one leading ``<think>...</think>`` block; (None, reason) when it is not closed."""
    text = text.strip()
    if text.startswith("<think>"):
        end = text.find("</think>")
        if end == -1:
            return None, "a <think> block is not closed"
        text = text[end + len("</think>") :].strip()
    return text, None


def parse_caption(text: str) -> tuple[str | None, str | None]:
    """The caption: the answer stripped, without a leading ``<think>`` block; an empty one is a failure."""
    body, problem = without_think(text)
    if body is None:
        return None, problem
    if not has_visible_character(body):
        return None, "empty caption"
    return body, None


def _reasons(problems: Sequence[Any]) -> str:
    shown = "; ".join(f"{p.field}: {p.message}" for p in problems[:MAX_REASONS])
    return shown + (f"; and {len(problems) - MAX_REASONS} more" if len(problems) > MAX_REASONS else "")


def parse_toys(text: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The toys of ``{"toys": [{"name", "level", "ground", "aliases"}, ...]}``, as data-format toy objects (names
    and aliases stripped of surrounding whitespace, empty ``aliases`` left out), or (None, reason): not that object
    alone, an unknown key, a level or ground outside the vocabulary, a name without a visible character, two toys
    sharing a normalised name or alias."""
    value, problem = json_answer(text)
    if problem is not None:
        return None, problem
    if not isinstance(value, dict) or list(value) != ["toys"]:
        return None, 'expected the object {"toys": [...]} and nothing else'
    items = value["toys"]
    if not isinstance(items, list):
        return None, f'"toys" must be a list, got {type(items).__name__}'
    toys: list[dict[str, Any]] = []
    for j, item in enumerate(items):
        if not isinstance(item, dict):
            return None, f"toys[{j}]: must be an object, got {type(item).__name__}"
        unknown = [k for k in item if k not in TOY_KEYS]
        if unknown:
            return None, f"toys[{j}]: unknown key(s) {', '.join(map(repr, unknown))}; a toy has {', '.join(TOY_KEYS)}"
        name, aliases = item.get("name"), item.get("aliases")
        toy: dict[str, Any] = {
            "name": name.strip() if isinstance(name, str) else name,
            "level": item.get("level"),
            "ground": item.get("ground"),
        }
        if isinstance(aliases, list):
            aliases = [a.strip() if isinstance(a, str) else a for a in aliases]
        if aliases or (aliases is not None and not isinstance(aliases, list)):
            toy["aliases"] = aliases
        toys.append(toy)
    problems = toy_list_problems(toys)
    if problems:
        return None, _reasons(problems)
    return toys, None


def parse_scene(text: str, categories: Sequence[str] = CATEGORIES) -> tuple[dict[str, str] | None, str | None]:
    """``{"category", "area"}`` with a category from ``categories`` and a visible area (stripped), or (None,
    reason)."""
    value, problem = json_answer(text)
    if problem is not None:
        return None, problem
    if not isinstance(value, dict) or sorted(value) != ["area", "category"]:
        return None, 'expected the object {"category": ..., "area": ...} and nothing else'
    category, area = value["category"], value["area"]
    if category not in categories:
        return None, f"category: {category!r} is not one of {', '.join(categories)}"
    if not isinstance(area, str) or not has_visible_character(area):
        return None, "area: must be a non-empty name"
    return {"category": category, "area": area.strip()}, None
