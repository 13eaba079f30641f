"""Build a tiny, randomly initialised Qwen2.5-VL checkpoint offline, for tests.

Nothing is downloaded: the byte-level BPE tokenizer is trained here with ``tokenizers`` on a small built-in
corpus, the model is created from a config with transformers, and everything is written with
``save_pretrained``, so ``Qwen2_5_VLForConditionalGeneration.from_pretrained(dir)`` and
``AutoProcessor.from_pretrained(dir)`` (and lmms-eval's ``qwen2_5_vl`` backend, and vLLM) load it like a hub
checkpoint. The default attention head size is 64 because vLLM's CPU attention needs at least 32.

    python -m ecac_bench.testing.tiny_qwen OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

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


def build_tiny_qwen2_5_vl(out_dir: Path, *, hidden_size: int = 128, num_heads: int = 2, seed: int = 0) -> Path:
    """Write a tiny random Qwen2.5-VL (model, tokenizer, processor) to ``out_dir``; return ``out_dir``.

    ``hidden_size`` is the text model width (also the vision tower's output width); the text head size is
    ``hidden_size // num_heads`` and must be even with a multiple of 4 halves for M-RoPE. The same seed gives
    the same weights.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    head_dim, rest = divmod(hidden_size, num_heads)
    if rest or head_dim % 8:
        raise ValueError(f"hidden_size/num_heads must be a multiple of 8, got {hidden_size}/{num_heads}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer()
    token_id = tokenizer.convert_tokens_to_ids
    half = head_dim // 2  # M-RoPE splits the rotary half-dimension into temporal/height/width sections
    quarter = half // 4
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 2,
            "num_attention_heads": num_heads,
            "num_key_value_heads": num_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1_000_000.0,
                "mrope_section": [half - 2 * quarter, quarter, quarter],
            },
            "bos_token_id": token_id("<|endoftext|>"),
            "eos_token_id": token_id("<|im_end|>"),
            "pad_token_id": token_id("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,  # head size 32: the minimum vLLM's CPU attention accepts
            "out_hidden_size": hidden_size,
            "fullatt_block_indexes": [1],
            "window_size": 112,
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [token_id("<|im_end|>"), token_id("<|endoftext|>")]
    model.generation_config.pad_token_id = token_id("<|endoftext|>")
    model.save_pretrained(out_dir)

    pixels = {"min_pixels": 3136, "max_pixels": 12544}  # 4..16 merged image tokens per picture
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        video_processor=Qwen2VLVideoProcessor(**pixels),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the checkpoint to")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build_tiny_qwen2_5_vl(args.out_dir, hidden_size=args.hidden_size, num_heads=args.num_heads, seed=args.seed)
    print(path)


if __name__ == "__main__":
    main()
