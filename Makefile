# hodlboard: one target per user action. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
INFLUXD := .tools/bin/influxd
INSTALLED := $(VENV)/.installed

.PHONY: help up down install influxd dashboards lint test bench lock

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

up: ## start the stack in the background (docker compose up -d)
	docker compose up -d

down: ## stop the stack; data stays in its volumes
	docker compose down

install: $(INSTALLED) ## create .venv with the collector and dev tools, at the pinned versions

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

influxd: $(INFLUXD) ## build the real InfluxDB 2 server the tests use (.tools/bin/influxd, cached)

$(INFLUXD): tools/influxd/go.mod tools/influxd/go.sum tools/influxd/build.sh
	bash tools/influxd/build.sh

BASE_CURRENCY ?= USD
dashboards: $(INSTALLED) ## regenerate grafana/ from dashboards/*.py (money in BASE_CURRENCY=USD, or EUR, ...)
	$(VENV)/bin/python -m dashboards.generate --base-currency $(BASE_CURRENCY)

lint: $(INSTALLED) ## ruff over the code, tests and dashboards
	$(VENV)/bin/ruff check collector tests bench dashboards
	$(VENV)/bin/ruff format --check collector tests bench dashboards

test: $(INSTALLED) $(INFLUXD) lint ## set everything up and run every test against a real influxd
	$(VENV)/bin/pytest

bench: $(INSTALLED) $(INFLUXD) ## one table: ingest, steady state, backfill, dashboards, valuation, each against its goal (bench/)
	$(VENV)/bin/python bench/collector_bench.py

lock: ## re-pin constraints.txt from a fresh resolve of pyproject.toml
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv
