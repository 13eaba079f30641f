"""What lmms-eval costs beyond generation, on CPU, with the tiny random Qwen2.5-VL (ecac_bench.testing.tiny_qwen).

Runs the real ``lmms-eval --model qwen2_5_vl --tasks ecac_tts`` CLI at two ``--limit`` values and, in this
process, the same generation with plain transformers (same checkpoint, bf16 as lmms-eval loads it, the same chat
template, pixels, prompt, images and greedy ``max_new_tokens``). Prints:

* the wall time of each lmms-eval run (the smaller one is what tests/test_lmms_tasks.py runs),
* lmms-eval's marginal time per image (difference of the two runs / difference of images) and its fixed start-up
  cost, against transformers' generation time per image: overhead per image = marginal - generation, and the ratio.

    .venv/bin/python bench/lmms_eval_overhead.py [--small 4] [--large 20] [--max-new-tokens 24]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

from ecac_bench import load_dataset
from ecac_bench.prompts import load_prompt
from ecac_bench.testing.tiny_qwen import build_tiny_qwen2_5_vl

PIXELS = {"min_pixels": 3136, "max_pixels": 12544}


def lmms_eval_wall(model_dir: Path, limit: int, max_new_tokens: int, out: Path) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    cmd = [
        str(Path(sys.executable).parent / "lmms-eval"),
        "--model", "qwen2_5_vl",
        "--model_args", f"pretrained={model_dir},device_map=cpu,min_pixels={PIXELS['min_pixels']},"
        f"max_pixels={PIXELS['max_pixels']}",
        "--device", "cpu",
        "--tasks", "ecac_tts",
        "--limit", str(limit),
        "--gen_kwargs", f"max_new_tokens={max_new_tokens}",
        "--output_path", str(out),
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if not list(out.glob("*/*_results.json")):  # lmms-eval exits 0 on failure
        raise RuntimeError(f"lmms-eval failed:\n{proc.stderr[-4000:]}")
    return wall


def transformers_seconds_per_image(model_dir: Path, n: int, max_new_tokens: int) -> float:
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    processor = AutoProcessor.from_pretrained(model_dir, **PIXELS)
    prompt = load_prompt("caption", "zh").render()
    records = load_dataset(split="test").records[:n]
    times = []
    for i, record in enumerate([records[0], *records]):  # the first image warms up
        messages = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]},
        ]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        start = time.perf_counter()
        with Image.open(record.image) as image:
            inputs = processor(text=[text], images=[image.convert("RGB")], return_tensors="pt")
        with torch.no_grad():
            model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=4, help="images in the small lmms-eval run (default 4)")
    parser.add_argument("--large", type=int, default=20, help="images in the large lmms-eval run (default 20)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecac-lmms-bench-") as tmp:
        model_dir = build_tiny_qwen2_5_vl(Path(tmp) / "tiny")
        small = lmms_eval_wall(model_dir, args.small, args.max_new_tokens, Path(tmp) / "small")
        large = lmms_eval_wall(model_dir, args.large, args.max_new_tokens, Path(tmp) / "large")
        generation = transformers_seconds_per_image(model_dir, args.large, args.max_new_tokens)
    marginal = (large - small) / (args.large - args.small)
    fixed = small - args.small * marginal
    print(json.dumps({"torch_threads": torch.get_num_threads(), "max_new_tokens": args.max_new_tokens}))
    print(f"lmms-eval wall time, --limit {args.small}: {small:.1f} s; --limit {args.large}: {large:.1f} s")
    print(f"lmms-eval fixed start-up cost (imports, task indexing, model load): {fixed:.1f} s")
    print(f"lmms-eval marginal time per image:        {marginal * 1000:.0f} ms")
    print(f"transformers generation per image (base): {generation * 1000:.0f} ms")
    print(f"lmms-eval overhead per image beyond generation: {(marginal - generation) * 1000:.0f} ms "
          f"(ratio lmms-eval / generation: {marginal / generation:.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
