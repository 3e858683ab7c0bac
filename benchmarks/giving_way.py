"""Giving way with and without havens (`models.viability`), closed loop on perfect tracks, side by side.

- Corridor: the robot waits in a 2.2 m corridor, facing along it, at 3 to 7 m (a doorway into a room at 5-6 m);
  a cart of 0.4 m radius comes along the centre line from 4.5 m ahead at 0.5 or 0.8 m/s, for 14 s.
- Open floor: 60 random encounters, a person (0.25 m, 0.4-1.0 m/s) or a cart (0.4 m, 0.4-0.8 m/s) aimed at a point
  near the robot, arriving in 1-3 s; the robot moving ahead at 0-0.8 m/s. Many are beyond any command's reach.

Counts touches (the gap edge to edge at or below zero) and the smallest gaps; no route, only `evade`.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.local_planner import DwaConfig, DwaPlanner
from schemas.world import GridSpec
from tests.worlds import CORRIDOR_WIDTH, DOORWAY, corridor_with_doorway, give_way

CONFIGS = {"havens": DwaConfig(), "without": replace(DwaConfig(), viability=None)}
CORRIDOR_STARTS = (3.0, 4.0, 5.5, 7.0)
CART_SPEEDS = (0.5, 0.8)
ENCOUNTERS = 60


def _encounters(rng: np.random.Generator) -> list[tuple[float, tuple[np.ndarray, np.ndarray, float]]]:
    out = []
    for _ in range(ENCOUNTERS):
        radius = float(rng.choice([0.25, 0.4]))
        speed = rng.uniform(0.4, 1.0) if radius < 0.3 else rng.uniform(0.4, 0.8)
        heading, arrival = rng.uniform(-math.pi, math.pi), rng.uniform(1.0, 3.0)
        towards = np.array([math.cos(heading), math.sin(heading)])
        target = rng.normal(0.0, 0.3, 2)
        out.append((float(rng.uniform(0.0, 0.8)), (target + speed * arrival * towards, -speed * towards, radius)))
    return out


def _summary(gaps: list[float]) -> dict:
    g = np.array(gaps)
    return {
        "runs": len(g),
        "touches": int((g <= 0).sum()),
        "within_0_1_m": int((g < 0.1).sum()),
        "min_gap_m": round(float(g.min()), 3),
        "median_gap_m": round(float(np.median(g)), 3),
    }


def run(workdir: Path) -> dict:
    occupied, spec = corridor_with_doorway()
    open_floor = np.zeros((480, 480), dtype=bool)
    open_spec = GridSpec(0.05, (-12.0, -12.0), open_floor.shape)
    encounters = _encounters(np.random.default_rng(0))
    result = {}
    for name, config in CONFIGS.items():
        corridor, into_room = [], 0
        for start in CORRIDOR_STARTS:
            for speed in CART_SPEEDS:
                cart = (np.array([start + 4.5, CORRIDOR_WIDTH / 2]), np.array([-speed, 0.0]), 0.4)
                run_ = give_way(DwaPlanner(config), occupied, spec, (start, CORRIDOR_WIDTH / 2, 0.0), cart, 14.0)
                corridor.append(run_.gap)
                into_room += bool(run_.pose[1] > CORRIDOR_WIDTH and DOORWAY[0] - 2 < run_.pose[0] < DOORWAY[1] + 2)
        opened = [
            give_way(DwaPlanner(config), open_floor, open_spec, (0.0, 0.0, 0.0), obstacle, 5.0, speed).gap
            for speed, obstacle in encounters
        ]
        result[name] = {"corridor": _summary(corridor) | {"into_room": into_room}, "open_floor": _summary(opened)}
        print(f"{name}: corridor {result[name]['corridor']}; open floor {result[name]['open_floor']}", flush=True)
    return result
