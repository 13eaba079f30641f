"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Qwen2.5-VL built offline, once per session; tests only read it."""
    from ecac_bench.testing.tiny_qwen import build_tiny_qwen2_5_vl  # transformers: imported only when needed

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen"))


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
