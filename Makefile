# The two commands of the README: `make demo` and `make test`. Both set everything up first.
# `make test`: the whole suite (state on SQLite files; the stores' own tests on both backends),
# then the non-twin tests of every module that uses a state store again, on PostgreSQL.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup system demo test lint bench clean

setup: system $(STAMP)

system:
	@scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/cordon demo

test: setup
	$(PY) -m pytest
	$(PY) -m pytest --state-backend=postgresql

lint: setup
	$(VENV)/bin/ruff check agent tests benchmarks scripts
	$(VENV)/bin/ruff format --check agent tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
