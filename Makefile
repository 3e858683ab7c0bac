# Astra: `make demo` runs the main job, `make test` the suite. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

DEMO_WORLD := data/worlds/office-0
DEMO_SECONDS ?= 90

.PHONY: venv demo test bench lint clean

venv: $(VENV)/.installed

# torch first and pinned: it comes from the local CPU wheel; anything that asked for a newer
# torch would pull several GB of CUDA packages.
$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/astra sim world --kind office --seed 0 --out $(DEMO_WORLD)
	$(BIN)/astra record --world $(DEMO_WORLD) --episodes 1 --seconds $(DEMO_SECONDS) --out data/logs --rrd data/demo.rrd
	$(BIN)/rerun rrd verify data/demo.rrd

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q tests

bench: venv
	$(BIN)/python -m benchmarks

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
