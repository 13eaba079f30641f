"""`trainers/rsrs.sh --smoke` end to end: SFT warm-up, RSRS, lmms-eval, on CPU in about a minute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_pipeline_produces_a_loadable_checkpoint_and_results(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "2"}
    cmd = ["bash", str(REPO / "trainers" / "rsrs.sh"), "--smoke", "--output", str(out), "--name", "smoke-rsrs"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert (out / "sft" / ".done").is_file() and (out / "rsrs" / ".done").is_file()

    # The RSRS checkpoint loads with the standard classes and generates.
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out / "rsrs").eval()
    processor = AutoProcessor.from_pretrained(out / "rsrs")
    inputs = processor(text=["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"], return_tensors="pt")
    with torch.no_grad():
        assert model.generate(**inputs, max_new_tokens=2, do_sample=False).shape[1] > inputs["input_ids"].shape[1]

    # lmms-eval wrote a results file with the ECAC metrics (it exits 0 even on failure, so this is the check).
    results = list((out / "eval" / "smoke-rsrs").glob("*/*_results.json"))
    assert len(results) == 1
    metrics = json.loads(results[0].read_text())["results"]["ecac_tts"]
    assert 0.0 <= metrics["tts,none"] <= 100.0 and metrics["reward,none"] >= 0.0

    # The RSRS metrics reached TensorBoard; a random model names no toy, so both step modes occurred.
    (events,) = (out / "rsrs").glob("runs/*/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    for tag in ("rsrs/sft_step", "rsrs/buffer_size", "rsrs/zero_reward_group_frac", "rsrs/rollout_tts"):
        assert f"train/{tag}" in tags, sorted(tags)
    modes = {event.value for event in accumulator.Scalars("train/rsrs/sft_step")}
    assert modes == {0.0, 1.0}
    assert "train/rsrs/sft_loss" in tags
