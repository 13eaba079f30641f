"""Refuse a GPU the recipe cannot run on, before any work, with one line saying why and what to do instead.

The paper trained on V100s (compute capability 7.0). On such a GPU:

* bf16 does not exist (it needs compute capability 8.0): train in fp16 (``rsrs.sh --precision fp16``: fp32 master
  weights, fp16 autocast with a loss scaler);
* current torch wheels built for CUDA 12.8 and newer carry no sm_70 code, and neither do vLLM's wheels: use a torch
  build that lists sm_70 (``torch.cuda.get_arch_list()``; the CUDA 12.6 builds do), transformers rollouts
  (``--rollout hf``) and the transformers evaluation backend (``--eval-backend qwen2_5_vl``).

``python -m trainers.hardware --precision bf16 [--vllm]`` checks every visible GPU and exits 2 with the reasons;
``trainers.sft`` and ``trainers.rsrs`` run the same check at start-up.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

BF16_MIN_CAPABILITY = (8, 0)
PRECISIONS = ("bf16", "fp16", "fp32")


class HardwareError(RuntimeError):
    """The visible GPUs cannot run the requested configuration."""


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]

    def __str__(self) -> str:
        return f"GPU {self.index} ({self.name}, sm_{self.capability[0]}{self.capability[1]})"


def _parse_arch(arch: str) -> tuple[str, tuple[int, int], bool] | None:
    """``sm_90a`` -> ("sm", (9, 0), exact); ``compute_120`` -> ("compute", (12, 0), False)."""
    match = re.fullmatch(r"(sm|compute)_(\d+)(\d)([a-z]?)", arch)
    if not match:
        return None
    kind, major, minor, suffix = match.groups()
    return kind, (int(major), int(minor)), bool(suffix)


def torch_runs_on(capability: tuple[int, int], arch_list: Sequence[str]) -> bool:
    """Whether a torch build with ``arch_list`` has code for ``capability``: a cubin of the same major version and a
    lower or equal minor one (an arch-specific ``a`` cubin only for exactly that version), or PTX it can JIT."""
    for arch in arch_list:
        parsed = _parse_arch(arch)
        if parsed is None:
            continue
        kind, version, exact = parsed
        if kind == "compute" and version <= capability:
            return True
        same_major = version[0] == capability[0] and version[1] <= capability[1]
        if kind == "sm" and (version == capability if exact else same_major):
            return True
    return False


def gpu_problems(gpus: Sequence[Gpu], precision: str, arch_list: Sequence[str], uses_vllm: bool) -> list[str]:
    """Why these GPUs cannot run this configuration (empty when they can)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    problems = []
    for gpu in gpus:
        if arch_list and not torch_runs_on(gpu.capability, arch_list):
            problems.append(
                f"{gpu}: this torch build has no code for it (it has {' '.join(arch_list)}); install a torch build "
                "whose torch.cuda.get_arch_list() lists it (for sm_70: a CUDA 12.6 build)"
            )
        if precision == "bf16" and gpu.capability < BF16_MIN_CAPABILITY:
            problems.append(f"{gpu}: no bf16 below sm_80; use --precision fp16 (the V100 path, trainers/README.md)")
        if uses_vllm and gpu.capability < BF16_MIN_CAPABILITY:
            problems.append(
                f"{gpu}: vLLM's wheels carry no code for it; use --rollout hf and --eval-backend qwen2_5_vl"
            )
    return problems


def visible_gpus() -> list[Gpu]:
    import torch

    if not torch.cuda.is_available():
        return []
    return [
        Gpu(i, torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))  # type: ignore[arg-type]
        for i in range(torch.cuda.device_count())
    ]


def check_gpus(precision: str, uses_vllm: bool = False) -> list[Gpu]:
    """Raise HardwareError naming every problem of the visible GPUs (none visible: nothing to check)."""
    import torch

    gpus = visible_gpus()
    arch_list = torch.cuda.get_arch_list() if gpus else []
    problems = gpu_problems(gpus, precision, arch_list, uses_vllm)
    if problems:
        raise HardwareError("; ".join(problems))
    return gpus


def precision_of(config: object) -> str:
    """``bf16`` / ``fp16`` / ``fp32`` from a TrainingArguments' flags."""
    return "bf16" if getattr(config, "bf16", False) else "fp16" if getattr(config, "fp16", False) else "fp32"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16")
    parser.add_argument("--vllm", action="store_true", help="vLLM rollouts or evaluation will run on these GPUs")
    parser.add_argument("--require-gpu", action="store_true", help="fail when no CUDA GPU is visible")
    args = parser.parse_args(argv)
    try:
        gpus = check_gpus(args.precision, args.vllm)
    except HardwareError as error:
        print(f"trainers.hardware: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if not gpus and args.require_gpu:
        print("trainers.hardware: no CUDA GPU visible (the recipe needs GPUs; --smoke runs on CPU)", file=sys.stderr)
        raise SystemExit(2)
    for gpu in gpus:
        print(f"{gpu}: ok for {args.precision}{' with vLLM' if args.vllm else ''}")


if __name__ == "__main__":
    main()
