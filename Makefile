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

.PHONY: help venv services run test lint typecheck check fmt bench install-systemd clean

help: ## list the targets
	@echo "usage: make TARGET"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

venv: ## install system packages if missing (as root), create .venv, install matchd + dev tools
	@bash scripts/bootstrap.sh

services: ## make sure MariaDB and Redis answer on 127.0.0.1 (starting them if needed)
	@bash scripts/services.sh

# The history schema is brought up to date first (a config without [history] skips it).
run: venv services ## migrate the history schema, run matchd with etc/matchd.toml (CONFIG=path)
	$(BIN)/matchd db migrate --if-configured --config $(CONFIG)
	$(BIN)/matchd run --config $(CONFIG)

# The kernel tests run three times: under NUMBA_DISABLE_JIT=1 as plain Python
# (coverage, readable tracebacks), compiled with NUMBA_BOUNDSCHECK=1 (an out-of-range
# index raises instead of corrupting memory; its own cache, as the code differs), and
# with the normal JIT inside the whole suite. pytest exits 5 when no test carries the
# `kernel` marker; that is not a failure. The whole suite runs last so that its
# summary is the closing line.
test: venv services ## run every test: kernel tests without JIT and bounds-checked, then all
	@rc=0; \
	for mode in nojit boundscheck; do \
	  if [[ $$mode == nojit ]]; then env=(NUMBA_DISABLE_JIT=1); \
	  else env=(NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=$(NUMBA_CACHE_DIR)/boundscheck); fi; \
	  r=0; env "$${env[@]}" $(BIN)/pytest -m kernel -p no:cacheprovider -q || r=$$?; \
	  if [[ $$r -eq 5 ]]; then r=0; fi; \
	  if [[ $$r -ne 0 ]]; then echo "make test: kernel tests ($$mode) failed (exit $$r)"; rc=$$r; fi; \
	done; \
	$(BIN)/pytest || exit $$?; \
	exit $$rc

lint: venv ## ruff check, ruff format --check, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv ## mypy (strict) on every package
	$(BIN)/mypy

check: lint typecheck test ## what CI runs: lint, typecheck, test

install-systemd: venv ## install the systemd unit and its settings (as root; see systemd/README.md)
	sed "s|@PREFIX@|$(CURDIR)|g" systemd/matchd.service.in > /etc/systemd/system/matchd.service
	install -d -m 755 /etc/matchd
	[ -e /etc/matchd/matchd.toml ] || install -m 644 etc/matchd.toml /etc/matchd/matchd.toml
	[ -e /etc/default/matchd ] || install -m 644 systemd/matchd.env /etc/default/matchd
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; \
	  echo "installed: systemctl enable --now matchd"; \
	else echo "installed; systemd is not running on this machine"; fi

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
