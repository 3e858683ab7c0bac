"""`make bench`: timed measurements, reported as figures (never asserted in tests).

Usage: python -m benchmarks [NAME ...]   (default: all). Results also go to data/bench/<name>.json.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# name -> (module in benchmarks/, its function of the output folder)
BENCHMARKS = {
    "simulator": ("simulator", "run"),
    "record_rates": ("record_rates", "run"),
    "ingest": ("ingest", "run"),
    "ingest_formats": ("ingest", "run_formats"),
    "ingest_memory": ("ingest_memory", "run"),
    "lake_queries": ("lake_queries", "run"),
    "lake_commits": ("lake_commits", "run"),
    "mapping": ("mapping", "run"),
    "landmarks": ("landmarks", "run"),
    "goals": ("goals", "run"),
    "relocalization": ("relocalization", "run"),
    "localization": ("localization", "run"),
    "local_planner": ("local_planner", "run"),
    "tracking": ("tracking", "run"),
    "giving_way": ("giving_way", "run"),
    "odometry_drift": ("odometry_drift", "run"),
    "missions": ("missions", "run"),
    "planning": ("planning", "run"),
    "odometry": ("odometry", "run"),
}
OUT = Path("data/bench")


def load(name: str) -> Callable[[Path], Any]:
    """The benchmark's function, its module imported only now."""
    module, function = BENCHMARKS[name]
    return getattr(importlib.import_module(f"benchmarks.{module}"), function)


def main(names: list[str]) -> int:
    unknown = set(names) - BENCHMARKS.keys()
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; choose from {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    # Libraries' logs (COLMAP's step by step, Beam's optional-dependency warnings) would bury the figures; COLMAP
    # reads its level when it loads, so before any benchmark is imported.
    os.environ.setdefault("GLOG_minloglevel", "2")
    logging.basicConfig(level=logging.ERROR)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or BENCHMARKS:
        print(f"\n== {name}", flush=True)
        result = load(name)(OUT / name)
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
