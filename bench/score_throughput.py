"""Throughput of `score` end to end (load + match + aggregate) at ECAC scale, against a straightforward version.

    python bench/score_throughput.py [--images 256121] [--reference-images 20000]

Generates a synthetic ECAC-scale dataset (0-5 toys per image, mixed Chinese and English, aliases) and predictions,
then times ecac_bench's loader + score_captions, and a straightforward reference implementation (json per line,
normalise the caption for every name and regex-match it with word boundaries) on a prefix of the same data (the
reference is slow; its rate is extrapolated). Both must agree on the metrics of the prefix. Goal: the full set in
< 3 s on one core, >= 10x the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import re
import tempfile
import time
import unicodedata
from pathlib import Path

from ecac_bench import load_dataset, load_predictions, score_captions
from ecac_bench.cli import build_parser
from ecac_bench.cli import main as cli_main

ZH = [
    "积木",
    "单元积木",
    "彩泥",
    "橡皮泥",
    "蒙氏粉红塔",
    "奥尔夫木琴",
    "绘本",
    "放大镜",
    "沙铲",
    "磁力片",
    "平衡木",
    "手鼓",
]
EN = ["blocks", "unit blocks", "play dough", "Montessori pink tower", "car", "lego", "xylophone", "crayons", "sand"]
FILLER_ZH = "孩子们在活动区里认真地玩耍，老师在旁边观察并引导，大家都很开心。"
FILLER_EN = "Children play together in the activity area while a teacher observes and supports them."
LEVELS = ("low", "medium", "high")
GROUNDS = ("foreground", "background")


def generate(folder: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    data, preds = folder / "data.jsonl", folder / "pred.jsonl"
    with data.open("w", encoding="utf-8") as fd, preds.open("w", encoding="utf-8") as fp:
        for i in range(n):
            zh = rng.random() < 0.7
            vocab = ZH if zh else EN
            toys = []
            names = rng.sample(vocab, rng.randint(0, 5))
            used = set(names)  # an image's toys are a set: no name or alias shared by two toys (docs/data_format.md)
            for name in names:
                toy = {"name": name, "level": rng.choice(LEVELS), "ground": rng.choice(GROUNDS)}
                free = [v for v in vocab if v not in used]
                if rng.random() < 0.3 and free:
                    alias = rng.choice(free)
                    used.add(alias)
                    toy["aliases"] = [alias]
                toys.append(toy)
            said = [t["name"] for t in toys if rng.random() < 0.5] + [rng.choice(vocab)]
            sep = "、" if zh else ", "
            caption = (FILLER_ZH if zh else FILLER_EN) + sep.join(said)
            rec = {
                "id": f"img-{i:07d}",
                "image": f"images/{i}.jpg",
                "category": rng.choice(["outdoor", "classroom", "specialty"]),
                "area": f"area-{i % 35}",
                "caption": caption,
                "split": "test",
                "toys": toys,
            }
            fd.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fp.write(json.dumps({"id": rec["id"], "caption": caption}, ensure_ascii=False) + "\n")
    return data, preds


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def reference_score(data: Path, preds: Path, limit: int) -> dict[str, float]:
    """The straightforward version: json per line, normalise and regex-match each name against each caption."""
    captions = {}
    with preds.open(encoding="utf-8") as fh:
        for _, line in zip(range(limit), fh):
            row = json.loads(line)
            captions[row["id"]] = row["caption"]
    rates, rewards = [], []
    with data.open(encoding="utf-8") as fh:
        for _, line in zip(range(limit), fh):
            rec = json.loads(line)
            named, reward = 0, 0.0
            for toy in rec["toys"]:
                hit = False
                for name in [toy["name"], *toy.get("aliases", [])]:
                    n, c = _norm(name), _norm(captions[rec["id"]])
                    if all(ord(ch) < 0x3000 for ch in n):
                        pattern = r"(?<![a-z0-9])" + re.escape(n) + r"(?![a-z0-9])"
                    else:
                        pattern = re.escape(n)
                    hit = hit or re.search(pattern, c) is not None
                named += hit
                reward += hit * {"foreground": 1, "background": 0.5}[toy["ground"]] * (LEVELS.index(toy["level"]) + 1)
            if rec["toys"]:
                rates.append(named / len(rec["toys"]))
            rewards.append(reward)
    return {"tts": 100 * sum(rates) / len(rates), "reward": sum(rewards) / len(rewards)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256_121)
    parser.add_argument("--reference-images", type=int, default=25_000)
    parser.add_argument(
        "--n-boot",
        default=None,
        help="passed to `score` (default: the CLI's, 1000 resamples for the CIs; 0 times scoring without them)",
    )
    args = parser.parse_args()
    build_parser()  # import every command module now: start-up is not what is measured
    with tempfile.TemporaryDirectory() as tmp:
        data, preds = generate(Path(tmp), args.images)
        size_mb = (data.stat().st_size + preds.stat().st_size) / 1e6
        # The straightforward version first, on a fresh heap, as plain Python code runs.
        c5, t5 = time.process_time(), time.perf_counter()
        ref = reference_score(data, preds, args.reference_images)
        scale = args.images / args.reference_images
        ref_time, ref_cpu = (time.perf_counter() - t5) * scale, (time.process_time() - c5) * scale
        report = Path(tmp) / "report.json"
        argv = ["score", "--data", str(data), "--predictions", str(preds), "--json", str(report)]
        argv += ["--n-boot", args.n_boot] if args.n_boot is not None else []
        c0, t0 = time.process_time(), time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli_main(argv) == 0
        fast, fast_cpu = time.perf_counter() - t0, time.process_time() - c0
        metrics = json.loads(report.read_text())["metrics"]
        # Where the time goes, the library's steps one by one (under the CLI's GC setting, see ecac_bench/cli.py).
        t1 = time.perf_counter()
        dataset = load_dataset(data)
        t2 = time.perf_counter()
        predictions = load_predictions(preds, dataset)
        t3 = time.perf_counter()
        score_captions(dataset, predictions)
        t4 = time.perf_counter()
        dataset.records = dataset.records[: args.reference_images]
        check = score_captions(dataset, {r.id: predictions[r.id] for r in dataset.records}).metrics
        assert abs(check["tts"] - ref["tts"]) < 1e-9 and abs(check["reward"] - ref["reward"]) < 1e-9, (check, ref)
    print(f"images: {args.images:,} ({size_mb:.0f} MB of JSONL); tts={metrics['tts']:.3f}")
    print(
        f"ecac-bench score (CLI, in process): {fast:.2f} s wall, {fast_cpu:.2f} s CPU "
        f"({args.images / fast:,.0f} images/s)"
        f"\n  of which: load data {t2 - t1:.2f} s, load predictions {t3 - t2:.2f} s, match + aggregate {t4 - t3:.2f} s"
    )
    print(
        f"reference (straightforward, measured on {args.reference_images:,} images, extrapolated): "
        f"{ref_time:.2f} s wall, {ref_cpu:.2f} s CPU  ({args.images / ref_time:,.0f} images/s)"
    )
    print(f"speed-up: {ref_time / fast:.1f}x wall, {ref_cpu / fast_cpu:.1f}x CPU")
    print(
        f"goals: under 3 s -> {'met' if fast < 3 else 'NOT met'} ({fast:.2f} s); "
        f"10x the straightforward version -> {'met' if ref_time / fast >= 10 else 'NOT met'} ({ref_time / fast:.1f}x)"
    )


if __name__ == "__main__":
    main()
