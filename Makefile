# matchd: `make help` lists the targets. `make check` is exactly what CI runs.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:
MAKEFLAGS += --no-builtin-rules

VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= etc/matchd.toml

# Compiled numba kernels are cached in the repository, across runs and targets.
export NUMBA_CACHE_DIR := $(CURDIR)/.numba_cache

.PHONY: help venv services run test lint typecheck check fmt bench clean

help: ## list the targets
	@echo "usage: make TARGET"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

venv: ## install system packages if missing (as root), create .venv, install matchd + dev tools
	@bash scripts/bootstrap.sh

services: ## make sure MariaDB and Redis answer on 127.0.0.1 (starting them if needed)
	@bash scripts/services.sh

run: venv services ## run matchd with etc/matchd.toml (CONFIG=path to change)
	$(BIN)/matchd run --config $(CONFIG)

# The kernel tests run twice: under NUMBA_DISABLE_JIT=1 as plain Python (coverage,
# readable tracebacks), then with JIT inside the whole suite. pytest exits 5 when no
# test carries the `kernel` marker yet; that is not a failure. The whole suite runs
# last so that its summary is the closing line.
test: venv services ## run every test: kernel tests without JIT, then the whole suite
	@rc=0; NUMBA_DISABLE_JIT=1 $(BIN)/pytest -m kernel -p no:cacheprovider || rc=$$?; \
	if [[ $$rc -eq 5 ]]; then echo "make test: no kernel tests yet (pytest exit 5)"; rc=0; fi; \
	if [[ $$rc -ne 0 ]]; then echo "make test: kernel tests without JIT failed (exit $$rc)"; fi; \
	$(BIN)/pytest || exit $$?; \
	exit $$rc

lint: venv ## ruff check, ruff format --check, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv ## mypy (strict) on every package
	$(BIN)/mypy

check: lint typecheck test ## what CI runs: lint, typecheck, test

fmt: venv ## format the code and apply safe ruff fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv ## benchmark the in-process engine (JSON on stdout)
	$(BIN)/matchd-bench core --json

clean: ## remove caches and build output (keeps .venv)
	rm -rf .numba_cache .mypy_cache .ruff_cache .pytest_cache .import_linter_cache .hypothesis \
		build dist
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name '*.egg-info' \) \
		-type d -prune -exec rm -rf {} +
