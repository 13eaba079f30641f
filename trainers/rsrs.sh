#!/usr/bin/env bash
# The KinderMM-Cap recipe end to end: SFT warm-up -> RSRS (or an ablation) -> ECAC evaluation through lmms-eval.
#
#   trainers/rsrs.sh [options] [-- extra trainer flags, e.g. --max_steps 100]
#
#   --smoke                 tiny random Qwen2.5-VL built locally, bundled sample, a few CPU steps (minutes)
#   --ablation A            sft | grpo | rsrs (default rsrs): SFT only, SFT + plain GRPO, SFT + RSRS (Fig. 5, Tab. V)
#   --model M               base model, local folder or cached hub id (env MODEL; Qwen/Qwen2.5-VL-3B-Instruct)
#   --data D                ECAC data, JSONL/Parquet/saved dataset (env DATA; default: bundled sample)
#   --train-split S         split to train on (env TRAIN_SPLIT; train)
#   --rl-data D             data of the GRPO/RSRS stage (env RL_DATA; default: --data; paper: a 12,000-image set)
#   --rl-split S            its split (env RL_SPLIT; default: --train-split)
#   --eval-split S          split to evaluate on (env EVAL_SPLIT; test)
#   --language L            zh | en caption prompt (env LANGUAGE; zh)
#   --output O              working folder for checkpoints and logs (env OUTPUT; runs/kindermm-cap-<ablation>)
#   --name N                run name on the leaderboard (env NAME; kindermm-cap-<ablation>)
#   --results R             where the lmms-eval run is written (env RESULTS; leaderboard/runs, smoke: <output>/eval)
#   --train-gpus N          processes of the GRPO/RSRS stage (env TRAIN_GPUS; 4); the step size follows them
#                           (trainers/layout.py: 1 image x G = 4 rollouts per step and SFT batch 4 on 4)
#   --sft-gpus N            processes of the SFT warm-up (env SFT_GPUS; every GPU of the node)
#   --precision P           bf16 | fp16 (env PRECISION; bf16). fp16 is the V100 path (trainers/README.md)
#   --rl-images N           images of the hybrid stage, a seeded subset of the split (env RL_IMAGES; 12000)
#   --images-per-step N     images per GRPO step, at least (env IMAGES_PER_STEP; 1; the 4 x 4 variant: 4)
#   --rollout R             server | colocate | hf: vLLM server on its own GPUs (paper), vLLM inside the training
#                           processes, or transformers generate (env ROLLOUT; server; smoke: hf)
#   --serve-gpus N          GPUs for `trl vllm-serve` in server mode, after the training GPUs (env SERVE_GPUS; 4)
#   --vllm-host H           use a rollout server already running on host H (multi-node) instead of starting one
#   --deepspeed Z           zero2 | zero3 | ddp accelerate config from trainers/configs (env DEEPSPEED; zero2)
#   --eval-backend B        lmms-eval model: vllm | qwen2_5_vl (env EVAL_BACKEND; vllm, smoke: qwen2_5_vl)
#   --eval-tasks T          lmms-eval tasks (env EVAL_TASKS; ecac_tts, or ecac_tts_en for --language en)
#   --eval-replicas N       vLLM evaluation replicas, one process each (env EVAL_REPLICAS; 1)
#   --rewards "R ..."       RL rewards, any of toy precision recall linguistic utility (env REWARDS; toy);
#                           judged ones use the ECAC_JUDGE_* endpoint (docs/judges.md)
#   --reward-weights "W ..." one weight per reward (env REWARD_WEIGHTS; all 1)
#   --aggregation A         grpo | c-gdpo: sum then group-normalise, or normalise each reward per group then sum
#                           (TRL's multi_objective_aggregation; env AGGREGATION; grpo)
#   --linguistic-band L,H   mask the linguistic reward outside L <= generated/reference length <= H
#   --utility-questions Q   CapRL questions JSONL for the utility reward
#   --dry-run               print the commands instead of running them
#
# Each stage writes its finished checkpoint to <stage>/model (built aside, renamed into place) and then
# <stage>/.done, and is skipped on a rerun, so an interrupted pipeline resumes; a stage that was interrupted
# resumes from the newest complete checkpoint in its folder (model, optimizer, RSRS buffer).
# Multi-node: extra accelerate flags go in ACCELERATE_EXTRA; trainers/README.md shows the per-stage commands.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

SMOKE=0
ABLATION="${ABLATION:-rsrs}"
MODEL="${MODEL:-Qwen/Qwen2.5-VL-3B-Instruct}"
DATA="${DATA:-}"
TRAIN_SPLIT="${TRAIN_SPLIT:-train}"
RL_DATA="${RL_DATA:-}"
RL_SPLIT="${RL_SPLIT:-}"
EVAL_SPLIT="${EVAL_SPLIT:-test}"
LANGUAGE="${LANGUAGE:-zh}"
OUTPUT="${OUTPUT:-}"
NAME="${NAME:-}"
RESULTS="${RESULTS:-}"
TRAIN_GPUS="${TRAIN_GPUS:-4}"
SFT_GPUS="${SFT_GPUS:-}"
PRECISION="${PRECISION:-bf16}"
RL_IMAGES="${RL_IMAGES:-12000}"
IMAGES_PER_STEP="${IMAGES_PER_STEP:-1}"
EVAL_REPLICAS="${EVAL_REPLICAS:-1}"
DRY_RUN=0
ROLLOUT="${ROLLOUT:-}"
SERVE_GPUS="${SERVE_GPUS:-4}"
DEEPSPEED="${DEEPSPEED:-zero2}"
EVAL_BACKEND="${EVAL_BACKEND:-}"
EVAL_TASKS="${EVAL_TASKS:-}"
VLLM_PORT="${VLLM_PORT:-8000}"
VLLM_HOST="${VLLM_HOST:-}"
REWARDS="${REWARDS:-toy}"
REWARD_WEIGHTS="${REWARD_WEIGHTS:-}"
AGGREGATION="${AGGREGATION:-grpo}"
LINGUISTIC_BAND="${LINGUISTIC_BAND:-}"
UTILITY_QUESTIONS="${UTILITY_QUESTIONS:-}"
EXTRA=()

die() { echo "rsrs.sh: $*" >&2; exit 2; }
need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) SMOKE=1; shift ;;
    --ablation) need "$@"; ABLATION="$2"; shift 2 ;;
    --model) need "$@"; MODEL="$2"; shift 2 ;;
    --data) need "$@"; DATA="$2"; shift 2 ;;
    --train-split) need "$@"; TRAIN_SPLIT="$2"; shift 2 ;;
    --rl-data) need "$@"; RL_DATA="$2"; shift 2 ;;
    --rl-split) need "$@"; RL_SPLIT="$2"; shift 2 ;;
    --eval-split) need "$@"; EVAL_SPLIT="$2"; shift 2 ;;
    --language) need "$@"; LANGUAGE="$2"; shift 2 ;;
    --output) need "$@"; OUTPUT="$2"; shift 2 ;;
    --name) need "$@"; NAME="$2"; shift 2 ;;
    --results) need "$@"; RESULTS="$2"; shift 2 ;;
    --train-gpus) need "$@"; TRAIN_GPUS="$2"; shift 2 ;;
    --sft-gpus) need "$@"; SFT_GPUS="$2"; shift 2 ;;
    --precision) need "$@"; PRECISION="$2"; shift 2 ;;
    --rl-images) need "$@"; RL_IMAGES="$2"; shift 2 ;;
    --images-per-step) need "$@"; IMAGES_PER_STEP="$2"; shift 2 ;;
    --eval-replicas) need "$@"; EVAL_REPLICAS="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --rollout) need "$@"; ROLLOUT="$2"; shift 2 ;;
    --serve-gpus) need "$@"; SERVE_GPUS="$2"; shift 2 ;;
    --vllm-host) need "$@"; VLLM_HOST="$2"; shift 2 ;;
    --deepspeed) need "$@"; DEEPSPEED="$2"; shift 2 ;;
    --eval-backend) need "$@"; EVAL_BACKEND="$2"; shift 2 ;;
    --eval-tasks) need "$@"; EVAL_TASKS="$2"; shift 2 ;;
    --rewards) need "$@"; REWARDS="$2"; shift 2 ;;
    --reward-weights) need "$@"; REWARD_WEIGHTS="$2"; shift 2 ;;
    --aggregation) need "$@"; AGGREGATION="$2"; shift 2 ;;
    --linguistic-band) need "$@"; LINGUISTIC_BAND="$2"; shift 2 ;;
    --utility-questions) need "$@"; UTILITY_QUESTIONS="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,44p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

case "$ABLATION" in sft|grpo|rsrs) ;; *) die "--ablation must be sft, grpo or rsrs, got '$ABLATION'" ;; esac
case "$PRECISION" in bf16|fp16) ;; *) die "--precision must be bf16 or fp16, got '$PRECISION'" ;; esac
for pair in "--train-gpus:$TRAIN_GPUS" "--serve-gpus:$SERVE_GPUS" "--rl-images:$RL_IMAGES" \
            "--images-per-step:$IMAGES_PER_STEP" "--eval-replicas:$EVAL_REPLICAS" "--sft-gpus:${SFT_GPUS:-1}"; do
  [[ "${pair#*:}" =~ ^[0-9]+$ ]] || die "${pair%%:*} must be a whole number, got '${pair#*:}'"
done
# Reward options of the RL stage (trainers/rewards.py); weights and aggregation are GRPOConfig's own fields.
read -r -a REWARD_LIST <<< "$REWARDS"
REWARD_ARGS=(--rewards "${REWARD_LIST[@]}")
if [[ -n "$REWARD_WEIGHTS" ]]; then read -r -a WEIGHTS <<< "$REWARD_WEIGHTS"; REWARD_ARGS+=(--reward_weights "${WEIGHTS[@]}"); fi
case "$AGGREGATION" in
  grpo) REWARD_ARGS+=(--multi_objective_aggregation sum_then_normalize) ;;
  c-gdpo) REWARD_ARGS+=(--multi_objective_aggregation normalize_then_sum) ;;
  *) die "--aggregation must be grpo or c-gdpo, got '$AGGREGATION'" ;;
esac
if [[ -n "$LINGUISTIC_BAND" ]]; then
  [[ "$LINGUISTIC_BAND" =~ ^[0-9.]+,[0-9.]+$ ]] || die "--linguistic-band must be LOW,HIGH, got '$LINGUISTIC_BAND'"
  REWARD_ARGS+=(--linguistic_tau_low "${LINGUISTIC_BAND%,*}" --linguistic_tau_high "${LINGUISTIC_BAND#*,}")
fi
[[ -n "$UTILITY_QUESTIONS" ]] && REWARD_ARGS+=(--utility_questions "$UTILITY_QUESTIONS")
case "$LANGUAGE" in zh) DEFAULT_TASKS=ecac_tts ;; en) DEFAULT_TASKS=ecac_tts_en ;; *) die "--language must be zh or en" ;; esac
NAME="${NAME:-kindermm-cap-$ABLATION}"
OUTPUT="$(mkdir -p "${OUTPUT:-runs/$NAME}" && cd "${OUTPUT:-runs/$NAME}" && pwd)"
EVAL_TASKS="${EVAL_TASKS:-$DEFAULT_TASKS}"
DATA_ARGS=(--split "$TRAIN_SPLIT" --language "$LANGUAGE")
[[ -n "$DATA" ]] && DATA_ARGS+=(--data "$DATA")
RL_DATA="${RL_DATA:-$DATA}"
RL_DATA_ARGS=(--split "${RL_SPLIT:-$TRAIN_SPLIT}" --language "$LANGUAGE" --subset_size "$RL_IMAGES")
[[ -n "$RL_DATA" ]] && RL_DATA_ARGS+=(--data "$RL_DATA")
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export WANDB_MODE="${WANDB_MODE:-disabled}" TOKENIZERS_PARALLELISM=false

# Print a command (--dry-run) or run it.
run() {
  if [[ $DRY_RUN == 1 ]]; then printf '+'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}

if [[ $SMOKE == 1 ]]; then
  ROLLOUT="${ROLLOUT:-hf}"
  EVAL_BACKEND="${EVAL_BACKEND:-qwen2_5_vl}"
  RESULTS="${RESULTS:-$OUTPUT/eval}"
  LAUNCH=(--cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no)
  SFT_LAUNCH=("${LAUNCH[@]}")
  # The tiny model's pixel budget (4..16 image tokens) keeps the CPU run short.
  PIXELS=(--min_pixels 3136 --max_pixels 12544)
  COMMON=(--use_cpu true --bf16 false --report_to tensorboard --logging_steps 1 --save_strategy no
          --max_samples 8 "${PIXELS[@]}")
  SFT_ARGS=("${COMMON[@]}" --num_train_epochs 1 --max_steps 2 --per_device_train_batch_size 4)
  # One process: one image (G = 4 rollouts) per step; a random model names no toy, so with an SFT batch of 1 the
  # GRPO and SFT steps alternate. The hybrid stage draws 6 of the 8 images (its seeded subset).
  RL_ARGS=("${COMMON[@]}" --max_steps 8 --max_completion_length 16 --rsrs_sft_batch_size 1 --subset_size 6)
  EVAL_ARGS=(--device cpu --batch_size 1 --limit 4 --gen_kwargs max_new_tokens=16)
  EVAL_MODEL_FLAGS=(--cpu --min-pixels 3136 --max-pixels 12544)
  echo "== the tiny Qwen2.5-VL in $OUTPUT/base (built aside and renamed into place; a complete one is reused)"
  run "$PYTHON" -m ecac_bench.testing.tiny_qwen "$OUTPUT/base" --reuse
  MODEL="$OUTPUT/base"
else
  ROLLOUT="${ROLLOUT:-server}"
  EVAL_BACKEND="${EVAL_BACKEND:-vllm}"
  RESULTS="${RESULTS:-$REPO/leaderboard/runs}"
  if [[ -z "$SFT_GPUS" ]]; then
    # The warm-up uses every GPU of the node (the rollout GPUs are idle until the RL stage).
    if command -v nvidia-smi > /dev/null 2>&1; then SFT_GPUS="$(nvidia-smi -L | grep -c '^GPU')"; fi
    if [[ -z "$SFT_GPUS" || "$SFT_GPUS" == 0 ]]; then
      SFT_GPUS=$TRAIN_GPUS
      [[ $ROLLOUT == server && -z "$VLLM_HOST" ]] && SFT_GPUS=$((TRAIN_GPUS + SERVE_GPUS))
    fi
  fi
  # shellcheck disable=SC2206  # ACCELERATE_EXTRA is a list of flags
  EXTRA_LAUNCH=(${ACCELERATE_EXTRA:-})
  CONFIG=(--config_file "$REPO/trainers/configs/$DEEPSPEED.yaml" --mixed_precision "$PRECISION")
  LAUNCH=("${CONFIG[@]}" --num_processes "$TRAIN_GPUS" "${EXTRA_LAUNCH[@]}")
  SFT_LAUNCH=("${CONFIG[@]}" --num_processes "$SFT_GPUS" "${EXTRA_LAUNCH[@]}")
  SFT_ARGS=()
  RL_ARGS=(--rsrs_images_per_step "$IMAGES_PER_STEP")
  if [[ $PRECISION == fp16 ]]; then SFT_ARGS+=(--bf16 false --fp16 true); RL_ARGS+=(--bf16 false --fp16 true); fi
  EVAL_ARGS=(--batch_size 64)
  [[ $EVAL_BACKEND == qwen2_5_vl ]] && EVAL_ARGS=(--batch_size 8)
  EVAL_MODEL_FLAGS=()
  USES_VLLM=()
  [[ $ROLLOUT != hf || $EVAL_BACKEND == vllm ]] && USES_VLLM=(--vllm)
  echo "== checking the GPUs for $PRECISION"
  run "$PYTHON" -m trainers.hardware --precision "$PRECISION" --require-gpu "${USES_VLLM[@]}"
fi
case "$ROLLOUT" in hf|colocate|server) ;; *) die "--rollout must be server, colocate or hf" ;; esac
case "$EVAL_BACKEND" in vllm|qwen2_5_vl) ;; *) die "--eval-backend must be vllm or qwen2_5_vl" ;; esac

stage_done() { [[ -f "$1/.done" && -f "$1/model/ecac_run.json" ]]; }
mark_done() { if [[ $DRY_RUN == 0 ]]; then date -u +%FT%TZ > "$1/.done"; fi; }

# -- 1. SFT warm-up: the whole train split, every GPU of the node -------------------------------------------------
SFT_DIR="$OUTPUT/sft"
if stage_done "$SFT_DIR"; then
  echo "== SFT warm-up already done: $SFT_DIR"
else
  echo "== SFT warm-up: $MODEL -> $SFT_DIR/model"
  run "$PYTHON" -m accelerate.commands.launch "${SFT_LAUNCH[@]}" -m trainers.sft \
    --config "$REPO/trainers/configs/sft.yaml" --model_name_or_path "$MODEL" "${DATA_ARGS[@]}" \
    --output_dir "$SFT_DIR" "${SFT_ARGS[@]}" "${EXTRA[@]}"
  mark_done "$SFT_DIR"
fi
FINAL="$SFT_DIR"

# -- 2. GRPO / RSRS on the hybrid subset -----------------------------------------------------------------------
if [[ $ABLATION != sft ]]; then
  RL_DIR="$OUTPUT/$ABLATION"
  SWITCH=true; [[ $ABLATION == grpo ]] && SWITCH=false
  if stage_done "$RL_DIR"; then
    echo "== $ABLATION already done: $RL_DIR"
  else
    ROLLOUT_ARGS=()
    SERVER_PID=""
    if [[ $ROLLOUT == server && -n "$VLLM_HOST" ]]; then
      [[ $DRY_RUN == 1 ]] || curl -sf "http://$VLLM_HOST:$VLLM_PORT/health" > /dev/null \
        || die "no rollout server at $VLLM_HOST:$VLLM_PORT"
      ROLLOUT_ARGS=(--use_vllm true --vllm_mode server --vllm_server_host "$VLLM_HOST" --vllm_server_port "$VLLM_PORT")
    elif [[ $ROLLOUT == server ]]; then
      # Rollout GPUs follow the training GPUs: 0..TRAIN_GPUS-1 train, the next SERVE_GPUS serve.
      SERVE_LIST="$(seq -s, "$TRAIN_GPUS" $((TRAIN_GPUS + SERVE_GPUS - 1)))"
      MAX_LEN="$("$PYTHON" -c 'from ecac_bench.protocol import max_model_len; print(max_model_len())')"
      SERVE=(trl vllm-serve --model "$SFT_DIR/model" --data_parallel_size "$SERVE_GPUS" --port "$VLLM_PORT"
             --max_model_len "$MAX_LEN")
      echo "== ${SERVE[*]} on GPUs $SERVE_LIST"
      if [[ $DRY_RUN == 1 ]]; then
        run env CUDA_VISIBLE_DEVICES="$SERVE_LIST" "${SERVE[@]}"
      else
        CUDA_VISIBLE_DEVICES="$SERVE_LIST" "${SERVE[@]}" > "$OUTPUT/vllm-serve.log" 2>&1 &
        SERVER_PID=$!
        trap '[[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null || true' EXIT
        for _ in $(seq 600); do
          curl -sf "http://127.0.0.1:$VLLM_PORT/health" > /dev/null && break
          kill -0 "$SERVER_PID" 2>/dev/null || die "trl vllm-serve exited, see $OUTPUT/vllm-serve.log"
          sleep 2
        done
        curl -sf "http://127.0.0.1:$VLLM_PORT/health" > /dev/null || die "trl vllm-serve not healthy after 20 min"
      fi
      export CUDA_VISIBLE_DEVICES="$(seq -s, 0 $((TRAIN_GPUS - 1)))"
      ROLLOUT_ARGS=(--use_vllm true --vllm_mode server --vllm_server_port "$VLLM_PORT")
    elif [[ $ROLLOUT == colocate ]]; then
      ROLLOUT_ARGS=(--use_vllm true --vllm_mode colocate)
    fi
    echo "== $ABLATION (rsrs_switch=$SWITCH): $SFT_DIR/model -> $RL_DIR/model"
    run "$PYTHON" -m accelerate.commands.launch "${LAUNCH[@]}" -m trainers.rsrs \
      --config "$REPO/trainers/configs/rsrs.yaml" --model_name_or_path "$SFT_DIR/model" "${RL_DATA_ARGS[@]}" \
      --output_dir "$RL_DIR" --rsrs_switch "$SWITCH" "${ROLLOUT_ARGS[@]}" "${RL_ARGS[@]}" "${REWARD_ARGS[@]}" \
      "${EXTRA[@]}"
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi
    mark_done "$RL_DIR"
  fi
  FINAL="$RL_DIR"
fi

# -- 3. ECAC evaluation through lmms-eval -----------------------------------------------------------------------
# lmms-eval names the model after its path: evaluate through final/<name> (a link) so the run carries the run name.
run mkdir -p "$OUTPUT/final" "$RESULTS/$NAME"
run ln -sfn "../$(basename "$FINAL")/model" "$OUTPUT/final/$NAME"
FINAL="$OUTPUT/final/$NAME"
RUN_DIR="$RESULTS/$NAME"
# The protocol's pixel budget and decoding (trainers/eval_args.py). lmms-eval's vllm backend refuses several
# replicas in one process: N replicas are N processes under accelerate.
MODEL_ARGS="$("$PYTHON" -m trainers.eval_args "$EVAL_BACKEND" "$FINAL" --replicas "$EVAL_REPLICAS" \
  "${EVAL_MODEL_FLAGS[@]}")" || die "cannot evaluate with --eval-backend $EVAL_BACKEND --eval-replicas $EVAL_REPLICAS"
if [[ $EVAL_REPLICAS -gt 1 ]]; then
  EVAL_LAUNCH=("$PYTHON" -m accelerate.commands.launch --multi_gpu --num_processes "$EVAL_REPLICAS" -m lmms_eval)
else
  EVAL_LAUNCH=("$PYTHON" -m lmms_eval)
fi
echo "== lmms-eval $EVAL_TASKS on $FINAL ($EVAL_SPLIT split) -> $RUN_DIR"
# The tasks are found without it once ecac-bench is installed; passing the folder also works from a bare checkout.
TASKS_DIR="$("$PYTHON" -m ecac_bench.lmms_plugin)"
MARKER="$(mktemp)"
trap 'rm -f "$MARKER"; [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null || true' EXIT
[[ -n "$DATA" ]] && export ECAC_DATA="$DATA"
run env ECAC_SPLIT="$EVAL_SPLIT" "${EVAL_LAUNCH[@]}" --model "$EVAL_BACKEND" --model_args "$MODEL_ARGS" \
  --tasks "$EVAL_TASKS" --include_path "$TASKS_DIR" --output_path "$RUN_DIR" --log_samples "${EVAL_ARGS[@]}"
# lmms-eval exits 0 even when a run fails: the checker reads what it wrote.
run "$PYTHON" -m ecac_bench.lmms_results "$RUN_DIR" --tasks "$EVAL_TASKS" --newer-than "$MARKER" \
  || die "the lmms-eval run under $RUN_DIR did not produce the requested results"
echo "== done: model $FINAL, results under $RUN_DIR"
