#!/usr/bin/env bash
# Download into .whl/ (git-ignored) every wheel bench/gpu_check.py needs that the GPU machine lacks
# (bench/gpu_wheels.txt): CPython 3.12 manylinux x86_64 builds, --no-deps, one version each; prints the total size.
#   bench/gpu_wheels.sh [--dest DIR] [--python-version 3.12]
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
exec "${PYTHON:-$REPO/.venv/bin/python}" "$REPO/bench/gpu_wheels.py" download "$@"
