"""bench/gpu_check.sh --dry-run runs every case kind of the GPU check on CPU, and the carried wheel set covers what
the check needs beyond the GPU machine's own packages."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _names(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].split() for line in path.read_text().splitlines())
    return {canonicalize_name(parts[0].split("==")[0]) for parts in lines if parts}


MACHINE = _names(REPO / "bench" / "gpu_machine_packages.txt")
CARRIED = _names(REPO / "bench" / "gpu_wheels.txt")


@pytest.mark.slow
def test_dry_run_covers_every_case_kind(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_WHEELS": str(tmp_path / "no-wheels")}
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "gpu_check.jsonl").read_text().splitlines()]
    by_case = {row["case"]: row for row in rows}
    assert [row["case"] for row in rows][:3] == [
        "environment",
        "steps bf16 budget=protocol 1MP",
        "rsrs mode log bf16 budget=protocol 1MP",
    ]
    expected_steps = {
        f"steps {precision} budget={budget} {photo}"
        for precision in ("bf16", "fp16")
        for budget in ("protocol", "none")
        for photo in ("1MP", "4MP", "12MP")
    }
    assert expected_steps <= set(by_case)
    for name in expected_steps:
        row = by_case[name]
        assert row["status"] == "ok", (name, row["status"])
        assert row["sft"]["kind"] == "sft" and row["grpo"]["kind"] == "grpo" and row["image_tokens"] > 0
    # The protocol's budget caps the image tokens; without it they grow with the photo.
    tokens = {photo: by_case[f"steps bf16 budget=none {photo}"]["image_tokens"] for photo in ("1MP", "4MP", "12MP")}
    assert tokens["1MP"] < tokens["4MP"] < tokens["12MP"]
    assert by_case["steps bf16 budget=protocol 12MP"]["image_tokens"] < tokens["12MP"]
    rsrs = by_case["rsrs mode log bf16 budget=protocol 1MP"]
    assert rsrs["status"] == "ok" and rsrs["modes"] == ["grpo", "grpo", "grpo", "grpo", "sft"]
    assert rsrs["logged_sft_step"] == [0.0, 0.0, 0.0, 0.0, 1.0]
    checkpoint = by_case["checkpoint save + reload"]
    assert checkpoint["status"] == "ok" and checkpoint["weights_match"] and checkpoint["rsrs_state_match"]
    assert rows[-1]["case"] == "imports"
    table = (out / "gpu_check.md").read_text()
    assert table.count("\n| steps ") == 12 and "| rsrs mode log" in table and table in done.stdout

    # The project's dependencies the check imports are the machine's or carried, except those pulled in only by
    # wandb, which TRL and transformers import when it is installed (here; the machine has none).
    imported = {canonicalize_name(name) for name in rows[-1]["distributions"]}
    project = {canonicalize_name(Requirement(r).name) for r in _core_dependencies()}
    wandb_only = _requirements("wandb") if "wandb" in imported else set()
    assert imported & project <= MACHINE | CARRIED | wandb_only, imported & project - MACHINE - CARRIED - wandb_only


def _requirements(package: str) -> set[str]:
    requirements = (Requirement(raw) for raw in distribution(package).requires or [])
    return {canonicalize_name(r.name) for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})}


def _core_dependencies() -> list[str]:
    """ecac-bench's own dependencies (no extras), as installed."""
    return [r for r in distribution("ecac-bench").requires or [] if "extra ==" not in r]


def test_carried_wheels_cover_what_trl_and_datasets_require() -> None:
    """Every hard requirement of TRL and datasets (at the pinned versions installed here) is on the GPU machine or in
    the carried set; so are the project's own dependencies the check imports (orjson, rapidfuzz)."""
    for package in ("trl", "datasets", "multiprocess"):
        missing = _requirements(package) - MACHINE - CARRIED
        assert not missing, f"{package} needs {missing}"
    assert {"orjson", "msgspec", "rapidfuzz", "trl", "datasets"} <= CARRIED
    assert {"torch", "transformers", "accelerate", "pillow", "numpy", "jinja2", "pyyaml"} <= MACHINE


def test_wheel_list_and_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("gpu_wheels", REPO / "bench" / "gpu_wheels.py")
    gpu_wheels = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_wheels", gpu_wheels)  # a script of bench/, not a package
    spec.loader.exec_module(gpu_wheels)

    wanted = {w.name: w for w in gpu_wheels.read_wanted()}
    assert wanted["trl"].version == "1.16.0" and wanted["trl"].keep_installed is None
    assert "24" in str(wanted["pyarrow"].keep_installed)  # datasets 5.2.0's floor
    for w in wanted.values():
        (tmp_path / f"{w.name.replace('-', '_')}-{w.version}-py3-none-any.whl").write_bytes(b"")
    selected = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_wheels.py"), "select", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # Here pyarrow (>= 24) and fsspec (in datasets' range) are installed: the machine's own are kept.
    assert {Path(p).name.split("-")[0] for p in selected} == {
        "trl",
        "datasets",
        "dill",
        "multiprocess",
        "orjson",
        "msgspec",
        "rapidfuzz",
    }
    (tmp_path / "trl-1.15.0-py3-none-any.whl").write_bytes(b"")
    two = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_wheels.py"), "select", str(tmp_path)], capture_output=True, text=True
    )
    assert two.returncode == 2 and "two wheels of trl" in two.stderr


def test_a_case_past_its_cap_stops_after_the_current_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from transformers import TrainerControl

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)
    spec.loader.exec_module(gpu_check)
    trainer = SimpleNamespace(rsrs_modes=["sft"], zero_reward_buffer=[])
    meter = gpu_check.StepMeter(trainer, cap_s=0.0, cuda=False)
    control = TrainerControl()
    meter.on_step_begin(None, None, control)
    meter.on_step_end(None, None, control)
    assert control.should_training_stop and meter.timed_out
    assert meter.steps[0]["kind"] == "sft" and meter.steps[0]["time_s"] >= 0
