"""Build a tiny randomly initialised Chinese CLIP offline, for the tests of `ecac-bench rank --methods clip`.

Nothing is downloaded: the BERT WordPiece vocabulary is written here (the special tokens, then every character and
lower-cased English word of the bundled sample's captions and toy names), the model is created from a config with
transformers (``ChineseCLIPModel``: a 2-layer BERT text tower, a 2-layer ViT on 32 x 32 images), and everything is
written with ``save_pretrained`` (atomically, marker last: ``tiny_qwen.write_checkpoint``), so
``ChineseCLIPModel.from_pretrained(dir)`` and ``AutoProcessor.from_pretrained(dir)`` load it like a hub checkpoint.

    python -m ecac_bench.testing.tiny_chinese_clip OUT_DIR [--reuse]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from ecac_bench.data import SAMPLE_DATA
from ecac_bench.testing.tiny_qwen import is_complete, write_checkpoint

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
IMAGE_SIZE = 32
# Common words of captions the sample's text lacks (the tests' own captions use them).
EXTRA_TEXT = "孩子们小朋友老师在玩和用做画搭看。，、 children teacher play with and the a in"
# The text tower's position table: above CN-CLIP's context length (52), so that the ranker's cut is what acts.
MAX_POSITIONS = 64


def vocabulary() -> list[str]:
    """The special tokens, then the characters (CJK and punctuation one by one, as BERT splits them) and the
    lower-cased English words of the sample's captions, areas and toy names and of :data:`EXTRA_TEXT`, sorted."""
    text = [EXTRA_TEXT]
    for line in SAMPLE_DATA.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        text += [row["caption"], row["area"], *(t["name"] for t in row["toys"])]
    tokens: set[str] = set()
    for piece in text:
        for word in re.findall(r"[A-Za-z]+|\d+|\S", piece):
            tokens.add(word.lower())
    return [*SPECIAL_TOKENS, *sorted(tokens - set(SPECIAL_TOKENS))]


def build_config(vocab_size: int) -> Any:
    from transformers import ChineseCLIPConfig

    return ChineseCLIPConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": MAX_POSITIONS,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
            "projection_dim": 16,
        },
        projection_dim=16,
    )


def build_tiny_chinese_clip(out_dir: str | Path, *, seed: int = 0, reuse: bool = False) -> Path:
    """Write a tiny random Chinese CLIP (model, WordPiece tokenizer, image processor) to ``out_dir``; the same
    seed gives the same weights. With ``reuse``, a complete checkpoint already at ``out_dir`` is kept."""
    import torch
    from transformers import BertTokenizer, ChineseCLIPImageProcessor, ChineseCLIPModel, ChineseCLIPProcessor
    from transformers.models.bert.tokenization_bert import load_vocab

    out_dir = Path(out_dir)
    if reuse and is_complete(out_dir):
        return out_dir
    tokens = vocabulary()
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp, "vocab.txt")
        vocab_file.write_text("\n".join(tokens) + "\n", encoding="utf-8")
        tokenizer = BertTokenizer(vocab=load_vocab(str(vocab_file)))
    image_processor = ChineseCLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = ChineseCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    torch.manual_seed(seed)
    model = ChineseCLIPModel(build_config(len(tokens))).eval()
    return write_checkpoint(out_dir, model, processor, {"seed": seed, "vocab_size": len(tokens)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder to write the checkpoint to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="keep a complete checkpoint already at OUT_DIR")
    args = parser.parse_args(argv)
    print(build_tiny_chinese_clip(args.out_dir, seed=args.seed, reuse=args.reuse))


if __name__ == "__main__":
    main()
