"""RSRS on several gloo processes (CPU): two torchrun processes train and take the same step kinds; 8 and 16
processes derive the step layout of trainers/layout.py from the process count they really run with."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from rsrs_helpers import train_records
from trl import TrlParser

from trainers.data import HybridDataArguments
from trainers.rewards import RewardArguments
from trainers.rsrs import RSRSConfig

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("rsrs_dist_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_agree_on_the_step_kind(tiny_qwen: Path, tmp_path: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(WORKER.parent)]), "OMP_NUM_THREADS": "1"}
    cmd = [
        str(torchrun),
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(WORKER),
        str(tiny_qwen),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" and r["per_device"] == 2 for r in ranks)
    ids = [r.id for r in train_records(6)]
    # Same schedule as the single-process test: images 1 and 3 score zero on both processes' captions.
    expected = ["grpo", "grpo", "grpo", "grpo", "sft", "grpo"]
    assert ranks[0]["modes"] == ranks[1]["modes"] == expected
    # Both processes generated for the same images (each its half of every group), including the deferred one.
    assert ranks[0]["seen"] == ranks[1]["seen"] == ids[:5]
    # Identical buffers, generator states included; the SFT batch of 2 is split one image per process.
    assert ranks[0]["buffer"] == ranks[1]["buffer"] and ranks[0]["buffer"]["ids"] == []
    shares = [r["sft_shares"] for r in ranks]
    assert [len(s) for s in shares] == [1, 1] and sorted(shares[0][0] + shares[1][0]) == sorted([ids[1], ids[3]])
    assert [batch[0] for batch in ranks[0]["deferred"]] == [ids[5]]


def _layout_worker(rank: int, world: int, port: int, out: str, queue) -> None:
    """A forked gloo process: build the recipe's RSRS config (trainers/configs/rsrs.yaml) in a real N-process world."""
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        AcceleratorState._reset_state(reset_partial_state=True)  # the parent's single-process state
        parser = TrlParser((HybridDataArguments, RSRSConfig, RewardArguments))
        argv = ["--config", str(REPO / "trainers/configs/rsrs.yaml"), "--model_name_or_path", "m", "--output_dir", out]
        _, config, _ = parser.parse_args_and_config([*argv, "--use_cpu", "true", "--bf16", "false"])
        layouts = [None] * world
        torch.distributed.all_gather_object(layouts, config.step_record())
        queue.put((rank, config.world_size, config.distributed_state.backend, layouts))
        torch.distributed.destroy_process_group()
    except BaseException as error:  # reported to the test, never a silent hang
        queue.put((rank, None, None, repr(error)))


@pytest.mark.parametrize("world", [8, 16])
def test_step_layout_degrades_on_8_and_16_processes(world: int, tmp_path: Path) -> None:
    """rsrs.yaml on N gloo processes: one rollout per process, N / 4 images per step, SFT batch N (no error)."""
    context = multiprocessing.get_context("fork")  # the children inherit this module's imports: cheap processes
    queue = context.Queue()
    port = _free_port()
    processes = [
        context.Process(target=_layout_worker, args=(rank, world, port, str(tmp_path), queue)) for rank in range(world)
    ]
    for process in processes:
        process.start()
    results = sorted(queue.get(timeout=180) for _ in range(world))
    for process in processes:
        process.join(timeout=60)
    assert all(isinstance(r[3], list) for r in results), [r[3] for r in results if not isinstance(r[3], list)]
    assert {(r[1], r[2]) for r in results} == {(world, "gloo")}
    layouts = results[0][3]
    assert all(r[3] == layouts for r in results) and all(layout == layouts[0] for layout in layouts)
    record = layouts[0]
    assert (record["num_processes"], record["per_device_train_batch_size"]) == (world, 1)
    assert (record["images_per_step"], record["rollouts_per_step"], record["rsrs_sft_batch_size"]) == (
        world // 4,
        world,
        world,
    )
