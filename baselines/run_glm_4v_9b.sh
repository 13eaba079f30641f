#!/usr/bin/env bash
# Paper baseline THUDM/glm-4v-9b on the ECAC lmms-eval tasks (Table III: TTS 29.36, Score 78.19; one GPU).
# Usage: baselines/run_glm_4v_9b.sh [extra `vllm serve` flags]; environment: see baselines/_serve_and_eval.sh.
set -euo pipefail
# GLM-4V-9B ships remote code; vLLM runs it as GLM4VForCausalLM (as in vLLM's vision-language examples).
exec "$(dirname "$0")/_serve_and_eval.sh" glm-4v-9b THUDM/glm-4v-9b \
  --trust-remote-code --hf-overrides '{"architectures": ["GLM4VForCausalLM"]}' --enforce-eager "$@"
