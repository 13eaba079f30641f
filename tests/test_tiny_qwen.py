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


def test_an_interrupted_build_leaves_nothing_that_looks_usable(tmp_path: Path, monkeypatch) -> None:
    """A build killed half-way (here: the processor fails to save) leaves no folder at the destination and no
    staging folder; a partial folder left by an older build is replaced, not reused."""
    import ecac_bench.testing.tiny_qwen as tiny_qwen

    target = tmp_path / "base"

    def boom(self, *args, **kwargs):
        raise KeyboardInterrupt  # what a kill looks like to the build

    monkeypatch.setattr(transformers.ProcessorMixin, "save_pretrained", boom)
    with pytest.raises(KeyboardInterrupt):
        build_tiny_qwen2_5_vl(target)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    target.mkdir()
    (target / "config.json").write_text("{}")  # what the old, non-atomic build left when killed
    assert not tiny_qwen.is_complete(target)
    main([str(target), "--reuse"])
    assert tiny_qwen.is_complete(target)
    transformers.AutoProcessor.from_pretrained(target)  # the processor files are there now
    stamp = (target / tiny_qwen.COMPLETE_MARKER).stat().st_mtime_ns
    main([str(target), "--reuse"])  # complete: kept as it is
    assert (target / tiny_qwen.COMPLETE_MARKER).stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base"]


def test_qwen2_5_vl_3b_shape_is_the_real_config() -> None:
    """Every shape value reaches transformers' Qwen2_5_VLConfig (unknown keys would be dropped silently), and the
    model has Qwen2.5-VL-3B-Instruct's 3.75 B parameters (counted on the meta device: no memory used)."""
    from dataclasses import asdict

    from ecac_bench.testing.tiny_qwen import QWEN2_5_VL_3B, build_config, build_model, build_tokenizer

    tokenizer = build_tokenizer()
    config = build_config(QWEN2_5_VL_3B, tokenizer)
    text, vision = config.text_config, config.vision_config
    for key, value in asdict(QWEN2_5_VL_3B).items():
        if key in ("mrope_section", "rope_theta", "tie_word_embeddings", "sliding_window"):
            continue
        owner, name = (vision, key.removeprefix("vision_")) if key.startswith("vision_") else (text, key)
        got = getattr(owner, name)
        got, value = (list(got), list(value)) if isinstance(value, tuple) else (got, value)
        assert got == value, key
    assert text.rope_parameters["mrope_section"] == [16, 24, 24] and text.rope_parameters["rope_theta"] == 1e6
    assert config.tie_word_embeddings and vision.out_hidden_size == text.hidden_size == 2048
    assert (text.hidden_size // text.num_attention_heads, vision.hidden_size // vision.num_heads) == (128, 80)
    model = build_model(QWEN2_5_VL_3B, tokenizer, device="meta", dtype=torch.bfloat16)
    assert sum(p.numel() for p in model.parameters()) == 3_754_622_976
