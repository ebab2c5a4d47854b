# The two commands: `make run` serves the API, `make test` runs the tests.
#
# Everything installs from one lock, uv.lock (pins written once; bounds in pyproject.toml).
# Two venvs, so the service never carries the dev tools and `make run` never strips the
# tools out of the venv the tests use:
#   .venv-run  the service alone (api + worker extras): run, train
#   .venv      the service + the dev extra (pytest, ruff, mypy, playwright, ...): test, lint,
#              bench, soak, evaluate
# uv itself lives in a third, .tools, made with plain pip: a fresh machine needs only python3.
# Why uv over pip-tools: one lock (with hashes) covers every extra at once, so a version is
# never resolved twice; each image exports its own subset of it; and `uv sync` makes a venv
# exactly the lock's subset, removing whatever else is there.
# Adding a dependency: one line in pyproject.toml, then `make lock`, commit both files.
PYTHON ?= python3
VENV ?= .venv
RUN_VENV ?= .venv-run
TOOLS ?= .tools
BIN := $(VENV)/bin
RUN_BIN := $(RUN_VENV)/bin
UV := $(TOOLS)/bin/uv
# The uv version is pinned once, as [tool.uv] required-version in pyproject.toml.
UV_REQUIREMENT = $(shell $(PYTHON) -c "import tomllib; print('uv' + tomllib.load(open('pyproject.toml', 'rb'))['tool']['uv']['required-version'])")
# --locked: stop if uv.lock no longer matches pyproject.toml instead of quietly re-resolving.
# No downloaded interpreters: the venvs use $(PYTHON). Copies, not hardlinks: uv's cache is
# often on another filesystem.
SYNC = UV_PYTHON_DOWNLOADS=never UV_LINK_MODE=copy $(UV) sync --locked --python $(PYTHON)

.PHONY: run test lint bench soak train evaluate lock clean

$(UV): pyproject.toml
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "$(UV_REQUIREMENT)"
	touch $(UV)

$(RUN_VENV)/.installed: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=$(RUN_VENV) $(SYNC) --extra api --extra worker
	touch $@

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	UV_PROJECT_ENVIRONMENT=$(VENV) $(SYNC) --all-extras
	touch $@

run: $(RUN_VENV)/.installed
	$(RUN_BIN)/python -m scripts.run_local

test: $(VENV)/.installed
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=90

# ruff, mypy --strict (settings in pyproject.toml) and the import rules (import-linter).
lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/mypy api worker shared
	$(BIN)/lint-imports

# Our stack against two common designs under wrk; prints tables, writes bench/results/.
# BENCH_ARGS="--quick" for a smoke run, "--only sync,async" to pick parts.
bench: $(VENV)/.installed
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Leak hunt: 20,000 sync requests + 5,000 async jobs, RSS growth, Redis keys expiring.
# SOAK_ARGS="--quick" for the short CI run; exits non-zero on FAIL.
soak: $(VENV)/.installed
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

train: $(RUN_VENV)/.installed
	$(RUN_BIN)/python -m worker.train

# Evaluation draws its plots with matplotlib, a dev tool.
evaluate: $(VENV)/.installed
	$(BIN)/python -m worker.evaluate

# After editing dependencies in pyproject.toml: resolve again, keeping every other pin.
lock: $(UV)
	UV_PYTHON_DOWNLOADS=never $(UV) lock --python $(PYTHON)

clean:
	rm -rf $(VENV) $(RUN_VENV) $(TOOLS) .pytest_cache .coverage* htmlcov
