"""baselines/: each paper baseline script serves its model (with ECAC's pixel budget and context length), proves the
server is the one it started and captions an image, runs lmms-eval, publishes the run only when it is complete and
has no failed generation, and stops the server.

``vllm`` is replaced by tests/fake_vllm.py (the project's OpenAI-compatible test app plus ``/health``, ``/v1/models``,
chat templates and chosen failures); lmms-eval is the real CLI.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from ecac_bench.data import SAMPLE_DATA, load_dataset
from ecac_bench.preflight import PreflightError, preflight
from ecac_bench.protocol import PIXEL_BUDGET, max_model_len

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAKE_VLLM = f"{sys.executable} {REPO / 'tests' / 'fake_vllm.py'}"
GLM_TEMPLATE = str(REPO / "baselines" / "chat_templates" / "glm-4v-9b.jinja")

# script -> (model served, flags it must pass beyond the shared ones, default tensor-parallel size, pixel budget)
BASELINES = {
    "run_qwen2_5_vl_3b.sh": ("Qwen/Qwen2.5-VL-3B-Instruct", [], "1", True),
    "run_qwen2_5_vl_7b.sh": ("Qwen/Qwen2.5-VL-7B-Instruct", [], "1", True),
    "run_qwen2_5_vl_32b.sh": ("Qwen/Qwen2.5-VL-32B-Instruct", [], "2", True),
    "run_glm_4v_9b.sh": (
        "THUDM/glm-4v-9b",
        ["--trust-remote-code", "--hf-overrides", '{"architectures": ["GLM4VForCausalLM"]}', "--enforce-eager",
         "--chat-template-content-format", "string"],
        "1",
        False,
    ),
    "run_gemma_3_27b.sh": ("google/gemma-3-27b-it", [], "2", False),
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_script(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ECAC_", "OPENAI_", "TP"))}
    base.update(
        VLLM=FAKE_VLLM,
        LMMS_EVAL=str(BIN / "lmms-eval"),
        PYTHON=sys.executable,
        PORT=str(free_port()),
        OUT_DIR=str(tmp_path / "runs" / "run"),
        FAKE_VLLM_ARGS_FILE=str(tmp_path / "vllm_args.json"),
        FAKE_VLLM_AUTH_FILE=str(tmp_path / "auth.txt"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_CACHE=str(tmp_path / "hf_datasets"),
        WANDB_MODE="disabled",
        HEALTH_TIMEOUT="60",
        LMMS_MODEL_ARGS="max_retries=1,retry_backoff_s=0",
    )
    base.update(env)
    return subprocess.run(
        ["bash", str(REPO / "baselines" / script)], env=base, capture_output=True, text=True, timeout=600
    )


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def data_with_a_red_image(tmp_path: Path, n: int = 3) -> Path:
    """The first ``n`` sample records; the second one's image is pure red (the fake server fails it)."""
    rows = [json.loads(line) for line in SAMPLE_DATA.read_text(encoding="utf-8").splitlines()[:n]]
    for i, row in enumerate(rows):
        row["image"] = str((SAMPLE_DATA.parent / row["image"]).resolve())
        row["split"] = "test"
        if i == 1:
            red = tmp_path / "red.png"
            Image.new("RGB", (64, 64), (255, 0, 0)).save(red)
            row["image"] = str(red)
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.slow
def test_serves_checks_evaluates_publishes_and_stops_the_server(tmp_path: Path) -> None:
    port = free_port()
    proc = run_script(
        "run_qwen2_5_vl_3b.sh", tmp_path, TASKS="ecac_tts", LIMIT="2", PORT=str(port), OPENAI_API_KEY="sk-caller-secret"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "runs" / "run"
    (results,) = out.glob("*/*_results.json")
    data = json.loads(results.read_text())
    assert data["config"]["model"] == "openai"
    assert data["model_name"] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert data["n-samples"]["ecac_tts"]["effective"] == 2 and "tts,none" in data["results"]["ecac_tts"]
    assert (out / "vllm.log").is_file()
    assert not list((tmp_path / "runs").glob(".staging-*")), "the staging folder is moved into place"
    assert "preflight ok" in proc.stdout
    assert "stopping vLLM" in proc.stdout and port_is_free(port)
    # The pixel budget and the context sized from it reach the server.
    rest = json.loads((tmp_path / "vllm_args.json").read_text())["rest"]
    assert rest[rest.index("--max-model-len") + 1] == str(max_model_len())
    assert json.loads(rest[rest.index("--mm-processor-kwargs") + 1]) == PIXEL_BUDGET.to_dict()
    # The server we started has no key: it only ever sees the dummy one, never the caller's OPENAI_API_KEY.
    seen = set((tmp_path / "auth.txt").read_text().split("\n")) - {""}
    assert seen == {"Bearer EMPTY"}


@pytest.mark.slow
def test_a_failed_generation_fails_the_run_and_publishes_nothing(tmp_path: Path) -> None:
    data = data_with_a_red_image(tmp_path)
    proc = run_script("run_qwen2_5_vl_7b.sh", tmp_path, TASKS="ecac_tts", ECAC_DATA=str(data), FAKE_VLLM_FAIL_RED="1")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "failed generation" in proc.stderr and "nothing was published" in proc.stderr
    assert not (tmp_path / "runs" / "run").exists()
    (staging,) = (tmp_path / "runs").glob(".staging-run")
    assert list(staging.glob("*/*_results.json")), "the failed run stays in staging for inspection"


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        proc = run_script("run_qwen2_5_vl_3b.sh", tmp_path, TASKS="ecac_tts", PORT=str(busy.getsockname()[1]))
    assert proc.returncode == 1 and "already in use" in proc.stderr
    assert not (tmp_path / "vllm_args.json").exists()


@pytest.mark.parametrize("script", sorted(BASELINES))
def test_each_paper_baseline_serves_its_model_with_its_flags(script: str, tmp_path: Path) -> None:
    model, flags, tp, budget = BASELINES[script]
    proc = run_script(script, tmp_path, TASKS="ecac_tts", FAKE_VLLM_FAIL="1")
    # the fake server refuses to start: the script must say so, show the log and fail
    assert proc.returncode == 1
    assert "vLLM exited before becoming healthy" in proc.stderr and "fake model failed to load" in proc.stderr
    recorded = json.loads((tmp_path / "vllm_args.json").read_text())
    assert recorded["model"] == model and recorded["served_model_name"] == model
    rest = recorded["rest"]
    assert rest[rest.index("--tensor-parallel-size") + 1] == tp
    assert ("--mm-processor-kwargs" in rest) is budget
    for flag in flags:
        assert flag in rest
    assert (recorded["chat_template"] == GLM_TEMPLATE) is (script == "run_glm_4v_9b.sh")


def serve_fake_vllm(port: int, *flags: str) -> subprocess.Popen:
    proc = subprocess.Popen([*FAKE_VLLM.split(), "serve", "m", "--port", str(port), "--served-model-name", "m", *flags])
    for _ in range(200):
        if not port_is_free(port):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the fake vLLM did not start")


@pytest.mark.parametrize("template_ok", [True, False])
def test_the_glm_chat_template_passes_the_preflight(tmp_path: Path, template_ok: bool) -> None:
    """The shipped GLM-4V template renders vLLM's string contents (image placeholder + prompt) on a real request;
    a template the server cannot apply fails the preflight, before anything is evaluated."""
    template = GLM_TEMPLATE
    if not template_ok:
        template = str(tmp_path / "broken.jinja")
        Path(template).write_text("{{ messages[5]['content'] }}")  # fails when applied, as in vLLM
    port = free_port()
    server = serve_fake_vllm(port, "--chat-template", template, "--chat-template-content-format", "string")
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        if template_ok:
            assert preflight(base_url, "m", load_dataset().records[0].image)
        else:
            with pytest.raises(PreflightError, match="HTTP 400"):
                preflight(base_url, "m", load_dataset().records[0].image)
    finally:
        server.kill()
        server.wait()


def test_judge_tasks_need_a_judge_model_before_anything_starts(tmp_path: Path) -> None:
    proc = run_script("run_qwen2_5_vl_7b.sh", tmp_path)  # default TASKS=ecac includes the judge tasks
    assert proc.returncode != 0 and "set ECAC_JUDGE_MODEL" in proc.stderr
    assert not (tmp_path / "vllm_args.json").exists()
