# Entry points of the project (see README.md). Every target creates .venv when it is missing and
# installs the project into it once per version of pyproject.toml (a stamp file remembers it).
# Torch comes from pip, as pyproject.toml pins it.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Runs are recorded in the Dagster instance of this repository (dagster.yaml, storage in .dagster/).
export DAGSTER_HOME := $(CURDIR)

PYPROJECT_HASH := $(shell $(PYTHON) -c "import hashlib, pathlib; print(hashlib.sha256(pathlib.Path('pyproject.toml').read_bytes()).hexdigest()[:12])")
INSTALLED := $(VENV)/.installed-$(PYPROJECT_HASH)
INSTALLED_TEST := $(VENV)/.installed-test-$(PYPROJECT_HASH)

PYTEST_ARGS ?=
# Two pytest-xdist workers. Most of the suite's time goes to the command line's real runs (a code
# server and a process per run, one after the other, waiting on each other and on the daemon),
# which leave a second core mostly idle. A worker takes whole files (module fixtures are built
# once), slow files first (labeling_pipeline_tests/conftest.py). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000
REVIEW_PORT ?= 8765

.PHONY: help run test ui review lint format install install-test clean-outputs

help:
	@echo "make run    label every study under \$${LABELING_DATA_DIR:-data} (outputs in \$${LABELING_OUTPUT_DIR:-data/outputs})"
	@echo "make test   run the test suite"
	@echo "make ui     start the Dagster UI on http://$(UI_HOST):$(UI_PORT)"
	@echo "make review start the review app on http://127.0.0.1:$(REVIEW_PORT)"
	@echo "make lint   ruff check and format check"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): | $(BIN)/python
	$(BIN)/python -m pip install -e .
	rm -f $(VENV)/.installed-*
	touch $@

# The test stamp implies the plain one, so `make run` after `make test` installs nothing.
$(INSTALLED_TEST): | $(BIN)/python
	$(BIN)/python -m pip install -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(INSTALLED) $@

install: $(if $(wildcard $(INSTALLED_TEST)),$(INSTALLED_TEST),$(INSTALLED))

install-test: $(INSTALLED_TEST)

run: install
	$(BIN)/labeling-pipeline run

test: install-test
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The two processes `dagster dev` (superseded in Dagster 1.13, it warns so) used to start: the
# daemon (run queue, backfills, sensors, schedules, run monitoring) and the web server, both over
# workspace.yaml; stopping the web server (Ctrl-C) stops the daemon too. (`dg dev`, its
# successor, comes with dagster-dg-cli, which is not released for every Dagster version.)
ui: install
	@$(BIN)/dagster-daemon run -w workspace.yaml & daemon=$$!; \
	trap 'kill $$daemon 2>/dev/null; wait $$daemon 2>/dev/null' EXIT INT TERM; \
	$(BIN)/dagster-webserver -w workspace.yaml -h $(UI_HOST) -p $(UI_PORT)

review: install
	$(BIN)/labeling-pipeline review --port $(REVIEW_PORT)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Removes what `make run` produced (outputs of the default data directory, the Dagster instance).
# Reviewers' decisions (data/outputs/corrections/) are people's work, not derived data: they are
# kept, and the next run applies them again. `make clean-outputs KEEP_CORRECTIONS=0` drops them too.
KEEP_CORRECTIONS ?= 1
clean-outputs:
	rm -rf .dagster
	if [ "$(KEEP_CORRECTIONS)" = "1" ] && [ -d data/outputs/corrections ]; then \
	  find data/outputs -mindepth 1 -maxdepth 1 ! -name corrections -exec rm -rf {} +; \
	else \
	  rm -rf data/outputs; \
	fi
