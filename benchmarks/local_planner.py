"""The DWA local planner: plan() time on 8 m costmaps with obstacles, and closed-loop success over random scenes.

Each scene is a 12 x 8 m room with random boxes between a start on the west side and a goal on the east side;
the route is the straight line (the boxes are unknown to `global`), so the planner must find its way round.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from models.local_planner import DwaPlanner
from models.planning import occupancy_grid
from models.recovery import RecoveryManager
from schemas.robot import DEFAULT_ROBOT
from schemas.world import World
from tests.worlds import box_world, drive, local_clearance, obstacle_distance, route_through, wall

SCENES = 30
SIZE = (12.0, 8.0)


def _scene(rng: np.random.Generator) -> tuple[World, np.ndarray]:
    """A room with 6-10 boxes 0.3-1.2 m wide, none within 1 m of the start or goal."""
    start, goal = np.array([1.0, rng.uniform(2, 6)]), np.array([11.0, rng.uniform(2, 6)])
    boxes = []
    while len(boxes) < rng.integers(6, 11):
        centre, half = rng.uniform([2.5, 0.5], [9.5, 7.5]), rng.uniform(0.15, 0.6, 2)
        if min(np.hypot(*(centre - start)), np.hypot(*(centre - goal))) - half.max() > 1.0:
            boxes.append(wall(*(centre - half), *(centre + half)))
    world = box_world(SIZE, boxes, [], (*start, 0.0))
    return world, route_through(tuple(start), tuple(goal))


def _plan_times(scenes: list[tuple[World, np.ndarray]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Wall and CPU seconds per plan() from random free poses.

    "cold" replans the A* guide path; "warm", the same call again, reuses it, as most cycles of a closed loop do.
    CPU time tells the planner's own cost on a machine that other jobs share.
    """
    times: dict[str, list[float]] = {"cold": [], "warm": [], "cold_cpu": [], "warm_cpu": []}
    for world, route in scenes:
        occupied = occupancy_grid(world)
        planner = DwaPlanner()
        for _ in range(20):
            xy = rng.uniform([1.0, 1.0], [11.0, 7.0])
            clearance = local_clearance(occupied, world.grid, xy)
            if clearance.at(xy) < DEFAULT_ROBOT.radius + 0.1:
                continue
            pose, velocity = (*xy, rng.uniform(-np.pi, np.pi)), (rng.uniform(0, 1), rng.uniform(-1, 1))
            for kind in ("cold", "warm"):
                wall_start, cpu_start = time.perf_counter(), time.process_time()
                planner.plan(pose, velocity, route, True, clearance)
                times[f"{kind}_cpu"].append(time.process_time() - cpu_start)
                times[kind].append(time.perf_counter() - wall_start)
            planner.reset()
    return {kind: np.array(t) for kind, t in times.items()}


def run(workdir: Path) -> dict:
    rng = np.random.default_rng(0)
    scenes = [_scene(rng) for _ in range(SCENES)]
    result: dict = {"plan_ms": {}}
    for kind, seconds in _plan_times(scenes, rng).items():
        ms = seconds * 1e3
        figures = {"mean": ms.mean(), "p50": np.percentile(ms, 50), "p99": np.percentile(ms, 99), "max": ms.max()}
        result["plan_ms"][kind] = {"calls": len(ms)} | {k: round(float(v), 2) for k, v in figures.items()}
        print(
            f"plan() on 160x160 costmaps, {kind}, {len(ms)} calls: "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in figures.items())
        )
    arrived, gaps, durations, recoveries = 0, [], [], 0
    for world, route in scenes:
        manager = RecoveryManager()
        outcome = drive(world, DwaPlanner(), route, world.spawn, 60.0, recovery=manager)
        arrived += outcome.plans[-1].status == "arrived"
        gaps.append(float(obstacle_distance(world, outcome.poses[:, :2]).min()) - DEFAULT_ROBOT.radius)
        durations.append(len(outcome.plans) / 10)
        recoveries += sum(e.name == "recovery" for e in manager.events)
    result["closed_loop"] = {
        "scenes": SCENES,
        "arrived": arrived,
        "min_gap_m": round(min(gaps), 3),
        "median_gap_m": round(float(np.median(gaps)), 3),
        "median_time_s": round(float(np.median(durations)), 1),
        "recoveries": recoveries,
    }
    print(
        f"closed loop, {SCENES} random scenes: arrived {arrived}/{SCENES}, smallest gap to an obstacle "
        f"{min(gaps):.3f} m (median of per-scene minima {np.median(gaps):.3f} m), "
        f"median time {np.median(durations):.1f} s, {recoveries} recoveries"
    )
    return result
