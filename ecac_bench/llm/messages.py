"""What callers hand the client (requests, message parts, an optional JSON schema) and what they get back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple


def image_part(path: str | Path) -> dict[str, str]:
    """A message part for a local image; the client sends it as a base64 data URL, downscaled for the judge."""
    return {"type": "image_path", "path": str(Path(path).resolve())}


def text_part(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def user_message(text: str, images: Sequence[str | Path] = ()) -> dict[str, Any]:
    """A user turn with the images first, then the text (the order VLM chat templates expect)."""
    if not images:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [*(image_part(p) for p in images), text_part(text)]}


@dataclass(frozen=True)
class JsonSchema:
    """A structured-output request: the answer must be JSON matching ``schema``. Sent as the chat-completions
    ``response_format`` (``{"type": "json_schema", ...}``, which OpenAI and vLLM accept) where the server supports it;
    elsewhere the request goes without it and the answer is parsed as usual."""

    name: str
    schema: Mapping[str, Any]

    def response_format(self) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.schema, "strict": True}}

    def key_part(self) -> dict[str, Any]:
        return {"name": self.name, "schema": self.schema}


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make. ``params`` override the config's sampling parameters."""

    messages: tuple[Mapping[str, Any], ...]
    template_version: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    response_format: JsonSchema | None = None


class ChatResult(NamedTuple):
    """The answer to one request, or why there is none. ``attempts`` counts HTTP requests made this run;
    ``cached`` says the answer came from the response cache (this run paid nothing for it). A named tuple: a cached
    re-run makes one per request, and a tuple is the cheapest immutable record."""

    text: str | None
    cached: bool = False
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.text is not None
