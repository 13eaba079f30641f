"""CN-CLIP as a caption ranker (the first row of the paper's Table IV): a caption's score is the image-text
similarity of a Chinese CLIP, the cosine of the projected image and text embeddings (what CN-CLIP's
``logits_per_image`` are, before its temperature scale).

The model is transformers' ``ChineseCLIPModel`` with its processor, loaded from a local folder (``--clip-model``,
e.g. a download of OFA-Sys/chinese-clip-vit-base-patch16): nothing is downloaded. Images are prepared by the
checkpoint's own image processor, each distinct image decoded once (EXIF rotation applied, as the photo is shown);
captions are cut to CN-CLIP's context length of 52 tokens (``--clip-max-tokens``), as CN-CLIP's own tokenizer does,
and the report counts how many were cut. Embeddings are computed in batches (``--clip-batch-size``) on the CPU or
a GPU (``--device``). torch and transformers are imported only when the ranker is used.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

# CN-CLIP's context length: cn_clip.clip.tokenize(texts, context_length=52), [CLS] and [SEP] included.
DEFAULT_MAX_TOKENS = 52
DEFAULT_BATCH_SIZE = 32
MODEL_TYPE = "chinese_clip"


def add_clip_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CN-CLIP ranker (--methods clip)")
    group.add_argument(
        "--clip-model",
        type=Path,
        default=None,
        help="local folder of a Chinese CLIP checkpoint (transformers' ChineseCLIPModel and its processor, e.g. "
        "OFA-Sys/chinese-clip-vit-base-patch16 downloaded beforehand)",
    )
    group.add_argument("--device", default="auto", help="torch device: cpu, cuda, cuda:1, ... (default: cuda if any)")
    group.add_argument(
        "--clip-batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"images or captions per batch ({DEFAULT_BATCH_SIZE})",
    )
    group.add_argument(
        "--clip-max-tokens",
        type=int,
        default=DEFAULT_MAX_TOKENS,
        help=f"captions are cut to this many tokens (default {DEFAULT_MAX_TOKENS}, CN-CLIP's context length)",
    )


def check_checkpoint(path: Path | None) -> Path:
    """``path`` if it is a folder holding a Chinese CLIP checkpoint (its config.json says ``chinese_clip``)."""
    if path is None:
        raise ValueError("--clip-model: required with --methods clip (a local Chinese CLIP checkpoint folder)")
    if not path.is_dir():
        raise FileNotFoundError(f"--clip-model {path}: no such folder")
    config = path / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except FileNotFoundError:
        raise ValueError(f"--clip-model {path}: no config.json; not a transformers checkpoint") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"--clip-model {path}: config.json cannot be read ({exc})") from None
    if model_type != MODEL_TYPE:
        raise ValueError(
            f"--clip-model {path}: not a Chinese CLIP checkpoint (config.json model_type {model_type!r}, expected "
            f"{MODEL_TYPE!r}, e.g. OFA-Sys/chinese-clip-vit-base-patch16)"
        )
    return path


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ChineseClipScorer:
    """Image-text cosine similarity with a Chinese CLIP checkpoint (see the module docstring)."""

    def __init__(
        self,
        path: Path | None,
        device: str = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"--clip-batch-size: must be >= 1, got {batch_size}")
        if max_tokens < 3:
            raise ValueError(f"--clip-max-tokens: must be >= 3 ([CLS], a token, [SEP]), got {max_tokens}")
        self.path = check_checkpoint(path)
        try:
            import torch
            from transformers import AutoProcessor, ChineseCLIPModel
        except ImportError as exc:
            raise ImportError(
                f"--methods clip needs torch and transformers ({exc}); install them: pip install 'ecac-bench[clip]'"
            ) from None
        self.torch = torch
        self.device = self._device(device)
        self.batch_size = batch_size
        try:
            self.model = ChineseCLIPModel.from_pretrained(self.path).to(self.device).eval()
            processor = AutoProcessor.from_pretrained(self.path)
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"--clip-model {self.path}: cannot be loaded ({exc})") from None
        self.tokenizer = getattr(processor, "tokenizer", None)
        self.image_processor = getattr(processor, "image_processor", None)
        if self.tokenizer is None or self.image_processor is None:
            raise ValueError(f"--clip-model {self.path}: its processor lacks a tokenizer or an image processor")
        # Never beyond the text model's position table (a longer input would fail, not be cut).
        self.max_tokens = min(max_tokens, self.model.config.text_config.max_position_embeddings)
        self.truncated = 0

    def _device(self, name: str) -> Any:
        torch = self.torch
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise ValueError(f"--device {name}: not a torch device (cpu, cuda, cuda:1, ...)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine")
        return device

    def describe(self) -> dict[str, Any]:
        return {
            "model": str(self.path),
            "device": str(self.device),
            "batch_size": self.batch_size,
            "max_tokens": self.max_tokens,
            "similarity": "cosine of the projected image and text embeddings",
        }

    def _features(self, output: Any) -> Any:
        """The projected embeddings, L2-normalised (transformers 5 returns an output object, 4.x a tensor)."""
        embeds = output if isinstance(output, self.torch.Tensor) else output.pooler_output
        return embeds / embeds.norm(p=2, dim=-1, keepdim=True)

    def image_embeddings(self, paths: Sequence[Path]) -> tuple[dict[Path, Any], dict[Path, str]]:
        """Each distinct image's normalised embedding (decoded once), and why an image could not be read."""
        from PIL import Image, ImageOps

        embeddings: dict[Path, Any] = {}
        errors: dict[Path, str] = {}
        for batch in _batches(list(dict.fromkeys(paths)), self.batch_size):
            images, ok = [], []
            for path in batch:
                try:
                    with Image.open(path) as img:
                        images.append(ImageOps.exif_transpose(img).convert("RGB"))
                    ok.append(path)
                except Exception as exc:  # a hostile file may raise anything from any decoder: that image fails
                    errors[path] = f"image cannot be read ({type(exc).__name__})"
            if not images:
                continue
            pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
            with self.torch.inference_mode():
                features = self._features(self.model.get_image_features(pixel_values=pixels))
            embeddings.update(zip(ok, features, strict=True))
        return embeddings, errors

    def text_embeddings(self, texts: Sequence[str]) -> Any:
        """The captions' normalised embeddings, in order (each cut to ``max_tokens``; counted in ``truncated``)."""
        chunks = []
        for batch in _batches(list(texts), self.batch_size):
            lengths = self.tokenizer(list(batch))["input_ids"]
            self.truncated += sum(len(ids) > self.max_tokens for ids in lengths)
            encoded = self.tokenizer(
                list(batch), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            ).to(self.device)
            with self.torch.inference_mode():
                chunks.append(self._features(self.model.get_text_features(**encoded)))
        return self.torch.cat(chunks) if chunks else None

    def score(self, pairs: Sequence[tuple[Path, str]]) -> tuple[list[float | None], dict[str, int]]:
        """The cosine similarity of each (image, caption), None where the image cannot be read; and the
        failures counted by reason."""
        images, errors = self.image_embeddings([image for image, _ in pairs])
        texts = self.text_embeddings([caption for _, caption in pairs])
        scores: list[float | None] = []
        for k, (image, _) in enumerate(pairs):
            scores.append(float((images[image] * texts[k]).sum()) if image in images else None)
        failures = Counter(errors[image] for image, _ in pairs if image in errors)
        return scores, dict(failures)


def clip_scores(args: argparse.Namespace, pairs: Sequence[tuple[Path, str]]) -> tuple[list[float | None], dict]:
    """`rank --methods clip`: the scores of ``pairs`` by the options of ``args``, and what the report records."""
    scorer = ChineseClipScorer(args.clip_model, args.device, args.clip_batch_size, args.clip_max_tokens)
    scores, failures = scorer.score(pairs)
    return scores, {**scorer.describe(), "truncated_captions": scorer.truncated, "failures": failures}
