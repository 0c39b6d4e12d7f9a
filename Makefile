# bbaccess: every target creates .venv and installs what it needs by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DB ?= bbaccess-demo.db

.DEFAULT_GOAL := help
.PHONY: help demo test install-check bench bench-huge lint typecheck clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/bbaccess: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

demo: $(BIN)/bbaccess ## snapshot the built-in simulator, churn a day, snapshot again, show the diff
	$(BIN)/bbaccess demo --db $(DB)

test: $(BIN)/bbaccess ## run the tests, ruff and mypy --strict on exporter/, then install the wheel and run the demo
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check exporter tests
	$(BIN)/mypy exporter
	PYTHON=$(PYTHON) tests/install_check.sh

install-check: $(BIN)/bbaccess ## build the wheel, install it in a fresh venv outside the checkout, run the demo
	PYTHON=$(PYTHON) tests/install_check.sh

$(VENV)/.bench-installed: pyproject.toml $(BIN)/bbaccess
	$(BIN)/pip install --quiet -e '.[test,bench]'
	@touch $@

bench: $(VENV)/.bench-installed ## measure the performance budgets of DESIGN.md (about 18 min), print a table
	$(BIN)/python -m tests.bench

bench-huge: $(VENV)/.bench-installed ## the huge org (10x large) through three nights and the queries, against the budgets (20 to 30 min, 10 GB of disk)
	$(BIN)/python -m tests.bench.bench_huge

lint: $(BIN)/bbaccess ## ruff and mypy only
	$(BIN)/ruff check exporter tests
	$(BIN)/mypy exporter

clean: ## remove the virtual environment and the demo database
	rm -rf $(VENV) $(DB) $(DB)-wal $(DB)-shm $(DB)-stage .bbaccess-*.lock
