# The two commands: `make run` serves the API, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench soak train evaluate clean

$(STAMP): requirements.txt requirements-dev.txt requirements/api.txt requirements/worker.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m scripts.run_local

test: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term --cov-fail-under=90

# ruff, mypy --strict (settings in pyproject.toml) and the import rules (import-linter).
lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/mypy api worker shared
	$(BIN)/lint-imports

# Our stack against two common designs under wrk; prints tables, writes bench/results/.
# BENCH_ARGS="--quick" for a smoke run, "--only sync,async" to pick parts.
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Leak hunt: 20,000 sync requests + 5,000 async jobs, RSS growth, Redis keys expiring.
# SOAK_ARGS="--quick" for the short CI run; exits non-zero on FAIL.
soak: $(STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

train: $(STAMP)
	$(BIN)/python -m worker.train

evaluate: $(STAMP)
	$(BIN)/python -m worker.evaluate

clean:
	rm -rf $(VENV) .pytest_cache .coverage* htmlcov
