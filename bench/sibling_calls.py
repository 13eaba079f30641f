"""Judge calls per image for every judged metric, and the cache hit rate of a second run.

    python bench/sibling_calls.py [--images 40]

Runs the MLLM judge, toy precision (LLM extractor), CapRL utility (2 questions x 4 rounds per image) and the
BalCapRL balanced score on the bundled sample's system-a captions, against the local OpenAI-compatible test server
(tests/judge_server.py in its own process, answering with tests/fake_judge.py's rules), twice with one response cache.
Prints the requests each metric sent per image on the first run and the share answered from the cache on the second.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import replace
from pathlib import Path

import orjson

from ecac_bench import SAMPLE_PREDICTIONS, load_dataset, load_predictions
from ecac_bench.balanced import balanced_items, balanced_scores
from ecac_bench.judge import inputs_from_predictions, judge_captions
from ecac_bench.llm import ClientConfig, Endpoint, LLMClient, ResponseCache
from ecac_bench.toy_precision import extract_with_llm
from ecac_bench.utility import QAItem, caption_utility

SERVER = Path(__file__).resolve().parent.parent / "tests" / "judge_server.py"


def questions_for(dataset) -> list[QAItem]:
    """Two questions per image whose answers are the image's first toy and its area (rules of fake_judge)."""
    items = []
    for record in dataset:
        toy = record.toys[0].name if record.toys else "nothing"
        items.append(QAItem(record.id, "Which toy?", (f"TRUE:{toy}", "kite", "drum", "doll"), 0))
        items.append(QAItem(record.id, "Which area?", (f"TRUE:{record.area}", "kitchen", "garage", "office"), 0))
    return items


def server_requests(base_url: str, reset: bool = False) -> int:
    """The server's request counter (``GET /_stats``), zeroed afterwards with ``reset``."""
    root = base_url.removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/_stats") as r:
        count = orjson.loads(r.read())["requests"]
    if reset:
        urllib.request.urlopen(urllib.request.Request(f"{root}/_reset", method="POST")).close()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    dataset = load_dataset()
    predictions = load_predictions(SAMPLE_PREDICTIONS["system-a"], dataset)
    dataset = replace(dataset, records=dataset.records[: args.images], _by_id=None)
    predictions = {r.id: predictions[r.id] for r in dataset}
    n = len(dataset)
    metrics = {
        "judge score": lambda c: judge_captions(c, inputs_from_predictions(dataset, predictions), lang="en"),
        "toy precision (llm)": lambda c: extract_with_llm(c, predictions, lang="en"),
        "utility (2 q x 4 rounds)": lambda c: caption_utility(c, questions_for(dataset), predictions, lang="en"),
        "balanced": lambda c: balanced_scores(c, c, balanced_items(dataset, predictions), lang="en"),
    }
    proc = subprocess.Popen([sys.executable, str(SERVER), "--fake-model"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("READY "):
            raise RuntimeError(f"server did not start: {line!r}")
        base_url = line.split()[1]
        config = ClientConfig(Endpoint((base_url,), "fake", "sk-bench"))
        print(f"{n} images of the sample, system-a captions; requests per image (first run) and cache hits (second)")
        print(f"{'metric':26s} {'requests/image':>15s} {'2nd run: sent':>14s} {'cache hit rate':>15s}")
        with tempfile.TemporaryDirectory() as tmp:
            for name, run in metrics.items():
                sent = []
                for _ in range(2):
                    client = LLMClient(config, ResponseCache(Path(tmp) / f"{name}.sqlite"), progress=False)
                    server_requests(base_url, reset=True)
                    asyncio.run(run(client))
                    sent.append(server_requests(base_url))
                first, second = sent
                hit = 1 - second / first if first else 0.0  # share of the first run's HTTP requests not sent again
                print(f"{name:26s} {first / n:15.2f} {second:14d} {100 * hit:14.1f}%")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
