"""Turn an ECAC split into the conversational image datasets TRL's trainers take.

Both trainers get plain-text conversational prompts plus an image column; TRL inserts the image block into the
user turn itself (``prepare_multimodal_messages``), so the chat template of the model decides where it goes.
The instruction text is the captioning prompt of ``ecac_bench/prompts/caption.<language>.j2`` — the same one the
lmms-eval task asks with, so the model is trained on the question it is evaluated on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import datasets
from transformers import AutoModelForImageTextToText, AutoProcessor, Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from ecac_bench import EcacDataset, EcacRecord, load_dataset
from ecac_bench.prompts import load_prompt

LANGUAGES = ("zh", "en")


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
    """What to train on; shared by trainers.sft and trainers.rsrs."""

    model_name_or_path: str = field(metadata={"help": "Local checkpoint folder (or a hub id already cached)."})
    data: str | None = field(
        default=None, metadata={"help": "ECAC dataset (JSONL, Parquet or saved HF dataset); default: bundled sample."}
    )
    split: str = field(default="train", metadata={"help": "Split of --data to train on."})
    language: str = field(default="zh", metadata={"help": f"Caption prompt language, one of {LANGUAGES}."})
    max_samples: int | None = field(default=None, metadata={"help": "Use only the first N records (smoke runs)."})


def load_train_records(data: DataArguments) -> list[EcacRecord]:
    records = load_dataset(data.data, split=data.split).records
    return records[: data.max_samples] if data.max_samples else records


def load_model_and_processor(path: str):
    """The policy model and its processor; left padding is what generation and TRL's batching expect."""
    model = AutoModelForImageTextToText.from_pretrained(path, dtype="auto")
    processor = AutoProcessor.from_pretrained(path, padding_side="left")
    return model, processor


def train_and_save(trainer: Trainer, processor: Any) -> None:
    """Train (resuming an interrupted run), then save a checkpoint that transformers and lmms-eval load."""
    trainer.train(resume_from_checkpoint=resume_point(trainer.args))
    trainer.save_model(trainer.args.output_dir)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(trainer.args.output_dir)


def resume_point(config: TrainingArguments) -> str | None:
    """The checkpoint to resume from: the one asked for, else the newest in output_dir (an interrupted run)."""
    if config.resume_from_checkpoint:
        return config.resume_from_checkpoint
    return get_last_checkpoint(config.output_dir) if os.path.isdir(config.output_dir) else None
