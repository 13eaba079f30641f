"""Throughput and CPU cost of the LLM client against a local server with a fixed 50 ms latency per request, next to
a plain aiohttp client measured in the same run; then a fully cached re-run at 10k, 30k and 100k requests.

    .venv/bin/python bench/judge_throughput.py [--latency 0.05] [--waves 100] [--levels 1,64,128] [--rounds 3]

The server (tests/judge_server.py, aiohttp.web) runs in its own process; its CPU seconds are printed for every run,
to show it is not the bottleneck. The client runs with everything on that a real run has: the response cache (every
answer committed) and in-flight claims; rate limiting off. The baseline is the least a Python client can do: one
aiohttp session, a semaphore, orjson, no cache. Goals (issue 16): >= 90 % of ideal at c=64 and >= 80 % at c=128,
<= 0.4 ms of client CPU per request, a cached re-run of 100k requests in < 1 s, linear from 10k to 100k.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from ecac_bench import SAMPLE_DATA
from ecac_bench.llm import (
    ChatRequest,
    ClientConfig,
    Endpoint,
    LLMClient,
    ResponseCache,
    user_message,
)
from ecac_bench.llm.cache import key_of
from ecac_bench.llm.engine import _KeyFragments
from ecac_bench.prompts import load_prompt

SERVER = Path(__file__).resolve().parent.parent / "tests" / "judge_server.py"


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    # Its own process, so the server's CPU time does not compete with the client's event loop for the GIL.
    proc = subprocess.Popen([sys.executable, str(SERVER), "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.split()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def judge_requests(tag: str, n: int, image: Path | None = None) -> list[ChatRequest]:
    """Requests shaped like the judge's: the real zh prompt around a caption (and the image, when given)."""
    prompt = load_prompt("judge_score", "zh")
    images = [image] if image else []
    return [
        ChatRequest((user_message(prompt.render(caption=f"{tag} 幼儿在建构区搭积木 {i}"), images),), prompt.tag)
        for i in range(n)
    ]


async def plain_aiohttp(url: str, requests: list[ChatRequest], concurrency: int) -> None:
    """The baseline: what any aiohttp client must do per request, and nothing more."""
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(request: ChatRequest) -> None:
            body = {"model": "bench", "messages": request.messages, "temperature": 0.0, "max_tokens": 2048}
            async with (
                semaphore,
                session.post(f"{url}/chat/completions", data=orjson.dumps(body), headers=headers) as r,
            ):
                data = orjson.loads(await r.read())
                assert isinstance(data["choices"][0]["message"]["content"], str)

        await asyncio.gather(*(one(r) for r in requests))


def measure(run, n: int, server_pid: int) -> dict[str, float]:
    cpu0, wall0, server0 = time.process_time(), time.perf_counter(), cpu_seconds(server_pid)
    run()
    wall = time.perf_counter() - wall0
    return {
        "rate": n / wall,
        "cpu_ms": (time.process_time() - cpu0) / n * 1000,
        "server_ms": (cpu_seconds(server_pid) - server0) / n * 1000,
        "server_s": cpu_seconds(server_pid) - server0,
        "wall": wall,
    }


def _spread(values: list[float], fmt: str) -> str:
    """The median of a level's rounds, and their range when there are several."""
    middle = format(statistics.median(values), fmt)
    return middle if len(values) == 1 else f"{middle} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def throughput(
    url: str, server_pid: int, tmp: Path, latency: float, waves: int, levels: list[int], rounds: int
) -> None:
    """Per level, ``rounds`` rounds of the client then the plain baseline, alternating (the host's speed drifts
    between minutes: alternating gives both the same conditions); medians, with the rounds' range."""
    cache = ResponseCache(tmp / "throughput.sqlite")
    print(f"{rounds} round(s) per level, the client and plain aiohttp alternating; median (range)")
    for c in levels:
        n = max(40, c * waves)
        config = ClientConfig(Endpoint((url,), "bench", "sk-bench"), concurrency=c)
        client = LLMClient(config, cache, progress=False)
        client.complete(judge_requests(f"warm{c}", c))  # connections, imports
        asyncio.run(plain_aiohttp(url, judge_requests(f"pwarm{c}", c), c))
        mine: list[dict[str, float]] = []
        theirs: list[dict[str, float]] = []
        for r in range(rounds):
            ours = judge_requests(f"c{c}r{r}", n)
            mine.append(measure(lambda: client.complete(ours), n, server_pid))  # noqa: B023
            assert client.stats.failed == 0, client.stats
            plain = judge_requests(f"p{c}r{r}", n)
            theirs.append(measure(lambda: asyncio.run(plain_aiohttp(url, plain, c)), n, server_pid))  # noqa: B023
        ideal = c / latency
        ratios = [m["rate"] / t["rate"] for m, t in zip(mine, theirs, strict=True)]
        busy = [m["server_s"] / m["wall"] for m in mine]
        print(f"c={c} (n={n}, ideal {ideal:.0f} req/s):")
        for name, runs in (("client", mine), ("plain aiohttp", theirs)):
            print(
                f"  {name:<13} {_spread([m['rate'] / ideal * 100 for m in runs], '.1f')} % of ideal, "
                f"CPU {_spread([m['cpu_ms'] for m in runs], '.3f')} ms/request, "
                f"server CPU {_spread([m['server_ms'] for m in runs], '.3f')} ms/request"
            )
        print(
            f"  client/plain  {_spread([x * 100 for x in ratios], '.1f')} %; "
            f"server busy {_spread([x * 100 for x in busy], '.0f')} % of a core"
        )
    cache.close()


def fill(path: Path, config: ClientConfig, requests: list[ChatRequest]) -> dict[str, float]:
    """A cache holding an answer for every request (one transaction: filling is not what is measured)."""
    cache = ResponseCache(path)
    filler = LLMClient(config, cache, progress=False)
    with cache._db:
        cache._db.execute("BEGIN")
        for request in requests:
            components = filler.components(request)
            key = key_of(components)
            cache._db.execute("INSERT INTO answers VALUES (?, ?, ?, ?, 0, 0)", (key, '{"score": 80}', 900, 8))
            cache._db.execute("INSERT INTO key_components VALUES (?, ?)", (key, components))
    footprint = cache.footprint()
    cache.close()
    return footprint


def cached_rerun(tmp: Path, sizes: list[int], repeats: int) -> None:
    """Fill a cache with max(sizes) judge-shaped answers, then time fully cached re-runs of the first n of them,
    each with a new client and a new connection (as a re-run of a command would)."""
    image = sorted((SAMPLE_DATA.parent / "images").glob("*.png"))[0]
    config = ClientConfig(Endpoint(("http://127.0.0.1:9/v1",), "bench", "sk-bench"))  # never contacted
    for shape, with_image in (("text only (toy extraction, utility)", None), ("with an image (the judge)", image)):
        path = tmp / f"cached-{bool(with_image)}.sqlite"
        requests = judge_requests("cached", max(sizes), with_image)
        footprint = fill(path, config, requests)
        print(
            f"{shape}: {footprint['entries']:,} answers (zh judge prompt), {footprint['bytes'] / 1e6:.1f} MB, "
            f"{footprint['bytes_per_entry']:.0f} bytes per entry (answer, key, key components)"
        )
        # The floor, measured in the same run: what any cached re-run must do, with nothing around it: each
        # request's key (its components, encoded by the engine's own code, and their sha256), then one SQLite lookup
        # per 512 keys.
        fragments = _KeyFragments(LLMClient(config))
        cache = ResponseCache(path)
        start = time.perf_counter()
        keys = []
        for i in range(0, len(requests), 512):
            fragments.image_parts.clear()  # as the engine does per chunk: an image's file is looked at again
            keys += [key_of(fragments.components(r)) for r in requests[i : i + 512]]
        keyed = time.perf_counter()
        for i in range(0, len(keys), 512):
            cache.get_many(keys[i : i + 512])
        floor = (time.perf_counter() - start) / len(keys)
        cache.close()
        lookup = floor - (keyed - start) / len(keys)
        print(f"  floor (keys, then lookups): {floor * 1e6:.1f} us/request, of which the lookups {lookup * 1e6:.1f}")
        first = None
        for n in sizes:
            walls = []
            for _ in range(repeats):
                client = LLMClient(config, ResponseCache(path), progress=False)
                start = time.perf_counter()
                results = client.complete(requests[:n])
                walls.append(time.perf_counter() - start)
                assert client.stats.cached == n and all(r.cached for r in results), client.stats
                client.cache.close()
                del results
            # The fastest of the repeats is the least disturbed (a shared machine only ever slows a run), as timeit.
            wall, middle = min(walls), statistics.median(walls)
            first = first or (n, wall)
            print(
                f"  cached re-run of {n:>7,} requests: {wall:.3f} s fastest of {repeats}, {middle:.3f} s median "
                f"({wall / n * 1e6:.1f} us/request, {wall / n / (first[1] / first[0]):.2f}x the per-request time at "
                f"{first[0]:,}; {wall / n / floor:.1f}x the floor)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    # 100 waves (5 s of ideal time per level): long enough that start-up does not weigh on a steady-state figure.
    parser.add_argument("--waves", type=int, default=100, help="requests per concurrency slot in each run")
    parser.add_argument("--levels", default="1,64,128", help="concurrency levels")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of client and plain per level")
    parser.add_argument("--cached", default="10000,30000,100000", help="sizes of the cached re-runs ('' to skip)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each cached re-run")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_throughput:
            proc, url = start_server(args.latency)
            try:
                print(f"server {url} (own process), latency {args.latency * 1000:.0f} ms; client: cache + claims on")
                levels = [int(x) for x in args.levels.split(",")]
                throughput(url, proc.pid, Path(tmp), args.latency, args.waves, levels, args.rounds)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        if args.cached:
            cached_rerun(Path(tmp), [int(x) for x in args.cached.split(",")], args.repeats)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
