"""Two processes (torchrun, gloo) take the same RSRS step modes, decided from the rewards of all processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from rsrs_helpers import train_records

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("rsrs_dist_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_agree_on_the_step_mode(tiny_qwen: Path, tmp_path: Path) -> None:
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
    assert all(r["world_size"] == 2 and r["backend"] == "gloo" for r in ranks)
    ids = [r.id for r in train_records(6)]
    # Same schedule as the single-process test: images 1 and 3 score zero on both processes' captions.
    expected = ["grpo", "grpo", "grpo", "grpo", "sft", "grpo"]
    assert ranks[0]["modes"] == ranks[1]["modes"] == expected
    # Both processes generated for the same images (each its half of every group), including the deferred one.
    assert ranks[0]["seen"] == ranks[1]["seen"] == ids[:5]
    assert ranks[0]["buffer"] == ranks[1]["buffer"] == 0
    assert [batch[0] for batch in ranks[0]["deferred"]] == [ids[5]]
