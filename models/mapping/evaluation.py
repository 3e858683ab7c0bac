"""How good a map is against ground truth: registration, reliance on odometry, pose errors, room connectivity.

One evaluator for every map: `evaluate_map` takes the map's tables and the truth, wherever they were read from.
Keyframe poses are those of base_link, recovered from the reference camera's node and the rig's mount, and
compared with the true trajectory after the best rigid alignment (no scale: the map must be metric).
Connectivity asks whether every pair of rooms the map covers is joined by open edges, each node belonging to
the room its keyframe's true position lies in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pycolmap

from models.mapping.keyframes import Trajectory
from models.mapping.sfm import RigCamera, align_rigid
from models.routing import RouteGraph, disconnected_rooms
from schemas.world import World


def alignment(estimated: Sequence[pycolmap.Rigid3d], truth: Sequence[pycolmap.Rigid3d]) -> pycolmap.Rigid3d:
    """truth_from_estimated: the rigid motion (no scale) taking the estimated positions closest to the true ones.

    With map poses of base_link as `estimated` and the simulator's as `truth`, it is world_from_map.
    """
    return align_rigid(np.array([p.translation for p in estimated]), np.array([p.translation for p in truth]))


def pose_error(estimated: pycolmap.Rigid3d, truth: pycolmap.Rigid3d) -> tuple[float, float]:
    """Position (m) and rotation (deg) error of a pose against the truth, both in one frame."""
    position = float(np.linalg.norm(estimated.translation - truth.translation))
    return position, float(np.degrees(estimated.rotation.angle_to(truth.rotation)))


def trajectory_errors(estimated: Sequence[pycolmap.Rigid3d], truth: Sequence[pycolmap.Rigid3d]) -> tuple[float, float]:
    """ATE RMSE (m) and median rotation error (deg) of world_from_base poses after a rigid alignment."""
    truth_from_estimated = alignment(estimated, truth)
    errors = np.array([pose_error(truth_from_estimated * e, t) for e, t in zip(estimated, truth, strict=True)])
    return float(np.sqrt(np.mean(errors[:, 0] ** 2))), float(np.median(errors[:, 1]))


def keyframe_poses(nodes: pa.Table, reference: RigCamera) -> tuple[list[tuple[str, int]], list[pycolmap.Rigid3d]]:
    """The registered keyframes, as (episode_id, t_ns), and their poses of base_link in `map`.

    A keyframe's pose is its node of the rig's `reference` camera, moved by the camera's mount.
    """
    registered = pl.from_arrow(nodes).filter(pl.col("registered") & (pl.col("camera") == reference.name))
    camera_from_base = reference.base_from_camera.inverse()
    poses = [
        pycolmap.Rigid3d(
            pycolmap.Rotation3d([row[f"orientation_{a}"] for a in "xyzw"]), [row[f"position_{a}"] for a in "xyz"]
        )
        * camera_from_base
        for row in registered.iter_rows(named=True)
    ]
    return registered.select("episode_id", "t_ns").rows(), poses


def evaluate_map(
    nodes: pa.Table,
    edges: pa.Table,
    landmarks: pa.Table,
    reference: RigCamera,
    truth: Mapping[str, Trajectory],
    world: World,
) -> dict[str, Any]:
    """Registration rate, keyframes placed by odometry, trajectory and rotation errors, landmarks, connectivity.

    `reference` is the rig's reference camera: a keyframe is its node of that camera. `truth` holds the true
    trajectory (in `map`) of every episode the map's nodes come from.
    """
    frame = pl.from_arrow(nodes)
    keyframes = frame.filter(pl.col("camera") == reference.name)
    registered = keyframes.filter(pl.col("registered"))
    placed = registered.filter(pl.col("placed_by_odometry")).height
    stamps, estimated = keyframe_poses(nodes, reference)
    truth_poses = [truth[e].at(np.array([t])).poses()[0] for e, t in stamps]
    ate, rotation = trajectory_errors(estimated, truth_poses) if estimated else (None, None)

    room_of = {}
    for node, episode, t in frame.select("node_id", "episode_id", "t_ns").rows():
        x, y, _ = truth[episode].at(np.array([t])).positions[0]
        room = world.room_at(x, y)
        if room is not None:
            room_of[node] = room.name
    apart = disconnected_rooms(RouteGraph(nodes, edges), room_of)
    return {
        "keyframes": keyframes.height,
        "registered": registered.height,
        "registration_rate": registered.height / max(keyframes.height, 1),
        "placed_by_odometry": placed,
        "placed_by_odometry_rate": placed / max(registered.height, 1),
        "ate_rmse_m": ate,
        "rotation_median_deg": rotation,
        "landmarks": landmarks.num_rows,
        "rooms": len(set(room_of.values())),
        "connected": not apart,
        "disconnected_rooms": [list(pair) for pair in apart],
        "nodes": nodes.num_rows,
        "edges": edges.num_rows,
        "edges_by_kind": dict(sorted(Counter(edges["kind"].to_pylist()).items())),
    }
