"""dora node `recorder`: writes every input to one MCAP per episode (ROS 2 encoding).

Each input id is a dora output id from schemas/topics.py. Output: `done` once the file is final.
ASTRA_MCAP names the file (default data/logs/<site>-<UTC time>.mcap).
"""

from __future__ import annotations

import time

import pyarrow as pa
from dora import Node

from datasets.recording import EpisodeWriter
from operators import config
from operators.episode_stream import episode_messages
from schemas.episode import SOFTWARE_VERSION, EpisodeMetadata
from schemas.world import World
from sim.robot import draw_sensor_errors


def main(node: Node | None = None) -> None:
    node = node or Node()
    world_json = (config.world_dir() / "world.json").read_bytes()
    world = World.from_json(world_json.decode())
    robot = config.robot_config()
    seed = config.episode_seed()
    metadata = EpisodeMetadata(
        robot_id=robot.robot_id,
        site=world.site,
        world_kind=world.kind,
        world_seed=world.seed,
        episode_seed=seed,
        software_version=SOFTWARE_VERSION,
        camera_width=robot.camera_width,
        camera_height=robot.camera_height,
        # The sensor node's simulator draws the same errors from the same seed.
        sensor_errors=draw_sensor_errors(robot.noise, seed, [room.id for room in world.rooms]).to_json(),
    )
    writer = EpisodeWriter(config.mcap_path(world.site), metadata, world_json, start_ns=time.time_ns())
    try:
        for input_id, msg in episode_messages(node):
            writer.write(input_id, msg)
    finally:
        writer.close()
    node.send_output("done", pa.array([True]))


if __name__ == "__main__":
    main()
