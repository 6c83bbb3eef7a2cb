# hodlboard: one target per user action. `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
INFLUXD := .tools/bin/influxd
COMPOSE_TOOL := .tools/bin/docker-compose
INSTALLED := $(VENV)/.installed

.PHONY: help up down install influxd dashboards lint test bench lock
.PHONY: setup logs ps backfill portfolio backup restore reset compose

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## write .env (fresh random secrets) and portfolio.yml from their examples; never overwrites them
	@$(PYTHON) tools/setup.py

up: ## start the stack in the background (docker compose up -d)
	docker compose up -d

down: ## stop the stack; data stays in its volumes
	docker compose down

SERVICE ?=
logs: ## follow the logs (all services, or SERVICE=collector)
	docker compose logs --follow --tail 100 $(SERVICE)

ps: ## the services and their health
	docker compose ps

ARGS ?=
backfill: ## fetch candle history now, in the running collector (ARGS="--pair BTC-USD --since 2021-01-01")
	docker compose exec collector collector backfill $(ARGS)

portfolio: ## positions, value and profit/loss from the stored prices (ARGS="--at 2026-03-10")
	docker compose exec collector collector portfolio $(ARGS)

# InfluxDB's own backup (every bucket, its metadata and tokens), made inside the container, copied to backups/<time>
BACKUP_TMP := /tmp/hodlboard-backup
backup: ## back InfluxDB up into backups/<UTC date and time>/ (influx backup)
	@dir="backups/$$(date -u +%Y-%m-%dT%H%M%SZ)" && mkdir -p backups && \
	docker compose exec -T influxdb sh -c 'rm -rf $(BACKUP_TMP) && influx backup $(BACKUP_TMP)' && \
	docker compose cp influxdb:$(BACKUP_TMP) "$$dir" && \
	docker compose exec -T influxdb rm -rf $(BACKUP_TMP) && echo "backup: $$dir"

FROM ?=
restore: ## replace InfluxDB's data with a backup (FROM=backups/<date>); asks first
	@test -d "$(FROM)" || { echo "restore: FROM=backups/<date> (one of: $$(ls backups 2>/dev/null | tr '\n' ' '))" >&2; exit 2; }
	@read -r -p "Replace every bucket and token in InfluxDB with $(FROM)? [y/N] " answer && [ "$$answer" = y ]
	docker compose stop collector grafana
	docker compose exec -T influxdb rm -rf $(BACKUP_TMP)
	docker compose cp "$(FROM)" influxdb:$(BACKUP_TMP)
	docker compose exec -T influxdb influx restore --full $(BACKUP_TMP)
	docker compose exec -T influxdb rm -rf $(BACKUP_TMP)
	docker compose up -d

reset: ## remove the stack AND its volumes (every stored price, history and Grafana change); asks first
	@read -r -p "Delete every volume of hodlboard (all data)? Type 'delete' to go on: " answer && [ "$$answer" = delete ]
	docker compose down --volumes --remove-orphans

install: $(INSTALLED) ## create .venv with the collector and dev tools, at the pinned versions

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

influxd: $(INFLUXD) ## build the real InfluxDB 2 server the tests use (.tools/bin/influxd, cached)

$(INFLUXD): tools/influxd/go.mod tools/influxd/go.sum tools/influxd/build.sh
	bash tools/influxd/build.sh

compose: $(COMPOSE_TOOL) ## build the Compose tool the tests validate docker-compose.yml with (cached)

$(COMPOSE_TOOL): tools/compose/go.mod tools/compose/go.sum tools/compose/build.sh
	bash tools/compose/build.sh

BASE_CURRENCY ?= USD
dashboards: $(INSTALLED) ## regenerate grafana/ from dashboards/*.py (money in BASE_CURRENCY=USD, or EUR, ...)
	$(VENV)/bin/python -m dashboards.generate --base-currency $(BASE_CURRENCY)

lint: $(INSTALLED) ## ruff over the code, tests and dashboards
	$(VENV)/bin/ruff check collector tests bench dashboards tools
	$(VENV)/bin/ruff format --check collector tests bench dashboards tools

test: $(INSTALLED) $(INFLUXD) $(COMPOSE_TOOL) lint ## set everything up and run every test against a real influxd
	$(VENV)/bin/pytest

bench: $(INSTALLED) $(INFLUXD) ## one table: ingest, steady state, backfill, dashboards, valuation, each against its goal (bench/)
	$(VENV)/bin/python bench/collector_bench.py

lock: ## re-pin constraints.txt from a fresh resolve of pyproject.toml
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv
