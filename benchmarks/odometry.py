"""The odometry head's variants against the robot's wheel + IMU filter on tours of buildings never trained on:
`astra eval odometry` over the four kinds, static and with people and carts.

ASTRA_BENCH_KINDS (comma separated), ASTRA_BENCH_SEEDS (default 900) and ASTRA_BENCH_TOURS (per building, default
2) choose a subset, ASTRA_BENCH_WEIGHTS the trained models (default: the committed ones). Figures are the means
over every tour of each case.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from datasets.tours import Building
from models.astra_local.odometry import ODOMETRY_VARIANTS
from models.astra_local.serving import DEFAULT_WEIGHTS
from pipelines.odometry_eval import OdometryEvalConfig, evaluate_odometry
from pipelines.train_local import ODOMETRY_DIR

KINDS = tuple(os.environ.get("ASTRA_BENCH_KINDS", "office,warehouse,home,hospital").split(","))
SEEDS = tuple(int(s) for s in os.environ.get("ASTRA_BENCH_SEEDS", "900").split(","))
TOURS = int(os.environ.get("ASTRA_BENCH_TOURS", "2"))
WEIGHTS = Path(os.environ.get("ASTRA_BENCH_WEIGHTS", DEFAULT_WEIGHTS))
_FIGURES = ("rte_pct", "rre_deg_per_10m", "ate_m")


def run(workdir: Path) -> dict[str, Any]:
    checkpoints = {name: WEIGHTS / ODOMETRY_DIR / name for name in ODOMETRY_VARIANTS}
    result: dict[str, Any] = {}
    for case, dynamic in (("static", False), ("people_and_carts", True)):
        runs = [
            evaluate_odometry(Building(kind, seed, dynamic), workdir, checkpoints, OdometryEvalConfig(tours=TOURS))
            for kind in KINDS
            for seed in SEEDS
        ]
        variants = {
            name: {
                figure: round(
                    float(
                        np.mean(
                            [t[figure] for r in runs for t in r["variants"][name]["tours"] if t[figure] is not None]
                        )
                    ),
                    3,
                )
                for figure in _FIGURES
            }
            for name in runs[0]["variants"]
        }
        result[case] = {"buildings": len(runs), "tours": sum(r["tours"] for r in runs), "variants": variants}
        print(f"{case}: {len(runs)} buildings, {result[case]['tours']} tours")
        for name, figures in variants.items():
            print(f"  {name:18} " + " ".join(f"{k} {v}" for k, v in figures.items()), flush=True)
    return result
