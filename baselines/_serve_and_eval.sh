#!/usr/bin/env bash
# Serve one model with `vllm serve`, wait until it is healthy, run the ECAC lmms-eval tasks against it through
# lmms-eval's `openai` backend, and stop the server on exit (also on error or Ctrl-C).
#
#   baselines/_serve_and_eval.sh RUN_NAME MODEL [extra `vllm serve` flags...]
#
# Results land in leaderboard/runs/lmms-eval/RUN_NAME/ (lmms-eval's <model>/<time>_results.json and, per task,
# _samples_<task>.jsonl), where `python -m ecac_bench.leaderboard build` finds them. The server log is written
# next to them as vllm.log.
#
# Environment (all optional unless said):
#   ECAC_DATA            ECAC data file or saved dataset (default: the bundled sample); ECAC_SPLIT (default test)
#   ECAC_JUDGE_MODEL     judge for ecac_judge / ecac_toy_precision (required by the default task group), with
#   ECAC_JUDGE_BASE_URL  and ECAC_JUDGE_API_KEY (never written to the results)
#   TASKS                lmms-eval tasks (default: ecac, i.e. ecac_tts, ecac_judge, ecac_toy_precision)
#   TP                   tensor-parallel size (default 1)
#   PORT                 server port (default 8000); HOST (default 127.0.0.1)
#   MAX_MODEL_LEN        context length given to vLLM (default 8192)
#   CONCURRENCY          requests lmms-eval keeps in flight (default 64)
#   REQUEST_TIMEOUT      seconds per request (default 600)
#   HEALTH_TIMEOUT       seconds to wait for the server (default 1800: first runs download the weights)
#   LIMIT                pass --limit to lmms-eval (testing only: results are then not ranked with full runs)
#   VLLM, LMMS_EVAL      commands to run, split on spaces (default: vllm, lmms-eval from PATH)
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,8p' "$0" >&2
  exit 2
fi
run_name=$1
model=$2
shift 2

repo=$(cd "$(dirname "$0")/.." && pwd)
out="${OUT_DIR:-$repo/leaderboard/runs/lmms-eval/$run_name}"
host=${HOST:-127.0.0.1}
port=${PORT:-8000}
base_url="http://$host:$port/v1"
tasks=${TASKS:-ecac}
read -r -a vllm_cmd <<<"${VLLM:-vllm}"
read -r -a lmms_eval_cmd <<<"${LMMS_EVAL:-lmms-eval}"

case ",$tasks," in
  *,ecac,* | *,ecac_en,* | *ecac_judge* | *ecac_toy_precision*)
    : "${ECAC_JUDGE_MODEL:?set ECAC_JUDGE_MODEL (and ECAC_JUDGE_BASE_URL, ECAC_JUDGE_API_KEY) for the judge tasks, or TASKS=ecac_tts}"
    ;;
esac

mkdir -p "$out"
log="$out/vllm.log"
echo "serving $model as '$model' on $base_url (log: $log)"
# setsid: the server gets its own process group, so the trap can stop vLLM's worker processes too.
setsid "${vllm_cmd[@]}" serve "$model" \
  --host "$host" --port "$port" \
  --served-model-name "$model" \
  --tensor-parallel-size "${TP:-1}" \
  --max-model-len "${MAX_MODEL_LEN:-8192}" \
  --limit-mm-per-prompt '{"image": 1}' \
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
    echo "vLLM not healthy after ${HEALTH_TIMEOUT:-1800} s; see $log" >&2
    exit 1
  fi
  sleep 1
done
echo "vLLM healthy after ${SECONDS} s"

started=$(date +%s)
limit_args=()
[[ -n ${LIMIT:-} ]] && limit_args=(--limit "$LIMIT")
OPENAI_API_KEY=${OPENAI_API_KEY:-EMPTY} "${lmms_eval_cmd[@]}" \
  --model openai \
  --model_args "model=$model,base_url=$base_url,num_concurrent=${CONCURRENCY:-64},timeout=${REQUEST_TIMEOUT:-600}" \
  --tasks "$tasks" \
  --log_samples \
  --output_path "$out" \
  "${limit_args[@]}"

# lmms-eval exits 0 even when the evaluation failed: a results file newer than this run is the real check.
results=$(find "$out" -name '*_results.json' -newermt "@$started" | sort | tail -n 1)
if [[ -z $results ]]; then
  echo "lmms-eval wrote no results file under $out: the run failed (see the output above)" >&2
  exit 1
fi
echo "results: $results"
