"""An expert tour recorded in-process to MCAP: what `astra record` records, without the dataflow.

The recording holds the simulator's outputs (sensors, odometry, ground truth, /tf, events), not the dataflow's
command topics.
"""

from __future__ import annotations

from pathlib import Path

from datasets.recording import EpisodeWriter
from schemas.episode import SOFTWARE_VERSION, EpisodeMetadata
from schemas.robot import DEFAULT_ROBOT, RobotConfig
from schemas.world import World
from sim.expert import ExpertDriver
from sim.simulator import Simulator
from sim.tour import drive_tour


def record_tour(
    world_dir: Path, path: Path, seconds: float, config: RobotConfig = DEFAULT_ROBOT, seed: int = 0
) -> Path:
    """Drive the expert through the world for `seconds` of sim time and record it to MCAP at `path`."""
    world_json = (world_dir / "world.json").read_bytes()
    world = World.from_json(world_json.decode())
    sim = Simulator(world_dir, config, seed=seed)
    metadata = EpisodeMetadata(
        config.robot_id, world.site, world.kind, world.seed, seed, SOFTWARE_VERSION, config.camera_width,
        config.camera_height, sim.sensor_errors.to_json(),
    )  # fmt: skip
    expert = ExpertDriver(world, seed=seed)
    writer = EpisodeWriter(path, metadata, world_json)
    try:
        for output_id, message in drive_tour(sim, expert, seconds):
            writer.write(output_id, message)
    finally:
        writer.close()
        sim.close()
    return path
