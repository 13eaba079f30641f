"""Stage 1 of the recipe: supervised warm-up on (image, prompt, reference caption) with TRL's SFTTrainer.

The rows are prompt-completion conversations (``trainers.data.sft_dataset``), for which SFTTrainer computes the
loss on the completion, i.e. the reference caption, only (``completion_only_loss``; checked at start-up). The
paper's warm-up: the whole train split, 3 epochs, lr 1e-5 (``configs/sft.yaml``), on every GPU of the node.

    accelerate launch -m trainers.sft --config trainers/configs/sft.yaml \\
        --model_name_or_path Qwen/Qwen2.5-VL-3B-Instruct --data train.jsonl --output_dir runs/sft
"""

from __future__ import annotations

import sys

from trl import SFTConfig, SFTTrainer, TrlParser

from trainers.data import (
    DataArguments,
    load_model_and_processor,
    load_train_records,
    run_record,
    sft_dataset,
    train_and_save,
    write_run_record,
)
from trainers.hardware import HardwareError, check_gpus, precision_of


def main(argv: list[str] | None = None) -> None:
    parser = TrlParser((DataArguments, SFTConfig))
    data_args, config = parser.parse_args_and_config(args=argv)
    if config.completion_only_loss is False:
        raise ValueError("the warm-up trains on caption tokens only: do not set completion_only_loss=false")
    try:
        check_gpus(precision_of(config))
    except HardwareError as error:
        print(f"trainers.sft: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    training = load_train_records(data_args)
    model, processor = load_model_and_processor(data_args.model_name_or_path, data_args.pixel_budget, fp16=config.fp16)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=sft_dataset(training.records, data_args.language),
        processing_class=processor,
    )
    record = run_record("sft", data_args, training, config)
    write_run_record(config, record)
    train_and_save(trainer, processor, record)


if __name__ == "__main__":
    main()
