"""CN-CLIP as a ranker (`rank --methods clip`) on a tiny random Chinese CLIP built offline: the score is the cosine
of the projected embeddings, batching changes nothing, each image is decoded once, long captions are cut to the
context length and counted, an unreadable image gets no score, and the scores feed `agree`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import PIL.Image
import pytest

from ecac_bench.cli import main
from ecac_bench.clip_ranker import ChineseClipScorer
from ecac_bench.data import SAMPLE_DATA, load_dataset
from ecac_bench.testing.tiny_chinese_clip import build_tiny_chinese_clip


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chinese_clip(tmp_path_factory.mktemp("tiny_chinese_clip"))


@pytest.fixture(scope="module")
def records():
    return [r for r in load_dataset(SAMPLE_DATA).records if r.toys][:4]


def captions_of(record) -> list[str]:
    names = [t.name for t in record.toys]
    return ["孩子们在活动。", f"孩子们在玩{names[0]}。", f"在{record.area}，孩子们在玩{'和'.join(names)}。"]


def reference_score(path: Path, image: Path, caption: str) -> float:
    """CN-CLIP's own forward pass: logits_per_image divided by its temperature is the cosine similarity."""
    import torch
    from transformers import AutoProcessor, ChineseCLIPModel

    model, processor = ChineseCLIPModel.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)
    with PIL.Image.open(image) as img:
        inputs = processor(text=[caption], images=[img.convert("RGB")], return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model(**inputs)
        return float(out.logits_per_image[0, 0] / model.logit_scale.exp())


def test_the_tiny_checkpoint_loads_like_a_hub_one(tiny_clip):
    from transformers import AutoProcessor

    assert json.loads((tiny_clip / "config.json").read_text())["model_type"] == "chinese_clip"
    tokenizer = AutoProcessor.from_pretrained(tiny_clip).tokenizer
    ids = tokenizer("孩子们在美工区玩彩泥")["input_ids"]
    assert tokenizer.unk_token_id not in ids and len(ids) == 2 + len("孩子们在美工区玩彩泥")  # a token per character


def test_score_is_the_cosine_of_projected_embeddings_whatever_the_batch(tiny_clip, records):
    pairs = [(r.image, c) for r in records for c in captions_of(r)]
    scores, failures = ChineseClipScorer(tiny_clip, "cpu", batch_size=2).score(pairs)
    assert failures == {} and all(-1.0 <= s <= 1.0 for s in scores)
    for (image, caption), score in list(zip(pairs, scores, strict=True))[::4]:
        assert math.isclose(score, reference_score(tiny_clip, image, caption), abs_tol=1e-5)
    big, _ = ChineseClipScorer(tiny_clip, "cpu", batch_size=64).score(pairs)
    assert all(math.isclose(a, b, abs_tol=1e-5) for a, b in zip(scores, big, strict=True))  # padding changes nothing
    assert len(set(scores)) == len(scores)  # the captions are told apart


def test_each_image_is_decoded_once(tiny_clip, records, monkeypatch):
    opened: list[str] = []
    real_open = PIL.Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    pairs = [(r.image, c) for r in records for c in captions_of(r)]
    ChineseClipScorer(tiny_clip, "cpu", batch_size=3).score(pairs)
    assert sorted(opened) == sorted(str(r.image) for r in records)  # 4 images, 12 captions: 4 decodes


def test_long_captions_are_cut_to_the_context_length_and_counted(tiny_clip, records):
    image = records[0].image
    caption = "孩子们在美工区用剪刀和彩泥做手工，老师在一旁观察。"
    scorer = ChineseClipScorer(tiny_clip, "cpu", max_tokens=8)
    (cut,), _ = scorer.score([(image, caption)])
    assert scorer.truncated == 1 and scorer.max_tokens == 8
    (head,), _ = scorer.score([(image, caption[:6])])  # [CLS] + 6 characters + [SEP] = 8 tokens: not cut
    assert scorer.truncated == 1 and math.isclose(cut, head, abs_tol=1e-6)
    default = ChineseClipScorer(tiny_clip, "cpu")
    assert default.max_tokens == 52  # CN-CLIP's context length, below the tiny model's 64 positions
    default.score([(image, caption * 3)])
    assert default.truncated == 1


def test_an_unreadable_image_gets_no_score(tiny_clip, records, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    scores, failures = ChineseClipScorer(tiny_clip, "cpu").score([(broken, "孩子们"), (records[0].image, "孩子们")])
    assert scores[0] is None and scores[1] is not None
    assert failures == {"image cannot be read (UnidentifiedImageError)": 1}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_rank_clip_feeds_agree(tiny_clip, records, tmp_path):
    candidates, human = [], []
    for record in records:
        for k, caption in enumerate(captions_of(record)):
            candidates.append({"id": record.id, "caption_id": f"c{k}", "caption": caption})
            human.append({"id": record.id, "caption_id": f"c{k}", "ranks": [3 - k, 3 - k, 3 - k, 3 - k]})
    cands = write_jsonl(tmp_path / "cands.jsonl", candidates)
    scores, report = tmp_path / "scores.jsonl", tmp_path / "rank.json"
    argv = ["rank", "--candidates", str(cands), "--out", str(scores), "--methods", "clip,reward"]
    argv += ["--clip-model", str(tiny_clip), "--device", "cpu", "--clip-batch-size", "5", "--json", str(report)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    expected, _ = ChineseClipScorer(tiny_clip, "cpu").score([(records[0].image, c) for c in captions_of(records[0])])
    assert [r["scores"]["clip"] for r in rows[:3]] == pytest.approx(expected, abs=1e-5)
    config = json.loads(report.read_text())["config"]["clip"]
    assert config["model"] == str(tiny_clip) and config["max_tokens"] == 52 and config["failures"] == {}
    agree = tmp_path / "agree.json"
    human_path = write_jsonl(tmp_path / "human.jsonl", human)
    argv = ["agree", "--human", str(human_path), "--scores", str(scores), "--json", str(agree), "--n-boot", "50"]
    assert main(argv) == 0
    metrics = json.loads(agree.read_text())["metrics"]
    assert set(metrics) == {"clip", "reward"} and metrics["clip"]["n_images"] == len(records)
    assert -1.0 <= metrics["clip"]["kendall_tau"] <= 1.0


def test_clip_errors_are_one_line_and_exit_2(tiny_clip, records, tmp_path, capsys):
    import torch

    cands = write_jsonl(tmp_path / "c.jsonl", [{"id": records[0].id, "caption_id": "a", "caption": "孩子们"}])
    not_clip = tmp_path / "qwen"
    not_clip.mkdir()
    (not_clip / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    base = ["rank", "--candidates", str(cands), "--out", str(tmp_path / "s.jsonl"), "--methods", "clip"]
    cases = [
        ([], "--clip-model: required with --methods clip"),
        (["--clip-model", str(tmp_path / "missing")], "no such folder"),
        (["--clip-model", str(tmp_path)], "no config.json"),
        (["--clip-model", str(not_clip)], "not a Chinese CLIP checkpoint (config.json model_type 'qwen2_5_vl'"),
        (["--clip-model", str(tiny_clip), "--device", "tpu-of-dreams"], "--device tpu-of-dreams: not a torch device"),
        (["--clip-model", str(tiny_clip), "--clip-batch-size", "0"], "--clip-batch-size: must be >= 1"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--clip-model", str(tiny_clip), "--device", "cuda"], "CUDA is not available"))
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s.jsonl").exists()


def test_scores_on_a_gpu_equal_those_on_the_cpu(tiny_clip, records):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine (runs on the GPU machines)")
    pairs = [(r.image, c) for r in records for c in captions_of(r)]
    gpu = ChineseClipScorer(tiny_clip, "cuda", batch_size=4)
    assert gpu.describe()["device"].startswith("cuda")
    cpu_scores, _ = ChineseClipScorer(tiny_clip, "cpu").score(pairs)
    assert gpu.score(pairs)[0] == pytest.approx(cpu_scores, abs=1e-4)
