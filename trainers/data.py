"""Turn an ECAC split into the conversational image datasets TRL's trainers take; load the policy; save results.

Both trainers get plain-text conversational prompts plus an image column; TRL inserts the image block into the
user turn itself (``prepare_multimodal_messages``), so the chat template of the model decides where it goes.
The instruction text is the captioning prompt of ``ecac_bench.prompts.load_prompt("caption", language)`` — the
same one the lmms-eval task asks with, so the model is trained on the question it is evaluated on; its id and
content hash go into the run's record (``ecac_run.json``).

Every image the policy sees, in both stages, is resized into ``ecac_bench.protocol.PIXEL_BUDGET`` (the processor
is loaded with it, and saved with it, so the checkpoints carry the budget to vLLM and lmms-eval).
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoModelForImageTextToText, AutoProcessor, Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ecac_bench import EcacDataset, EcacRecord, load_dataset
from ecac_bench.prompts import load_prompt
from ecac_bench.protocol import DECODING, PIXEL_BUDGET, PixelBudget
from ecac_bench.report import replace_dir, write_json_atomic

LANGUAGES = ("zh", "en")
RUN_RECORD = "ecac_run.json"  # what a stage trained on and how; written at its start and into its final model
FINAL_MODEL = "model"  # <output_dir>/model: the stage's finished checkpoint, renamed into place when complete
PAPER_HYBRID_IMAGES = 12_000

logger = logging.getLogger(__name__)


def caption_prompt(language: str = "zh") -> str:
    """The captioning instruction (template ``caption.<language>.j2``), rendered exactly as the lmms-eval tasks do."""
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    return load_prompt("caption", language).render()


def _toys(record: EcacRecord) -> list[dict]:
    # Arrow needs one struct type per column, so every toy carries an aliases list (possibly empty).
    return [{"name": t.name, "level": t.level, "ground": t.ground, "aliases": list(t.aliases)} for t in record.toys]


_TOY_FEATURE = [
    {
        "name": datasets.Value("string"),
        "level": datasets.Value("string"),
        "ground": datasets.Value("string"),
        "aliases": datasets.List(datasets.Value("string")),
    }
]
_MESSAGES = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})


def _records(dataset: EcacDataset | Iterable[EcacRecord]) -> list[EcacRecord]:
    records = list(dataset)
    if not records:
        raise ValueError("the dataset split is empty: nothing to train on")
    return records


def grpo_dataset(dataset: EcacDataset | Iterable[EcacRecord], language: str = "zh") -> datasets.Dataset:
    """Rows ``{id, prompt, image, image_path, caption, toys}`` for GRPO/RSRS.

    ``toys`` reaches the reward function as a keyword argument (TRL passes extra columns through); ``caption`` is
    the reference the RSRS SFT branch trains on.
    """
    records = _records(dataset)
    prompt = caption_prompt(language)
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "prompt": _MESSAGES,
            "image": datasets.Image(),
            "image_path": datasets.Value("string"),
            "caption": datasets.Value("string"),
            "toys": _TOY_FEATURE,
        }
    )
    return datasets.Dataset.from_dict(
        {
            "id": [r.id for r in records],
            "prompt": [[{"role": "user", "content": prompt}] for _ in records],
            "image": [str(r.image) for r in records],
            "image_path": [str(r.image) for r in records],  # judged rewards send the file, not the decoded image
            "caption": [r.caption for r in records],
            "toys": [_toys(r) for r in records],
        },
        features=features,
    )


def sft_dataset(dataset: EcacDataset | Iterable[EcacRecord], language: str = "zh") -> datasets.Dataset:
    """Prompt-completion rows ``{id, prompt, completion, images}`` for the SFT warm-up.

    In this format TRL's SFTTrainer puts the loss on the completion (the reference caption) only.
    """
    records = _records(dataset)
    prompt = caption_prompt(language)
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "prompt": _MESSAGES,
            "completion": _MESSAGES,
            "images": datasets.List(datasets.Image()),
        }
    )
    return datasets.Dataset.from_dict(
        {
            "id": [r.id for r in records],
            "prompt": [[{"role": "user", "content": prompt}] for _ in records],
            "completion": [[{"role": "assistant", "content": r.caption}] for r in records],
            "images": [[str(r.image)] for r in records],
        },
        features=features,
    )


@dataclass
class DataArguments:
    """What to train on and how images are sized; shared by trainers.sft and trainers.rsrs."""

    model_name_or_path: str = field(metadata={"help": "Local checkpoint folder (or a hub id already cached)."})
    data: str | None = field(
        default=None, metadata={"help": "ECAC dataset (JSONL, Parquet or saved HF dataset); default: bundled sample."}
    )
    split: str = field(default="train", metadata={"help": "Split of --data to train on."})
    language: str = field(default="zh", metadata={"help": f"Caption prompt language, one of {LANGUAGES}."})
    max_samples: int | None = field(default=None, metadata={"help": "Use only the first N records (smoke runs)."})
    min_pixels: int = field(
        default=PIXEL_BUDGET.min_pixels, metadata={"help": "Images are resized to at least this many pixels."}
    )
    max_pixels: int = field(
        default=PIXEL_BUDGET.max_pixels, metadata={"help": "Images are resized to at most this many pixels."}
    )

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"--language must be one of {LANGUAGES}, got {self.language!r}")
        self.pixel_budget = PixelBudget(self.min_pixels, self.max_pixels)  # validates the pair


@dataclass
class HybridDataArguments(DataArguments):
    """The hybrid (RSRS) stage trains on a seeded random subset of the split: the paper's 12,000 images."""

    subset_size: int = field(
        default=PAPER_HYBRID_IMAGES,
        metadata={"help": "Images drawn (seeded) from the split for this stage; 0 or more than the split: all of it."},
    )
    subset_seed: int = field(default=42, metadata={"help": "Seed of the subset draw."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.subset_size < 0:
            raise ValueError(f"--subset_size must be >= 0, got {self.subset_size}")


@dataclass(frozen=True)
class TrainingData:
    """The records a stage trains on and how they were chosen (recorded in ``ecac_run.json``)."""

    records: list[EcacRecord]
    source: str
    split: str
    split_size: int
    seed: int | None = None

    def describe(self) -> dict[str, Any]:
        ids = [r.id for r in self.records]
        return {
            "source": self.source,
            "split": self.split,
            "split_size": self.split_size,
            "n_images": len(ids),
            "subset_seed": self.seed,
            "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
            "ids": ids,
        }


def load_train_records(data: DataArguments) -> TrainingData:
    """The split (first ``max_samples`` records if set), then for the hybrid stage its seeded subset."""
    loaded = load_dataset(data.data, split=data.split)
    records = loaded.records[: data.max_samples] if data.max_samples else loaded.records
    split_size, seed = len(records), None
    size = getattr(data, "subset_size", 0)
    if size and size < len(records):
        seed = data.subset_seed  # type: ignore[attr-defined]
        chosen = sorted(random.Random(seed).sample(range(len(records)), size))
        records = [records[i] for i in chosen]
    elif size:
        logger.warning(
            "the %s split has %d images, fewer than --subset_size %d: the hybrid stage uses all of them",
            data.split,
            len(records),
            size,
        )
    return TrainingData(records, str(loaded.path), data.split, split_size, seed)


def load_model_and_processor(path: str, pixel_budget: PixelBudget = PIXEL_BUDGET, *, fp16: bool = False):
    """The policy model and its processor, images resized into ``pixel_budget``; left padding is what generation
    and TRL's batching expect. ``fp16`` (the V100 path): fp32 weights, for fp16 autocast with a gradient scaler."""
    dtype: Any = "float32" if fp16 else "auto"
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
    processor = AutoProcessor.from_pretrained(
        path, padding_side="left", min_pixels=pixel_budget.min_pixels, max_pixels=pixel_budget.max_pixels
    )
    return model, processor


def run_record(stage: str, data: DataArguments, training: TrainingData, config: TrainingArguments, **extra: Any):
    """What a stage trains on and how: prompt identity, pixel budget, data (ids, seed), precision, versions."""
    import transformers
    import trl

    return {
        "stage": stage,
        "model": data.model_name_or_path,
        "prompt": {"task": "caption", "language": data.language, **load_prompt("caption", data.language).identity()},
        "pixel_budget": data.pixel_budget.to_dict(),
        "data": training.describe(),
        "precision": "bf16" if config.bf16 else "fp16" if config.fp16 else "fp32",
        "world_size": config.world_size,
        "seed": config.seed,
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__},
        **extra,
    }


def write_run_record(config: TrainingArguments, record: dict[str, Any]) -> None:
    if config.process_index == 0:
        write_json_atomic(Path(config.output_dir) / RUN_RECORD, record)


def rollout_decoding(config: Any) -> dict[str, Any]:
    """How the GRPO rollouts are sampled: the protocol's decoding (``DECODING``: max new tokens, repetition penalty,
    top-p) except for sampling at ``temperature``, since GRPO needs G different candidates per image."""
    return {
        "max_new_tokens": config.max_completion_length,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "repetition_penalty": config.repetition_penalty,
        "evaluation_decoding": DECODING.to_dict(),
    }


def train_and_save(trainer: Trainer, processor: Any, record: dict[str, Any]) -> Path:
    """Train (resuming an interrupted run from its newest complete checkpoint), then save the final checkpoint to
    ``<output_dir>/model`` atomically: built in a staging folder, run record last, renamed into place."""
    args = trainer.args
    trainer.train(resume_from_checkpoint=resume_point(args))
    output_dir = Path(args.output_dir)
    staging, final = output_dir / f".{FINAL_MODEL}.tmp", output_dir / FINAL_MODEL
    if trainer.accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted save
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))  # every process: DeepSpeed ZeRO-3 gathers the weights
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(staging)
        write_json_atomic(staging / RUN_RECORD, record)
        replace_dir(staging, final)
    trainer.accelerator.wait_for_everyone()
    return final


def is_complete_checkpoint(folder: Path) -> bool:
    """Trainer writes ``trainer_state.json`` last into a checkpoint: without it the save was interrupted."""
    return (folder / "trainer_state.json").is_file()


def resume_point(config: TrainingArguments) -> str | None:
    """The checkpoint to resume from: the one asked for, else the newest complete one in output_dir (an
    interrupted run; a checkpoint whose save was cut short is skipped)."""
    if config.resume_from_checkpoint:
        return config.resume_from_checkpoint
    output_dir = Path(config.output_dir)
    if not output_dir.is_dir():
        return None
    steps = []
    for folder in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        suffix = folder.name.rsplit("-", 1)[-1]
        if suffix.isdigit() and folder.is_dir():
            steps.append((int(suffix), folder))
    for _, folder in sorted(steps, reverse=True):
        if is_complete_checkpoint(folder):
            return str(folder)
        logger.warning("%s: incomplete checkpoint (no trainer_state.json), skipped", folder)
    return None
