# ecac-bench: `make demo` sets up a virtualenv and runs the main job on the bundled sample; `make test` runs the tests.
# Both install from the lock file (requirements/lock.txt): the exact environment the tests pass in.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UV_VERSION := 0.13.9
LOCK := requirements/lock.txt
# CPU torch: this machine's wheel folder when it has the wheel, else PyTorch's own CPU wheel index (PyPI's torch
# for Linux is the CUDA build, several GB). Override on the command line: make test TORCH_SOURCE="--find-links DIR".
TORCH_SOURCE ?= $(if $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
export UV_PYTHON := $(BIN)/python

.PHONY: demo test test-fast setup setup-dev lock check-gpu-env drift lint bench clean

# uv is the installer: it installs the 300-package test environment in seconds where pip takes minutes.
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "uv==$(UV_VERSION)"

# The light install: the library and CLI (no torch, no lmms-eval, no TRL), at the locked versions.
$(VENV)/.core: $(UV) pyproject.toml $(LOCK)
	$(UV) pip install -q -c $(LOCK) -e .
	touch $@

# Everything the tests exercise, exactly as locked: lmms-eval, TRL, the judge test server, Playwright.
$(VENV)/.dev: $(UV) pyproject.toml $(LOCK)
	$(UV) pip sync -q $(TORCH_SOURCE) $(LOCK)
	$(UV) pip install -q --no-deps -e .
	# PyPI's torchvision is a CUDA build that fails to import beside CPU torch; guard its two fake-op registrations.
	$(BIN)/python tools/fix_torchvision.py
	touch $(VENV)/.core $@

setup: $(VENV)/.core
setup-dev: $(VENV)/.dev

# The main job: score the sample's system-a captions, then build the leaderboard from the reported baselines and
# the measured runs in leaderboard/runs/ into leaderboard/site/ (open leaderboard/site/index.html).
demo: $(VENV)/.core
	$(BIN)/ecac-bench score --by category
	$(BIN)/python -m ecac_bench.leaderboard build
	@echo "leaderboard: open leaderboard/site/index.html"

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -q -m "not slow"

# Regenerate the lock from pyproject.toml's ranges (newest versions that satisfy them; torch stays the CPU build).
lock: $(UV)
	$(UV) pip compile pyproject.toml --extra all --extra dev --upgrade --quiet \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		$(TORCH_SOURCE) --no-emit-find-links --no-emit-index-url \
		-c requirements/torch-cpu.txt -o $(LOCK) --custom-compile-command "make lock"
	$(BIN)/python -m tools.check_lock $(LOCK)

# The GPU machines' environments (Linux x86-64, Python 3.12): checked from package metadata alone, no download of
# the vLLM wheel. `make check-gpu-env GPU_LOCK=1` rewrites the pinned files from their .in files.
check-gpu-env: $(UV)
	$(BIN)/python -m tools.gpu_env $(if $(GPU_LOCK),--write,--check)

# Which newer releases (within pyproject.toml's ranges) would break the tests: a throwaway venv, the fast tests.
drift: $(UV)
	$(BIN)/python -m tools.drift

lint: $(VENV)/.dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(VENV)/.core
	$(BIN)/python bench/score_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
