"""The RSRS recipe at real scale on one GPU: memory and time of its steps with a random Qwen2.5-VL-3B.

    bench/gpu_check.sh --out DIR               # on the GPU machine: installs the carried wheels, then runs this
    python bench/gpu_check.py --out DIR        # the same, with the packages already importable
    python bench/gpu_check.py --out DIR --dry-run   # the same code path: tiny model, small photos, CPU, ~1 minute

Nothing is downloaded: the model is randomly initialised with Qwen2.5-VL-3B-Instruct's exact shape
(``ecac_bench.testing.tiny_qwen.QWEN2_5_VL_3B``) and a tokenizer trained on the spot; the photos are synthetic JPEGs.
Every case runs the recipe's own code (``trainers.rsrs.RSRSTrainer`` with ``trainers/configs/rsrs.yaml``, one
process: 1 image x G = 4 rollouts per GRPO step, SFT batch 4) and measures, per step, the wall time and the peak GPU
memory. In order of importance:

1. ``steps``: one SFT step (4 photos) and one GRPO step (1 photo x G = 4 rollouts, transformers generation, exactly
   128 new tokens) at 1, 4 and 12 MP, with the protocol's pixel budget (``ecac_bench.protocol.PIXEL_BUDGET``) and
   without it (Qwen2.5-VL's own cap, 12.8 MP), in bf16 and in fp16 (the V100 path: fp32 weights, fp16 autocast);
2. ``rsrs``: RSRS steps at 1 MP until the mode log shows both step kinds, saving a checkpoint at the end;
3. ``checkpoint``: that checkpoint reloaded (weights compared) and its RSRS state read back.

Each case has its own time cap (checked after every step: the rest of a case past its cap is skipped and the row
says ``timeout``), an out-of-memory is recorded as ``oom``, and every row is appended to ``DIR/gpu_check.jsonl`` as
soon as the case ends, so a run cut short still returns what it measured; a table is printed at the end (and
written to ``DIR/gpu_check.md``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from PIL import Image, ImageDraw
from transformers import TrainerCallback

import trainers
from ecac_bench import load_dataset
from ecac_bench.protocol import PIXEL_BUDGET, PixelBudget
from ecac_bench.testing.tiny_qwen import QWEN2_5_VL_3B, QwenVLShape, build_model, build_processor, build_tokenizer
from trainers.data import grpo_dataset, resume_point
from trainers.rewards import ToyReward
from trainers.rsrs import RSRS_STATE, RSRSConfig, RSRSTrainer

CONFIG = Path(trainers.__file__).parent / "configs" / "rsrs.yaml"  # the recipe's (package data)
GIB = 1024**3
# Qwen2.5-VL-3B-Instruct's processor without a budget: its preprocessor_config's own bounds.
CHECKPOINT_PIXELS = PixelBudget(min_pixels=3136, max_pixels=12_845_056)


@dataclass(frozen=True)
class Scale:
    """What a run measures with: the real one, or the dry run's tiny stand-ins (same cases, same code)."""

    shape: QwenVLShape
    device: str
    photos: dict[str, tuple[int, int]]  # name -> (width, height)
    budgets: dict[str, PixelBudget]  # "protocol" / "none" -> pixel bounds
    new_tokens: int
    caps: dict[str, float]  # photo name -> seconds a steps case may take
    precisions: tuple[str, ...] = ("bf16", "fp16")


REAL = Scale(
    shape=QWEN2_5_VL_3B,
    device="cuda",
    photos={"1MP": (1152, 864), "4MP": (2304, 1728), "12MP": (4000, 3000)},
    budgets={"protocol": PIXEL_BUDGET, "none": CHECKPOINT_PIXELS},
    new_tokens=128,
    caps={"1MP": 60.0, "4MP": 75.0, "12MP": 120.0},
)
DRY = Scale(
    shape=replace(
        QWEN2_5_VL_3B,  # the real shape's settings, scaled down; vocabulary larger than the tokenizer, as the real one
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=128,
        mrope_section=(4, 6, 6),
        vocab_size=1024,
        vision_depth=2,
        vision_hidden_size=64,
        vision_intermediate_size=128,
        vision_num_heads=2,
        vision_fullatt_block_indexes=(1,),
    ),
    device="cpu",
    photos={"1MP": (112, 84), "4MP": (224, 168), "12MP": (400, 300)},
    budgets={"protocol": PixelBudget(784, 12_544), "none": PixelBudget(784, 200_704)},
    new_tokens=8,
    caps={"1MP": 60.0, "4MP": 60.0, "12MP": 60.0},
)


@dataclass
class Results:
    """Rows appended to ``<out>/gpu_check.jsonl`` as they come (flushed and synced: a killed run keeps them)."""

    out: Path
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "gpu_check.jsonl"
        self.path.write_text("")

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        print(f"gpu_check: {row['case']}: {row['status']} ({row.get('wall_s', 0):.1f} s)", flush=True)


class StepMeter(TrainerCallback):
    """Wall time and peak GPU memory of every optimizer step; stops the run once the case's cap is exceeded."""

    def __init__(self, trainer: RSRSTrainer, cap_s: float, cuda: bool) -> None:
        self.trainer, self.cap_s, self.cuda = trainer, cap_s, cuda
        self.steps: list[dict[str, Any]] = []
        self.start = time.perf_counter()
        self.timed_out = False
        self.save_s: list[float] = []
        self._t0 = self._step_end = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.cuda:
            torch.cuda.synchronize()
        modes = self.trainer.rsrs_modes
        self.steps.append(
            {
                "kind": modes[-1] if modes else "?",
                "time_s": round(time.perf_counter() - self._t0, 3),
                "peak_gib": round(torch.cuda.max_memory_allocated() / GIB, 2) if self.cuda else None,
                "buffer": len(self.trainer.zero_reward_buffer),
            }
        )
        self._step_end = time.perf_counter()
        if self._step_end - self.start > self.cap_s:
            self.timed_out = True
            control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        self.save_s.append(round(time.perf_counter() - self._step_end, 1))


def synthetic_photos(folder: Path, size: tuple[int, int], n: int) -> list[Path]:
    """``n`` JPEG 'photos' of ``size``: gradients and shapes (content does not change the cost)."""
    paths = []
    width, height = size
    for i in range(n):
        image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        draw = ImageDraw.Draw(image)
        for k in range(6):
            x, y = (37 * (i + 1) * (k + 1)) % width, (53 * (i + 2) * (k + 1)) % height
            draw.rectangle([x, y, x + width // 8, y + height // 8], fill=(40 * k % 256, 90 * i % 256, 160))
        path = folder / f"photo-{width}x{height}-{i}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def photo_dataset(folder: Path, size: tuple[int, int], n: int):
    """An ECAC dataset of ``n`` synthetic photos with the bundled sample's toys and ~250-token captions."""
    sample = load_dataset(split="train").records
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, path in enumerate(synthetic_photos(folder, size, n)):
        record = sample[i % len(sample)]
        caption = "".join(r.caption for r in sample[i : i + 4])  # real captions are a paragraph, not a sentence
        toys = [{"name": t.name, "level": t.level, "ground": t.ground, "aliases": list(t.aliases)} for t in record.toys]
        row = {"id": f"photo-{i}", "image": str(path), "category": record.category, "area": record.area}
        lines.append(json.dumps({**row, "caption": caption, "split": "train", "toys": toys}, ensure_ascii=False))
    data = folder / "data.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return grpo_dataset(load_dataset(data, split="train").records)


def rsrs_config(scale: Scale, out: Path, precision: str, max_steps: int, **overrides: Any) -> RSRSConfig:
    """trainers/configs/rsrs.yaml's training settings on one process, for ``max_steps`` steps."""
    values = {k: v for k, v in yaml.safe_load(CONFIG.read_text()).items() if k in RSRSConfig.__dataclass_fields__}
    values.update(
        output_dir=str(out),
        max_steps=max_steps,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=scale.device == "cpu",
        max_completion_length=scale.new_tokens,
        generation_kwargs={"min_new_tokens": scale.new_tokens},  # every rollout exactly new_tokens long
        report_to="none",
        save_strategy="no",
        logging_strategy="no",  # the rows carry what is measured; the RSRS case logs its mode log
        disable_tqdm=True,
    )
    values.update(overrides)
    return RSRSConfig(**values)


def image_tokens(processor: Any, size: tuple[int, int]) -> int:
    grid = processor.image_processor(images=[Image.new("RGB", size)], return_tensors="pt")["image_grid_thw"]
    return int(grid.prod()) // 4  # 2 x 2 patches merge into one token


class Check:
    def __init__(self, scale: Scale, work: Path, results: Results, budget_s: float) -> None:
        self.scale, self.work, self.results = scale, work, results
        self.deadline = time.perf_counter() + budget_s
        self.tokenizer = build_tokenizer()
        self.models: dict[str, Any] = {}
        self.cuda = scale.device == "cuda"

    def model(self, precision: str) -> Any:
        """One random model per precision (bf16 weights, or fp32 weights for fp16 autocast), same seed."""
        if precision not in self.models:
            self.models.clear()
            gc.collect()
            if self.cuda:
                torch.cuda.empty_cache()
            dtype = torch.bfloat16 if precision == "bf16" and self.cuda else torch.float32
            self.models[precision] = build_model(
                self.scale.shape, self.tokenizer, device=self.scale.device, dtype=dtype
            )
        return self.models[precision]

    def trainer(self, precision: str, budget: str, dataset: Any, config: RSRSConfig) -> RSRSTrainer:
        processor = build_processor(self.tokenizer, **self.scale.budgets[budget].to_dict())
        return RSRSTrainer(
            model=self.model(precision),
            processing_class=processor,
            reward_funcs=ToyReward(),
            args=config,
            train_dataset=dataset,
        )

    def run_case(self, name: str, cap_s: float, body) -> None:
        """Run one case and record its row, whatever happens (a case never stops the check)."""
        start = time.perf_counter()
        row: dict[str, Any] = {"case": name}
        if self.deadline - start < cap_s / 2:
            self.results.add({**row, "status": "skipped: out of time", "wall_s": 0.0})
            return
        try:
            row.update(body(min(cap_s, self.deadline - start)))
            row.setdefault("status", "ok")
        except torch.cuda.OutOfMemoryError as error:
            row["status"] = f"oom: {str(error).splitlines()[0][:200]}"
        except Exception as error:
            traceback.print_exc()
            row["status"] = f"error: {type(error).__name__}: {str(error)[:300]}"
        except BaseException:  # killed (the wrapper's timeout): record the case, then stop
            row["status"] = "killed"
            raise
        finally:
            gc.collect()
            if self.cuda:
                row["peak_gib_case"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
                torch.cuda.empty_cache()
            row["wall_s"] = round(time.perf_counter() - start, 1)
            self.results.add(row)

    def steps_case(self, precision: str, budget: str, photo: str) -> None:
        """One SFT step (4 photos, drawn from a pre-filled buffer) then one GRPO step (1 photo x G = 4)."""

        def body(cap_s: float) -> dict[str, Any]:
            size = self.scale.photos[photo]
            dataset = photo_dataset(self.work / f"photos-{photo}", size, 4)
            config = rsrs_config(self.scale, self.work / "steps", precision, max_steps=2)
            trainer = self.trainer(precision, budget, dataset, config)
            trainer.zero_reward_buffer.push(list(dataset["id"]))  # 4 >= the SFT batch: step 1 is an SFT step
            meter = StepMeter(trainer, cap_s, self.cuda)
            trainer.add_callback(meter)
            trainer.train()
            steps = {step["kind"]: step for step in meter.steps}
            row = {
                "precision": precision,
                "budget": budget,
                "photo": photo,
                "pixels": size[0] * size[1],
                "image_tokens": image_tokens(trainer.processing_class, size),
                "sft": steps.get("sft"),
                "grpo": steps.get("grpo"),
            }
            if meter.timed_out and len(meter.steps) < 2:
                row["status"] = "timeout"
            del trainer
            return row

        self.run_case(f"steps {precision} budget={budget} {photo}", self.scale.caps[photo], body)

    def rsrs_case(self) -> Path | None:
        """RSRS steps at 1 MP (bf16, the protocol's budget) until both step kinds ran; saves a checkpoint."""
        checkpoint: list[Path] = []

        def body(cap_s: float) -> dict[str, Any]:
            dataset = photo_dataset(self.work / "photos-rsrs", self.scale.photos["1MP"], 6)
            out = self.work / "rsrs"
            shutil.rmtree(out, ignore_errors=True)
            # A random model names no toy: every GRPO step pushes its image, the 5th step is SFT on 4 of them.
            config = rsrs_config(self.scale, out, "bf16", max_steps=5, save_strategy="steps", save_steps=5,
                                 save_only_model=True, logging_strategy="steps", logging_steps=1)  # fmt: skip
            trainer = self.trainer("bf16", "protocol", dataset, config)
            meter = StepMeter(trainer, cap_s, self.cuda)
            trainer.add_callback(meter)
            trainer.train()
            found = resume_point(config)
            if found:
                checkpoint.append(Path(found))
            row = {
                "modes": trainer.rsrs_modes,
                "logged_sft_step": [h["rsrs/sft_step"] for h in trainer.state.log_history if "rsrs/sft_step" in h],
                "steps": meter.steps,
                "checkpoint": found,
                "save_s": meter.save_s,
                "weights_sum": float(sum(p.float().sum() for p in trainer.model.parameters())),
                "buffer_state": trainer.zero_reward_buffer.state_dict(),
            }
            both = {"grpo", "sft"} <= set(trainer.rsrs_modes)
            row["status"] = "ok" if both else "timeout" if meter.timed_out else "error: only one step kind ran"
            self.rsrs_row = row
            del trainer
            return row

        self.run_case("rsrs mode log bf16 budget=protocol 1MP", 90.0, body)
        return checkpoint[0] if checkpoint else None

    def checkpoint_case(self, checkpoint: Path | None) -> None:
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        def body(cap_s: float) -> dict[str, Any]:
            if checkpoint is None:
                return {"status": "error: no checkpoint was saved"}
            start = time.perf_counter()
            dtype = torch.bfloat16 if self.cuda else torch.float32
            device = self.scale.device
            model = Qwen2_5_VLForConditionalGeneration.from_pretrained(checkpoint, dtype=dtype, device_map=device)
            AutoProcessor.from_pretrained(checkpoint)
            load_s = time.perf_counter() - start
            weights_sum = float(sum(p.float().sum() for p in model.parameters()))
            state = json.loads((checkpoint / RSRS_STATE).read_text())
            expected = self.rsrs_row
            size = sum(f.stat().st_size for f in checkpoint.rglob("*") if f.is_file())
            same = abs(weights_sum - expected["weights_sum"]) <= 1e-3 * max(1.0, abs(expected["weights_sum"]))
            del model
            return {
                "checkpoint": str(checkpoint),
                "size_gib": round(size / GIB, 2),
                "load_s": round(load_s, 1),
                "weights_match": same,
                "rsrs_state_match": state["buffer"] == expected["buffer_state"] and state["modes"] == expected["modes"],
                "status": "ok" if same and state["modes"] == expected["modes"] else "error: reloaded state differs",
            }

        self.run_case("checkpoint save + reload", 90.0, body)
        shutil.rmtree(self.work / "rsrs", ignore_errors=True)  # several GB on the GPU machine's disk


def environment(scale: Scale, dry_run: bool) -> dict[str, Any]:
    import accelerate
    import datasets
    import transformers
    import trl

    row: dict[str, Any] = {
        "case": "environment",
        "status": "ok",
        "dry_run": dry_run,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "trl": trl.__version__,
        "datasets": datasets.__version__,
        "shape": asdict(scale.shape),
    }
    if scale.device == "cuda":
        row["gpu"] = torch.cuda.get_device_name(0)
        row["capability"] = list(torch.cuda.get_device_capability(0))
        row["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / GIB, 1)
    return row


def imported_distributions() -> list[str]:
    """The installed distributions whose modules this run imported (what the GPU machine must have or be sent)."""
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    top = {name.split(".")[0] for name in list(sys.modules)}
    return sorted({dist for module in top for dist in owners.get(module, ())})


def table(rows: list[dict[str, Any]]) -> str:
    def step(cell: dict | None) -> str:
        if not cell:
            return "-"
        memory = f", {cell['peak_gib']} GiB" if cell.get("peak_gib") is not None else ""
        return f"{cell['time_s']} s{memory}"

    lines = ["| case | image tokens | SFT step (4 photos) | GRPO step (1 x G=4) | status |", "|---|---|---|---|---|"]
    for row in rows:
        if row["case"].startswith("steps"):
            lines.append(
                f"| {row['case']} | {row.get('image_tokens', '-')} | {step(row.get('sft'))} | "
                f"{step(row.get('grpo'))} | {row['status']} |"
            )
        elif row["case"].startswith("rsrs"):
            lines.append(f"| {row['case']} | | modes: {' '.join(row.get('modes', []))} | | {row['status']} |")
        elif row["case"].startswith("checkpoint"):
            detail = f"{row.get('size_gib', '-')} GiB, reload {row.get('load_s', '-')} s"
            lines.append(f"| {row['case']} | | {detail} | | {row['status']} |")
    return "\n".join(lines)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(124)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="results folder (gpu_check.jsonl, gpu_check.md)")
    parser.add_argument("--dry-run", action="store_true", help="tiny model, small photos, CPU: the same code path")
    parser.add_argument("--budget-s", type=float, default=420.0, help="no case starts after this many seconds")
    parser.add_argument("--work", type=Path, help="scratch folder for photos and the checkpoint (default: a temp)")
    args = parser.parse_args(argv)
    scale = DRY if args.dry_run else REAL
    if scale.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "gpu_check: no CUDA GPU visible (use --dry-run on CPU)\n")
    signal.signal(signal.SIGTERM, _terminate)  # the wrapper's timeout: still write the row and the table
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    results = Results(args.out)
    results.add(environment(scale, args.dry_run))
    work = args.work or Path(tempfile.mkdtemp(prefix="ecac-gpu-check-"))
    check = Check(scale, work, results, args.budget_s)
    try:
        photos = list(scale.photos)
        check.steps_case("bf16", "protocol", photos[0])
        check.checkpoint_case(check.rsrs_case())
        for photo in photos[1:]:
            check.steps_case("bf16", "protocol", photo)
        check.steps_case("fp16", "protocol", photos[0])
        for photo in photos:
            check.steps_case("bf16", "none", photo)
        for photo in photos[1:]:
            check.steps_case("fp16", "protocol", photo)
        for photo in photos:
            check.steps_case("fp16", "none", photo)
    finally:
        results.add({"case": "imports", "status": "ok", "distributions": imported_distributions()})
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        text = table(results.rows)
        (args.out / "gpu_check.md").write_text(text + "\n")
        print(text)


if __name__ == "__main__":
    main()
