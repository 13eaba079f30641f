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
#   --train-gpus N          training processes (env TRAIN_GPUS; 4)
#   --rollout R             server | colocate | hf: vLLM server on its own GPUs (paper), vLLM inside the training
#                           processes, or transformers generate (env ROLLOUT; server; smoke: hf)
#   --serve-gpus N          GPUs for `trl vllm-serve` in server mode, after the training GPUs (env SERVE_GPUS; 4)
#   --vllm-host H           use a rollout server already running on host H (multi-node) instead of starting one
#   --deepspeed Z           zero2 | zero3 | ddp accelerate config from trainers/configs (env DEEPSPEED; zero2)
#   --eval-backend B        lmms-eval model: vllm | qwen2_5_vl (env EVAL_BACKEND; vllm, smoke: qwen2_5_vl)
#   --eval-tasks T          lmms-eval tasks (env EVAL_TASKS; ecac_tts, or ecac_tts_en for --language en)
#   --rewards "R ..."       RL rewards, any of toy precision recall linguistic utility (env REWARDS; toy);
#                           judged ones use the ECAC_JUDGE_* endpoint (docs/judges.md)
#   --reward-weights "W ..." one weight per reward (env REWARD_WEIGHTS; all 1)
#   --aggregation A         grpo | c-gdpo: sum then group-normalise, or normalise each reward per group then sum
#                           (TRL's multi_objective_aggregation; env AGGREGATION; grpo)
#   --linguistic-band L,H   mask the linguistic reward outside L <= generated/reference length <= H
#   --utility-questions Q   CapRL questions JSONL for the utility reward
#
# Each stage writes <stage>/.done when it finishes and is skipped on a rerun, so an interrupted pipeline resumes;
# a stage that was interrupted resumes from the newest checkpoint in its folder (model, optimizer, RSRS buffer).
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
    -h|--help) sed -n '2,36p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

case "$ABLATION" in sft|grpo|rsrs) ;; *) die "--ablation must be sft, grpo or rsrs, got '$ABLATION'" ;; esac
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
RL_DATA_ARGS=(--split "${RL_SPLIT:-$TRAIN_SPLIT}" --language "$LANGUAGE")
[[ -n "$RL_DATA" ]] && RL_DATA_ARGS+=(--data "$RL_DATA")
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export WANDB_MODE="${WANDB_MODE:-disabled}" TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

if [[ $SMOKE == 1 ]]; then
  ROLLOUT="${ROLLOUT:-hf}"
  EVAL_BACKEND="${EVAL_BACKEND:-qwen2_5_vl}"
  RESULTS="${RESULTS:-$OUTPUT/eval}"
  LAUNCH=(--cpu --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no)
  COMMON=(--use_cpu true --bf16 false --report_to tensorboard --logging_steps 1 --save_strategy no
          --max_samples 8 --per_device_train_batch_size 4)
  SFT_ARGS=("${COMMON[@]}" --num_train_epochs 1 --max_steps 2)
  # One image (G = 4 rollouts) per step; a random model names no toy, so GRPO and SFT steps alternate.
  RL_ARGS=("${COMMON[@]}" --max_steps 8 --max_completion_length 16 --rsrs_sft_batch_size 1)
  EVAL_ARGS=(--device cpu --batch_size 1 --limit 4 --gen_kwargs max_new_tokens=16)
  if [[ ! -f "$OUTPUT/base/config.json" ]]; then
    echo "== building the tiny Qwen2.5-VL in $OUTPUT/base"
    "$PYTHON" -m ecac_bench.testing.tiny_qwen "$OUTPUT/base"
  fi
  MODEL="$OUTPUT/base"
else
  ROLLOUT="${ROLLOUT:-server}"
  EVAL_BACKEND="${EVAL_BACKEND:-vllm}"
  RESULTS="${RESULTS:-$REPO/leaderboard/runs}"
  LAUNCH=(--config_file "$REPO/trainers/configs/$DEEPSPEED.yaml" --num_processes "$TRAIN_GPUS")
  # shellcheck disable=SC2206  # ACCELERATE_EXTRA is a list of flags
  LAUNCH+=(${ACCELERATE_EXTRA:-})
  SFT_ARGS=()
  RL_ARGS=()
  EVAL_ARGS=(--batch_size 16)
fi
case "$ROLLOUT" in hf|colocate|server) ;; *) die "--rollout must be server, colocate or hf" ;; esac

stage_done() { [[ -f "$1/.done" ]]; }
mark_done() { date -u +%FT%TZ > "$1/.done"; }

# -- 1. SFT warm-up ---------------------------------------------------------------------------------------------
SFT_DIR="$OUTPUT/sft"
if stage_done "$SFT_DIR"; then
  echo "== SFT warm-up already done: $SFT_DIR"
else
  echo "== SFT warm-up: $MODEL -> $SFT_DIR"
  "$PYTHON" -m accelerate.commands.launch "${LAUNCH[@]}" -m trainers.sft \
    --config "$REPO/trainers/configs/sft.yaml" --model_name_or_path "$MODEL" "${DATA_ARGS[@]}" \
    --output_dir "$SFT_DIR" "${SFT_ARGS[@]}" "${EXTRA[@]}"
  mark_done "$SFT_DIR"
fi
FINAL="$SFT_DIR"

# -- 2. GRPO / RSRS ---------------------------------------------------------------------------------------------
if [[ $ABLATION != sft ]]; then
  RL_DIR="$OUTPUT/$ABLATION"
  SWITCH=true; [[ $ABLATION == grpo ]] && SWITCH=false
  if stage_done "$RL_DIR"; then
    echo "== $ABLATION already done: $RL_DIR"
  else
    ROLLOUT_ARGS=()
    SERVER_PID=""
    if [[ $ROLLOUT == server && -n "$VLLM_HOST" ]]; then
      curl -sf "http://$VLLM_HOST:$VLLM_PORT/health" > /dev/null || die "no rollout server at $VLLM_HOST:$VLLM_PORT"
      ROLLOUT_ARGS=(--use_vllm true --vllm_mode server --vllm_server_host "$VLLM_HOST" --vllm_server_port "$VLLM_PORT")
    elif [[ $ROLLOUT == server ]]; then
      # Rollout GPUs follow the training GPUs: 0..TRAIN_GPUS-1 train, the next SERVE_GPUS serve.
      SERVE_LIST="$(seq -s, "$TRAIN_GPUS" $((TRAIN_GPUS + SERVE_GPUS - 1)))"
      echo "== trl vllm-serve on GPUs $SERVE_LIST"
      CUDA_VISIBLE_DEVICES="$SERVE_LIST" trl vllm-serve --model "$SFT_DIR" --data_parallel_size "$SERVE_GPUS" \
        --port "$VLLM_PORT" > "$OUTPUT/vllm-serve.log" 2>&1 &
      SERVER_PID=$!
      trap '[[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null || true' EXIT
      for _ in $(seq 600); do
        curl -sf "http://127.0.0.1:$VLLM_PORT/health" > /dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "trl vllm-serve exited, see $OUTPUT/vllm-serve.log"
        sleep 2
      done
      curl -sf "http://127.0.0.1:$VLLM_PORT/health" > /dev/null || die "trl vllm-serve not healthy after 20 min"
      export CUDA_VISIBLE_DEVICES="$(seq -s, 0 $((TRAIN_GPUS - 1)))"
      ROLLOUT_ARGS=(--use_vllm true --vllm_mode server --vllm_server_port "$VLLM_PORT")
    elif [[ $ROLLOUT == colocate ]]; then
      ROLLOUT_ARGS=(--use_vllm true --vllm_mode colocate)
    fi
    echo "== $ABLATION (rsrs_switch=$SWITCH): $SFT_DIR -> $RL_DIR"
    "$PYTHON" -m accelerate.commands.launch "${LAUNCH[@]}" -m trainers.rsrs \
      --config "$REPO/trainers/configs/rsrs.yaml" --model_name_or_path "$SFT_DIR" "${RL_DATA_ARGS[@]}" \
      --output_dir "$RL_DIR" --rsrs_switch "$SWITCH" "${ROLLOUT_ARGS[@]}" "${RL_ARGS[@]}" "${REWARD_ARGS[@]}" \
      "${EXTRA[@]}"
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""; fi
    mark_done "$RL_DIR"
  fi
  FINAL="$RL_DIR"
fi

# -- 3. ECAC evaluation through lmms-eval -----------------------------------------------------------------------
# lmms-eval names the model after its path: evaluate through final/<name> (a link) so the run carries the run name.
mkdir -p "$OUTPUT/final"
ln -sfn "../$(basename "$FINAL")" "$OUTPUT/final/$NAME"
FINAL="$OUTPUT/final/$NAME"
RUN_DIR="$RESULTS/$NAME"
mkdir -p "$RUN_DIR"
if [[ $EVAL_BACKEND == vllm ]]; then
  MODEL_ARGS="model=$FINAL,tensor_parallel_size=1,data_parallel_size=${TRAIN_GPUS}"
else
  MODEL_ARGS="pretrained=$FINAL"
  [[ $SMOKE == 1 ]] && MODEL_ARGS+=",device_map=cpu,min_pixels=3136,max_pixels=12544"
fi
echo "== lmms-eval $EVAL_TASKS on $FINAL ($EVAL_SPLIT split) -> $RUN_DIR"
# The tasks are found without it once ecac-bench is installed; passing the folder also works from a bare checkout.
TASKS_DIR="$("$PYTHON" -m ecac_bench.lmms_plugin)"
MARKER="$(mktemp)"
[[ -n "$DATA" ]] && export ECAC_DATA="$DATA"
ECAC_SPLIT="$EVAL_SPLIT" "$PYTHON" -m lmms_eval --model "$EVAL_BACKEND" --model_args "$MODEL_ARGS" \
  --tasks "$EVAL_TASKS" --include_path "$TASKS_DIR" --output_path "$RUN_DIR" --log_samples "${EVAL_ARGS[@]}"
# lmms-eval exits 0 even when a run fails: the results file is the only proof.
RESULT_FILE="$(find "$RUN_DIR" -name '*_results.json' -newer "$MARKER" | sort | tail -n 1)"
rm -f "$MARKER"
[[ -n "$RESULT_FILE" ]] || die "lmms-eval wrote no results file under $RUN_DIR"
echo "== done: model $FINAL, results $RESULT_FILE"
