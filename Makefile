# `make test` and `make quickstart` install everything and run; nothing else to do first.
#
# Which Python (tools/python-env.sh; README "Install"): PYTHON if given, else the active
# venv/conda environment's, else python3 (or python3.13/3.12/3.11 when python3 is not 3.11-3.13).
# If pip may install into it, it is used as it is; if not (Debian's and Ubuntu's system Python
# are "externally managed", PEP 668), a project environment .venv/ is made from it once and reused.
#   make test PYTHON=python3.12      another interpreter
#   make test VENV=/tmp/skipae-env   another place for the project environment
PYTHON ?=
VENV ?= .venv
PYTEST_ARGS ?=

# "<python> <base to create $(VENV) from, or ->", decided once per make run, only by the targets that need it
ENV_CHOICE = $(eval ENV_CHOICE := $(shell PYTHON='$(PYTHON)' VENV='$(VENV)' sh tools/python-env.sh || echo FAILED))$(ENV_CHOICE)
PY = $(word 1,$(ENV_CHOICE))
VENV_BASE = $(word 2,$(ENV_CHOICE))
# the environment's scripts (skipae, saved_model_cli), first on PATH as activating it would put them
BIN = $(shell "$(PY)" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
FASHION_MNIST = /usr/share/datasets/fashion-mnist
TFDS_FASHION_MNIST = $${TFDS_DATA_DIR:-$$HOME/tensorflow_datasets}/fashion_mnist
# prepared, not just begun: an interrupted download leaves the folder without dataset_info.json
TFDS_PREPARED = ls "$(TFDS_FASHION_MNIST)"/*/dataset_info.json >/dev/null 2>&1

.PHONY: env install lint docs test test-slow test-all fashion-mnist quickstart

env:
	@if [ "$(PY)" = FAILED ]; then exit 1; fi
	@if [ "$(VENV_BASE)" != - ]; then \
		"$(VENV_BASE)" -m venv "$(VENV)" 2>/dev/null || { \
			rm -rf "$(VENV)"; \
			if "$(VENV_BASE)" -c "import virtualenv" 2>/dev/null; then "$(VENV_BASE)" -m virtualenv -q "$(VENV)"; \
			else echo "error: $(VENV_BASE) -m venv failed: its venv module or ensurepip is missing." >&2; \
				echo "  Debian/Ubuntu: sudo apt-get install python3-venv (or python3.X-venv for python3.X);" >&2; \
				echo "  without root: activate any venv or conda environment of Python 3.11-3.13 and run make again," >&2; \
				echo "  or make test PYTHON=/path/to/a/python3.12 that can create one." >&2; exit 1; fi; }; \
		echo "created $(VENV) from $(VENV_BASE); use it with: . $(VENV)/bin/activate"; \
	fi

# Debian's dataset-fashion-mnist for the quickstart and one test, where apt works without a password;
# anywhere else the quickstart downloads Fashion-MNIST through TFDS instead (and that test is skipped)
fashion-mnist:
	@if [ ! -d $(FASHION_MNIST) ] && command -v apt-get >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
		else echo "note: no root for apt-get: dataset-fashion-mnist not installed"; exit 0; fi; \
		$$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } || \
		echo "note: could not install dataset-fashion-mnist"; \
	fi

# pip builds the editable install in a fresh isolated environment (about 10 s) unless the build requirements
# (pyproject.toml: setuptools>=64, wheel) are in $(PY) already; then it uses them
NO_ISOLATION = $(shell "$(PY)" -c 'import sys, setuptools, wheel; sys.exit(int(setuptools.__version__.split(".")[0]) < 64)' 2>/dev/null && echo --no-build-isolation)

install: env fashion-mnist
	"$(PY)" -m pip install -q -e ".[test]" $(NO_ISOLATION)

# ruff's checks (ruff.toml)
lint: install
	"$(PY)" -m ruff check .

# the documentation site, from docs/ and the docstrings; any warning fails it
docs: install
	NO_MKDOCS_2_WARNING=1 "$(PY)" -m mkdocs build --strict --quiet --site-dir "$${SITE_DIR:-site}"

# lint, the docs site, then the suite on every core (pytest-xdist), at most 4 workers: each holds its own TensorFlow;
# worksteal: a worker that runs out of tests takes queued ones from the other (durations range 0.01-35 s); the 25
# slowest tests are listed at the end, to see where the time goes. The tests marked slow (kill -9 at every moment, multi-process runs, seeded kills) run in test-slow and test-all;
# the broad kill sweeps (marked sweep, ~15 min) only with pytest -m sweep tests/test_kill_sweep.py.
test: lint docs
	PATH="$(BIN):$$PATH" "$(PY)" -m pytest -q -n auto --maxprocesses=4 --dist worksteal --durations=25 -m "not slow and not sweep" $(PYTEST_ARGS)

test-slow: install
	PATH="$(BIN):$$PATH" "$(PY)" -m pytest -q -n auto --maxprocesses=4 -m "slow and not sweep" $(PYTEST_ARGS)

test-all: lint docs
	PATH="$(BIN):$$PATH" "$(PY)" -m pytest -q -n auto --maxprocesses=4 $(PYTEST_ARGS)

quickstart: install
	@if [ ! -d $(FASHION_MNIST) ] && ! $(TFDS_PREPARED); then \
		echo "Fashion-MNIST: downloading it with TFDS into $(TFDS_FASHION_MNIST) (30 MB, once)"; \
		out=$$(TF_CPP_MIN_LOG_LEVEL=3 "$(PY)" -c "import tensorflow_datasets as t; t.builder('fashion_mnist').download_and_prepare()" 2>&1) || \
		{ printf '%s\n' "$$out" | tail -n 5 >&2; \
		  echo "error: could not download Fashion-MNIST with TFDS; install Debian's dataset-fashion-mnist or see README 'Data'" >&2; exit 1; }; \
	fi
	PATH="$(BIN):$$PATH" skipae quickstart
