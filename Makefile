# The two commands a newcomer needs:  `make serve`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: serve test services contracts contracts-check lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## serve: create the virtualenv, install, run the server in dev mode on http://127.0.0.1:8080
serve: $(STAMP)
	$(VENV)/bin/audifi serve

## test: install the dev tools, make sure PostgreSQL and Redis are up, run the whole suite
test: $(STAMP)
	./scripts/services.sh
	$(PY) -m pytest $(PYTEST_ARGS)

services:
	./scripts/services.sh

## contracts: rebuild the Solidity artifacts with the pinned compiler (needs Node.js + npm)
contracts:
	cd contracts && npm ci --no-audit --no-fund && node build.mjs

## contracts-check: rebuild and fail on any difference from the committed artifacts
contracts-check:
	cd contracts && ./check.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .audifi
