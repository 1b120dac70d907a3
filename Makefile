# The commands a person runs. `make run` and `make test` find or start PostgreSQL themselves
# (see scripts/db): DATABASE_URL if set, else 127.0.0.1:5432, else docker compose, else a
# throwaway cluster from this machine's initdb/pg_ctl.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
DB_NAME ?= intake

.PHONY: docker-check run test test-python lint fmt fmt-check sqlx-prepare sqlx-check migrate db-up db-down build bench bench-lifetime openapi tools browser compose-check schemathesis fuzz

# What the tests use beyond cargo: a real OpenAPI validator, schemathesis and the official
# Python CloudEvents SDK in a virtualenv of their own; the official JavaScript CloudEvents SDK
# in a node_modules of its own. The stamp names the list, so a changed list installs again.
PY_TOOLS := openapi-spec-validator pyyaml schemathesis cloudevents==1.13.0 selenium==4.51.0
PY_STAMP := $(CURDIR)/.tmp/venv/.tools-3
JS_SDK := $(CURDIR)/.tmp/node/node_modules/cloudevents/package.json
VALIDATOR := $(CURDIR)/.tmp/venv/bin/openapi-spec-validator
SCHEMATHESIS := $(CURDIR)/.tmp/venv/bin/schemathesis
TEST_TOOLS := INTAKE_OPENAPI_VALIDATOR=$(VALIDATOR) INTAKE_SCHEMATHESIS=$(SCHEMATHESIS) \
  INTAKE_INTEROP_PYTHON=$(CURDIR)/.tmp/venv/bin/python \
  INTAKE_INTEROP_NODE_MODULES=$(CURDIR)/.tmp/node/node_modules

## Serve on 127.0.0.1:8080 with the local profile (dev token test_123, tenant dev).
run:
	@server=$$(scripts/db url); \
	export DATABASE_URL=$${DATABASE_URL:-$$server/$(DB_NAME)}; \
	echo "make run: building intake (the first build compiles every dependency and takes a few minutes on 2 cores; later ones take seconds)" >&2; \
	$(CARGO) build --bin intake; \
	$(CARGO) run --quiet --bin intake -- migrate; \
	echo "make run: serving on http://127.0.0.1:8080 with dev token test_123 (Ctrl-C stops)" >&2; \
	exec $(CARGO) run --quiet --bin intake -- serve

## Formatting, the offline SQL data, lints, the Python client's tests, then every test against a
## real PostgreSQL and a real Redis.
test: fmt-check sqlx-check lint tools docker-check test-python
	$(TEST_TOOLS) scripts/db with scripts/redis with scripts/nats with $(CARGO) test --workspace --no-fail-fast

## The Python client (clients/python): `pip install ./clients/python` (and pytest, mypy) into a
## virtualenv of its own, then its tests against real `intake serve` processes they start
## themselves (INTAKE_BIN) on databases of their own (DATABASE_URL from scripts/db).
## INTAKE_PY_SKIP_THROUGHPUT=1 skips the 100,000-event throughput test, and only it;
## PYTEST_ARGS passes more options (e.g. PYTEST_ARGS="-k kill9 -s").
PY_CLIENT_VENV := $(CURDIR)/.tmp/pyclient-venv
PYTEST_ARGS ?=
test-python:
	@python3 -m venv --help >/dev/null 2>&1 || { echo "make test-python needs python3 with venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
	test -x $(PY_CLIENT_VENV)/bin/python || python3 -m venv $(PY_CLIENT_VENV)
	$(PY_CLIENT_VENV)/bin/pip install --quiet --disable-pip-version-check ./clients/python pytest mypy
	$(CARGO) build --bin intake
	@target=$$($(CARGO) metadata --format-version 1 --no-deps \
	  | $(PY_CLIENT_VENV)/bin/python -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'); \
	INTAKE_BIN=$$target/debug/intake scripts/db with \
	  $(PY_CLIENT_VENV)/bin/python -m pytest clients/python/tests -p no:cacheprovider -ra $(PYTEST_ARGS)

## Installs what the tests use beyond cargo (see PY_TOOLS and JS_SDK), from PyPI and npm, and
## Debian's chromium and chromium-driver for the debugger page's browser test.
tools: $(PY_STAMP) $(JS_SDK) browser
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make tools: installing chromium and chromium-driver (Debian packages)" >&2; \
	    apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "make tools needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)" >&2; exit 1; fi; }
$(PY_STAMP):
	@python3 -m venv --help >/dev/null 2>&1 || { echo "make tools needs python3 with venv (Debian: apt-get install python3-venv)" >&2; exit 1; }
	python3 -m venv $(CURDIR)/.tmp/venv
	$(CURDIR)/.tmp/venv/bin/pip install --quiet --disable-pip-version-check $(PY_TOOLS)
	touch $@
$(JS_SDK):
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make tools: installing Node.js and npm (Debian packages nodejs, npm)" >&2; \
	    apt-get install -y -qq nodejs npm >/dev/null; \
	  else echo "make tools needs Node.js 18+ with npm (Debian: apt-get install nodejs npm)" >&2; exit 1; fi; }
	mkdir -p $(CURDIR)/.tmp/node
	npm install --silent --no-audit --no-fund --prefix $(CURDIR)/.tmp/node cloudevents@10.0.0

## A long schemathesis run (EXAMPLES per operation and phase; make test runs 25).
EXAMPLES ?= 1000
schemathesis: tools
	$(TEST_TOOLS) INTAKE_SCHEMATHESIS_EXAMPLES=$(EXAMPLES) \
	  scripts/db with $(CARGO) test -p intake-api --test api schema_driven -- --nocapture

## A long fuzzing run of the request parsers (CASES requests; make test runs 3,000).
CASES ?= 200000
fuzz:
	INTAKE_FUZZ_CASES=$(CASES) $(CARGO) test -p intake-api --test fuzz -- --nocapture

## Checks, without a container engine, that the Dockerfile's build stage copies everything its
## builds read (every workspace manifest and declared target, .sqlx/, included files).
docker-check:
	scripts/check-dockerfile

## Validates docker-compose.yml (no Docker engine needed): the schema, then the stack's shape.
compose-check: tools
	@command -v docker-compose >/dev/null || { echo "compose-check needs docker-compose (Debian: apt-get install docker-compose)" >&2; exit 1; }
	docker-compose -f docker-compose.yml config -q
	docker-compose -f docker-compose.yml config | $(CURDIR)/.tmp/venv/bin/python scripts/check-compose

## Writes the OpenAPI document to docs/openapi.json (a test checks the two agree).
openapi:
	$(CARGO) run --quiet --bin intake -- openapi > docs/openapi.json

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Regenerates .sqlx/, the offline data of intake-storage's checked SQL statements, from a scratch
## database with migrations/ applied: run it after changing a statement or adding a migration,
## and commit .sqlx/.
sqlx-prepare:
	CARGO="$(CARGO)" scripts/sqlx-prepare write

## Fails when .sqlx/ is not what sqlx-prepare would write.
sqlx-check:
	CARGO="$(CARGO)" scripts/sqlx-prepare check

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

## Create the database if needed and apply migrations/ (also: sqlx migrate run).
migrate:
	@server=$$(scripts/db url); \
	export DATABASE_URL=$${DATABASE_URL:-$$server/$(DB_NAME)}; \
	$(CARGO) run --quiet --bin intake -- migrate

## Start (or find) PostgreSQL and print its URL.
db-up:
	@scripts/db url

## Stop a PostgreSQL that db-up / run started.
db-down:
	@scripts/db down

build:
	$(CARGO) build --release --bin intake

## Ingest against raw PostgreSQL (pgbench), every figure in one run: one table (release build),
## on a private PostgreSQL cluster of its own (scripts/db's throwaway one, stopped afterwards),
## so that it has the ~80 connections it needs and nothing else loads the server it measures.
bench:
	@command -v pgbench >/dev/null || ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "make bench: installing pgbench (Debian package postgresql)" >&2; \
	    apt-get install -y -qq postgresql >/dev/null; \
	  else echo "make bench needs pgbench (Debian: apt-get install postgresql)" >&2; exit 1; fi; }
	test -x $(PY_CLIENT_VENV)/bin/python || python3 -m venv $(PY_CLIENT_VENV)
	$(PY_CLIENT_VENV)/bin/pip install --quiet --disable-pip-version-check ./clients/python
	@pgbench=$$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | tail -n 1); \
	PGBENCH=$$pgbench INTAKE_BENCH_PYTHON=$(PY_CLIENT_VENV)/bin/python \
	  env -u DATABASE_URL INTAKE_DB_PROBE_PORT=1 \
	  scripts/db with scripts/redis with scripts/nats with $(CARGO) bench --bench ingest

## Storage lifetime under load, every figure in one run (see scripts/bench-lifetime): single-event
## ingest with BENCH_EVENTS (50,000,000) events stored over 30 daily partitions and with the keys
## window full, against an empty database of the same layout; an erasure and a partition drop
## while ingesting; disk after retention drops 10 of 30 days. A throwaway PostgreSQL cluster of
## its own (removed afterwards), release build, wrk. Not part of make test.
bench-lifetime:
	CARGO="$(CARGO)" scripts/bench-lifetime
