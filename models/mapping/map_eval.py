"""`astra eval map`: a built map against the simulator's ground truth in the lake it was built from.

Keyframe poses are those of base_link, recovered from the reference camera's node and the rig's mount,
and compared with `/ground_truth/odom` after the best rigid alignment (no scale: the map must be
metric). Connectivity asks whether every pair of rooms the map covers is joined by open edges, each
node belonging to the room its keyframe's true position lies in.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pycolmap

from datasets.lake import Lake
from datasets.map_store import read_map
from datasets.site_log import GROUND_TRUTH_TOPIC, read_rig, read_trajectory, recorded_world
from models.mapping.evaluation import trajectory_errors
from models.routing import RouteGraph, disconnected_rooms


def evaluate_map(map_dir: Path | str, lake: Path | str, key: bytes | None = None) -> dict[str, Any]:
    """Registration rate, trajectory and rotation errors, landmark count and room connectivity of a map."""
    topo = read_map(map_dir, key)
    lake = Lake(lake)
    nodes = pl.from_arrow(topo.nodes)
    episode_ids = sorted(nodes["episode_id"].unique().to_list())
    rig = read_rig(lake, episode_ids[0])
    truth = {e: read_trajectory(lake, e, GROUND_TRUTH_TOPIC) for e in episode_ids}

    keyframes = nodes.filter(pl.col("camera") == rig[0].name)
    registered = keyframes.filter(pl.col("registered"))
    camera_from_base = rig[0].base_from_camera.inverse()
    estimated = [
        pycolmap.Rigid3d(
            pycolmap.Rotation3d([row[f"orientation_{a}"] for a in "xyzw"]), [row[f"position_{a}"] for a in "xyz"]
        )
        * camera_from_base
        for row in registered.iter_rows(named=True)
    ]
    truth_poses = [truth[e].at(np.array([t])).poses()[0] for e, t in registered.select("episode_id", "t_ns").rows()]
    ate, rotation = trajectory_errors(estimated, truth_poses) if estimated else (None, None)

    world = recorded_world(lake, episode_ids)
    room_of = {}
    for node, episode, t in nodes.select("node_id", "episode_id", "t_ns").rows():
        x, y, _ = truth[episode].at(np.array([t])).positions[0]
        room = world.room_at(x, y)
        if room is not None:
            room_of[node] = room.name
    apart = disconnected_rooms(RouteGraph(topo.nodes, topo.edges), room_of)
    return {
        "keyframes": keyframes.height,
        "registered": registered.height,
        "registration_rate": registered.height / max(keyframes.height, 1),
        "ate_rmse_m": ate,
        "rotation_median_deg": rotation,
        "landmarks": topo.landmarks.num_rows,
        "rooms": len(set(room_of.values())),
        "connected": not apart,
        "disconnected_rooms": [list(pair) for pair in apart],
        "nodes": topo.nodes.num_rows,
        "edges": topo.edges.num_rows,
        "edges_by_kind": dict(sorted(Counter(topo.edges["kind"].to_pylist()).items())),
    }
