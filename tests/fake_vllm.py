"""A stand-in for the ``vllm`` command in tests of baselines/_serve_and_eval.sh (no GPU, no weights).

``python tests/fake_vllm.py serve MODEL --host H --port P [any other vllm flags]`` serves the project's
OpenAI-compatible test app (tests/judge_server.py) plus vLLM's ``GET /health``; other flags are recorded in
``$FAKE_VLLM_ARGS_FILE`` (when set) so a test can check what the script passed. ``FAKE_VLLM_FAIL=1`` makes it
exit at once, like a server that cannot load its model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from judge_server import ServerState, create_app


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args, rest = parser.parse_known_args(argv)
    if os.environ.get("FAKE_VLLM_ARGS_FILE"):
        Path(os.environ["FAKE_VLLM_ARGS_FILE"]).write_text(json.dumps({"model": args.model, "rest": rest}))
    if os.environ.get("FAKE_VLLM_FAIL"):
        print("ValueError: fake model failed to load", file=sys.stderr)
        return 1
    app = create_app(ServerState())
    app.router.add_get("/health", health)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)
    return 0


async def health(_: web.Request) -> web.Response:
    return web.json_response({})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
