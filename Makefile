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
	@echo "make demo-canary  two canary rollouts of a candidate model (better / worse), var/canary-*"
	@echo "make test     the whole test suite (needs PostgreSQL at 127.0.0.1:5432)"
	@echo "make bench    speed and memory figures -> \$$WATCHKEEPER_HOME/bench/results.json"
	@echo "make soak     365 days x 5 models: memory growth and store consistency (soak_* figures)"
	@echo "make test-distributed  CeleryExecutor + Redis + PostgreSQL as local processes (no Docker)"
	@echo "make up      the production shape in Docker (docker-compose.yaml), UI on :8080"
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

# Issue 10: a candidate fraud model rolled out shadow -> 5% -> 25% -> 50% -> 100%, twice (a
# better and a worse candidate), each world in its own WATCHKEEPER_HOME: var/canary-better, -worse.
.PHONY: demo-canary
demo-canary: install
	$(PY) -m watchkeeper.canary_demo

# The browser test drives Debian's chromium headless (tests/test_browser.py); installed when missing.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: chromium
chromium:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# Two workers (one per core), a test file per worker at a time: the suite's session fixtures (the
# embedded Airflow, the small demo world) are built once per worker.
PYTEST_WORKERS ?= 2
test: install chromium
	$(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

bench: install
	$(PY) bench/run.py

# A year x 5 models through the DAGs' task code, one long-lived process per model (issue 9):
# memory growth and store consistency -> soak_* in $(WATCHKEEPER_HOME)/bench/results.json.
.PHONY: soak
soak: install
	$(PY) bench/soak.py

check-config: install
	$(VENV)/bin/watchkeeper check-config

clean:
	rm -rf var

# ---- production shape (issue 8) ----------------------------------------------------------------
.PHONY: test-distributed up

# The deployment on this machine, without Docker: api-server, scheduler, dag-processor and a
# Celery worker as processes on the local PostgreSQL and Redis. Services are required here
# (a missing server fails instead of skipping); -s shows which tasks the Celery worker ran.
test-distributed: install
	WATCHKEEPER_REQUIRE_SERVICES=1 $(PY) -m pytest -p no:cacheprovider -s -rA tests/test_distributed.py

# docker-compose.yaml with secrets generated once into $(WATCHKEEPER_HOME)/compose.env (git-ignored).
COMPOSE_ENV := $(WATCHKEEPER_HOME)/compose.env
up:
	@docker compose version >/dev/null 2>&1 || { echo "make up needs Docker with the compose plugin (docker compose)"; exit 2; }
	@test -f "$(COMPOSE_ENV)" || { mkdir -p "$(dir $(COMPOSE_ENV))" && umask 077 && $(PYTHON) -c 'import base64, os, secrets; print("AIRFLOW_JWT_SECRET=" + secrets.token_hex(48)); print("AIRFLOW_FERNET_KEY=" + base64.urlsafe_b64encode(os.urandom(32)).decode()); print("POSTGRES_PASSWORD=" + secrets.token_hex(16)); print("WATCHKEEPER_DB_PASSWORD=" + secrets.token_hex(16)); print("AIRFLOW_UID=" + str(os.getuid()))' > "$(COMPOSE_ENV)" && echo "secrets written to $(COMPOSE_ENV)"; }
	docker compose --env-file "$(COMPOSE_ENV)" up --detach --build --wait
	@echo "Airflow UI and API: http://localhost:8080 (user admin; password: docker compose logs airflow-apiserver | grep -i password)"
	@echo "gate: curl -H 'Authorization: Bearer <token>' http://localhost:8080/watchkeeper/gates/<model>"
