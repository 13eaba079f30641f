"""A real OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks (FastAPI + uvicorn).

It answers ``POST /v1/chat/completions`` deterministically and injects faults on request. Faults are driven by
directives written into the *first user message* of a conversation (tests put them into captions), and counted per
conversation, so "fail the first N times" holds across retries and repair turns:

* ``@@429xN``     the first N requests get 429 with a ``Retry-After`` header (``state.retry_after`` seconds)
* ``@@500xN``     the first N requests get 500
* ``@@slowxN``    the first N requests sleep ``state.slow_seconds`` before answering (past a client's timeout)
* ``@@badjsonxN`` the first N requests get HTTP 200 with a body that is not valid JSON
* ``@@outxN``     the first N requests answer ``{"score": 150}`` (out of range)
* ``@@garbagexN`` the first N requests answer prose without any score
* ``@@score=N``   answer ``{"score": N}``; without it the score is a stable hash of the message (0-100)
* ``@@reply=TEXT@@`` answer TEXT verbatim (e.g. a JSON list for the toy extractor)

Use in Python::

    with JudgeServer(latency=0.0, api_key="sk-test") as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="sk-test")
        ...
        server.state.requests        # every HTTP request to /v1/chat/completions (answered: the 200s)
        server.state.max_in_flight   # most requests answered at once
        server.state.keep_bodies = True; server.state.bodies  # the JSON bodies received
        server.state.authorizations  # Authorization headers seen (only when api_key is set)
        server.state.reset()         # zero the counters between tests; server.wait_idle() lets slow ones end

or as a process (benchmarks): ``python tests/judge_server.py --latency 0.05`` prints ``READY <base_url>``;
``GET /_stats`` returns the counters and ``POST /_reset`` zeroes them.
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
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

_COUNTED = re.compile(r"@@(429|500|slow|badjson|out|garbage)x(\d+)")
_SCORE = re.compile(r"@@score=(-?\d+(?:\.\d+)?)")
_REPLY = re.compile(r"@@reply=(.*?)@@", re.S)


@dataclass
class ServerState:
    """Settings and counters; read and changed by tests while the server runs."""

    latency: float = 0.0
    slow_seconds: float = 3.0
    retry_after: str = "1"
    api_key: str | None = None
    requests: int = 0
    answered: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    per_conversation: Counter[str] = field(default_factory=Counter)
    authorizations: set[str] = field(default_factory=set)
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


def _completion(model: str, text: str, prompt: str) -> dict[str, Any]:
    return {
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


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        state.requests += 1
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            return await answer(request)
        finally:
            state.in_flight -= 1

    async def answer(request: Request) -> Response:
        if state.api_key is not None:
            auth = request.headers.get("authorization", "")
            state.authorizations.add(auth)
            if auth != f"Bearer {state.api_key}":
                return JSONResponse({"error": {"message": "bad key", "type": "auth"}}, status_code=401)
        body = orjson.loads(await request.body())
        if state.keep_bodies:
            state.bodies.append(body)
        messages = body["messages"]
        if state.fail_with is not None and (status := state.fail_with(messages)):
            return JSONResponse({"error": {"message": f"refused by the test ({status})"}}, status_code=status)
        first_user = next((_text_of(m) for m in messages if m.get("role") == "user"), "")
        state.per_conversation[first_user] += 1
        seen = state.per_conversation[first_user]
        faults = {kind: int(n) for kind, n in _COUNTED.findall(first_user) if seen <= int(n)}
        if state.latency:
            await asyncio.sleep(state.latency)
        if "429" in faults:
            return JSONResponse(
                {"error": {"message": "rate limited"}}, status_code=429, headers={"Retry-After": state.retry_after}
            )
        if "500" in faults:
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if "slow" in faults:
            # Stop early once the client gave up, so a slow answer does not outlive its test.
            end = time.monotonic() + state.slow_seconds
            while time.monotonic() < end and not await request.is_disconnected():
                await asyncio.sleep(0.02)
        if "badjson" in faults:
            return Response(b'{"id": "x", "choices": [', media_type="application/json")
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
        # orjson straight to bytes: the server's CPU per request should not limit client benchmarks.
        completion = _completion(body.get("model", "test-judge"), text, prompt)
        return Response(orjson.dumps(completion), media_type="application/json")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "test-judge", "object": "model", "owned_by": "tests"}]}

    @app.get("/_stats")
    async def stats() -> dict[str, Any]:
        return state.stats()

    @app.post("/_reset")
    async def reset() -> dict[str, Any]:
        state.reset()
        return state.stats()

    return app


class JudgeServer:
    """Runs :func:`create_app` under uvicorn in a background thread on a free port of 127.0.0.1."""

    def __init__(self, latency: float = 0.0, api_key: str | None = None, port: int = 0) -> None:
        self.state = ServerState(latency=latency, api_key=api_key)
        config = uvicorn.Config(
            create_app(self.state), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> JudgeServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("judge test server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being answered (e.g. slow ones a previous test gave up on)."""
        deadline = time.monotonic() + timeout
        while self.state.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)

    def wait_closed(self) -> None:
        self._thread.join()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> JudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument("--api-key", default=None, help="require this bearer key")
    args = parser.parse_args(argv)
    with JudgeServer(latency=args.latency, api_key=args.api_key, port=args.port) as server:
        print(f"READY {server.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.wait_closed()


if __name__ == "__main__":
    sys.exit(main())
