"""Throughput of ecac_bench.llm_client against the local test server with a fixed 50 ms latency per request.

Prints requests/s at concurrency 1, 8, 32, 64 and the ratio to the ideal (concurrency / latency), then the time of a
fully cached re-run of 10,000 requests. Goals (issue 3): >= 90% of ideal at 64; cached 10k in < 2 s.

    .venv/bin/python bench/judge_throughput.py [--latency 0.05] [--cached 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ecac_bench.llm_client import ChatRequest, ClientConfig, LLMClient, ResponseCache, user_message

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
    """User + system CPU time of a process (Linux /proc), to tell CPU starvation from client overhead."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests(tag: str, n: int) -> list[ChatRequest]:
    return [ChatRequest((user_message(f"{tag} caption {i}"),), "bench@1") for i in range(n)]


def run(client: LLMClient, batch: list[ChatRequest]) -> float:
    start = time.perf_counter()
    results = client.complete(batch, desc="bench")
    elapsed = time.perf_counter() - start
    failed = sum(not r.ok for r in results)
    if failed:
        raise RuntimeError(f"{failed} requests failed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--cached", type=int, default=10_000, help="requests in the cached re-run")
    # 100 waves (5 s of ideal time per level): long enough that start-up (event loop, SDK client, 64 new
    # connections) does not weigh on a steady-state throughput figure.
    parser.add_argument("--waves", type=int, default=100, help="requests per concurrency slot in each run")
    args = parser.parse_args()
    proc, url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cache = ResponseCache(Path(tmp) / "bench.sqlite")
            print(f"server {url}, latency {args.latency * 1000:.0f} ms; client writes every answer to the cache")
            print(f"cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}")
            header = f"{'concurrency':>11} {'requests':>8} {'seconds':>8} {'req/s':>8} {'ideal':>8} {'ratio':>6}"
            print(f"{header} {'client CPU ms/req':>17} {'server CPU ms/req':>17}")
            for concurrency in (1, 8, 32, 64):
                config = ClientConfig(model="bench", base_url=url, api_key="sk-bench", concurrency=concurrency)
                client = LLMClient(config, cache, progress=False)
                n = max(40, concurrency * args.waves)
                run(client, requests(f"warm{concurrency}", concurrency))  # connections and imports
                cpu0, server0 = time.process_time(), cpu_seconds(proc.pid)
                elapsed = run(client, requests(f"c{concurrency}", n))
                client_ms = (time.process_time() - cpu0) / n * 1000
                server_ms = (cpu_seconds(proc.pid) - server0) / n * 1000
                rate, ideal = n / elapsed, concurrency / args.latency
                row = f"{concurrency:>11} {n:>8} {elapsed:>8.2f} {rate:>8.1f} {ideal:>8.1f} {rate / ideal:>6.1%}"
                print(f"{row} {client_ms:>17.2f} {server_ms:>17.2f}")

            config = ClientConfig(model="bench", base_url=url, api_key="sk-bench", concurrency=64)
            batch = requests("cached", args.cached)
            fill = run(LLMClient(config, cache, progress=False), batch)
            print(f"filled the cache with {args.cached} answers in {fill:.2f} s ({args.cached / fill:.0f} req/s)")
            client = LLMClient(config, ResponseCache(Path(tmp) / "bench.sqlite"), progress=False)
            cached = run(client, batch)
            assert client.stats.cached == args.cached, client.stats
            print(
                f"fully cached re-run of {args.cached} requests: {cached:.3f} s "
                f"({args.cached / cached:.0f} req/s; goal < 2 s)"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
