"""Prompt templates (jinja2), one folder for the whole project: ``<task>.<lang>.j2``.

Each template starts with a ``{#- version: N -#}`` comment. The version goes into the LLM response-cache key, so
bump it whenever a change alters what the answers mean (the rendered text is in the key anyway).

Text a model wrote, or a data file holds (captions, assertions, questions), goes into a prompt only through the
``delimited`` filter (:class:`Delimited`), after the instructions.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import jinja2

PROMPTS_DIR = Path(__file__).parent
_VERSION = re.compile(r"\{#-?\s*version:\s*(\S+)\s*-?#\}")


@dataclass(frozen=True)
class Delimited:
    """Untrusted text set apart in a prompt: between the lines ``<label-N>`` and ``</label-N>``, where N is the first
    16 hex digits of the text's SHA-256. The text cannot close its block early: it would have to contain its own
    hash, which takes about 2^64 tries to find. N depends on the text alone, so a prompt renders the same every
    time (cache keys stay stable). A template names ``open`` and ``close`` in the sentence that introduces the
    block and renders the block itself as ``{{ block }}``."""

    text: str
    label: str

    @cached_property
    def nonce(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    @property
    def open(self) -> str:
        return f"<{self.label}-{self.nonce}>"

    @property
    def close(self) -> str:
        return f"</{self.label}-{self.nonce}>"

    def __str__(self) -> str:
        return f"{self.open}\n{self.text}\n{self.close}"


def delimited(text: Any, label: str) -> Delimited:
    """The jinja filter ``{{ caption | delimited("caption") }}``; ``text`` must be a string (StrictUndefined and
    this check keep a missing or None value out of a paid prompt)."""
    if not isinstance(text, str):
        raise TypeError(f"delimited text must be a string, got {type(text).__name__}")
    return Delimited(text, label)


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(PROMPTS_DIR),
    undefined=jinja2.StrictUndefined,  # a missing variable is an error, not an empty string in a paid prompt
    autoescape=False,
    keep_trailing_newline=False,
)
_ENV.filters["delimited"] = delimited


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    template: jinja2.Template
    source: str

    @property
    def tag(self) -> str:
        """``name@version``: what reports and cache keys record."""
        return f"{self.name}@{self.version}"

    @property
    def sha256(self) -> str:
        """Content hash of the template file: two runs asked the same question only when these are equal."""
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    def identity(self) -> dict[str, str]:
        """``{"id": name@version, "sha256": ...}``: how a prompt is named in reports and signatures."""
        return {"id": self.tag, "sha256": self.sha256}

    def render(self, **variables: Any) -> str:
        return self.template.render(**variables).strip()


@cache
def load_prompt(task: str, lang: str = "zh") -> PromptTemplate:
    """The template ``<task>.<lang>.j2``; raises ``ValueError`` if it is missing or has no version line."""
    name = f"{task}.{lang}"
    path = PROMPTS_DIR / f"{name}.j2"
    if not path.is_file():
        available = sorted(p.name for p in PROMPTS_DIR.glob(f"{task}.*.j2"))
        raise ValueError(f"no prompt template {path.name}; available: {', '.join(available) or 'none'}")
    source = path.read_text(encoding="utf-8")
    match = _VERSION.search(source)
    if match is None:
        raise ValueError(f"{path}: first line must be a '{{#- version: N -#}}' comment")
    return PromptTemplate(name, match.group(1), _ENV.get_template(path.name), source)
