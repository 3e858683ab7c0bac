"""Render rate at 128x128 and 320x240, and the physics real-time factor with and without cameras."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from schemas.messages import Twist
from schemas.robot import RobotConfig
from sim.simulator import Simulator
from sim.world import generate_world, write_world

RESOLUTIONS = ((128, 128), (320, 240))


def _renders_per_second(sim: Simulator, seconds: float = 3.0) -> float:
    """One `render` is an RGB and a depth image of one camera: two renders."""
    sim.render("front")  # warm up the GL context
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sim.render(sim.config.cameras[count % len(sim.config.cameras)])
        count += 1
    return 2 * count / (time.perf_counter() - start)


def _real_time_factor(sim: Simulator, sim_seconds: float = 10.0) -> float:
    cmd = Twist(0, (0.3, 0.0, 0.0), (0.0, 0.0, 0.3))  # circle in place-ish, away from walls
    start = time.perf_counter()
    for _ in range(round(sim_seconds / 0.01)):
        sim.advance(cmd, 0.01)
    return sim_seconds / (time.perf_counter() - start)


def run(workdir: Path) -> dict:
    world = workdir / "office-0"
    write_world(generate_world("office", 0), world)
    result: dict = {"renders_per_s": {}, "real_time_factor": {}}
    for width, height in RESOLUTIONS:
        sim = Simulator(world, RobotConfig(camera_width=width, camera_height=height))
        rate = _renders_per_second(sim)
        result["renders_per_s"][f"{width}x{height}"] = round(rate, 1)
        print(f"renders/s at {width}x{height}: {rate:.0f}  (RGB and depth each count as one render)")
        sim.close()
    for label, config in (
        ("physics only", dataclasses.replace(RobotConfig(), cameras=())),
        ("with 3 RGB-D cameras at 10 Hz, 320x240", RobotConfig()),
    ):
        sim = Simulator(world, config)
        rtf = _real_time_factor(sim)
        result["real_time_factor"][label] = round(rtf, 2)
        print(f"real-time factor, {label}: {rtf:.1f}x")
        sim.close()
    return result
