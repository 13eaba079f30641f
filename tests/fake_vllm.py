"""A stand-in for the ``vllm`` command in tests of baselines/_serve_and_eval.sh (no GPU, no weights).

``python tests/fake_vllm.py serve MODEL --host H --port P [any other vllm flags]`` serves the project's
OpenAI-compatible test app (tests/judge_server.py) plus vLLM's ``GET /health`` and a ``GET /v1/models`` that lists
``--served-model-name``. Other flags are recorded in ``$FAKE_VLLM_ARGS_FILE`` (when set) so a test can check what the
script passed. Like vLLM:

* ``--chat-template FILE`` (with ``--chat-template-content-format string``) is applied to every chat request (image
  parts become GLM-4V's placeholder in the text); a template that fails to render answers HTTP 400;
* ``FAKE_VLLM_FAIL=1`` exits at once, like a server that cannot load its model;
* ``FAKE_VLLM_FAIL_RED=1`` answers HTTP 500 to every request whose image's top-left pixel is pure red, so a test
  chooses which images fail by drawing them;
* ``FAKE_VLLM_AUTH_FILE`` collects the Authorization headers it receives, one per line.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
from pathlib import Path

import jinja2
from aiohttp import web
from judge_server import ServerState, create_app  # run as a script: its folder is on sys.path
from PIL import Image

IMAGE_PLACEHOLDER = "<|begin_of_image|><|endoftext|><|end_of_image|>"


def _images(body: dict) -> list[Image.Image]:
    out = []
    for message in body.get("messages", []):
        for part in message.get("content") if isinstance(message.get("content"), list) else []:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                out.append(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))
    return out


def _string_contents(body: dict) -> list[dict]:
    """vLLM's "string" content format: image parts become the model's placeholder in front of the text."""
    messages = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, list):
            images = sum(part.get("type") == "image_url" for part in content)
            text = "\n".join(part.get("text", "") for part in content if part.get("type") == "text")
            content = IMAGE_PLACEHOLDER * images + text
        messages.append({**message, "content": content})
    return messages


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--chat-template", default=None)
    args, rest = parser.parse_known_args(argv)
    if os.environ.get("FAKE_VLLM_ARGS_FILE"):
        recorded = {"model": args.model, "rest": rest, "served_model_name": args.served_model_name}
        recorded["chat_template"] = args.chat_template
        Path(os.environ["FAKE_VLLM_ARGS_FILE"]).write_text(json.dumps(recorded))
    if os.environ.get("FAKE_VLLM_FAIL"):
        print("ValueError: fake model failed to load", file=sys.stderr)
        return 1
    template = jinja2.Environment().from_string(Path(args.chat_template).read_text()) if args.chat_template else None
    fail_red = os.environ.get("FAKE_VLLM_FAIL_RED") == "1"
    served = args.served_model_name or args.model
    auth_file = os.environ.get("FAKE_VLLM_AUTH_FILE")

    @web.middleware
    async def vllm_behaviour(request: web.Request, handler):
        if request.path == "/v1/models":
            return web.json_response({"object": "list", "data": [{"id": served, "object": "model"}]})
        if request.path == "/health":
            return web.json_response({})
        if auth_file and request.path.startswith("/v1/"):
            with open(auth_file, "a") as fh:
                fh.write(request.headers.get("Authorization", "") + "\n")
        if request.path == "/v1/chat/completions":
            body = json.loads(await request.read())  # aiohttp keeps the body for the handler
            if template is not None:
                try:
                    template.render(messages=_string_contents(body), add_generation_prompt=True)
                except jinja2.TemplateError as exc:
                    return web.json_response({"error": {"message": f"chat template: {exc}"}}, status=400)
            if fail_red and any(image.getpixel((0, 0)) == (255, 0, 0) for image in _images(body)):
                return web.json_response({"error": {"message": "fake failure for a red image"}}, status=500)
        return await handler(request)

    app = create_app(ServerState())
    app.middlewares.append(vllm_behaviour)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
