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


def match_landmarks(found: pa.Table, reference: pa.Table, radius_m: float = 1.0) -> dict[str, Any]:
    """Landmark rows (schemas.map) against reference rows, positions in one frame: such as a detector-built map's
    against the annotated extractor's landmarks of the same tour.

    A found landmark matches a reference one of its category and colour within `radius_m`, nearest pairs first, each
    row matched once. Precision is over the found rows, recall over the reference rows; the position error is over
    the matches.
    """

    def rows(table: pa.Table) -> tuple[list[tuple[str, str]], np.ndarray]:
        keys = list(zip(table["category"].to_pylist(), table["color"].to_pylist(), strict=True))
        xyz = np.column_stack([table[f"position_{a}"].to_numpy() for a in "xyz"]).reshape(-1, 3)
        return keys, xyz

    found_keys, found_xyz = rows(found)
    reference_keys, reference_xyz = rows(reference)
    distances = np.linalg.norm(found_xyz[:, None, :] - reference_xyz[None, :, :], axis=2)
    pairs = sorted(
        (distances[i, j], i, j)
        for i, j in zip(*np.nonzero(distances <= radius_m), strict=True)
        if found_keys[i] == reference_keys[j]
    )
    free_found, free_reference, errors = set(range(len(found_keys))), set(range(len(reference_keys))), []
    for distance, i, j in pairs:
        if i in free_found and j in free_reference:
            free_found.remove(i)
            free_reference.remove(j)
            errors.append(float(distance))
    return {
        "found": len(found_keys),
        "reference": len(reference_keys),
        "matched": len(errors),
        "precision": len(errors) / len(found_keys) if found_keys else None,
        "recall": len(errors) / len(reference_keys) if reference_keys else None,
        "position_error_median_m": float(np.median(errors)) if errors else None,
        "position_error_p90_m": float(np.percentile(errors, 90)) if errors else None,
    }
