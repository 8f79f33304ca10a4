# passpush: every command bootstraps the project-local virtualenv (.venv) first.
# Nothing is installed globally; Airflow's home is .state/airflow.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test airflow cluster-up cluster-down lint bench clean

# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (it is on these machines), Python
# never writes .pyc files and would compile Airflow's sources again in every process, 2-4 s each
# (bench/RESULTS.md).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade uv
	$(VENV)/bin/uv pip install --python $(PY) -q --compile-bytecode -e '.[dev]'
	$(PY) -m compileall -q include dags plugins bench
	@touch $(STAMP)

install: $(STAMP)

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
