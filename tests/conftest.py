"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"
UV_BIN = Path(sys.executable).with_name("uv")


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Qwen2.5-VL built offline, once per session; tests only read it."""
    from ecac_bench.testing.tiny_qwen import build_tiny_qwen2_5_vl  # transformers: imported only when needed

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen"))


def _torch_source() -> list[str]:
    if any(Path("/opt/wheels").glob("torch-2.13.0+cpu-*.whl")):
        return ["--find-links", "/opt/wheels"]
    return ["--extra-index-url", "https://download.pytorch.org/whl/cpu", "--index-strategy", "unsafe-best-match"]


@pytest.fixture(scope="session")
def extra_venv(tmp_path_factory: pytest.TempPathFactory):
    """A fresh virtualenv per extra with ONLY that extra installed, at the locked versions."""
    made: dict[str, Path] = {}

    def make(extra: str) -> Path:
        if extra not in made:
            venv = tmp_path_factory.mktemp(f"venv-{extra}")
            # --python names the target: make exports UV_PYTHON (the project's .venv), which would win over VIRTUAL_ENV.
            env = {**{k: v for k, v in os.environ.items() if k != "UV_PYTHON"}, "VIRTUAL_ENV": str(venv)}
            python = str(venv / "bin" / "python")
            for cmd in (
                [str(UV_BIN), "venv", "-q", "--clear", "--python", sys.executable, str(venv)],
                [
                    str(UV_BIN),
                    "pip",
                    "install",
                    "-q",
                    "--python",
                    python,
                    *_torch_source(),
                    "-c",
                    str(LOCK),
                    "-e",
                    f"{REPO}[{extra}]",
                ],
                [python, str(REPO / "tools" / "fix_torchvision.py")],
            ):
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
                assert proc.returncode == 0, f"{cmd}: {proc.stdout}{proc.stderr}"
            made[extra] = venv
        return made[extra]

    return make


@pytest.fixture
def quiet_trl_experimental(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRL warns that ``rollout_func`` (how the trainer tests script rollouts) is experimental; once is enough."""
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly when the browser tests did not run, and how to make them run."""
    import browser

    if browser.skipped:
        terminalreporter.write_sep("=", "browser tests SKIPPED", yellow=True)
        terminalreporter.write_line(f"{len(browser.skipped)} browser test(s) skipped: {browser.skipped[0]}.")
        terminalreporter.write_line(f"To run them: {browser.HOW_TO_ENABLE}.")
