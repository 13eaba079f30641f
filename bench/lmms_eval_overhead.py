"""What lmms-eval and the ECAC task hooks cost per image, beyond generation, measured directly in one process.

``ecac_tts`` is evaluated in process (``lmms_eval.evaluator.simple_evaluate``) by an *instant* model: an lmms
backend that loads each image through the task's ``doc_to_visual`` (as every real backend does) and answers a fixed
caption at once. Everything timed is then the harness: task and dataset set-up, request building, image loading,
``process_results``, aggregation and sample logging. On a generated set of tiny images, the harness time per image
is the difference between a small and a large run of the same warm process divided by the difference in images
(``--small`` 200, ``--large`` 2,000 by default: the per-image part is then large against the set-up's noise), in
wall and CPU seconds, repeated. For scale, the same is printed for one real backend run: the tiny random Qwen2.5-VL
through ``qwen2_5_vl`` on a few images, its generation time per image measured inside its ``generate_until``.

    .venv/bin/python bench/lmms_eval_overhead.py [--small 200] [--large 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ecac_bench.testing.tiny_qwen import build_tiny_qwen2_5_vl

PIXELS = "min_pixels=3136,max_pixels=12544"
CAPTION = "孩子们在美工区用彩泥和积木做手工。"


@dataclass
class Run:
    images: int
    wall: float
    cpu: float
    model_wall: float = 0.0  # inside a real model's generate_until (0 for the instant model)


def make_data(folder: Path, n: int) -> Path:
    """``n`` records with 32x32 images and two toys each (one named by CAPTION)."""
    images = folder / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(n):
        path = images / f"{i:05d}.png"
        Image.new("RGB", (32, 32), (i % 256, (7 * i) % 256, 90)).save(path)
        toys = [
            {"name": "彩泥", "level": "medium", "ground": "foreground"},
            {"name": "画架", "level": "low", "ground": "background"},
        ]
        rows.append({"id": f"b{i:05d}", "image": str(path), "category": "classroom", "area": "美工区",
                     "caption": CAPTION, "split": "test", "toys": toys})  # fmt: skip
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return data


def instant_model() -> Any:
    from lmms_eval.api.model import lmms

    class InstantModel(lmms):
        """Generation takes no time: the caption is fixed; images are loaded as a real backend loads them."""

        def generate_until(self, requests: list) -> list[str]:
            out = []
            for request in requests:
                _context, _gen_kwargs, doc_to_visual, doc_id, task, split = request.args
                doc_to_visual(self.task_dict[task][split][doc_id])
                out.append(CAPTION)
            return out

        def loglikelihood(self, requests: list) -> list:
            raise NotImplementedError

        def generate_until_multi_round(self, requests: list) -> list:
            raise NotImplementedError

    return InstantModel()


def evaluate(lm: Any, limit: int, task_manager: Any, time_model: bool = False) -> Run:
    from lmms_eval.evaluator import simple_evaluate

    model_time = {"wall": 0.0}
    if time_model:  # a real backend: time its generate_until (image loading included)
        original = lm.generate_until

        def timed(requests: list) -> list:
            start = time.perf_counter()
            try:
                return original(requests)
            finally:
                model_time["wall"] += time.perf_counter() - start

        lm.generate_until = timed
    wall, cpu = time.perf_counter(), time.process_time()
    out = simple_evaluate(model=lm, tasks=["ecac_tts"], limit=limit, task_manager=task_manager, log_samples=True,
                          bootstrap_iters=0, gen_kwargs="max_new_tokens=8", process_docs_parallel=1)  # fmt: skip
    run = Run(limit, time.perf_counter() - wall, time.process_time() - cpu, model_time["wall"])
    if out is None or not isinstance(out["results"]["ecac_tts"].get("tts,none"), float):
        raise RuntimeError("lmms-eval produced no ECAC result")  # it reports failures in its results only
    return run


def spread(values: list[float], scale: float, unit: str) -> str:
    low, mid, high = min(values) * scale, statistics.median(values) * scale, max(values) * scale
    return f"{mid:.2f} {unit} (min {low:.2f}, max {high:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real-images", type=int, default=6, help="images of the real-backend run (for scale)")
    args = parser.parse_args()
    os.environ.update(
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false"
    )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(HF_DATASETS_CACHE=str(Path(tmp) / "hf"), ECAC_SPLIT="test")
        os.environ["ECAC_DATA"] = str(make_data(Path(tmp) / "data", args.large))
        from lmms_eval import models
        from lmms_eval.tasks import TaskManager

        from ecac_bench.lmms_plugin import TASKS_DIR

        task_manager = TaskManager(include_path=str(TASKS_DIR))
        evaluate(instant_model(), 20, task_manager)  # warm-up: imports, dataset cache
        runs = [
            (evaluate(instant_model(), args.small, task_manager), evaluate(instant_model(), args.large, task_manager))
            for _ in range(args.repeats)
        ]
        model_dir = build_tiny_qwen2_5_vl(Path(tmp) / "tiny")
        lm = models.get_model("qwen2_5_vl").create_from_arg_string(
            f"pretrained={model_dir},device_map=cpu,{PIXELS}", {"batch_size": 1, "device": "cpu"}
        )
        real = evaluate(lm, args.real_images, task_manager, time_model=True)
    extra = args.large - args.small
    per_wall = [(big.wall - small.wall) / extra for small, big in runs]
    per_cpu = [(big.cpu - small.cpu) / extra for small, big in runs]
    fixed = [small.wall - args.small * p for (small, _), p in zip(runs, per_wall, strict=True)]
    generation = real.model_wall / real.images
    print(f"instant model, {args.repeats} x ({args.small} and {args.large} generated images), ecac_tts, one process")
    print(f"harness per image, wall: {spread(per_wall, 1000, 'ms')}")
    print(f"harness per image, CPU:  {spread(per_cpu, 1000, 'ms')}")
    print(f"harness fixed set-up per evaluation (warm process): {spread(fixed, 1, 's')}")
    print(f"for scale, tiny Qwen2.5-VL on CPU ({real.images} images): {generation * 1000:.1f} ms/image in the model")
    print(f"harness / tiny-model generation per image: x{statistics.median(per_wall) / generation:.3f}")


if __name__ == "__main__":
    main()
