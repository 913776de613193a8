# One command per task; each sets up what it needs first (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup local test unit lint e2e e2e-dynamodb-local plan package bench

$(STAMP): requirements.txt lambdas/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

## Start the local stack (WebSocket on :8080); prints the URL and a dev token.
local: setup
	$(PY) -m local --port 8080

## Everything CI runs: lint, unit, infrastructure, client and end-to-end tests.
test: setup lint
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

unit: setup
	$(PY) -m pytest tests/unit

plan: setup
	$(PY) -m components.plan --stack prod

package: setup
	$(PY) -m components.package
