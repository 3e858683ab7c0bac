"""Wheel-only dead reckoning against ground truth on expert tours of every building kind.

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

from models.mapping.sfm import align_rigid
from schemas.messages import Odometry
from schemas.robot import DEFAULT_ROBOT
from schemas.world import WORLD_KINDS, World
from sim.expert import ExpertDriver
from sim.simulator import Simulator
from sim.tour import drive_tour
from sim.world import generate_world, write_world

TOUR_S = 90.0
SEEDS = (500, 501, 502)
SEGMENT_M = 10.0


def _planar(message: Odometry) -> tuple[float, float, float]:
    qz, qw = message.orientation[2], message.orientation[3]
    return message.position[0], message.position[1], 2 * math.atan2(qz, qw)


def _in_frame(poses: np.ndarray, i: int, points: np.ndarray) -> np.ndarray:
    """`points` (N, 2) in the frame of pose i."""
    c, s = math.cos(poses[i, 2]), math.sin(poses[i, 2])
    d = points - poses[i, :2]
    return np.column_stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]])


def drift(odometry: np.ndarray, truth: np.ndarray, segment_m: float = SEGMENT_M) -> dict[str, float]:
    """Drift figures of planar poses (N, 3: x, y, yaw) of wheel odometry against the truth at the same stamps."""
    travelled = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(truth[:, :2], axis=0), axis=1))])
    starts = np.flatnonzero(travelled <= travelled[-1] - segment_m)
    ends = np.searchsorted(travelled, travelled[starts] + segment_m)
    errors = [
        np.linalg.norm(_in_frame(odometry, i, odometry[j : j + 1, :2]) - _in_frame(truth, i, truth[j : j + 1, :2]))
        / (travelled[j] - travelled[i])
        for i, j in zip(starts, ends, strict=True)
    ]
    # The estimate expressed in map, started at the true start pose.
    c, s = math.cos(truth[0, 2]), math.sin(truth[0, 2])
    in_map = truth[0, :2] + odometry[:, :2] @ np.array([[c, s], [-s, c]])
    flat = np.column_stack([in_map, np.zeros(len(in_map))])
    truth_xyz = np.column_stack([truth[:, :2], np.zeros(len(truth))])
    aligned = align_rigid(flat, truth_xyz) * flat
    return {
        "distance_m": float(travelled[-1]),
        "rte_percent": 100 * float(np.mean(errors)) if errors else math.nan,
        "rte_max_percent": 100 * float(np.max(errors)) if errors else math.nan,
        "end_point_percent": 100 * float(np.linalg.norm(in_map[-1] - truth[-1, :2]) / travelled[-1]),
        "ate_m": float(np.sqrt(np.mean(np.sum((aligned - truth_xyz) ** 2, axis=1)))),
    }


def tour_drift(world_dir: Path, seed: int, seconds: float = TOUR_S) -> dict[str, float]:
    """Drive one expert tour without cameras; the drift of its wheel odometry."""
    sim = Simulator(world_dir, dataclasses.replace(DEFAULT_ROBOT, cameras=()), seed=seed)
    expert = ExpertDriver(World.load(world_dir), seed=seed)
    streams: dict[str, list] = {"odom": [], "ground_truth": []}
    for output_id, message in drive_tour(sim, expert, seconds):
        if output_id in streams:
            streams[output_id].append(_planar(message))
    sim.close()
    return drift(np.array(streams["odom"]), np.array(streams["ground_truth"]))


def run(workdir: Path) -> list[dict[str, Any]]:
    print(f"{'kind':10} {'seed':>4} {'metres':>7} {'RTE %':>6} {'max %':>6} {'end %':>6} {'ATE m':>6}")
    rows = []
    for kind in WORLD_KINDS:
        for seed in SEEDS:
            world = workdir / f"{kind}-{seed}"
            if not world.exists():
                write_world(generate_world(kind, seed), world)
            row = {"kind": kind, "seed": seed, "tour_s": TOUR_S, **tour_drift(world, seed)}
            rows.append(row)
            print(
                f"{kind:10} {seed:>4} {row['distance_m']:>7.1f} {row['rte_percent']:>6.2f} "
                f"{row['rte_max_percent']:>6.2f} {row['end_point_percent']:>6.2f} {row['ate_m']:>6.2f}",
                flush=True,
            )
    for kind in WORLD_KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        print(
            f"{kind:10} mean RTE {np.mean([r['rte_percent'] for r in mine]):.2f} %, "
            f"ATE {np.mean([r['ate_m'] for r in mine]):.2f} m",
            flush=True,
        )
    return rows
