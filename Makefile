# Every target installs what it needs into .venv first, so each works on a fresh checkout.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test faults lint bench services tools clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Prism, the contract-validating mock the provider tests run against (tests only).
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

services:
	./scripts/services.sh

## Prometheus and promtool for tests/ops/test_prometheus.py (installed with apt as root; else skipped).
tools:
	./scripts/install-tools.sh

## Run smsrelay on embedded defaults (local RabbitMQ, SQLite, simulator) with sample messages.
demo: $(STAMP) services
	$(BIN)/smsrelay demo

## The full test suite: lint and types, then every test in parallel (broker restarts run on
## private RabbitMQ nodes, scripts/rabbitmq-node.sh; the fault-injection suite in its short form).
test: $(STAMP) $(NODE_STAMP) services tools lint
	$(BIN)/pytest -n 2

## The fault-injection suite alone, at ten times the short form's load.
faults: $(STAMP) services
	TEST_FAULTS_SCALE=10 $(BIN)/pytest -n 2 -m faults

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## Throughput and latency of smsrelay against a bare consumer and a Celery peer (≈ 13 min).
bench: $(STAMP) services
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) smsrelay.db* smsrelay-demo.db*
