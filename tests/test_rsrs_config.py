"""The recipe's settings without training: the step-size rule, the configs' defaults, the hybrid-stage subset, the
run record, the pixel budget, the GPU check (V100), the evaluation's lmms-eval arguments and rsrs.sh's commands."""

from __future__ import annotations

import inspect
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from trl import TrlParser

from ecac_bench.prompts import load_prompt
from ecac_bench.protocol import DECODING, PIXEL_BUDGET
from trainers import hardware
from trainers.data import (
    DataArguments,
    HybridDataArguments,
    load_model_and_processor,
    load_train_records,
    resume_point,
    run_record,
)
from trainers.eval_args import lmms_model_args
from trainers.hardware import Gpu, gpu_problems, torch_runs_on
from trainers.layout import step_layout
from trainers.rewards import RewardArguments
from trainers.rsrs import RSRSConfig

REPO = Path(__file__).resolve().parents[1]
RSRS_SH = REPO / "trainers" / "rsrs.sh"


@pytest.mark.parametrize(
    ("processes", "images", "rollouts", "per_device", "sft"),
    [
        (1, 1, 4, 4, 4),
        (2, 1, 4, 2, 4),
        (4, 1, 4, 1, 4),  # the paper: 1 image x G = 4, one rollout per GPU, SFT batch 4
        (8, 2, 8, 1, 8),
        (16, 4, 16, 1, 16),
        (3, 3, 12, 4, 12),  # lcm(4, 3) = 12
        (6, 3, 12, 2, 12),
    ],
)
def test_step_layout_rule(processes: int, images: int, rollouts: int, per_device: int, sft: int) -> None:
    layout = step_layout(processes, num_generations=4)
    assert (layout.images_per_step, layout.rollouts_per_step, layout.per_device_batch, layout.sft_batch_size) == (
        images,
        rollouts,
        per_device,
        sft,
    )


def test_step_layout_variant_and_bad_input() -> None:
    # The larger step (4 images x 4 rollouts) on the paper's 4 processes: 4 rollouts per process, SFT batch 16.
    layout = step_layout(4, num_generations=4, min_images=4)
    assert (layout.images_per_step, layout.per_device_batch, layout.sft_batch_size) == (4, 4, 16)
    with pytest.raises(ValueError, match="rsrs_images_per_step"):
        step_layout(4, min_images=0)
    with pytest.raises(ValueError, match="num_processes"):
        step_layout(0)


def _parse_rsrs(tmp_path: Path, *extra: str):
    parser = TrlParser((HybridDataArguments, RSRSConfig, RewardArguments))
    argv = ["--config", str(REPO / "trainers/configs/rsrs.yaml"), "--model_name_or_path", "m"]
    argv += ["--output_dir", str(tmp_path), "--use_cpu", "true", "--bf16", "false", *extra]
    return parser.parse_args_and_config(args=argv)


def test_rsrs_yaml_is_the_papers_setting(tmp_path: Path) -> None:
    data, config, _ = _parse_rsrs(tmp_path)
    # One process here: the rule gives 1 image x G = 4 rollouts on it and an SFT batch of 4 (on 4 processes: one
    # rollout per process, test_step_layout_rule and tests/test_rsrs_distributed.py).
    assert (config.num_generations, config.per_device_train_batch_size, config.generation_batch_size) == (4, 4, 4)
    assert config.rsrs_sft_batch_size == 4 and config.rsrs_layout == step_layout(1)
    assert config.num_iterations == 1 and config.steps_per_generation == 1 and config.gradient_accumulation_steps == 1
    assert (config.beta, config.rsrs_buffer_sampling) == (0.0, "random")
    assert (data.subset_size, data.subset_seed) == (12000, 42)
    assert config.max_completion_length == DECODING.max_new_tokens
    # Rollouts state no repetition penalty (1.0); evaluation keeps the checkpoint's (DECODING.repetition_penalty None).
    assert config.repetition_penalty == 1.0 and config.temperature == 1.0
    record = config.step_record()
    assert (record["images_per_step"], record["rollouts_per_step"], record["rsrs_sft_batch_size"]) == (1, 4, 4)
    # The variant with a larger step, by one flag.
    _, variant, _ = _parse_rsrs(tmp_path, "--rsrs_images_per_step", "4")
    assert (variant.per_device_train_batch_size, variant.rsrs_sft_batch_size) == (16, 16)


def test_rsrs_config_defaults_and_validation(tmp_path: Path) -> None:
    config = RSRSConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    assert (config.beta, config.num_generations, config.num_iterations, config.loss_type) == (0.0, 4, 1, "grpo")
    explicit = RSRSConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=8)
    assert explicit.rsrs_layout is None and explicit.rsrs_sft_batch_size == 8  # TRL's arithmetic, SFT = batch
    cases = [
        ({"rsrs_sft_batch_size": 4, "rsrs_buffer_size": 2}, "rsrs_buffer_size"),
        ({"rsrs_sft_batch_size": 0}, "rsrs_sft_batch_size must be >= 1"),
        ({"rsrs_buffer_sampling": "lifo"}, "rsrs_buffer_sampling"),
        ({"gradient_accumulation_steps": 2}, "set per_device_train_batch_size"),
        ({"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "rsrs_sft_batch_size": 3}, "multiple"),
        ({"rsrs_images_per_step": 0}, "rsrs_images_per_step"),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message):
            RSRSConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, **overrides)


def test_layout_refuses_a_world_size_it_was_not_derived_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)  # no launcher announced several processes ...
    monkeypatch.setattr(RSRSConfig, "world_size", property(lambda self: 2))  # ... yet the run has two
    with pytest.raises(ValueError, match="derived for WORLD_SIZE=1 processes but the run has 2"):
        RSRSConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)


def test_hybrid_stage_takes_a_seeded_subset_and_records_it(caplog: pytest.LogCaptureFixture) -> None:
    split = [r.id for r in load_train_records(DataArguments(model_name_or_path="m")).records]
    assert len(split) == 20  # the bundled sample's train split; the warm-up takes all of it

    def subset(size: int, seed: int = 42):
        return load_train_records(HybridDataArguments(model_name_or_path="m", subset_size=size, subset_seed=seed))

    five = subset(5)
    ids = [r.id for r in five.records]
    assert len(ids) == 5 and ids == [i for i in split if i in ids]  # a subset, in split order
    assert ids == [r.id for r in subset(5).records]  # seeded
    assert ids != [r.id for r in subset(5, seed=7).records]
    described = five.describe()
    assert (described["n_images"], described["split_size"], described["subset_seed"], described["ids"]) == (
        5,
        20,
        42,
        ids,
    )
    with caplog.at_level(logging.WARNING, logger="trainers.data"):
        whole = subset(12000)  # the paper's size, larger than this split: all of it, with a warning
    assert [r.id for r in whole.records] == split and whole.seed is None
    assert "fewer than --subset_size 12000" in caplog.text
    assert [r.id for r in subset(0).records] == split
    with pytest.raises(ValueError, match="subset_size"):
        HybridDataArguments(model_name_or_path="m", subset_size=-1)


def test_run_record_holds_prompt_identity_budget_and_data(tmp_path: Path) -> None:
    data = HybridDataArguments(model_name_or_path="m", subset_size=3, language="en")
    training = load_train_records(data)
    config = RSRSConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    record = run_record("rsrs", data, training, config, step=config.step_record())
    assert record["prompt"] == {"task": "caption", "language": "en", **load_prompt("caption", "en").identity()}
    assert record["pixel_budget"] == {"min_pixels": 200704, "max_pixels": 1605632} == PIXEL_BUDGET.to_dict()
    assert record["data"]["ids"] == [r.id for r in training.records] and record["data"]["subset_seed"] == 42
    assert record["precision"] == "fp32" and record["step"]["rollouts_per_step"] == 4


def test_processor_gets_the_protocol_pixel_budget(tiny_qwen: Path) -> None:
    _, processor = load_model_and_processor(str(tiny_qwen))
    size = processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (PIXEL_BUDGET.min_pixels, PIXEL_BUDGET.max_pixels)
    # A 12 MP photo becomes at most 2048 vision tokens (one per 28 x 28 pixels), not the checkpoint's 16,000.
    grid = processor.image_processor(images=[Image.new("RGB", (4000, 3000))], return_tensors="pt")["image_grid_thw"]
    tokens = int(grid.prod()) // 4
    assert 1900 < tokens <= 2048


def test_resume_skips_a_checkpoint_whose_save_was_cut(tmp_path: Path) -> None:
    for step, complete in ((4, True), (8, True), (12, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"")
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    config = RSRSConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    assert resume_point(config) == str(tmp_path / "checkpoint-8")


# -- V100 --------------------------------------------------------------------------------------------------------

V100 = Gpu(0, "Tesla V100-SXM2-32GB", (7, 0))
H100 = Gpu(1, "NVIDIA H100 80GB HBM3", (9, 0))
CU128_ARCHES = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]
CU126_ARCHES = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


def test_v100_is_refused_with_reasons_and_the_fp16_path_is_named() -> None:
    problems = gpu_problems([V100], "bf16", CU128_ARCHES, uses_vllm=True)
    assert len(problems) == 3
    assert "no code for it" in problems[0] and "CUDA 12.6" in problems[0]
    assert "--precision fp16" in problems[1] and "--rollout hf" in problems[2]
    # The V100 path: fp16, a torch build with sm_70, transformers rollouts and evaluation.
    assert gpu_problems([V100], "fp16", CU126_ARCHES, uses_vllm=False) == []
    assert gpu_problems([H100], "bf16", CU128_ARCHES, uses_vllm=True) == []
    assert torch_runs_on((8, 6), ["sm_80"]) and not torch_runs_on((9, 0), ["sm_80"])
    assert torch_runs_on((9, 0), ["compute_80"]) and not torch_runs_on((9, 1), ["sm_90a"])


def test_hardware_check_reads_the_devices(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: V100.name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: V100.capability)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: CU128_ARCHES)
    with pytest.raises(SystemExit) as exit_info:
        hardware.main(["--precision", "bf16"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trainers.hardware: GPU 0 (Tesla V100-SXM2-32GB, sm_70)")
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: CU126_ARCHES)
    hardware.main(["--precision", "fp16"])
    assert "ok for fp16" in capsys.readouterr().out
    # The trainers run the same check before loading anything.
    from trainers import rsrs, sft

    assert "check_gpus(precision_of(config)" in inspect.getsource(rsrs.main)
    assert "check_gpus(precision_of(config))" in inspect.getsource(sft.main)


# -- the evaluation's lmms-eval arguments --------------------------------------------------------------------------


def test_vllm_eval_args_fit_lmms_eval_0_7_3() -> None:
    from lmms_eval.utils import simple_parse_args_string

    args = simple_parse_args_string(lmms_model_args("vllm", "/runs/final/kindermm-cap-rsrs"))
    assert args["data_parallel_size"] == 1 and args["tensor_parallel_size"] == 1
    assert args["max_new_tokens"] == DECODING.max_new_tokens == 512
    assert args["mm_processor_kwargs"] == '{"min_pixels":200704,"max_pixels":1605632}'
    assert args["max_model_len"] >= PIXEL_BUDGET.max_vision_tokens + DECODING.max_new_tokens
    qwen = simple_parse_args_string(lmms_model_args("qwen2_5_vl", "/m", cpu=True))
    assert (qwen["min_pixels"], qwen["max_pixels"], qwen["device_map"]) == (200704, 1605632, "cpu")
    with pytest.raises(ValueError, match="one replica"):
        lmms_model_args("qwen2_5_vl", "/m", replicas=2)


def _vllm_backend_source() -> str:
    import importlib.util

    spec = importlib.util.find_spec("lmms_eval")
    return (Path(spec.origin).parent / "models" / "simple" / "vllm.py").read_text()


def test_lmms_eval_vllm_refusals_are_what_rsrs_sh_avoids(tmp_path: Path) -> None:
    source = _vllm_backend_source()
    # lmms-eval 0.7.3 refuses data parallelism in one process, and several processes unless they are exactly TP x DP;
    # its max_new_tokens is a floor under the task's.
    assert "if self.data_parallel_size > 1 and accelerator.num_processes == 1:" in source
    assert "accelerator.num_processes != expected_world_size" in source
    assert "return max(request_max_new_tokens, self.max_new_tokens)" in source
    for replicas in (1, 4):
        commands = _dry_run(tmp_path / f"r{replicas}", "--eval-replicas", str(replicas), "--train-gpus", "4")
        (eval_command,) = [c for c in commands if "lmms_eval" in c]
        args = dict(a.split("=", 1) for a in eval_command[eval_command.index("--model_args") + 1].split(",", 5))
        processes = int(eval_command[eval_command.index("--num_processes") + 1]) if replicas > 1 else 1
        assert int(args["data_parallel_size"]) == replicas == processes
        assert args["max_new_tokens"] == "512" and "min_pixels" in args["mm_processor_kwargs"]


# -- rsrs.sh ------------------------------------------------------------------------------------------------------


def _dry_run(output: Path, *flags: str) -> list[list[str]]:
    env = {**os.environ, "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}  # no nvidia-smi: the GPU count is derived
    done = subprocess.run(
        ["bash", str(RSRS_SH), "--dry-run", "--output", str(output), *flags],
        capture_output=True,
        text=True,
        env=env,
        cwd=output.parent,
    )
    assert done.returncode == 0, done.stderr
    return [shlex.split(line[2:]) for line in done.stdout.splitlines() if line.startswith("+ ")]


def _launch_processes(command: list[str]) -> int:
    return int(command[command.index("--num_processes") + 1])


def test_rsrs_sh_sft_uses_every_gpu_and_rl_the_training_gpus(tmp_path: Path) -> None:
    commands = _dry_run(tmp_path / "run")
    (sft,) = [c for c in commands if "trainers.sft" in c]
    (rl,) = [c for c in commands if "trainers.rsrs" in c]
    assert _launch_processes(sft) == 8 and _launch_processes(rl) == 4  # 4 train + 4 serve GPUs on the node
    assert rl[rl.index("--subset_size") + 1] == "12000" and rl[rl.index("--rsrs_images_per_step") + 1] == "1"
    assert rl[rl.index("--model_name_or_path") + 1] == str(tmp_path / "run" / "sft" / "model")
    (serve,) = [c for c in commands if "vllm-serve" in c]
    assert serve[serve.index("--max_model_len") + 1] == "3072"
    assert next(c for c in commands if "trainers.hardware" in c)[-3:] == ["bf16", "--require-gpu", "--vllm"]
    (check,) = [c for c in commands if "ecac_bench.lmms_results" in c]
    assert "--newer-than" in check and check[check.index("--tasks") + 1] == "ecac_tts"
    explicit = _dry_run(tmp_path / "explicit", "--sft-gpus", "6", "--rollout", "colocate")
    assert _launch_processes(next(c for c in explicit if "trainers.sft" in c)) == 6


def test_rsrs_sh_fp16_is_the_v100_path(tmp_path: Path) -> None:
    commands = _dry_run(tmp_path / "run", "--precision", "fp16", "--rollout", "hf", "--eval-backend", "qwen2_5_vl")
    check = next(c for c in commands if "trainers.hardware" in c)
    assert check[check.index("--precision") + 1] == "fp16" and "--vllm" not in check
    for stage in ("trainers.sft", "trainers.rsrs"):
        (command,) = [c for c in commands if stage in c]
        assert command[command.index("--mixed_precision") + 1] == "fp16"
        assert command[command.index("--fp16") + 1] == "true" and command[command.index("--bf16") + 1] == "false"
    (eval_command,) = [c for c in commands if "lmms_eval" in c]
    assert "min_pixels=200704" in eval_command[eval_command.index("--model_args") + 1]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--precision", "fp8"], "--precision must be bf16 or fp16"),
        (["--train-gpus", "four"], "--train-gpus must be a whole number"),
        (["--eval-backend", "openai"], "--eval-backend must be vllm or qwen2_5_vl"),
    ],
)
def test_rsrs_sh_rejects_bad_flags(flags: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(RSRS_SH), "--dry-run", "--output", str(tmp_path), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert done.returncode == 2 and message in done.stderr
