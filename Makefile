# Symbiosis Gateway. The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

# Supported Python: 3.11 or newer. Checked before anything runs (the virtualenv's interpreter once it
# exists), so an older one stops here with this message rather than deep inside pip.
CHECKED_PYTHON := $(if $(wildcard $(PY)),$(PY),$(PYTHON))
PYTHON_VERSION := $(shell $(CHECKED_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(filter clean,$(MAKECMDGOALS)),)
ifeq ($(PYTHON_VERSION),)
$(error Symbiosis Gateway needs Python 3.11 or newer, and `$(CHECKED_PYTHON)` does not run. Install Python 3.11+ and run e.g. `make PYTHON=python3.11 ...`)
endif
ifneq ($(shell $(CHECKED_PYTHON) -c 'import sys; print(int(sys.version_info >= (3, 11)))' 2>/dev/null),1)
$(error Symbiosis Gateway needs Python 3.11 or newer; `$(CHECKED_PYTHON)` is Python $(PYTHON_VERSION). Install Python 3.11+ and run e.g. `make PYTHON=python3.11 ...` (after `make clean` if .venv was made with the old one))
endif
endif
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev clients run serve test lint check worker beat bench requirements clean

# Every pin carries its hashes (`make requirements`); pip refuses a file whose hash differs, or a package
# that is not pinned. The Dockerfile installs base.txt the same way.
$(VENV)/.base: requirements/base.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements/base.txt
	touch $@

$(VENV)/.dev: requirements/dev.txt $(VENV)/.base
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements/dev.txt
	touch $@

install: $(VENV)/.base
install-dev: $(VENV)/.dev

# The real clients the tests drive (Claude Code), pinned in tests/clients/package-lock.json, and the
# real OpenID provider the sign-in tests start (oidc-provider), pinned in tests/e2e/op/package-lock.json.
CLIENTS := tests/clients/node_modules/.package-lock.json tests/e2e/op/node_modules/.package-lock.json
tests/%/node_modules/.package-lock.json: tests/%/package-lock.json
	npm ci --prefix tests/$* --no-audit --no-fund --loglevel=error
	touch $@

## clients: install the compatibility matrix's clients and the test OpenID provider (needs npm; `make test` does it when npm is there)
clients: $(CLIENTS)

## run: set up the embedded default (SQLite, no services) with a demo key, and serve on http://$(HOST):$(PORT)
run: install
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py bootstrap_demo --base-url http://$(HOST):$(PORT)
	$(BIN)/uvicorn gateway.asgi:application --host $(HOST) --port $(PORT) --lifespan on

## serve: production-style serving (gunicorn managing uvicorn workers); configure through the environment.
## Applies pending migrations first; SKIP_MIGRATE=1 skips that (when a deploy step migrates once for all hosts).
serve: install
ifeq ($(SKIP_MIGRATE),)
	$(PY) manage.py migrate --noinput
endif
	$(BIN)/gunicorn gateway.asgi:application -k gateway.workers.UvicornWorker --bind $(HOST):$(PORT) --workers $${WEB_CONCURRENCY:-2}

## test: the whole suite; against Postgres and Redis when DATABASE_URL / REDIS_URL are set
# Test-only secrets for the production profile (never used outside the test run).
test: export SECRET_KEY ?= test-only-secret-key-not-for-production
test: export SECRETS_ENCRYPTION_KEY ?= shltFI35Gcn51mW7tEyxCyHfCO0SPc7EpzayeM3nVtU=
test: install-dev $(if $(shell command -v npm 2>/dev/null),$(CLIENTS))
	$(BIN)/pytest $(PYTEST_ARGS)

## lint: ruff, formatting, import contracts, migrations and Django's checks
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py check

worker: install
	$(BIN)/celery -A gateway worker --loglevel INFO

beat: install
	$(BIN)/celery -A gateway beat --loglevel INFO

## bench: the gateway against the mock upstream, a bare forwarder and LiteLLM; the issue's targets as PASS/MISS
## (BENCH_ARGS passes options: BENCH_ARGS="--strict", "--targets direct,forwarder,gateway,gateway-granian", "--profile")
bench: install-dev
	$(PY) -m tests.bench.run $(BENCH_ARGS)

## requirements: re-pin requirements/*.txt from requirements/*.in, with hashes (versions already pinned are kept;
## `uv pip compile --upgrade-package NAME` moves one)
requirements: install-dev
	cd requirements && ../$(BIN)/uv pip compile -q --python-version 3.11 --generate-hashes base.in -o base.txt
	cd requirements && ../$(BIN)/uv pip compile -q --python-version 3.11 --generate-hashes dev.in -o dev.txt

clean:
	rm -rf $(VENV) .data .pytest_cache .ruff_cache
