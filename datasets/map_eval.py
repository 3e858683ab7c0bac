"""`astra eval map`: a map on disk against the simulator's ground truth in a lake (models.mapping.evaluation).

The lake defaults to the one the map was built from, at the version it read, as its manifest records.
`world_from_map` aligns a map with the simulator's world, for judging poses found in the map (such as
relocalization fixes). `evaluate_landmarks` scores one map's landmarks against another's of the same tour (a
detector-built map against the annotated one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pycolmap

from datasets.lake import Lake, LakeError
from datasets.map_store import TopoMap, read_map
from datasets.site_log import read_rig, read_trajectory, recorded_world
from models.mapping.evaluation import alignment, evaluate_map, keyframe_poses, match_landmarks
from schemas.topics import GROUND_TRUTH_TOPIC


def source_lake(topo: TopoMap, lake: Path | str | None = None) -> Lake:
    """`lake` (its latest version) if given, else the lake the map was built from, at the version the build read."""
    if lake is not None:
        return Lake(lake)
    if "lake" not in topo.manifest.build:
        raise LakeError("the map does not record the lake it was built from: give --lake")
    return Lake(topo.manifest.build["lake"], topo.manifest.build.get("lake_version"))


def evaluate_map_dir(map_dir: Path | str, lake: Path | str | None = None, key: bytes | None = None) -> dict[str, Any]:
    """`evaluate_map` of the map at `map_dir`, with the truth read from `lake` (default: the map's source lake), and
    the odometry seams its build found."""
    topo = read_map(map_dir, key)
    source = source_lake(topo, lake)
    episode_ids = sorted(pl.from_arrow(topo.nodes)["episode_id"].unique().to_list())
    truth = {e: read_trajectory(source, e, GROUND_TRUTH_TOPIC) for e in episode_ids}
    metrics = evaluate_map(
        topo.nodes,
        topo.edges,
        topo.landmarks,
        read_rig(source, episode_ids[0])[0],
        truth,
        recorded_world(source, episode_ids),
    )
    # What the build found against odometry alone (pipelines.mapping); maps built before it was counted say None.
    seams = topo.manifest.build.get("odometry_seams")
    return {
        "lake": str(source.path),
        "lake_version": source.version,
        **metrics,
        "odometry_seams": None if seams is None else len(seams),
    }


def world_from_map(topo: TopoMap, lake: Lake) -> pycolmap.Rigid3d:
    """The rigid motion that best aligns the map's registered keyframes with their true poses in the lake."""
    episode_ids = sorted(set(topo.nodes["episode_id"].to_pylist()))
    stamps, poses = keyframe_poses(topo.nodes, read_rig(lake, episode_ids[0])[0])
    truth = {e: read_trajectory(lake, e, GROUND_TRUTH_TOPIC) for e in episode_ids}
    return alignment(poses, [truth[e].at(np.array([t])).poses()[0] for e, t in stamps])


def evaluate_landmarks(
    map_dir: Path | str,
    reference_dir: Path | str,
    lake: Path | str | None = None,
    key: bytes | None = None,
    radius_m: float = 1.0,
) -> dict[str, Any]:
    """`match_landmarks` of the map at `map_dir` against the map at `reference_dir` (built from the same tour, such as
    with the annotated extractor), each moved into the simulator's world by its own alignment with the truth in
    `lake` (default: the map's source lake), so that where two builds' `map` frames differ does not count."""
    topo, reference = read_map(map_dir, key), read_map(reference_dir, key)
    source = source_lake(topo, lake)
    return match_landmarks(_landmarks_in_world(topo, source), _landmarks_in_world(reference, source), radius_m=radius_m)


def _landmarks_in_world(topo: TopoMap, lake: Lake) -> pa.Table:
    landmarks = topo.landmarks
    xyz = np.column_stack([landmarks[f"position_{a}"].to_numpy() for a in "xyz"]).reshape(-1, 3)
    moved = world_from_map(topo, lake) * xyz if len(xyz) else xyz
    for i, axis in enumerate("xyz"):
        column = f"position_{axis}"
        landmarks = landmarks.set_column(landmarks.schema.get_field_index(column), column, pa.array(moved[:, i]))
    return landmarks
