"""Stage 1 of the recipe: supervised warm-up on (image, prompt, reference caption) with TRL's SFTTrainer.

The rows are prompt-completion conversations (``trainers.data.sft_dataset``), for which SFTTrainer computes the
loss on the completion, i.e. the reference caption, only (``completion_only_loss``; checked at start-up).

    accelerate launch -m trainers.sft --config trainers/configs/sft.yaml \\
        --model_name_or_path Qwen/Qwen2.5-VL-3B-Instruct --data train.jsonl --output_dir runs/sft
"""

from __future__ import annotations

from trl import SFTConfig, SFTTrainer, TrlParser

from trainers.data import DataArguments, load_model_and_processor, load_train_records, sft_dataset, train_and_save


def main(argv: list[str] | None = None) -> None:
    parser = TrlParser((DataArguments, SFTConfig))
    data_args, config = parser.parse_args_and_config(args=argv)
    if config.completion_only_loss is False:
        raise ValueError("the warm-up trains on caption tokens only: do not set completion_only_loss=false")
    model, processor = load_model_and_processor(data_args.model_name_or_path)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=sft_dataset(load_train_records(data_args), data_args.language),
        processing_class=processor,
    )
    train_and_save(trainer, processor)


if __name__ == "__main__":
    main()
