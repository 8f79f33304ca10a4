# passpush: every command bootstraps the project-local virtualenv (.venv) first.
# Nothing is installed globally; Airflow's home is .state/airflow.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install lock demo test airflow cluster-up cluster-down lint bench clean

# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (it is on these machines), Python
# never writes .pyc files and would compile Airflow's sources again in every process, 2-4 s each
# (bench/RESULTS.md).
# Versions come from constraints.txt, so a new upstream release cannot change what a fresh machine installs.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q uv==0.13.9
	$(VENV)/bin/uv pip install --python $(PY) -q --compile-bytecode -c constraints.txt -e '.[dev]'
	$(PY) -m compileall -q include dags plugins bench
	@touch $(STAMP)

install: $(STAMP)

## Re-resolve constraints.txt to the newest versions pyproject.toml allows; run `make test` before committing it.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -q --upgrade --no-header \
	  -o constraints.txt.new
	{ sed -n '1,3p' constraints.txt; grep -v '^#' constraints.txt.new; } > constraints.txt.tmp
	mv constraints.txt.tmp constraints.txt && rm constraints.txt.new

## One real campaign end to end through the DAG (embedded Postgres + PassKit emulator by default).
demo: $(STAMP)
	$(PY) -m passpush.demo

## Install everything and run the whole test suite.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

## Airflow standalone on http://localhost:8080 with the same database, emulator, pool and connections.
airflow: $(STAMP)
	$(PY) -m passpush.cli airflow

## A Celery cluster of real processes: api-server, scheduler, dag-processor, triggerer, two workers,
## with PostgreSQL and Redis on 127.0.0.1 and the PassKit emulator. State and logs: .state/cluster.
cluster-up: $(STAMP)
	$(PY) -m passpush.cluster up

cluster-down: $(STAMP)
	$(PY) -m passpush.cluster down

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m bench.run

clean:
	rm -rf .state .pytest_cache
