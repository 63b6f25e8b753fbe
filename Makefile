# seg-bench front door. Every target installs what it needs on first use (a virtual
# environment in .venv), so on a fresh machine `make bench` and `make test` just work.

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed

DATASET  ?= synthetic
MODELS   ?=
PROFILE  ?=
SEEDS    ?= 3
TRIALS   ?= 0
LABELS   ?=
DEVICES  ?=
NUM_NODES ?=
STRATEGY ?=
ROOT     ?=
LEADERBOARDS ?=
FORCE    ?=
ARGS     ?=
PYTEST_ARGS ?=

bench_opts = --dataset $(DATASET) --seeds $(SEEDS) --trials $(TRIALS) \
	$(if $(MODELS),--models $(MODELS)) $(if $(PROFILE),--profile $(PROFILE)) \
	$(if $(LABELS),--labels $(LABELS)) $(if $(DEVICES),--devices $(DEVICES)) \
	$(if $(NUM_NODES),--num-nodes $(NUM_NODES)) $(if $(STRATEGY),--strategy $(STRATEGY)) \
	$(if $(ROOT),--root $(ROOT)) $(if $(LEADERBOARDS),--leaderboard-dir $(LEADERBOARDS)) \
	$(if $(FORCE),--force) $(ARGS)

.PHONY: install bench search test perf lint wheel-check leaderboard clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q -e '.[dev,postgres,export,dashboards]'
	touch $@

bench: $(STAMP)
	$(BIN)/seg-bench bench $(bench_opts)

search: $(STAMP)
	$(BIN)/seg-bench search --dataset $(DATASET) --model $(or $(MODEL),unet) \
		--trials $(or $(filter-out 0,$(TRIALS)),20) $(if $(PROFILE),--profile $(PROFILE)) $(ARGS)

leaderboard: $(STAMP)
	$(BIN)/seg-bench leaderboard --dataset $(DATASET) \
		$(if $(LEADERBOARDS),--leaderboard-dir $(LEADERBOARDS)) $(if $(FORCE),--force)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

perf: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check seg_bench tests benchmarks
	$(BIN)/ruff format --check seg_bench tests benchmarks

wheel-check: $(STAMP)
	bash .ci/wheel-check

clean:
	rm -rf runs .pytest_cache
