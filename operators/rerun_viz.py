"""dora node `viz`: logs the episode to Rerun: to ASTRA_RRD if set, else to a spawned viewer, else (no display) a file.

The file is not called viz.py: dora runs it as a script, and that name would shadow the `viz` package.

Inputs: any recorded topic (ids from schemas/topics.py), laid out by the blueprint of `viz.episode`. With
ASTRA_VIZ_MAP=1 (dataflow.yml) it also draws the graph of the map in ASTRA_MAP, and the building and the truth
where they lie in that map (from the truth in the lake the map was built from, where it is still there).
Output: `done` once the recording is saved.
"""

from __future__ import annotations

import pyarrow as pa
from dora import Node

from datasets.navigation import (
    NO_WORLD_PLACEMENT,
    check_world_matches,
    read_navigation_map,
    recorded_map_from_world,
)
from operators import config
from operators.episode_stream import episode_messages
from schemas.world import World
from viz.episode import EpisodeLogger, episode_recording

# A viewer closed early, or never started, must not hold up the end of the episode: the sensor waits for `done`.
FLUSH_TIMEOUT_S = 10.0


def main(node: Node | None = None) -> None:
    node = node or Node()
    world = World.load(config.world_dir())
    rrd, no_display = config.rrd_path(world.site)
    if no_display:
        print(f"no display for a Rerun viewer: saving the recording to {rrd} (ASTRA_RRD names the file)", flush=True)
    topo, map_from_world = None, None
    if config.viz_map():
        topo = read_navigation_map(config.map_dir())
        check_world_matches(topo, world)
        map_from_world = recorded_map_from_world(topo)
        if map_from_world is None:
            print(f"note: {NO_WORLD_PLACEMENT}", flush=True)
    rec = episode_recording(world, f"{world.site}-{config.episode_seed()}", rrd, topo, map_from_world)
    logger = EpisodeLogger(rec, map_from_world)
    for input_id, msg in episode_messages(node):
        logger.log(input_id, msg)
    rec.flush(timeout_sec=FLUSH_TIMEOUT_S)
    rec.disconnect()
    node.send_output("done", pa.array([True]))


if __name__ == "__main__":
    main()
