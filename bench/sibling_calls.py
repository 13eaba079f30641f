"""Judge calls per image for every judged metric, and the cache hit rate of a second run.

    python bench/sibling_calls.py [--images 40]

Runs the MLLM judge, toy precision (LLM extractor), CapRL utility (2 questions x 4 rounds per image) and the
BalCapRL balanced score on the bundled sample's system-a captions, against the local OpenAI-compatible test server
(tests/judge_server.py, answering with tests/fake_judge.py's rules), twice with one response cache. Prints the
requests each metric sent per image on the first run and the share answered from the cache on the second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from fake_judge import fake_model  # noqa: E402
from judge_server import JudgeServer  # noqa: E402

from ecac_bench import SAMPLE_PREDICTIONS, load_dataset, load_predictions  # noqa: E402
from ecac_bench.balanced import balanced_items, balanced_scores  # noqa: E402
from ecac_bench.judge import inputs_from_predictions, judge_captions  # noqa: E402
from ecac_bench.llm_client import ClientConfig, LLMClient, ResponseCache  # noqa: E402
from ecac_bench.toy_precision import extract_with_llm  # noqa: E402
from ecac_bench.utility import QAItem, caption_utility  # noqa: E402


def questions_for(dataset) -> list[QAItem]:
    """Two questions per image whose answers are the image's first toy and its area (rules of fake_judge)."""
    items = []
    for record in dataset:
        toy = record.toys[0].name if record.toys else "nothing"
        items.append(QAItem(record.id, "Which toy?", (f"TRUE:{toy}", "kite", "drum", "doll"), 0))
        items.append(QAItem(record.id, "Which area?", (f"TRUE:{record.area}", "kitchen", "garage", "office"), 0))
    return items


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
    with tempfile.TemporaryDirectory() as tmp, JudgeServer() as server:
        server.state.responder = fake_model
        config = ClientConfig.resolve(model="fake", base_url=server.base_url, api_key="sk-bench", env={})
        print(f"{n} images of the sample, system-a captions; requests per image (first run) and cache hits (second)")
        print(f"{'metric':26s} {'requests/image':>15s} {'2nd run: sent':>14s} {'cache hit rate':>15s}")
        for name, run in metrics.items():
            sent = []
            for _ in range(2):
                client = LLMClient(config, ResponseCache(Path(tmp) / f"{name}.sqlite"), progress=False)
                server.state.reset()
                asyncio.run(run(client))
                sent.append(server.state.requests)
            first, second = sent
            hit = 1 - second / first if first else 0.0  # share of the first run's HTTP requests not sent again
            print(f"{name:26s} {first / n:15.2f} {second:14d} {100 * hit:14.1f}%")


if __name__ == "__main__":
    main()
