# OrderHub: `make run` starts everything, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_VHOST := orderhub_test
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test demo chaos chaos-cluster cluster cluster-stop bench soak venv services tools databases topology clean unit integration backup restore restore-drill docs docs-serve

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

venv: $(BIN)/.installed

services:
	./scripts/ensure-services.sh $(TEST_VHOST)

# Debian packages the suite uses (apt, once): chromium for the console's browser test (Playwright
# drives it), prometheus for promtool (the alert rules' checks).
tools:
	./scripts/install-test-tools.sh

databases: venv services
	$(BIN)/python manage.py setup_databases
	$(BIN)/python manage.py declare_topology

# How many of each process `make run` starts: two orchestrators (one takes over when the other is
# gone; each applies replies in batches), two payments workers (a slow payment provider ties one
# up). make bench starts the same.
CONCURRENCY ?= orchestrator=2,payments=2
run: databases
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo ""
	@echo "OrderHub is starting:"
	@echo "  REST API      http://127.0.0.1:8000/api/   (docs: /api/docs/, health: /health/)"
	@echo "  Django admin  http://127.0.0.1:8000/admin/ (operator credentials above)"
	@echo "  Flower        http://127.0.0.1:5555/       (user $${ORDERHUB_FLOWER_USER:-operator}, password $${ORDERHUB_FLOWER_PASSWORD:-operator-local-only})"
	@echo "  make demo     places a mixed batch of orders against it"
	@echo ""
	ORDERHUB_METRICS_PORT=$${ORDERHUB_METRICS_PORT:-auto} $(BIN)/honcho start -c $(CONCURRENCY)

# Flower's credentials reach it through the environment (FLOWER_<option>), never its command line.
run: export FLOWER_BASIC_AUTH ?= $(or $(ORDERHUB_FLOWER_USER),operator):$(or $(ORDERHUB_FLOWER_PASSWORD),operator-local-only)
run: export FLOWER_BROKER_API ?= $(or $(ORDERHUB_RABBITMQ_MANAGEMENT_URL),http://guest:guest@127.0.0.1:15672/api/)

# The suite runs against its own RabbitMQ vhost and Redis database, and pytest-django's own
# test_* databases, so it never touches a running `make run`.
test: venv services tools docs
	ORDERHUB_BROKER_URL=$${ORDERHUB_TEST_BROKER_URL:-amqp://guest:guest@127.0.0.1:5672/$(TEST_VHOST)} \
	ORDERHUB_REDIS_URL=$${ORDERHUB_TEST_REDIS_URL:-redis://127.0.0.1:6379/1} \
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The documentation site (mkdocs.yml, docs/) into var/site/; strict, so a broken link or anchor fails
# it (make test builds it first). Not --quiet: mkdocs then no longer counts the warnings that strict
# turns into a failure.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

demo: venv
	$(BIN)/python scripts/demo.py

# N orders (default 1000) while workers and orchestrators are SIGKILLed, RabbitMQ restarts and
# PostgreSQL backends are terminated; then the invariants. Its own databases (chaos_*) and vhost.
ORDERS ?= 1000
chaos: venv services
	$(BIN)/python -m tests.chaos.run --orders $(ORDERS) $(CHAOS_ARGS)

# The restore drill: a backup while orders flow, more orders, SIGKILL everything, restore onto
# fresh databases while the broker holds the later messages, start again; then the invariants
# for the restored state and reconcile (tests/chaos/restore_drill.py).
restore-drill: venv services
	$(BIN)/python -m tests.chaos.restore_drill $(DRILL_ARGS)

# The same on a three-node RabbitMQ cluster of its own (ports 5781-5783, management 15781-15783):
# instead of one broker restart, the node leading payments.commands is SIGKILLed, later a second one,
# each restarted after 15 s. The cluster is stopped afterwards.
chaos-cluster: venv services
	$(BIN)/python -m tests.chaos.run --rabbit-cluster --orders $(ORDERS) $(CHAOS_ARGS)

# A three-node RabbitMQ cluster on this machine, to run OrderHub against (it prints the URLs to
# export); `make cluster-stop` stops it.
cluster: venv
	$(BIN)/python -m tests.support.rabbit_cluster start

cluster-stop: venv
	$(BIN)/python -m tests.support.rabbit_cluster stop

# OrderHub's saga path beside a plain Celery chain, measured in the same run (tests/bench/run.py).
# Its own databases (bench_*), vhosts and Redis db; results also in var/bench-results/.
bench: venv services
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

# Memory over a long run: SOAK_ORDERS sagas (default 20,000); every process's RSS must stay within
# 10% of where it was after the first 1,000 (tests/bench/soak.py). Its own world, like make bench.
SOAK_ORDERS ?= 20000
soak: venv services
	$(BIN)/python -m tests.bench.soak --orders $(SOAK_ORDERS)

# Every database (pg_dump) and RabbitMQ's definitions into one folder with a manifest (docs/operations.md,
# Backup and restore); BACKUP=folder, default var/backups/<UTC time>. `make restore BACKUP=folder`
# brings them back onto empty databases and an empty vhost.
backup: venv
	$(BIN)/python manage.py backup $(BACKUP)

restore: venv
	@test -n "$(BACKUP)" || { echo "make restore BACKUP=<folder written by make backup>"; exit 2; }
	$(BIN)/python manage.py restore $(BACKUP)

clean:
	rm -rf $(VENV) var .pytest_cache
