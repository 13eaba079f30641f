"""Build randomly initialised Qwen2.5-VL checkpoints offline: a tiny one for tests, or Qwen2.5-VL-3B's real shape.

Nothing is downloaded: the byte-level BPE tokenizer is trained here with ``tokenizers`` on a small built-in
corpus, the model is created from a config with transformers, and everything is written with
``save_pretrained``, so ``Qwen2_5_VLForConditionalGeneration.from_pretrained(dir)`` and
``AutoProcessor.from_pretrained(dir)`` (and lmms-eval's ``qwen2_5_vl`` backend, and vLLM) load it like a hub
checkpoint. The tiny default has attention heads of 64 because vLLM's CPU attention needs at least 32.

A checkpoint folder is built under a temporary name beside its destination and renamed into place only when
complete, with a marker file (``ecac_checkpoint.json``) written last: an interrupted build never leaves a folder
that looks usable, and ``--reuse`` trusts the marker, not the presence of one file.

    python -m ecac_bench.testing.tiny_qwen OUT_DIR [--reuse] [--shape tiny|qwen2.5-vl-3b]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ecac_bench.report import replace_dir

# The Qwen2-VL special tokens, in the order the real tokenizer numbers them.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL's chat template (system prompt default, images/videos as vision_start/pad/end).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Enough Chinese and English kindergarten text for a few hundred merges, so that generated
# token ids decode to word-like pieces in both languages.
_CORPUS = (
    "在建构区，孩子们用积木搭建城堡，老师在一旁观察。",
    "美工区里，幼儿用彩笔和剪刀制作手工，表情专注而开心。",
    "户外活动时，小朋友在滑梯和攀爬架上玩耍，旁边有皮球和呼啦圈。",
    "阅读区的书架上摆着绘本，两个孩子坐在地垫上一起看书。",
    "科学区有放大镜、天平和磁铁，孩子们正在探索物体的重量。",
    "益智区的桌上放着拼图、七巧板和串珠，幼儿正在动手操作。",
    "In the block area, children build a tower with wooden blocks while the teacher watches.",
    "In the art corner, a child paints with a brush and cuts paper with safety scissors.",
    "Outdoors, children climb the climbing frame, slide down the slide and throw a ball.",
    "In the reading corner, two children sit on a mat and look at a picture book together.",
    "At the science table there are magnifying glasses, a balance scale and magnets.",
    "The puzzle area has jigsaw puzzles, tangram pieces and lacing beads on the table.",
)

# Written last into a finished checkpoint folder: its presence is what "complete" means.
COMPLETE_MARKER = "ecac_checkpoint.json"
# 4..16 merged image tokens per picture: keeps the tiny model's CPU tests fast.
TINY_PIXELS = {"min_pixels": 3136, "max_pixels": 12544}


@dataclass(frozen=True)
class QwenVLShape:
    """The architecture numbers of a Qwen2.5-VL checkpoint: its text model and its vision tower.

    Field names are transformers' ``Qwen2_5_VLTextConfig`` names, and ``Qwen2_5_VLVisionConfig``'s with a
    ``vision_`` prefix; ``tests/test_tiny_qwen.py`` checks that every one reaches the built config unchanged
    (transformers configs accept unknown keys silently). ``None`` leaves transformers' default.
    """

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    mrope_section: tuple[int, int, int]  # temporal/height/width split of the rotary half-dimension
    vision_depth: int
    vision_hidden_size: int
    vision_intermediate_size: int
    vision_num_heads: int
    vision_fullatt_block_indexes: tuple[int, ...]
    vision_window_size: int = 112
    vision_patch_size: int = 14
    vision_spatial_merge_size: int = 2
    vision_temporal_patch_size: int = 2
    vision_tokens_per_second: int | None = None
    vocab_size: int | None = None  # None: the tokenizer's size
    max_position_embeddings: int = 4096
    rms_norm_eps: float | None = None
    rope_theta: float = 1_000_000.0
    sliding_window: int | None = None
    max_window_layers: int | None = None
    tie_word_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate(self) -> None:
        head_dim, rest = divmod(self.hidden_size, self.num_attention_heads)
        if rest or head_dim % 8:
            raise ValueError(
                f"hidden_size/num_heads must be a multiple of 8, got {self.hidden_size}/{self.num_attention_heads}"
            )
        if sum(self.mrope_section) != head_dim // 2:
            raise ValueError(f"mrope_section {self.mrope_section} must sum to head_dim/2 = {head_dim // 2}")

    def text_config(self, vocab_size: int, token_ids: dict[str, int]) -> dict[str, Any]:
        values: dict[str, Any] = {
            "vocab_size": self.vocab_size or vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "sliding_window": self.sliding_window,
            "max_window_layers": self.max_window_layers,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": self.rope_theta,
                "mrope_section": list(self.mrope_section),
            },
            "bos_token_id": token_ids["<|endoftext|>"],
            "eos_token_id": token_ids["<|im_end|>"],
            "pad_token_id": token_ids["<|endoftext|>"],
        }
        return {key: value for key, value in values.items() if value is not None}

    def vision_config(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "depth": self.vision_depth,
            "hidden_size": self.vision_hidden_size,
            "intermediate_size": self.vision_intermediate_size,
            "num_heads": self.vision_num_heads,
            "out_hidden_size": self.hidden_size,
            "fullatt_block_indexes": list(self.vision_fullatt_block_indexes),
            "window_size": self.vision_window_size,
            "patch_size": self.vision_patch_size,
            "spatial_merge_size": self.vision_spatial_merge_size,
            "temporal_patch_size": self.vision_temporal_patch_size,
            "tokens_per_second": self.vision_tokens_per_second,
        }
        return {key: value for key, value in values.items() if value is not None}


def tiny_shape(hidden_size: int = 128, num_heads: int = 2) -> QwenVLShape:
    """The tests' model: 2 text layers, a 2-block vision tower; head size 32 in the vision tower (vLLM's CPU
    minimum)."""
    if hidden_size % num_heads or (hidden_size // num_heads) % 8:
        raise ValueError(f"hidden_size/num_heads must be a multiple of 8, got {hidden_size}/{num_heads}")
    half = hidden_size // num_heads // 2
    quarter = half // 4
    return QwenVLShape(
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        intermediate_size=2 * hidden_size,
        mrope_section=(half - 2 * quarter, quarter, quarter),
        vision_depth=2,
        vision_hidden_size=64,
        vision_intermediate_size=128,
        vision_num_heads=2,
        vision_fullatt_block_indexes=(1,),
    )


# Qwen/Qwen2.5-VL-3B-Instruct's config.json (its vision_config states hidden_size 1280, out_hidden_size 2048 and
# tokens_per_second 2; depth 32, intermediate 3420, 16 heads, window 112 and full attention in blocks 7/15/23/31
# are the Qwen2_5_VLVisionConfig defaults it relies on). Parameter count: 3.75 B (tests/test_tiny_qwen.py).
QWEN2_5_VL_3B = QwenVLShape(
    hidden_size=2048,
    num_hidden_layers=36,
    num_attention_heads=16,
    num_key_value_heads=2,
    intermediate_size=11008,
    mrope_section=(16, 24, 24),
    vision_depth=32,
    vision_hidden_size=1280,
    vision_intermediate_size=3420,
    vision_num_heads=16,
    vision_fullatt_block_indexes=(7, 15, 23, 31),
    vision_window_size=112,
    vision_tokens_per_second=2,
    vocab_size=151936,
    max_position_embeddings=128000,
    rms_norm_eps=1e-6,
    rope_theta=1_000_000.0,
    sliding_window=32768,
    max_window_layers=70,
    tie_word_embeddings=True,
)

SHAPES = {"tiny": tiny_shape(), "qwen2.5-vl-3b": QWEN2_5_VL_3B}


def build_tokenizer(vocab_size: int = 600):
    """Train a byte-level BPE tokenizer with the Qwen special tokens; return a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        chat_template=CHAT_TEMPLATE,
        model_max_length=32768,
    )


def build_processor(tokenizer: Any, min_pixels: int, max_pixels: int) -> Any:
    """A ``Qwen2_5_VLProcessor`` around ``tokenizer`` whose images are resized into [min_pixels, max_pixels]."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    pixels = {"min_pixels": min_pixels, "max_pixels": max_pixels}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(shape: QwenVLShape, tokenizer: Any) -> Any:
    """The ``Qwen2_5_VLConfig`` of ``shape``, with the special-token ids of ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    shape.validate()
    token_ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    extra = {"tie_word_embeddings": True} if shape.tie_word_embeddings else {}
    return Qwen2_5_VLConfig(
        text_config=shape.text_config(len(tokenizer), token_ids),
        vision_config=shape.vision_config(),
        image_token_id=token_ids["<|image_pad|>"],
        video_token_id=token_ids["<|video_pad|>"],
        vision_start_token_id=token_ids["<|vision_start|>"],
        vision_end_token_id=token_ids["<|vision_end|>"],
        **extra,
    )


def build_model(shape: QwenVLShape, tokenizer: Any, *, seed: int = 0, device: Any = None, dtype: Any = None) -> Any:
    """A randomly initialised ``Qwen2_5_VLForConditionalGeneration`` of ``shape`` (created directly on ``device``,
    in ``dtype``), in eval mode, whose generation stops at ``<|im_end|>``. The same seed gives the same weights."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = build_config(shape, tokenizer)
    torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        kwargs = {"dtype": dtype} if dtype is not None else {}
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, **kwargs).eval()
    token_id = tokenizer.convert_tokens_to_ids
    model.generation_config.eos_token_id = [token_id("<|im_end|>"), token_id("<|endoftext|>")]
    model.generation_config.pad_token_id = token_id("<|endoftext|>")
    return model


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder`` is a finished checkpoint written by this module (its marker is there)."""
    return (Path(folder) / COMPLETE_MARKER).is_file()


def write_checkpoint(out_dir: str | Path, model: Any, processor: Any, info: dict[str, Any] | None = None) -> Path:
    """Save ``model`` and ``processor`` to ``out_dir`` atomically: into a temporary sibling folder, marker last, then
    renamed into place. An existing ``out_dir`` (complete or not) is replaced only once the new one is complete."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / COMPLETE_MARKER).write_text(json.dumps(info or {}, indent=2, sort_keys=True) + "\n")
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def build_tiny_qwen2_5_vl(
    out_dir: str | Path, *, hidden_size: int = 128, num_heads: int = 2, seed: int = 0, reuse: bool = False
) -> Path:
    """Write a tiny random Qwen2.5-VL (model, tokenizer, processor) to ``out_dir``; return ``out_dir``.

    ``hidden_size`` is the text model width (also the vision tower's output width); the text head size is
    ``hidden_size // num_heads`` and must be a multiple of 8 for M-RoPE. The same seed gives the same weights.
    With ``reuse``, a complete checkpoint already at ``out_dir`` is kept as it is.
    """
    out_dir = Path(out_dir)
    if reuse and is_complete(out_dir):
        return out_dir
    shape = tiny_shape(hidden_size, num_heads)
    return build_checkpoint(out_dir, shape, seed=seed, pixels=TINY_PIXELS)


def build_checkpoint(out_dir: str | Path, shape: QwenVLShape, *, seed: int = 0, pixels: dict[str, int]) -> Path:
    """Write a random checkpoint of ``shape`` with a locally trained tokenizer to ``out_dir`` (atomically)."""
    tokenizer = build_tokenizer()
    model = build_model(shape, tokenizer, seed=seed)
    processor = build_processor(tokenizer, **pixels)
    info = {"shape": asdict(shape), "seed": seed, "pixels": pixels}
    return write_checkpoint(out_dir, model, processor, info)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the checkpoint to")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--hidden-size", type=int, help="text width (tiny shape only; default 128)")
    parser.add_argument("--num-heads", type=int, help="text attention heads (tiny shape only; default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="keep a complete checkpoint already at OUT_DIR")
    args = parser.parse_args(argv)
    if args.reuse and is_complete(args.out_dir):
        print(args.out_dir)
        return
    if args.shape == "tiny":
        shape = tiny_shape(args.hidden_size or 128, args.num_heads or 2)
    elif args.hidden_size or args.num_heads:
        parser.error("--hidden-size/--num-heads apply to the tiny shape only")
    else:
        shape = SHAPES[args.shape]
    print(build_checkpoint(args.out_dir, shape, seed=args.seed, pixels=TINY_PIXELS))


if __name__ == "__main__":
    main()
