#!/usr/bin/env bash
# Paper baseline google/gemma-3-27b-it on the ECAC lmms-eval tasks (Table III: TTS 10.74, Score 12.00; ~55 GB of bf16 weights, so two 80 GB GPUs by default).
# Usage: baselines/run_gemma_3_27b.sh [extra `vllm serve` flags]; environment: see baselines/_serve_and_eval.sh.
set -euo pipefail
# A gated model: accept its licence on the Hub and export HF_TOKEN before the first run downloads it. Its processor
# resizes images to 896 x 896, so ECAC's pixel budget (a Qwen2-VL processor setting) does not apply.
PIXEL_BUDGET=0 TP=${TP:-2} exec "$(dirname "$0")/_serve_and_eval.sh" gemma-3-27b-it google/gemma-3-27b-it "$@"
