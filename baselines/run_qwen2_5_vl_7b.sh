#!/usr/bin/env bash
# Paper baseline Qwen/Qwen2.5-VL-7B-Instruct on the ECAC lmms-eval tasks (Table III: TTS 45.25, Score 85.70; one GPU).
# Usage: baselines/run_qwen2_5_vl_7b.sh [extra `vllm serve` flags]; environment: see baselines/_serve_and_eval.sh.
set -euo pipefail
exec "$(dirname "$0")/_serve_and_eval.sh" qwen2.5-vl-7b-instruct Qwen/Qwen2.5-VL-7B-Instruct "$@"
