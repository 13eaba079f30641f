"""One process of tests/test_rsrs_distributed.py, started by torchrun: RSRS on 2 CPU processes (gloo).

Each image's G = 4 captions are split over the two processes (2 each). For informative images only the caption at
group position 3, on process 1, names a toy, so process 0 alone would see all-zero rewards: the buffer must be
filled from the gathered rewards for both processes to agree. Writes ``<out>/rank<R>.json``.

    torchrun --nproc_per_node 2 tests/rsrs_dist_worker.py MODEL_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rsrs_helpers import ScriptedRollout, tagged_dataset, train_records

from trainers.data import load_model_and_processor
from trainers.rsrs import RSRSConfig, RSRSTrainer, ecac_reward


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
        per_device_train_batch_size=2,  # 2 processes x 2 = one image's G = 4 captions per step
        max_completion_length=16,
        max_steps=6 * 2,  # 6 RSRS steps x num_iterations 2
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        shuffle_dataset=False,
        seed=0,
        rsrs_sft_batch_size=2,
    )
    model, processor = load_model_and_processor(str(model_dir))
    trainer = RSRSTrainer(
        model=model,
        processing_class=processor,
        reward_funcs=ecac_reward,
        args=config,
        train_dataset=tagged_dataset(records),
        rollout_func=rollout,
    )
    trainer.train()
    rank = trainer.accelerator.process_index
    result = {
        "world_size": trainer.accelerator.num_processes,
        "backend": str(trainer.accelerator.state.backend),
        "modes": trainer.rsrs_modes,
        "seen": rollout.seen,
        "buffer": len(trainer.zero_reward_buffer),
        "deferred": [list(batch) for batch in trainer.deferred_batches],
    }
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
