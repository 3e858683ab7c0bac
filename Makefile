# Astra: `make demo` runs the main job, `make test` the suite. Both set up .venv first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

DEMO_WORLD := data/worlds/office-0
DEMO_SECONDS ?= 90
DEMO_GOAL ?= take me to the library
DEMO_START ?= 7.0,3.0,1.57  # x,y,yaw in Meeting room B, not the dock where the tour began

.PHONY: venv demo test bench lint lock clean

venv: $(VENV)/.installed

# torch first and pinned: it comes from the local CPU wheel; anything that asked for a newer
# torch would pull several GB of CUDA packages.
# Every other package is pinned by constraints.txt, so that a new release upstream cannot break a build that
# passed (Beam 2.78 did); `make lock` moves the pins to the newest releases.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# Resolves pyproject.toml afresh in a scratch venv and pins what it got; run `make test` on the result.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet torch==2.13.0
	$(LOCK_VENV)/bin/pip install --quiet -e '.[dev]'
	{ echo "# Pinned by \`make lock\` on $$(date -u +%F); torch is pinned in the Makefile."; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable | grep -v '^torch=='; } > constraints.txt
	rm -rf $(LOCK_VENV)

# The main job end to end: a building, its mapping tour, the lake, the map, then a mission to a text goal
# from a start the robot is not told. Everything but the world goes to data/demo/, made afresh each time;
# the mission's JSON line is printed last.
# The map's landmarks come from the annotation (--extractor annotated): the goal names a room, and the learned
# detector, the default, cannot tell rooms.
demo: venv
	rm -rf data/demo
	$(BIN)/astra sim world --kind office --seed 0 --out $(DEMO_WORLD)
	$(BIN)/astra record --world $(DEMO_WORLD) --episodes 1 --seconds $(DEMO_SECONDS) --out data/demo/logs --rrd data/demo/tour.rrd
	$(BIN)/astra ingest data/demo/logs --lake data/demo/lake
	$(BIN)/astra map build --site office-0 --lake data/demo/lake --out data/demo/map --extractor annotated
	$(BIN)/astra navigate --world $(DEMO_WORLD) --map data/demo/map --goal "$(DEMO_GOAL)" --start $(DEMO_START) \
		--out data/demo/logs --rrd data/demo.rrd > data/demo/mission.json
	$(BIN)/rerun rrd verify data/demo.rrd
	@cat data/demo/mission.json

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q --durations=15 -n auto --dist loadfile --no-loadscope-reorder tests

bench: venv
	$(BIN)/python -m benchmarks

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
