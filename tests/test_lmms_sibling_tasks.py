"""`lmms-eval --tasks ecac_balanced_en,ecac_utility_en` (the opt-in sibling-metric tasks) through the real CLI and
the `openai` route, against the local server acting as captioner and judge: numbers equal `ecac-bench balanced` /
`ecac-bench utility` on the captions from the samples files."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from fake_judge import fake_model
from judge_server import JudgeServer
from test_lmms_tasks import ecac_bench_json, lmms_metrics, run_lmms_eval, sample_rows, samples_file, write_subset

from ecac_bench import load_dataset
from ecac_bench.predictions import load_lmms_eval_samples

BALANCED = ("balanced_precision", "balanced_recall", "linguistic", "b_capscore", "n", "n_failed")
UTILITY = ("utility", "utility_micro", "n_images", "n_questions", "n_failed", "n_unparsed")


@pytest.mark.slow
def test_sibling_tasks_match_the_cli(tmp_path: Path) -> None:
    rows = [r for r in sample_rows() if r["caption"].isascii() and r["split"] == "test"][:2]
    data = write_subset(rows, tmp_path / "data.jsonl")
    questions = tmp_path / "qa.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"id": r["id"], "question": "Which?", "options": ["TRUE:score", "kite"], "answer": "A"}) + "\n"
            for r in rows
        )
    )
    with JudgeServer(api_key="sk-test") as server:
        server.state.responder = fake_model  # captions fall through to the server's {"score": N} answers
        env = {
            "ECAC_DATA": str(data),
            "ECAC_QA": str(questions),
            "OPENAI_API_KEY": "sk-test",
            "ECAC_JUDGE_BASE_URL": server.base_url,
            "ECAC_JUDGE_MODEL": "fake",
            "ECAC_JUDGE_API_KEY": "sk-test",
        }
        model_args = f"model=test-model,base_url={server.base_url}"
        results, folder = run_lmms_eval(
            ["--model", "openai", "--model_args", model_args, "--tasks", "ecac_balanced_en,ecac_utility_en"],
            tmp_path,
            **env,
        )
        dataset = load_dataset(data)
        for task, command, keys in (
            ("ecac_balanced_en", "balanced", BALANCED),
            ("ecac_utility_en", "utility", UTILITY),
        ):
            captions = load_lmms_eval_samples(samples_file(folder, task), dataset)
            predictions = tmp_path / f"{task}.jsonl"
            predictions.write_bytes(
                b"".join(orjson.dumps({"id": i, "caption": c[0]}) + b"\n" for i, c in captions.items())
            )
            extra = ["--questions", str(questions)] if command == "utility" else []
            report = ecac_bench_json(
                [
                    command,
                    "--data",
                    str(data),
                    "--predictions",
                    str(predictions),
                    "--lang",
                    "en",
                    "--no-progress",
                    *extra,
                ],
                tmp_path,
                command,
                **env,
            )
            assert lmms_metrics(results, task, keys) == {k: report["metrics"][k] for k in keys}, task
            assert report["metrics"]["n_failed"] == 0
    # the captions ({"score": N}) name the option "score": every round of the utility questions is right
    assert results["results"]["ecac_utility_en"]["utility,none"] == 100.0
