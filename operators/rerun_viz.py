"""dora node `viz`: logs the episode to Rerun, saving to ASTRA_RRD if set, else spawning a viewer.

The file is not called viz.py: dora runs it as a script, and that name would shadow the `viz` package.

Inputs: any recorded topic (ids from schemas/topics.py), laid out by the blueprint of `viz.episode`.
Output: `done` once the recording is saved.
"""

from __future__ import annotations

import pyarrow as pa
from dora import Node

from operators import config
from operators.episode_stream import episode_messages
from schemas.world import World
from viz.episode import EpisodeLogger, episode_recording


def main(node: Node | None = None) -> None:
    node = node or Node()
    world = World.load(config.world_dir())
    rec = episode_recording(world, f"{world.site}-{config.episode_seed()}", config.rrd_path())
    logger = EpisodeLogger(rec)
    for input_id, msg in episode_messages(node):
        logger.log(input_id, msg)
    rec.flush()
    rec.disconnect()
    node.send_output("done", pa.array([True]))


if __name__ == "__main__":
    main()
