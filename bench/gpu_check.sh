#!/usr/bin/env bash
# The GPU check in one command (trainers/README.md, "The GPU check"): install the carried wheels (.whl/, made by
# bench/gpu_wheels.sh) into a private folder, then run bench/gpu_check.py from this checkout under a hard time limit.
#   bench/gpu_check.sh --out DIR [--dry-run] [--budget-s 420]      (results: DIR/gpu_check.jsonl, DIR/gpu_check.md)
# Env: PYTHON (python3), GPU_CHECK_WHEELS (.whl), GPU_CHECK_SITE (/tmp/ecac-gpu/site-packages), GPU_CHECK_TIMEOUT
# (seconds, 470). The install folder's path must contain "site-packages": dill, which datasets uses to fingerprint a
# dataset, pickles by value any module it finds elsewhere, and pyarrow's modules cannot be pickled by value.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
SITE="${GPU_CHECK_SITE:-/tmp/ecac-gpu/site-packages}"
[[ "$SITE" == *site-packages* ]] || { echo "gpu_check.sh: GPU_CHECK_SITE must contain 'site-packages'" >&2; exit 2; }
PATHS="$REPO"
WHEEL_DIR="${GPU_CHECK_WHEELS:-$REPO/.whl}"
if compgen -G "$WHEEL_DIR/*.whl" > /dev/null; then
  SELECTED="$("$PYTHON" "$REPO/bench/gpu_wheels.py" select "$WHEEL_DIR")"  # the ones the machine lacks
  WHEELS=()
  while IFS= read -r wheel; do [[ -n "$wheel" ]] && WHEELS+=("$wheel"); done <<< "$SELECTED"
  if [[ ${#WHEELS[@]} -gt 0 ]]; then
    echo "gpu_check.sh: installing ${#WHEELS[@]} carried wheels into $SITE"
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${WHEELS[@]}"
  fi
  PATHS="$SITE:$REPO"
fi
# The checkout runs as it is (nothing is installed into the machine's Python).
export PYTHONPATH="$PATHS${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec timeout --signal=TERM --kill-after=15 "${GPU_CHECK_TIMEOUT:-470}" "$PYTHON" "$REPO/bench/gpu_check.py" "$@"
