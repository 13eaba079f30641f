"""The tiny offline Qwen2.5-VL loads with the standard transformers classes and generates from an image."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from PIL import Image
from safetensors.torch import load_file

from ecac_bench.testing.tiny_qwen import SPECIAL_TOKENS, build_tiny_qwen2_5_vl, main


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen"))


def test_loads_and_generates_from_an_image(tiny_dir: Path) -> None:
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_dir).eval()
    processor = transformers.AutoProcessor.from_pretrained(tiny_dir)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "描述这张图片。"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert "<|vision_start|><|image_pad|><|vision_end|>描述这张图片。<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")

    inputs = processor(text=[prompt], images=[Image.new("RGB", (320, 240), (200, 120, 40))], return_tensors="pt")
    # min/max pixels 3136..12544 -> between 4 and 16 merged image tokens
    n_image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert 4 <= n_image_tokens <= 16
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new_tokens = out[0, inputs["input_ids"].shape[1] :]
    assert 1 <= len(new_tokens) <= 8
    assert isinstance(processor.decode(new_tokens, skip_special_tokens=True), str)


def test_special_tokens_and_ids_agree(tiny_dir: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_dir)
    config = transformers.AutoConfig.from_pretrained(tiny_dir)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    assert sorted(ids.values()) == list(range(len(SPECIAL_TOKENS)))
    assert config.image_token_id == ids["<|image_pad|>"]
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert tokenizer.eos_token == "<|im_end|>"
    assert config.text_config.vocab_size >= len(tokenizer)
    # Chinese and English round-trip through the byte-level BPE
    text = "孩子们用积木搭建城堡 with wooden blocks"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_head_sizes_fit_vllm_cpu(tiny_dir: Path) -> None:
    config = transformers.AutoConfig.from_pretrained(tiny_dir)
    text, vision = config.text_config, config.vision_config
    assert text.hidden_size // text.num_attention_heads >= 32
    assert vision.hidden_size // vision.num_heads >= 32
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2


def test_same_seed_same_weights_other_seed_differs(tiny_dir: Path, tmp_path: Path) -> None:
    again = load_file(build_tiny_qwen2_5_vl(tmp_path / "again") / "model.safetensors")
    other = load_file(build_tiny_qwen2_5_vl(tmp_path / "other", seed=1) / "model.safetensors")
    first = load_file(tiny_dir / "model.safetensors")
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_rejects_bad_head_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        build_tiny_qwen2_5_vl(tmp_path, hidden_size=100, num_heads=3)


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main([str(tmp_path / "cli"), "--hidden-size", "64", "--num-heads", "2"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
    assert transformers.AutoConfig.from_pretrained(tmp_path / "cli").text_config.hidden_size == 64
