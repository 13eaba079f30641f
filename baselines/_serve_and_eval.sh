#!/usr/bin/env bash
# Serve one model with `vllm serve`, prove it is the server we started and that it captions an image, run the ECAC
# lmms-eval tasks against it through lmms-eval's `openai` backend, and stop the server on exit (also on error or
# Ctrl-C).
#
#   baselines/_serve_and_eval.sh RUN_NAME MODEL [extra `vllm serve` flags...]
#
# The run is written to a hidden staging folder and moved to leaderboard/runs/lmms-eval/RUN_NAME/ (lmms-eval's
# <model>/<time>_results.json and, per task, _samples_<task>.jsonl; the server log as vllm.log) only when the
# results hold every task with numeric metrics and no failed generation; otherwise the script exits 1 and the
# staging folder stays for inspection. `python -m ecac_bench.leaderboard build` never sees a failed run.
#
# Environment (all optional unless said):
#   ECAC_DATA            ECAC data file or saved dataset (default: the bundled sample); ECAC_SPLIT (default test)
#   ECAC_JUDGE_MODEL     judge for ecac_judge / ecac_toy_precision (required by the default task group), with
#   ECAC_JUDGE_BASE_URL  and ECAC_JUDGE_API_KEY (never written to the results; never sent to the vLLM server)
#   TASKS                lmms-eval tasks (default: ecac, i.e. ecac_tts, ecac_judge, ecac_toy_precision)
#   TP                   tensor-parallel size (default 1)
#   PORT                 server port (default 8000; must be free); HOST (default 127.0.0.1)
#   MAX_MODEL_LEN        context length given to vLLM (default: sized from the pixel budget, ecac_bench.protocol)
#   PIXEL_BUDGET         pass ECAC's min/max_pixels to the model's processor: 1 for Qwen2-VL-family models (the
#                        default), 0 for models whose processor has a fixed input size (GLM-4V, Gemma 3)
#   CONCURRENCY          requests lmms-eval keeps in flight (default 64)
#   REQUEST_TIMEOUT      seconds per request (default 600)
#   HEALTH_TIMEOUT       seconds to wait for the server (default 1800: first runs download the weights)
#   LIMIT                pass --limit to lmms-eval (testing only: results are then not ranked with full runs)
#   LMMS_MODEL_ARGS      extra lmms-eval model args, e.g. max_retries=3 (appended after a comma)
#   VLLM, LMMS_EVAL      commands to run, split on spaces (default: vllm, lmms-eval from PATH); PYTHON (python3)
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
run_name=$1
model=$2
shift 2

repo=$(cd "$(dirname "$0")/.." && pwd)
out="${OUT_DIR:-$repo/leaderboard/runs/lmms-eval/$run_name}"
staging="$(dirname "$out")/.staging-$(basename "$out")"
host=${HOST:-127.0.0.1}
port=${PORT:-8000}
base_url="http://$host:$port/v1"
tasks=${TASKS:-ecac}
python=${PYTHON:-python3}
read -r -a vllm_cmd <<<"${VLLM:-vllm}"
read -r -a lmms_eval_cmd <<<"${LMMS_EVAL:-lmms-eval}"

die() { echo "$*" >&2; exit 1; }

case ",$tasks," in
  *,ecac,* | *,ecac_en,* | *ecac_judge* | *ecac_toy_precision*)
    : "${ECAC_JUDGE_MODEL:?set ECAC_JUDGE_MODEL (and ECAC_JUDGE_BASE_URL, ECAC_JUDGE_API_KEY) for the judge tasks, or TASKS=ecac_tts}"
    ;;
esac

# The server we talk to must be the one we start: refuse a port that already answers.
if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  die "port $port on $host is already in use: stop that server or set PORT (the evaluation must talk to the vLLM it starts)"
fi

protocol() { "$python" -c "from ecac_bench.protocol import PIXEL_BUDGET, max_model_len; print($1)"; }
serve_flags=(--max-model-len "${MAX_MODEL_LEN:-$(protocol 'max_model_len()')}")
if [[ ${PIXEL_BUDGET:-1} == 1 ]]; then
  serve_flags+=(--mm-processor-kwargs "$(protocol 'PIXEL_BUDGET.mm_processor_kwargs()')")
fi

rm -rf "$staging"
mkdir -p "$staging"
log="$staging/vllm.log"
echo "serving $model as '$model' on $base_url (log: $log)"
# setsid: the server gets its own process group, so the trap can stop vLLM's worker processes too.
# The checkpoint's generation_config.json stays the sampling default (--generation-config auto, vLLM's default): the
# requests are greedy and the repetition penalty is the checkpoint's, as on lmms-eval's transformers route.
setsid "${vllm_cmd[@]}" serve "$model" \
  --host "$host" --port "$port" \
  --served-model-name "$model" \
  --tensor-parallel-size "${TP:-1}" \
  --limit-mm-per-prompt '{"image": 1}' \
  "${serve_flags[@]}" \
  "$@" >"$log" 2>&1 &
server_pid=$!

stop_server() {
  if kill -0 "$server_pid" 2>/dev/null; then
    echo "stopping vLLM (pid $server_pid)"
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$server_pid" 2>/dev/null || return 0; sleep 1; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
  fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

deadline=$((SECONDS + ${HEALTH_TIMEOUT:-1800}))
until curl -sf "http://$host:$port/health" >/dev/null; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "vLLM exited before becoming healthy; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  if ((SECONDS > deadline)); then
    die "vLLM not healthy after ${HEALTH_TIMEOUT:-1800} s; see $log"
  fi
  sleep 1
done
kill -0 "$server_pid" 2>/dev/null || die "the vLLM process we started is gone; another server answers on port $port"
echo "vLLM healthy after ${SECONDS} s"

# /v1/models must list the model, and one real image must come back captioned (chat template, image, context).
"$python" -m ecac_bench.preflight --base-url "$base_url" --model "$model" || die "preflight failed: nothing was evaluated"

limit_args=()
[[ -n ${LIMIT:-} ]] && limit_args=(--limit "$LIMIT")
model_args="model=$model,base_url=$base_url,num_concurrent=${CONCURRENCY:-64},timeout=${REQUEST_TIMEOUT:-600}"
[[ -n ${LMMS_MODEL_ARGS:-} ]] && model_args+=",$LMMS_MODEL_ARGS"
marker="$staging/.started"
touch "$marker"
# The server we started has no key: lmms-eval's openai backend gets a dummy one, never the caller's OPENAI_API_KEY.
# ECAC_MAX_FAILED: the tasks report every failed generation (rather than failing inside lmms-eval, which then writes
# nothing to inspect); the check below publishes only a run without any.
OPENAI_API_KEY=EMPTY ECAC_MAX_FAILED=1000000000 "${lmms_eval_cmd[@]}" \
  --model openai \
  --model_args "$model_args" \
  --tasks "$tasks" \
  --log_samples \
  --output_path "$staging" \
  "${limit_args[@]}"

# lmms-eval exits 0 even when the evaluation failed: the results file is the real check (every task, numeric
# metrics, no failed generation).
if ! results=$("$python" -m ecac_bench.lmms_results "$staging" --tasks "$tasks" --newer-than "$marker" --max-failed 0); then
  die "the run failed its checks; nothing was published (the partial run is in $staging)"
fi
rm -f "$marker"
if [[ -e $out ]]; then
  old="$(dirname "$out")/.replaced-$(basename "$out")-$(date +%s)"
  mv "$out" "$old"
  echo "moved the previous run aside: $old"
fi
mv "$staging" "$out"
echo "results: $out/${results#"$staging"/}"
