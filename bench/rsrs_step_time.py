"""Step time of RSRS against plain TRL GRPO on the same model, data and rollouts (transformers generation).

    python bench/rsrs_step_time.py [--model DIR] [--steps 8] [--completion-length 32] [--device cpu|cuda]

Without --model a tiny random Qwen2.5-VL is built locally. Every rollout is exactly --completion-length tokens
(min_new_tokens), so the runs do the same work. After a discarded warm-up run, three runs over the bundled sample:
TRL's GRPOTrainer (baseline), RSRSTrainer with the switch off (the cost of our hooks: buffer bookkeeping,
rollout TTS), and RSRSTrainer with the switch on (a random model names no toy, so GRPO and SFT steps alternate).
Prints the median time of GRPO and SFT steps, rollouts/s of the GRPO steps, and the ratios to the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback
from trl import GRPOTrainer

from ecac_bench import load_dataset
from ecac_bench.protocol import PIXEL_BUDGET, PixelBudget
from ecac_bench.testing.tiny_qwen import TINY_PIXELS, build_tiny_qwen2_5_vl
from trainers.data import grpo_dataset, load_model_and_processor
from trainers.rewards import ToyReward
from trainers.rsrs import RSRSConfig, RSRSTrainer


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def run(cls, model_dir: Path, out: Path, args: argparse.Namespace, switch: bool) -> tuple[list[float], list[str]]:
    budget = PixelBudget(**TINY_PIXELS) if args.model is None else PixelBudget(args.min_pixels, args.max_pixels)
    model, processor = load_model_and_processor(str(model_dir), budget)
    config = RSRSConfig(
        output_dir=str(out),
        use_cpu=args.device == "cpu",
        bf16=args.device != "cpu",
        max_completion_length=args.completion_length,
        generation_kwargs={"min_new_tokens": args.completion_length},
        max_steps=args.steps,  # one optimizer step per RSRS step (the default layout: 1 image x G = 4)
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        rsrs_switch=switch,
        rsrs_sft_batch_size=1,
    )
    trainer = cls(
        model=model,
        processing_class=processor,
        reward_funcs=ToyReward(),
        args=config,
        train_dataset=grpo_dataset(load_dataset(split="train")),
    )
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    modes = getattr(trainer, "rsrs_modes", ["grpo"] * args.steps)
    return timer.times[1:], modes[1:]  # the first step pays one-off warm-up costs


def median_of(times: list[float], modes: list[str], mode: str) -> float | None:
    picked = [t for t, m in zip(times, modes, strict=True) if m == mode]
    return statistics.median(picked) if picked else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny random Qwen2.5-VL)")
    parser.add_argument("--steps", type=int, default=8, help="RSRS steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the three runs, interleaved")
    parser.add_argument("--completion-length", type=int, default=32)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--min-pixels", type=int, default=PIXEL_BUDGET.min_pixels, help="pixel budget with --model")
    parser.add_argument("--max-pixels", type=int, default=PIXEL_BUDGET.max_pixels)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    variants = {
        "TRL GRPOTrainer (baseline)": (GRPOTrainer, False),
        "RSRS, switch off": (RSRSTrainer, False),
        "RSRS, switch on": (RSRSTrainer, True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    modes: dict[str, list[str]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_tiny_qwen2_5_vl(Path(tmp) / "tiny")
        run(GRPOTrainer, model_dir, Path(tmp) / "warm-up", args, switch=False)  # first-use costs land here
        for round_ in range(args.repeats):  # interleaved, so load drift on a shared machine hits all variants
            for name, (cls, switch) in variants.items():
                step_times, step_modes = run(cls, model_dir, Path(tmp) / f"{round_}-{name}", args, switch)
                times[name] += step_times
                modes[name] += step_modes

    rollouts = 4  # G captions per step
    base = median_of(times["TRL GRPOTrainer (baseline)"], modes["TRL GRPOTrainer (baseline)"], "grpo")
    print(
        f"device {args.device}, {args.completion_length}-token rollouts, G = {rollouts}, "
        f"{args.repeats} x {args.steps - 1} timed steps per variant, medians"
    )
    for name in variants:
        grpo = median_of(times[name], modes[name], "grpo")
        sft = median_of(times[name], modes[name], "sft")
        print(f"{name:28s} GRPO step {grpo:7.3f} s  {rollouts / grpo:6.1f} rollouts/s  x{grpo / base:.2f}")
        if sft is not None:
            print(f"{name:28s} SFT step  {sft:7.3f} s  x{sft / base:.2f} of a baseline GRPO step")
    print(f"RSRS schedule (first round): {' '.join(modes['RSRS, switch on'][: args.steps - 1])}")


if __name__ == "__main__":
    main()
