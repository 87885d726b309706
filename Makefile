# Pollstr: two commands. `make run` serves the whole flow on the embedded default;
# `make test` runs the whole suite (PostgreSQL when reachable, Redis, Celery, Chromium).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
HOST ?= 127.0.0.1
PORT ?= 8000
PG_BASE_URL ?= postgres://postgres@127.0.0.1:5432
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
# The translated languages (settings.LANGUAGES, English being the source).
LANGS ?= fr es

.PHONY: run admin test lint typecheck migrations-check pytest services clean lock messages translations

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

# The translation catalogues (locale/<lang>/LC_MESSAGES/django.po) compiled to the .mo files
# Django reads; never committed compiled. Needs GNU gettext's msgfmt
# (scripts/ensure-services.sh installs it when it can).
# Without msgfmt the site still runs, in English only, and says so.
translations: $(VENV)/.runtime
	@if command -v msgfmt >/dev/null; then \
	  POLLSTR_VAR_DIR=$$(mktemp -d) $(PY) manage.py compilemessages -v0 --ignore='.venv/*' --ignore='var/*'; \
	else \
	  echo "make: msgfmt is missing, so pages stay in English: apt-get install gettext"; \
	fi

# Refresh the catalogues' msgids from the code and templates after changing a sentence;
# then translate what is new or changed (docs/OPERATIONS.md, "Languages").
MESSAGES_ARGS := --no-location --no-obsolete --ignore='.venv/*' --ignore='tests/*' \
	--ignore='benchmarks/*' --ignore='staticfiles/*' --ignore='var/*' --ignore='deploy/*'
messages: $(VENV)/.runtime
	POLLSTR_VAR_DIR=$$(mktemp -d) $(PY) manage.py makemessages $(foreach lang,$(LANGS),-l $(lang)) $(MESSAGES_ARGS)

run: $(VENV)/.runtime translations
	$(PY) manage.py migrate --noinput
	$(PY) manage.py load_demo
	$(PY) manage.py collectstatic --noinput -v0
	@echo "Pollstr on http://$(HOST):$(PORT)/  (log in as test / test1234; SMS codes at /2fa/sandbox/)"
	@# daphne's own access log is off: Pollstr logs each request itself, with its request id
	@# and without the health probes (pollstr/access_log.py).
	$(VENV)/bin/daphne --access-log /dev/null -b $(HOST) -p $(PORT) pollstr.asgi:application

# An operator account for /admin/ on the embedded default (asks for a name and password;
# DJANGO_SUPERUSER_USERNAME/_EMAIL/_PASSWORD with NOINPUT=1 for a script). docker compose:
# `docker compose run --rm migrate python manage.py createsuperuser` (docs/OPERATIONS.md).
admin: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py createsuperuser $(if $(NOINPUT),--noinput)

services:
	@scripts/ensure-services.sh

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.dev
	POLLSTR_VAR_DIR=$$(mktemp -d) $(VENV)/bin/mypy

# Re-pin requirements*.txt from requirements*.in (pip-tools); UPGRADE=1 takes newer versions.
lock: $(VENV)/.dev
	$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) -o requirements.txt requirements.in
	$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) -o requirements-dev.txt requirements-dev.in

migrations-check: $(VENV)/.runtime
	POLLSTR_VAR_DIR=$$(mktemp -d) $(PY) manage.py makemigrations --check --dry-run

# With PostgreSQL: the whole suite on it and the unit suite again on SQLite (the embedded
# default), in four lanes at once (scripts/test-lanes.sh: each with its own databases,
# Redis database and var directory). Without it: the suite on SQLite.
pytest: $(VENV)/.dev services translations
	@if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
	  PG_BASE_URL="$(PG_BASE_URL)" scripts/test-lanes.sh $(VENV) $(PYTEST_ARGS); \
	else \
	  echo "make test: database = SQLite (PostgreSQL is not reachable on 127.0.0.1:5432;"; \
	  echo "  the integration and browser tests need it and will say so)"; \
	  TEST_REDIS_URL="$(TEST_REDIS_URL)" $(VENV)/bin/pytest $(PYTEST_ARGS); \
	fi

test: lint typecheck migrations-check pytest

# Issue 7's benchmarks against real processes (not part of `make test`): writes
# benchmarks/RESULTS.md and the plot. BENCH_ARGS passes options, e.g. --only P2,P5.
.PHONY: bench bench-quick
$(VENV)/.bench: benchmarks/requirements.txt $(VENV)/.dev
	$(PY) -m pip install -q -r benchmarks/requirements.txt
	@touch $@

bench: $(VENV)/.bench services
	$(PY) -m benchmarks.run $(BENCH_ARGS)

bench-quick: $(VENV)/.bench services
	$(PY) -m benchmarks.run --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var staticfiles
	find locale -name '*.mo' -delete
