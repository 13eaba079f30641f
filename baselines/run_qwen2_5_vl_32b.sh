#!/usr/bin/env bash
# Paper baseline Qwen/Qwen2.5-VL-32B-Instruct on the ECAC lmms-eval tasks (paper text: TTS 29.96, Score 89.13; ~65 GB of bf16 weights, so two 80 GB GPUs by default).
# Usage: baselines/run_qwen2_5_vl_32b.sh [extra `vllm serve` flags]; environment: see baselines/_serve_and_eval.sh.
set -euo pipefail
TP=${TP:-2} exec "$(dirname "$0")/_serve_and_eval.sh" qwen2.5-vl-32b-instruct Qwen/Qwen2.5-VL-32B-Instruct "$@"
