"""`trainers/rsrs.sh --smoke` end to end: SFT warm-up, RSRS, lmms-eval, on CPU in a few minutes, in a fresh venv that
holds ONLY the `train` extra at the locked versions (issue 10: the extra is complete for its entry point)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from ecac_bench.prompts import load_prompt

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_pipeline_produces_a_loadable_checkpoint_and_results(tmp_path: Path, extra_venv) -> None:
    venv = extra_venv("train")
    out = tmp_path / "smoke"
    # What an interrupted tiny-model build used to leave: a config.json and nothing else. It must not be reused.
    (out / "base").mkdir(parents=True)
    (out / "base" / "config.json").write_text("{}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ECAC_", "OPENAI_", "VIRTUAL_ENV"))}
    env.update(PYTHON=str(venv / "bin" / "python"), PATH=f"{venv / 'bin'}:{os.environ['PATH']}", OMP_NUM_THREADS="2")
    cmd = ["bash", str(REPO / "trainers" / "rsrs.sh"), "--smoke", "--output", str(out), "--name", "smoke-rsrs"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert (out / "sft" / ".done").is_file() and (out / "rsrs" / ".done").is_file()
    assert (out / "base" / "ecac_checkpoint.json").is_file()

    # The RSRS checkpoint loads with the standard classes and generates; it records how it was made.
    model_dir = out / "rsrs" / "model"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    inputs = processor(text=["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"], return_tensors="pt")
    with torch.no_grad():
        assert model.generate(**inputs, max_new_tokens=2, do_sample=False).shape[1] > inputs["input_ids"].shape[1]
    record = json.loads((model_dir / "ecac_run.json").read_text())
    assert record["prompt"] == {"task": "caption", "language": "zh", **load_prompt("caption", "zh").identity()}
    assert record["pixel_budget"] == {"min_pixels": 3136, "max_pixels": 12544}  # the smoke's tiny budget
    assert processor.image_processor.size["longest_edge"] == 12544  # saved with the checkpoint
    assert (record["data"]["n_images"], record["data"]["split_size"], record["data"]["subset_seed"]) == (6, 8, 42)
    assert json.loads((out / "sft" / "model" / "ecac_run.json").read_text())["data"]["n_images"] == 8

    # lmms-eval wrote a results file with the ECAC metrics (rsrs.sh checked it with ecac_bench.lmms_results).
    results = list((out / "eval" / "smoke-rsrs").glob("*/*_results.json"))
    assert len(results) == 1
    metrics = json.loads(results[0].read_text())["results"]["ecac_tts"]
    assert 0.0 <= metrics["tts,none"] <= 100.0 and metrics["reward,none"] >= 0.0

    # The RSRS metrics reached TensorBoard; a random model names no toy, so both step kinds occurred.
    (events,) = (out / "rsrs").glob("runs/*/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    for tag in ("rsrs/sft_step", "rsrs/buffer_size", "rsrs/zero_reward_group_frac", "rewards/toy/rollout_tts"):
        assert f"train/{tag}" in tags, sorted(tags)
    modes = {event.value for event in accumulator.Scalars("train/rsrs/sft_step")}
    assert modes == {0.0, 1.0}
    assert "train/rsrs/sft_loss" in tags
