#!/usr/bin/env bash
# Paper baseline THUDM/glm-4v-9b on the ECAC lmms-eval tasks (Table III: TTS 29.36, Score 78.19; one GPU).
# Usage: baselines/run_glm_4v_9b.sh [extra `vllm serve` flags]; environment: see baselines/_serve_and_eval.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# GLM-4V-9B ships remote code; vLLM runs it as GLM4VForCausalLM (as in vLLM's vision-language examples). Its chat
# endpoint needs a template it can apply: chat_templates/glm-4v-9b.jinja, with string contents (the template says
# why). The processor resizes every image to 1120 x 1120, so ECAC's pixel budget (a Qwen2-VL processor setting) does
# not apply.
PIXEL_BUDGET=0 exec "$here/_serve_and_eval.sh" glm-4v-9b THUDM/glm-4v-9b \
  --trust-remote-code --hf-overrides '{"architectures": ["GLM4VForCausalLM"]}' --enforce-eager \
  --chat-template "$here/chat_templates/glm-4v-9b.jinja" --chat-template-content-format string "$@"
