# Watchkeeper. `make demo` and `make test` install what they need first (uv from PyPI, the
# pinned lock into .venv, Debian's chromium when the browser tests need it).
SHELL := /bin/bash
PYTHON ?= python3.11
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export WATCHKEEPER_HOME ?= $(CURDIR)/var


.PHONY: install demo test bench check-config clean help

help:
	@echo "make demo     generate the demo world and run 42 days of DAGs (embedded Airflow)"
	@echo "make test     the whole test suite (needs PostgreSQL at 127.0.0.1:5432)"
	@echo "make bench    speed and memory figures -> \$$WATCHKEEPER_HOME/bench/results.json"
	@echo "make clean    remove var/ (all runtime state)"

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 2; }
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS) "uv==0.13.9"

# The venv is rebuilt from the lock whenever the lock changes.
$(VENV)/.synced: uv.lock pyproject.toml | $(UV)
	UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 $(UV) sync --frozen --python $(PYTHON) --quiet
	@touch $@

install: $(VENV)/.synced

demo: install
	$(VENV)/bin/watchkeeper demo

test: install
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) bench/run.py

check-config: install
	$(VENV)/bin/watchkeeper check-config

clean:
	rm -rf var
