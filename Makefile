# qchem-events - two commands for a newcomer:  make run   |   make test
# Everything else is below. No Docker needed: Kafka comes from Maven Central jars
# (infra/kafka.sh), PostgreSQL is the machine's installed cluster (infra/postgres.sh).

SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup deps infra-up infra-down kafka-up kafka-down postgres-up postgres-down \
        topics run test test-unit test-integration lint fmt audit bench demo soak clean \
        registry-up registry-down

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

$(BIN)/qchem-events: pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,otel]'
	@touch $@

setup: $(BIN)/qchem-events  ## create the virtualenv and install the project (+ dev tools)

deps:  ## install the system tools the tests use (kcat, promtool, PostgreSQL, Java, Maven, Chromium)
	@missing=""; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v pg_ctlcluster >/dev/null || missing="$$missing postgresql"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

kafka-up:  ## start the local Kafka broker (no-op if one answers)
	infra/kafka.sh up
kafka-down:  ## stop the local Kafka broker
	infra/kafka.sh down
postgres-up:  ## start the local PostgreSQL (no-op if DATABASE_URL answers)
	infra/postgres.sh up
postgres-down:  ## stop the local PostgreSQL cluster
	infra/postgres.sh down
registry-up:  ## start the local Schema Registry (Apicurio, Java 21+) on 8085 (no-op if it answers)
	infra/registry.sh up
registry-down:  ## stop the local Schema Registry
	infra/registry.sh down
infra-up: kafka-up postgres-up  ## start Kafka and PostgreSQL
infra-down: kafka-down postgres-down  ## stop them

topics: setup infra-up  ## create every topic (idempotent)
	$(BIN)/qchem-events topics create

run: setup infra-up  ## start Kafka + PostgreSQL if needed, create topics, run the consumers
	$(BIN)/qchem-events topics create
	LOG_FORMAT=$${LOG_FORMAT:-console} $(BIN)/qchem-events run

test: setup deps infra-up registry-up  ## the whole suite against real Kafka, PostgreSQL, SMTP, HTTP
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: setup  ## unit tests only (no services, seconds)
	$(BIN)/pytest tests/unit -q

test-integration: setup deps infra-up registry-up  ## integration tests only
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

lint: setup  ## ruff + mypy + import layers + hadolint (Dockerfile) + kubernetes-validate (deploy/kubernetes)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@# The layers and cycles contracts of pyproject.toml [tool.importlinter] (issue 12).
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/hadolint Dockerfile
	@# Built-in kinds against the Kubernetes schemas, unknown fields rejected; KEDA's
	@# ScaledObject and Kustomization have no schema there (a warning): tests/unit/test_deploy.py
	@# checks those.
	$(BIN)/kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml deploy/kubernetes/*/*.yaml

audit: setup  ## known-vulnerability audit of the installed dependencies (pip-audit)
	BIN=$(BIN) scripts/audit.sh

fmt: setup  ## format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## stop services and remove local data (jars stay in ~/.m2)
	-infra/kafka.sh down
	rm -rf .local/kafka/data .local/kafka/logs

demo: setup infra-up  ## run the five production scenarios and print their dashboards
	$(BIN)/python -m devtools scenario all

soak:  ## the fault suite at 6x scale (events and durations), about 30-40 minutes
	QCHEM_SOAK_SCALE=$${QCHEM_SOAK_SCALE:-6} $(BIN)/pytest tests/integration/faults -s

bench: setup infra-up  ## the six benchmarks at full size, about 45 minutes (BENCHMARKS.md)
	$(BIN)/python -m bench.throughput --events $${EVENTS:-200000} --rounds $${ROUNDS:-3}
	$(BIN)/python -m bench.throughput --events 20000 --rounds 1 --variants raw-json,app-c10,faststream
	$(BIN)/python -m bench.scaling --rounds 3
	$(BIN)/python -m bench.retry_lateness --events 10000 --spreads 0,20,60 --rounds 1
	$(BIN)/python -m bench.cascade --events 1000 --rounds 3
	$(BIN)/python -m bench.memory --events 1000000 --max-seconds 400
	$(BIN)/python -m bench.overhead --rounds 3
	$(BIN)/python -m bench.overhead --rounds 3 --seconds 12 --rate 1000
	$(BIN)/python -m bench.dlq_index --records 100000
