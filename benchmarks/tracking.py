"""Tracks of a cart against the truth: velocity error of the tracker, with and without registration, side by side.

A 10 x 4 m hall; the robot stands, turns at 0.4 rad/s, or backs up at 0.3 m/s, while a cart (0.4 m radius, a box)
passes alongside, meets it off-centre, crosses ahead, or comes diagonally at it. Every 0.1 s, within 2.5 m of the
robot and until contact, the error between the velocity of the track nearest the cart and the cart's true velocity
(both turned into the robot's frame, so odometry's yaw drift does not count) is taken. Reported: the median error
within 2.5 m and within 1 m, per pass, for the tracker as `local` runs it and for the same tracker with registration
switched off (no shift is ever accepted), each pass simulated identically for both.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from pathlib import Path

from models.navigation.local_navigator import LocalNavigator, LocalParams
from models.tracking import ObstacleTracker, TrackerConfig
from schemas.messages import Twist
from schemas.robot import DEFAULT_ROBOT
from schemas.world import Agent, Room
from sim.simulator import Simulator
from sim.world import write_world
from tests.worlds import box_world, simulable

ROBOT = (5.0, 1.5, 0.0)
CARTS = {  # waypoints, speed
    "passing alongside": (((9.5, 2.3), (0.5, 2.3)), 0.6),
    "meeting off-centre": (((9.5, 2.0), (0.5, 2.0)), 0.6),
    "crossing ahead": (((6.5, 0.6), (6.5, 3.4)), 0.6),
    "diagonal": (((7.5, 3.8), (3.0, 0.2)), 0.64),
}
MOTIONS = {"standing": (0.0, 0.0), "turning": (0.0, 0.4), "backing": (-0.3, -0.3)}
SECONDS = 12.0
CART_RADIUS = 0.4
TRACKERS = {"registration": TrackerConfig(), "centres only": TrackerConfig(registration_min_overlap=2.0)}


def _turned(v: tuple[float, float], angle: float) -> tuple[float, float]:
    c, s = math.cos(angle), math.sin(angle)
    return v[0] * c - v[1] * s, v[0] * s + v[1] * c


def _pass(world_dir: Path, motion: tuple[float, float], config: TrackerConfig) -> list[tuple[float, float]]:
    """(gap to the cart, velocity error) every 0.1 s while the cart is within 2.5 m, until contact."""
    sim = Simulator(world_dir)
    local = LocalNavigator(params=LocalParams())
    local.tracker = ObstacleTracker(config)
    samples = []
    try:
        for tick in range(round(SECONDS / 0.01)):
            cmd = Twist(sim.t_ns, (motion[0], 0.0, 0.0), (0.0, 0.0, motion[1])) if any(motion) else None
            for output_id, msg in sim.advance(cmd):
                local.on_sensor(output_id, msg)
            if tick % 10 or local.odometry.t_ns is None:
                continue
            truth, (x, y, yaw) = sim.obstacles(), sim.pose()
            cart = (truth.x[0] - x, truth.y[0] - y)
            gap = math.hypot(*cart) - CART_RADIUS - DEFAULT_ROBOT.radius
            if gap < 0:
                break
            if gap >= 2.5:
                continue
            ex, ey, eyaw = local.odometry.pose()
            tracks = local.tracker.obstacles()
            seen = [
                (math.dist(_turned((p[0] - ex, p[1] - ey), -eyaw), _turned(cart, -yaw)), v)
                for p, v in zip(tracks.position, tracks.velocity, strict=True)
            ]
            true_v = _turned((truth.vx[0], truth.vy[0]), -yaw)
            near = min(seen, default=None, key=lambda s: s[0])
            if near is not None and near[0] <= 0.6:
                samples.append((gap, math.dist(_turned(tuple(near[1]), -eyaw), true_v)))
    finally:
        sim.close()
    return samples


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def run(workdir: Path) -> list[dict]:
    rows = []
    for cart_name, (waypoints, speed) in CARTS.items():
        world = box_world((10, 4), [], [Room("hall", "Hall", "corridor", "corridor", (0.1, 0.1, 9.9, 3.9))], ROBOT)
        cart = Agent("a0", "cart", waypoints, speed, CART_RADIUS)
        world_dir = workdir / cart_name.replace(" ", "-")
        write_world(replace(simulable(world), agents=(cart,)), world_dir)
        for motion_name, motion in MOTIONS.items():
            row = {"cart": cart_name, "robot": motion_name}
            for tracker, config in TRACKERS.items():
                samples = _pass(world_dir, motion, config)
                row[tracker] = {
                    "within_2.5m": _median([e for _, e in samples]),
                    "within_1m": _median([e for g, e in samples if g < 1.0]),
                    "samples": len(samples),
                }
            print(row, flush=True)
            rows.append(row)
    return rows
