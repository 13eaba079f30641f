"""baselines/: each paper baseline script serves its model, waits for health, runs lmms-eval, stops the server.

``vllm`` is replaced by tests/fake_vllm.py (the project's OpenAI-compatible test app plus ``/health``); lmms-eval
is the real CLI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAKE_VLLM = f"{sys.executable} {REPO / 'tests' / 'fake_vllm.py'}"

# script -> (model served, flags it must pass beyond the shared ones, default tensor-parallel size)
BASELINES = {
    "run_qwen2_5_vl_3b.sh": ("Qwen/Qwen2.5-VL-3B-Instruct", [], "1"),
    "run_qwen2_5_vl_7b.sh": ("Qwen/Qwen2.5-VL-7B-Instruct", [], "1"),
    "run_qwen2_5_vl_32b.sh": ("Qwen/Qwen2.5-VL-32B-Instruct", [], "2"),
    "run_glm_4v_9b.sh": (
        "THUDM/glm-4v-9b",
        ["--trust-remote-code", "--hf-overrides", '{"architectures": ["GLM4VForCausalLM"]}', "--enforce-eager"],
        "1",
    ),
    "run_gemma_3_27b.sh": ("google/gemma-3-27b-it", [], "2"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_script(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ECAC_", "OPENAI_", "TP"))}
    base.update(
        VLLM=FAKE_VLLM,
        LMMS_EVAL=str(BIN / "lmms-eval"),
        PORT=str(free_port()),
        OUT_DIR=str(tmp_path / "out"),
        FAKE_VLLM_ARGS_FILE=str(tmp_path / "vllm_args.json"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"),
        WANDB_MODE="disabled",
        HEALTH_TIMEOUT="60",
    )
    base.update(env)
    return subprocess.run(
        ["bash", str(REPO / "baselines" / script)], env=base, capture_output=True, text=True, timeout=600
    )


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
def test_serves_evaluates_and_stops_the_server(tmp_path: Path) -> None:
    port = free_port()
    proc = run_script("run_qwen2_5_vl_3b.sh", tmp_path, TASKS="ecac_tts", LIMIT="2", PORT=str(port))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (results,) = (tmp_path / "out").glob("*/*_results.json")
    data = json.loads(results.read_text())
    assert data["config"]["model"] == "openai"
    assert data["model_name"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert data["n-samples"]["ecac_tts"]["effective"] == 2 and "tts,none" in data["results"]["ecac_tts"]
    assert (tmp_path / "out" / "vllm.log").is_file()
    assert "stopping vLLM" in proc.stdout and port_is_free(port)


@pytest.mark.parametrize("script", sorted(BASELINES))
def test_each_paper_baseline_serves_its_model_with_its_flags(script: str, tmp_path: Path) -> None:
    model, flags, tp = BASELINES[script]
    proc = run_script(script, tmp_path, TASKS="ecac_tts", FAKE_VLLM_FAIL="1")
    # the fake server refuses to start: the script must say so, show the log and fail
    assert proc.returncode == 1
    assert "vLLM exited before becoming healthy" in proc.stderr and "fake model failed to load" in proc.stderr
    recorded = json.loads((tmp_path / "vllm_args.json").read_text())
    assert recorded["model"] == model
    rest = recorded["rest"]
    assert rest[rest.index("--tensor-parallel-size") + 1] == tp
    assert rest[rest.index("--served-model-name") + 1] == model
    assert rest[len(rest) - len(flags) :] == flags if flags else "--trust-remote-code" not in rest


def test_judge_tasks_need_a_judge_model_before_anything_starts(tmp_path: Path) -> None:
    proc = run_script("run_qwen2_5_vl_7b.sh", tmp_path)  # default TASKS=ecac includes the judge tasks
    assert proc.returncode != 0 and "set ECAC_JUDGE_MODEL" in proc.stderr
    assert not (tmp_path / "vllm_args.json").exists()
