# Every target installs what it needs into .venv first, so each works on a fresh checkout.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test faults cluster-test lint bench scale-bench services tools clean

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
	$(BIN)/pytest -n 2 -m "not cluster"

## The cluster suite alone (tests/cluster): a private 3-node RabbitMQ cluster
## (scripts/rabbitmq-cluster.sh), 3 worker processes, PostgreSQL; it takes most of the
## machine, so nothing else may run beside it. CLUSTER_N requests in the scale-out test.
CLUSTER_N ?= 20000
cluster-test: $(STAMP) services
	TEST_CLUSTER_TESTS=1 TEST_CLUSTER_N=$(CLUSTER_N) $(BIN)/pytest -p no:xdist -m cluster -s tests/cluster

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

## The scale report's run: 1, 2, 3 workers on the machine's node and on a 3-node cluster,
## PostgreSQL, 0 and 200 ms; CPU per message of workers, broker nodes and PostgreSQL (run alone).
scale-bench: $(STAMP) services
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.scale

clean:
	rm -rf $(VENV) smsrelay.db* smsrelay-demo.db*
