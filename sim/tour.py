"""An expert tour recorded in-process: what `astra record` records, without the dataflow, as fast as the sim runs.

Tests and benchmarks need real recordings of minutes of driving; the dataflow paces itself to the wall clock,
this loop does not. The recording holds the simulator's outputs (sensors, odometry, ground truth, /tf, events),
not the dataflow's command topics.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import astra
from datasets.recording import EpisodeWriter
from schemas.episode import EpisodeMetadata
from schemas.robot import DEFAULT_ROBOT, RobotConfig
from schemas.world import World
from sim.expert import ExpertDriver
from sim.simulator import Simulator

STEP_S = 0.05  # the expert's command period


def drive_tour(sim: Simulator, expert: ExpertDriver, seconds: float) -> Iterator[tuple[str, Any]]:
    """The simulator's outputs (output id, message) while the expert drives until `seconds` of sim time."""
    avoid = bool(expert.world.agents)
    while sim.t_ns < seconds * 1e9:
        command = expert.command(sim.t_ns, sim.pose(), sim.obstacles() if avoid else None)
        yield from sim.advance(command, STEP_S)


def record_tour(
    world_dir: Path, path: Path, seconds: float, config: RobotConfig = DEFAULT_ROBOT, seed: int = 0
) -> Path:
    """Drive the expert through the world for `seconds` of sim time and record it to MCAP at `path`."""
    world_json = (world_dir / "world.json").read_bytes()
    world = World.from_json(world_json.decode())
    metadata = EpisodeMetadata(
        config.robot_id, world.site, world.kind, world.seed, seed, astra.__version__, config.camera_width,
        config.camera_height,
    )  # fmt: skip
    sim = Simulator(world_dir, config, seed=seed)
    expert = ExpertDriver(world, seed=seed)
    writer = EpisodeWriter(path, metadata, world_json)
    try:
        for output_id, message in drive_tour(sim, expert, seconds):
            writer.write(output_id, message)
    finally:
        writer.close()
        sim.close()
    return path
