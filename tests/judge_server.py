"""A real OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks (aiohttp.web, lean enough that its
own CPU per request stays well below the client's: bench/judge_throughput.py measures both).

It answers ``POST /v1/chat/completions`` deterministically and injects faults on request. Faults are driven by
directives written into the *first user message* of a conversation (tests put them into captions), and counted per
conversation, so "fail the first N times" holds across retries and repair turns:

* ``@@429xN``     the first N requests get 429 with a ``Retry-After`` header (``state.retry_after`` seconds)
* ``@@500xN``     the first N requests get 500
* ``@@400xN``     the first N requests get 400 (a request the server refuses, e.g. a prompt too long)
* ``@@slowxN``    the first N requests sleep ``state.slow_seconds`` before answering (past a client's timeout)
* ``@@badjsonxN`` the first N requests get HTTP 200 with a body that is not valid JSON
* ``@@closexN``   the first N requests see their connection closed without any response
* ``@@outxN``     the first N requests answer ``{"score": 150}`` (out of range)
* ``@@garbagexN`` the first N requests answer prose without any score
* ``@@score=N``   answer ``{"score": N}``; without it the score is a stable hash of the message (0-100)
* ``@@reply=TEXT@@`` answer TEXT verbatim (e.g. a JSON list for the toy extractor)

Structured output: ``state.structured = "accept"`` (default; vLLM and OpenAI) takes ``response_format``
``{"type": "json_schema", ...}`` and records it in ``state.response_formats``; ``"reject"`` answers such requests
with HTTP 400, as a server without structured output does. A body with vLLM's removed ``guided_json`` is always a
400. ``state.down = True`` answers everything with 503. ``state.usage_raw`` replaces the usage block with raw JSON
text (``'"lots"'``, ``'NaN'``, ``'1e400'``).

Use in Python::

    with JudgeServer(latency=0.0, api_key="sk-test") as server:
        ...  # a client on server.base_url
        server.state.requests        # every HTTP request to /v1/chat/completions (answered: the 200s)
        server.state.max_in_flight   # most requests answered at once
        server.state.keep_bodies = True; server.state.bodies  # the JSON bodies received
        server.state.authorizations  # Authorization headers seen
        server.state.reset()         # zero the counters between tests; server.wait_idle() lets slow ones end

or as a process (benchmarks): ``python tests/judge_server.py --latency 0.05 [--fake-model]`` prints
``READY <base_url>``; ``GET /_stats`` returns the counters and ``POST /_reset`` zeroes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

_COUNTED = re.compile(r"@@(429|500|400|slow|badjson|close|out|garbage)x(\d+)")
_SCORE = re.compile(r"@@score=(-?\d+(?:\.\d+)?)")
_REPLY = re.compile(r"@@reply=(.*?)@@", re.S)


@dataclass
class ServerState:
    """Settings and counters; read and changed by tests while the server runs."""

    latency: float = 0.0
    slow_seconds: float = 3.0
    retry_after: str = "1"
    api_key: str | None = None
    structured: str = "accept"
    usage_raw: str | None = None
    down: bool = False  # answer every request with 503 (a failing server among several)
    requests: int = 0
    answered: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    per_conversation: Counter[str] = field(default_factory=Counter)
    authorizations: set[str] = field(default_factory=set)
    response_formats: list[Any] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    keep_bodies: bool = False
    # Optional content-aware answers: called with the request's messages; a string it returns is the reply
    # (faults still apply first). Tests of multi-step metrics (utility, balanced) plug their fake model in here.
    responder: Callable[[list[dict[str, Any]]], str | None] | None = None
    # Optional content-aware HTTP errors: called with the request's messages; a status code it returns is the answer
    # (e.g. 400 for chosen images, as a server refusing a prompt that is too long).
    fail_with: Callable[[list[dict[str, Any]]], int | None] | None = None

    def reset(self) -> None:
        """Zero the counters (``in_flight`` is live and stays)."""
        self.requests = 0
        self.answered = 0
        self.max_in_flight = 0
        self.per_conversation.clear()
        self.authorizations.clear()
        self.response_formats.clear()
        self.bodies.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "answered": self.answered,
            "max_in_flight": self.max_in_flight,
            "conversations": len(self.per_conversation),
        }


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content or [] if part.get("type") == "text")


def _completion(model: str, text: str, prompt: str, usage_raw: str | None) -> bytes:
    body = {
        "id": "chatcmpl-" + hashlib.sha1(prompt.encode()).hexdigest()[:12],
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": len(prompt),
            "completion_tokens": len(text),
            "total_tokens": len(prompt) + len(text),
        },
    }
    if usage_raw is None:
        return orjson.dumps(body)
    del body["usage"]
    return orjson.dumps(body)[:-1] + b',"usage":' + usage_raw.encode() + b"}"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"error": {"message": message}})
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def create_app(state: ServerState) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        state.requests += 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            return await answer(request)
        finally:
            state.in_flight -= 1

    async def answer(request: web.Request) -> web.StreamResponse:
        if state.down:
            return _error(503, "server down")
        auth = request.headers.get("Authorization", "")
        state.authorizations.add(auth)
        if state.api_key is not None and auth != f"Bearer {state.api_key}":
            return _error(401, "bad key")
        body = orjson.loads(await request.read())
        if state.keep_bodies:
            state.bodies.append(body)
        if "guided_json" in body:
            return _error(400, "guided_json was removed from vLLM: use response_format")
        if "response_format" in body:
            if state.structured == "reject":
                return _error(400, "response_format json_schema is not supported by this server")
            state.response_formats.append(body["response_format"])
        messages = body["messages"]
        if state.fail_with is not None and (status := state.fail_with(messages)):
            return _error(status, f"refused by the test ({status})")
        first_user = next((_text_of(m) for m in messages if m.get("role") == "user"), "")
        state.per_conversation[first_user] += 1
        seen = state.per_conversation[first_user]
        faults = {kind for kind, n in _COUNTED.findall(first_user) if seen <= int(n)}
        if state.latency:
            await asyncio.sleep(state.latency)
        if "close" in faults and request.transport is not None:
            request.transport.abort()  # no status line, no body: the client sees the connection closed
            raise asyncio.CancelledError
        if "429" in faults:
            return _error(429, "rate limited", {"Retry-After": state.retry_after})
        if "500" in faults:
            return _error(500, "boom")
        if "400" in faults:
            return _error(400, "prompt too long")
        if "slow" in faults:
            # Stop early once the client gave up, so a slow answer does not outlive its test.
            end = time.monotonic() + state.slow_seconds
            while time.monotonic() < end and request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.02)
        if "badjson" in faults:
            return web.Response(body=b'{"id": "x", "choices": [', content_type="application/json")
        prompt = "\n".join(_text_of(m) for m in messages)
        if "out" in faults:
            text = '{"score": 150}'
        elif "garbage" in faults:
            text = "This caption is rather good, I would say."
        elif state.responder is not None and (custom := state.responder(messages)) is not None:
            text = custom
        elif reply := _REPLY.search(first_user):
            text = reply.group(1)
        elif score := _SCORE.search(first_user):
            text = f'{{"score": {score.group(1)}}}'
        else:
            text = f'{{"score": {int(hashlib.sha256(first_user.encode()).hexdigest(), 16) % 101}}}'
        state.answered += 1
        completion = _completion(body.get("model", "test-judge"), text, prompt, state.usage_raw)
        return web.Response(body=completion, content_type="application/json")

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "test-judge", "object": "model"}]})

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(state.stats())

    async def reset(_: web.Request) -> web.Response:
        state.reset()
        return web.json_response(state.stats())

    app = web.Application(client_max_size=64 * 1024 * 1024)  # images travel as base64 data URLs
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_reset", reset)
    return app


class JudgeServer:
    """Runs :func:`create_app` in a background thread (its own event loop) on a free port of 127.0.0.1."""

    def __init__(self, latency: float = 0.0, api_key: str | None = None, port: int = 0) -> None:
        self.state = ServerState(latency=latency, api_key=api_key)
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(create_app(self.state), access_log=None, handle_signals=False)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> JudgeServer:
        async def serve() -> int:
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024)
            await site.start()
            return self._runner.addresses[0][1]

        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(timeout=10)
        return self

    def wait_idle(self, timeout: float = 10.0, quiet: float = 0.05) -> None:
        """Wait until no request is being answered and none has arrived for ``quiet`` seconds: slow ones a previous
        test gave up on, and ones its client sent just before it stopped, which can reach the handler after a first
        look found the server idle (they made test_concurrency_is_bounded flaky)."""
        now = time.monotonic()
        deadline, quiet_since, seen = now + timeout, now, self.state.requests
        while now < deadline:
            if self.state.in_flight or self.state.requests != seen:
                quiet_since, seen = now, self.state.requests
            elif now - quiet_since >= quiet:
                return
            time.sleep(0.01)
            now = time.monotonic()

    def wait_closed(self) -> None:
        self._thread.join()

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> JudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    parser.add_argument("--fake-model", action="store_true", help="answer the project's prompts (fake_judge.py)")
    args = parser.parse_args(argv)
    with JudgeServer(latency=args.latency, api_key=args.api_key, port=args.port) as server:
        if args.fake_model:
            from fake_judge import fake_model  # this script's own folder is on sys.path when run as a script

            server.state.responder = fake_model
        print(f"READY {server.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.wait_closed()


if __name__ == "__main__":
    sys.exit(main())
