# `make run` and `make test` do all set-up themselves: .venv, pinned packages,
# the embedded warehouse (unless WAREHOUSE_URL is set) and a local Airflow home.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The sample Synthea extract ends on 2023-10-16: `make run` replays the night of 2023-10-31.
AS_OF ?= 2023-10-31
export DO_NOT_TRACK := 1

.PHONY: run test test-slow lint format bench install system-deps clean stop

run: $(STAMP)
	$(BIN)/reactivation run --as-of $(AS_OF)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -m "not slow" -p no:cacheprovider

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check dags plugins tests bench
	$(BIN)/ruff format --check dags plugins tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix dags plugins tests bench
	$(BIN)/ruff format dags plugins tests bench

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

system-deps:
	@scripts/system-deps.sh

stop: $(STAMP)
	$(BIN)/reactivation warehouse stop

clean:
	-$(BIN)/reactivation warehouse stop
	rm -rf .state dbt_project/target dbt_project/logs
