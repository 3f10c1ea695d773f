# freshet developer tasks. `make test` is what CI runs (.ci/run) on a fresh clone.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
FRESHET := $(VENV)/bin/freshet

.PHONY: bootstrap test demo lint lock-refresh services-up services-down clean

## bootstrap: venv + dependencies, redis-server/java/maven (as root), Kafka jars
bootstrap:
	bash deploy/local/bootstrap.sh

## test: the whole suite against real Kafka and Redis (started by the tests), then lint
test: bootstrap
	$(PY) -m pytest -q -ra
	$(MAKE) --no-print-directory lint-only

## lock-refresh: re-resolve requirements.lock to the newest allowed versions, install them, run the suite
lock-refresh:
	bash deploy/local/lock.sh --upgrade
	$(MAKE) --no-print-directory test

## demo: end-to-end demo on local services
demo: bootstrap
	$(FRESHET) demo

## lint: ruff and mypy
lint: bootstrap
	$(MAKE) --no-print-directory lint-only

.PHONY: lint-only
lint-only:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## services-up / services-down: the local Kafka broker and Redis (see docs/local-services.md)
services-up: bootstrap
	$(FRESHET) services up

services-down:
	if [[ -x $(FRESHET) ]]; then $(FRESHET) services down; fi

## clean: stop local services, remove caches and build output (keeps .venv and data)
clean: services-down
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
