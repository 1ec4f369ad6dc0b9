# leukemia-cnn: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
# dvc runs each stage's `leukemia-cnn ...` command in a shell: put the venv first on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help install run data repro test test-slow lint summary ui clean-outputs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies

data: install  ## write the built-in synthetic dataset to data/raw if it is empty
	$(BIN)/leukemia-cnn data synth --if-empty

run: data  ## the main job: synthetic data -> dvc repro (all stages) -> registered champion model
	$(BIN)/dvc repro
	$(BIN)/leukemia-cnn summary

test: install  ## the default test run (slow tests excluded)
	$(BIN)/pytest -m "not slow"

test-slow: install  ## the slow tests (real servers, full training)
	$(BIN)/pytest -m slow

lint: install  ## ruff
	$(BIN)/ruff check src tests

summary: install  ## print the metrics of the last run and where to look next
	$(BIN)/leukemia-cnn summary

ui: install  ## open the MLflow UI on the local store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlruns
