"""The lmms-eval ``--model_args`` of the recipe's final evaluation, with the protocol's pixel budget and decoding.

lmms-eval 0.7.3's ``vllm`` backend refuses ``data_parallel_size > 1`` in a single process (its ``__init__``: "vLLM
data parallel requires torchrun/accelerate multi-process launch"), and with several processes it needs exactly
``tensor_parallel_size x data_parallel_size`` of them. So ``replicas`` here is both the ``data_parallel_size`` and
the number of processes ``rsrs.sh`` launches (through ``accelerate launch`` when more than one). Its
``max_new_tokens`` (default 1024) is a floor under the task's (it takes the larger), so it is set to the task's
512 (``ecac_bench.protocol.DECODING``); the context length is sized from the pixel budget.

    python -m trainers.eval_args vllm MODEL_DIR [--replicas N] [--min-pixels P --max-pixels P]
"""

from __future__ import annotations

import argparse
import json

from ecac_bench.protocol import DECODING, PIXEL_BUDGET, Decoding, PixelBudget, max_model_len

BACKENDS = ("vllm", "qwen2_5_vl")


def lmms_model_args(
    backend: str,
    model: str,
    *,
    replicas: int = 1,
    budget: PixelBudget = PIXEL_BUDGET,
    decoding: Decoding = DECODING,
    cpu: bool = False,
) -> str:
    """The ``--model_args`` string for ``backend`` (``key=value`` pairs; lmms-eval keeps a JSON value whole)."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    if backend == "vllm":
        if cpu:
            raise ValueError("the vllm backend needs GPUs; on CPU use qwen2_5_vl")
        pixels = json.dumps(budget.to_dict(), separators=(",", ":"))
        pairs = {
            "model": model,
            "tensor_parallel_size": 1,
            "data_parallel_size": replicas,
            "max_new_tokens": decoding.max_new_tokens,
            "max_model_len": max_model_len(budget, decoding),
            "mm_processor_kwargs": pixels,
        }
    elif backend == "qwen2_5_vl":
        if replicas != 1:
            raise ValueError("the qwen2_5_vl backend runs one replica here; use --eval-backend vllm for several")
        pairs = {"pretrained": model, "min_pixels": budget.min_pixels, "max_pixels": budget.max_pixels}
        if cpu:
            pairs["device_map"] = "cpu"
    else:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if "," in model:
        raise ValueError(f"model path {model!r} contains a comma, which lmms-eval's --model_args cannot carry")
    return ",".join(f"{key}={value}" for key, value in pairs.items())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backend", choices=BACKENDS)
    parser.add_argument("model")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--min-pixels", type=int, default=PIXEL_BUDGET.min_pixels)
    parser.add_argument("--max-pixels", type=int, default=PIXEL_BUDGET.max_pixels)
    parser.add_argument("--cpu", action="store_true")
    args = parser.parse_args(argv)
    try:
        budget = PixelBudget(args.min_pixels, args.max_pixels)
        print(lmms_model_args(args.backend, args.model, replicas=args.replicas, budget=budget, cpu=args.cpu))
    except ValueError as error:
        parser.exit(2, f"trainers.eval_args: {error}\n")


if __name__ == "__main__":
    main()
