#!/usr/bin/env bash
# Paper baseline Qwen/Qwen2.5-VL-3B-Instruct on the ECAC lmms-eval tasks (Table III: TTS 38.07, Score 84.63; one GPU).
# Usage: baselines/run_qwen2_5_vl_3b.sh [extra `vllm serve` flags]; environment: see baselines/_serve_and_eval.sh.
set -euo pipefail
exec "$(dirname "$0")/_serve_and_eval.sh" qwen2.5-vl-3b-instruct Qwen/Qwen2.5-VL-3B-Instruct "$@"
