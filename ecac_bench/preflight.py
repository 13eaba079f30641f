"""Before an evaluation starts: is the server the one we started, and does it caption one real image?

    python -m ecac_bench.preflight --base-url http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-VL-3B-Instruct

1. ``GET /models`` must list ``--model`` (another server on the port, or a server that loaded another model, is
   caught here, before thousands of requests are scored against the wrong thing);
2. one chat completion with one image of the evaluated data (the first record of ``--data``, default ``$ECAC_DATA``
   or the bundled sample) and the default captioning prompt must come back as HTTP 200 with non-empty text (a chat
   template the endpoint cannot apply, an image it cannot read, or a context too short for the pixel budget fail
   here, with the server's own message).

The key sent is a dummy (``EMPTY``): the baseline scripts start the server themselves, without a key. Exit 0 when
both checks pass, else one line on stderr and exit 2. Standard library only (urllib), so it runs wherever the
baseline scripts do.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ecac_bench.data import load_dataset
from ecac_bench.hub import data_location
from ecac_bench.prompts import load_prompt

DUMMY_KEY = "EMPTY"
_BODY_EXCERPT = 300


class PreflightError(RuntimeError):
    """The server is not the expected one, or cannot caption an image."""


def _request(url: str, body: dict[str, Any] | None, timeout: float) -> Any:
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Authorization", f"Bearer {DUMMY_KEY}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        excerpt = exc.read()[:_BODY_EXCERPT].decode("utf-8", "replace")
        raise PreflightError(f"{url}: HTTP {exc.code}: {excerpt}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise PreflightError(f"{url}: no answer ({getattr(exc, 'reason', exc)})") from None
    try:
        return json.loads(raw)
    except ValueError:
        raise PreflightError(f"{url}: answer is not JSON: {raw[:_BODY_EXCERPT]!r}") from None


def served_models(base_url: str, timeout: float = 30.0) -> list[str]:
    listing = _request(f"{base_url}/models", None, timeout)
    data = listing.get("data") if isinstance(listing, dict) else None
    if not isinstance(data, list):
        raise PreflightError(f"{base_url}/models: not a model list: {str(listing)[:_BODY_EXCERPT]}")
    return [str(item.get("id")) for item in data if isinstance(item, dict)]


def image_data_url(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def caption_one_image(base_url: str, model: str, image: Path, lang: str = "zh", timeout: float = 300.0) -> str:
    body = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_data_url(image)}},
                    {"type": "text", "text": load_prompt("caption", lang).render()},
                ],
            }
        ],
        "max_tokens": 32,
        "temperature": 0,
    }
    answer = _request(f"{base_url}/chat/completions", body, timeout)
    try:
        text = answer["choices"][0]["message"]["content"]
    except (TypeError, KeyError, IndexError):
        raise PreflightError(f"{base_url}/chat/completions: no choices[0].message.content in the answer") from None
    if not isinstance(text, str) or not text.strip():
        raise PreflightError(f"{base_url}/chat/completions: empty caption for {image}")
    return text


def preflight(base_url: str, model: str, image: Path, lang: str = "zh") -> str:
    """Both checks; returns the preflight caption."""
    base_url = base_url.rstrip("/")
    models = served_models(base_url)
    if model not in models:
        raise PreflightError(f"{base_url} serves {models}, not {model!r}: is another server on this port?")
    return caption_one_image(base_url, model, image, lang)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecac_bench.preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the server's OpenAI-compatible base URL (.../v1)")
    parser.add_argument("--model", required=True, help="the served model name the evaluation will ask for")
    parser.add_argument(
        "--data", type=data_location, default=None, help="ECAC data whose first image is sent (default $ECAC_DATA)"
    )
    parser.add_argument("--lang", choices=("zh", "en"), default="zh", help="captioning prompt language")
    args = parser.parse_args(argv)
    try:
        data = args.data or (data_location(os.environ["ECAC_DATA"]) if os.environ.get("ECAC_DATA") else None)
        image = load_dataset(data).records[0].image
        caption = preflight(args.base_url, args.model, image, args.lang)
    except (PreflightError, OSError, ValueError) as exc:
        print(f"preflight failed: {exc}", file=sys.stderr)
        return 2
    print(f"preflight ok: {args.model} captioned {image.name}: {caption[:80]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
