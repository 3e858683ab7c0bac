"""Wheel-only dead reckoning, and the robot's wheel + IMU filter (models.odometry, as `local` runs it), against
ground truth on the same expert tours of every building kind.

Tours are driven in-process without cameras (sim.tour) on worlds and episodes of seeds the noise was never tuned on.
Figures per tour: RTE, the translation error of every 10 m stretch of driving (both ends of the stretch taken in
the estimate's own frame at its start, so earlier heading error does not count) per metre driven; the end-point error
per metre driven with the estimate started at the true start pose; and ATE RMSE after the best rigid alignment.
Real indoor robots drift 2-5 % of distance on wheels alone.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from models.odometry import WheelImuOdometry
from models.odometry_drift import odometry_drift
from schemas.messages import Odometry
from schemas.robot import DEFAULT_ROBOT
from schemas.world import WORLD_KINDS, World
from sim.expert import ExpertDriver
from sim.simulator import Simulator
from sim.tour import drive_tour
from sim.world import generate_world, write_world

TOUR_S = 90.0
SEEDS = (500, 501, 502)


def _planar(message: Odometry) -> tuple[float, float, float]:
    qz, qw = message.orientation[2], message.orientation[3]
    return message.position[0], message.position[1], 2 * math.atan2(qz, qw)


def drift(odometry: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Drift figures of planar poses (N, 3: x, y, yaw) of an odometry against the truth at the same stamps."""
    travelled = float(np.sum(np.linalg.norm(np.diff(truth[:, :2], axis=0), axis=1)))
    figures = odometry_drift(odometry, truth)
    # The estimate expressed in map, started at the true start pose.
    c, s = math.cos(truth[0, 2]), math.sin(truth[0, 2])
    in_map = truth[0, :2] + odometry[:, :2] @ np.array([[c, s], [-s, c]])
    return {
        "distance_m": travelled,
        "rte_percent": figures["rte_pct"],
        "rte_max_percent": figures["rte_max_pct"],
        "end_point_percent": 100 * float(np.linalg.norm(in_map[-1] - truth[-1, :2]) / travelled),
        "ate_m": figures["ate_m"],
    }


def tour_drift(world_dir: Path, seed: int, seconds: float = TOUR_S) -> dict[str, dict[str, float]]:
    """Drive one expert tour without cameras; the drift of its wheel odometry (`wheels`) and of the wheel + IMU
    filter fed the same messages (`filter`), both read at every wheel stamp."""
    robot = dataclasses.replace(DEFAULT_ROBOT, cameras=())
    sim = Simulator(world_dir, robot, seed=seed)
    expert = ExpertDriver(World.load(world_dir), seed=seed)
    fused = WheelImuOdometry(robot)
    streams: dict[str, list] = {"odom": [], "filter": [], "ground_truth": []}
    for output_id, message in drive_tour(sim, expert, seconds):
        if output_id == "imu":
            fused.on_imu(message)
        elif output_id == "wheels":
            fused.on_wheels(message)
            streams["filter"].append(fused.pose())
        elif output_id in streams:
            streams[output_id].append(_planar(message))
    sim.close()
    truth = np.array(streams["ground_truth"])
    return {"wheels": drift(np.array(streams["odom"]), truth), "filter": drift(np.array(streams["filter"]), truth)}


def run(workdir: Path) -> list[dict[str, Any]]:
    print(f"{'kind':10} {'seed':>4} {'odometry':8} {'metres':>7} {'RTE %':>6} {'max %':>6} {'end %':>6} {'ATE m':>6}")
    rows = []
    for kind in WORLD_KINDS:
        for seed in SEEDS:
            world = workdir / f"{kind}-{seed}"
            if not world.exists():
                write_world(generate_world(kind, seed), world)
            for odometry, figures in tour_drift(world, seed).items():
                row = {"kind": kind, "seed": seed, "odometry": odometry, "tour_s": TOUR_S, **figures}
                rows.append(row)
                print(
                    f"{kind:10} {seed:>4} {odometry:8} {row['distance_m']:>7.1f} {row['rte_percent']:>6.2f} "
                    f"{row['rte_max_percent']:>6.2f} {row['end_point_percent']:>6.2f} {row['ate_m']:>6.2f}",
                    flush=True,
                )
    for kind in WORLD_KINDS:
        for odometry in ("wheels", "filter"):
            mine = [r for r in rows if r["kind"] == kind and r["odometry"] == odometry]
            print(
                f"{kind:10} {odometry:8} mean RTE {np.mean([r['rte_percent'] for r in mine]):.2f} %, "
                f"ATE {np.mean([r['ate_m'] for r in mine]):.2f} m",
                flush=True,
            )
    return rows
