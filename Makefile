# ecac-bench: `make demo` sets up a virtualenv and runs the main job on the bundled sample; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup setup-dev lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The light install: the library and CLI (no torch, no lmms-eval, no TRL).
$(VENV)/.core: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# Everything the tests exercise: lmms-eval, TRL, the judge test server, Playwright. CPU torch first (see constraints.txt).
$(VENV)/.dev: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[all,dev]"
	# PyPI's torchvision is a CUDA build that fails to import beside CPU torch; guard its two fake-op registrations.
	$(BIN)/python -m ecac_bench.testing.fix_torchvision
	touch $(VENV)/.core $@

setup: $(VENV)/.core
setup-dev: $(VENV)/.dev

# The main job: score the sample's system-a captions, then build the leaderboard from the reported baselines and
# the measured runs in leaderboard/runs/ (open leaderboard/index.html).
demo: $(VENV)/.core
	$(BIN)/ecac-bench score --by category
	$(BIN)/python -m ecac_bench.leaderboard build
	@echo "leaderboard: open leaderboard/index.html"

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(VENV)/.core
	$(BIN)/python bench/score_throughput.py

clean:
	rm -rf $(VENV) build *.egg-info
