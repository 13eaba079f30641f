"""One process of tests/test_rsrs_distributed.py, started by torchrun: RSRS on 2 CPU processes (gloo).

The step layout is derived from the process count (2 processes: 2 rollouts each, one image's G = 4 per step). For
informative images only the caption at group position 3, on process 1, names a toy, so process 0 alone would see
all-zero rewards: the buffer must be filled from the gathered rewards for both processes to agree. Writes
``<out>/rank<R>.json``.

    torchrun --nproc_per_node 2 tests/rsrs_dist_worker.py MODEL_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rsrs_helpers import ScriptedRollout, tagged_dataset, tiny_model_and_processor, train_records

from trainers.rewards import ToyReward
from trainers.rsrs import RSRSConfig, RSRSTrainer


def main() -> None:
    model_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    records = train_records(6)
    ids = [r.id for r in records]
    rollout = ScriptedRollout(records, zero_ids={ids[1], ids[3]}, named_slot=3)
    config = RSRSConfig(
        output_dir=str(out_dir / "trainer"),
        use_cpu=True,
        bf16=False,
        max_completion_length=16,
        max_steps=6,  # 6 RSRS steps, one update each
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        shuffle_dataset=False,
        seed=0,
        rsrs_sft_batch_size=2,
    )
    model, processor = tiny_model_and_processor(model_dir)
    trainer = RSRSTrainer(
        model=model,
        processing_class=processor,
        reward_funcs=ToyReward(),
        args=config,
        train_dataset=tagged_dataset(records),
        rollout_func=rollout,
    )
    sft_shares: list[list[str]] = []
    build = trainer.sft_inputs
    trainer.sft_inputs = lambda rows: sft_shares.append([r["id"] for r in rows]) or build(rows)
    trainer.train()
    rank = trainer.accelerator.process_index
    result = {
        "world_size": trainer.accelerator.num_processes,
        "backend": str(trainer.accelerator.state.backend),
        "per_device": config.per_device_train_batch_size,
        "modes": trainer.rsrs_modes,
        "seen": rollout.seen,
        "buffer": trainer.zero_reward_buffer.state_dict(),
        "deferred": [list(batch) for batch in trainer.pending_batches],
        "sft_shares": sft_shares,
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
