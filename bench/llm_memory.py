"""Memory of the LLM client at scale: peak RSS of `utility` over 2 million generated requests, of the client alone
streaming them, and of the old design (one asyncio task per request) for comparison, each in its own process.

    .venv/bin/python bench/llm_memory.py [--requests 2000000] [--tasks 200000]

The requests go to an in-process backend (one Transport class below) that answers at once, so the figures are the
client's and the caller's own, not a server's; no response cache (its pages would add the OS's file cache, not the
client's memory). The client keeps a bounded window (2 x concurrency + 512 requests) whatever the input's length:
its RSS must stay flat from a quarter of the requests to all of them. `utility` itself keeps O(n) state (one
outcome per round, then per question and per image), which is the metric's, printed next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ecac_bench.llm import ChatRequest, ClientConfig, Endpoint, LLMClient, user_message
from ecac_bench.utility import QAItem, caption_utility

QUESTIONS_PER_IMAGE = 4
ROUNDS = 4


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class InstantTransport:
    """A backend that answers every request at once with the letter A (the seam of issue 14: one class)."""

    def __init__(self, config: ClientConfig) -> None:
        self.answer = {
            "choices": [{"message": {"content": "A"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }

    async def send(self, base_url: str, body: Mapping[str, Any]) -> Any:
        return self.answer

    async def aclose(self) -> None:
        pass


def client(concurrency: int = 64) -> LLMClient:
    config = ClientConfig(Endpoint(("local://instant",), "bench"), concurrency=concurrency)
    return LLMClient(config, transport=InstantTransport, progress=False)


def phase_client(n: int) -> dict[str, Any]:
    """The client alone: n distinct generated requests streamed through it, results discarded."""

    def requests() -> Iterator[ChatRequest]:
        for i in range(n):
            yield ChatRequest((user_message(f"question {i}: which toy is on the table?"),), "bench@1")

    marks: dict[str, float] = {"start": peak_mb()}
    checkpoints = {n // 4: "quarter", n // 2: "half"}

    async def run() -> None:
        seen = 0
        async with contextlib.aclosing(client().astream(requests())) as stream:
            async for _ in stream:
                seen += 1
                if seen in checkpoints:
                    marks[checkpoints[seen]] = peak_mb()

    start = time.perf_counter()
    asyncio.run(run())
    marks["all"] = peak_mb()
    return {"peak_mb": marks, "seconds": time.perf_counter() - start}


def phase_utility(n: int) -> dict[str, Any]:
    """`caption_utility` over n requests: n / (4 rounds) questions, 4 per image, generated."""
    images = max(1, n // (QUESTIONS_PER_IMAGE * ROUNDS))
    before_inputs = peak_mb()
    items = [
        QAItem(f"img-{i}", f"Which toy does child {q} hold?", ("blocks", "ball", "drum", "kite"), q % 4)
        for i in range(images)
        for q in range(QUESTIONS_PER_IMAGE)
    ]
    captions = {f"img-{i}": [f"Children play with blocks and a ball in area {i % 7}."] for i in range(images)}
    inputs = peak_mb()
    start = time.perf_counter()
    result = asyncio.run(caption_utility(client(), items, captions, rounds=ROUNDS, lang="en"))
    return {
        "requests": len(items) * ROUNDS,
        "images": images,
        "n_rounds": result.n_rounds,
        "peak_mb": {"start": before_inputs, "inputs": inputs, "all": peak_mb()},
        "seconds": time.perf_counter() - start,
    }


def phase_tasks(n: int) -> dict[str, Any]:
    """The old design: one asyncio task per request, all created up front and gathered (a semaphore bounds the
    requests in flight, not the tasks)."""
    start_mb = peak_mb()

    async def run() -> None:
        semaphore = asyncio.Semaphore(64)
        transport = InstantTransport(client().config)

        async def one(i: int) -> None:
            async with semaphore:
                await transport.send("local://instant", {"messages": [user_message(f"question {i}")]})

        await asyncio.gather(*(asyncio.ensure_future(one(i)) for i in range(n)))

    asyncio.run(run())
    return {"peak_mb": {"start": start_mb, "all": peak_mb()}}


def in_subprocess(phase: str, n: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--phase", phase, "--requests", str(n)], capture_output=True)
    if out.returncode:
        raise RuntimeError(out.stderr.decode())
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2_000_000)
    parser.add_argument("--tasks", type=int, default=200_000, help="requests for the one-task-per-request baseline")
    parser.add_argument("--phase", choices=("client", "utility", "tasks"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run = {"client": phase_client, "utility": phase_utility, "tasks": phase_tasks}[args.phase]
        print(json.dumps(run(args.requests)))
        return
    n = args.requests
    alone = in_subprocess("client", n)
    m = alone["peak_mb"]
    print(f"client alone, {n:,} streamed requests ({alone['seconds']:.0f} s): peak RSS {m['start']:.0f} MB at start,")
    print(f"  {m['quarter']:.0f} MB after {n // 4:,}, {m['half']:.0f} MB after {n // 2:,}, {m['all']:.0f} MB after all")
    print(f"  -> the client's own growth from {n // 4:,} to {n:,} requests: {m['all'] - m['quarter']:+.0f} MB")
    util = in_subprocess("utility", n)
    u = util["peak_mb"]
    print(
        f"utility, {util['requests']:,} requests ({util['images']:,} images x {QUESTIONS_PER_IMAGE} questions x "
        f"{ROUNDS} rounds; {util['seconds']:.0f} s): peak RSS {u['all']:.0f} MB "
        f"(start {u['start']:.0f} MB, with the generated questions and captions {u['inputs']:.0f} MB)"
    )
    print(f"  -> {(u['all'] - u['inputs']) * 2**20 / util['requests']:.0f} bytes per request above the inputs,")
    print("     the metric's own per-round outcomes and per-question/per-image aggregation")
    tasks = in_subprocess("tasks", args.tasks)
    t = tasks["peak_mb"]
    per_million = (t["all"] - t["start"]) / args.tasks * 1e6
    print(
        f"baseline, one asyncio task per request ({args.tasks:,} requests): {t['all'] - t['start']:.0f} MB above start "
        f"= {per_million:,.0f} MB per million requests ({per_million * n / 1e6:,.0f} MB for {n:,})"
    )


if __name__ == "__main__":
    main()
