"""The edges E of the map graph, from its nodes: pure, so map building and tests share it.

A node is one camera's picture at a keyframe. Three kinds of edges (schemas.map.EDGE_KINDS) join them:

- `sequential`: the cameras of one keyframe with each other (`relation: rig`), and each camera with
  itself at the next keyframe of the episode (`relation: next`): the path the robot drove.
- `covisibility`: registered nodes that observe at least `min_shared_points` 3D points of the
  reconstruction in common.
- `proximity`: registered nodes of one camera at different keyframes whose base_link positions lie
  within `proximity_radius_m`, which closes loops where the robot came back to a place. One camera
  suffices, since rig edges join the others at no length.

Lengths are the distance between the nodes' base_link positions, which is what the robot drives; the
cameras of one keyframe are thus 0 m apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_array, triu
from scipy.spatial import cKDTree

from schemas.map import conform_table


@dataclass(frozen=True)
class GraphConfig:
    """Thresholds of the covisibility and proximity edges."""

    min_shared_points: int = 15
    # Robots on either side of a wall stand at least two radii plus the wall apart, so no edge passes through it.
    proximity_radius_m: float = 0.5


@dataclass(frozen=True)
class GraphNodes:
    """What edges are built from, one entry per node."""

    node_ids: Sequence[str]
    episode_ids: Sequence[str]
    t_ns: np.ndarray  # (N,) keyframe time; nodes of one keyframe share it
    cameras: Sequence[str]
    base_positions: np.ndarray  # (N, 3) of base_link in map
    registered: np.ndarray  # (N,) bool
    point_ids: Sequence[np.ndarray]  # 3D point ids each node observes; empty where not registered


def sequential_pairs(nodes: GraphNodes) -> tuple[np.ndarray, np.ndarray]:
    """(M, 2) index pairs of rig siblings and (K, 2) of each camera's consecutive keyframes in an episode."""
    episodes, cameras = np.asarray(nodes.episode_ids), np.asarray(nodes.cameras)
    t = np.asarray(nodes.t_ns)
    order = np.lexsort((cameras, t, episodes))
    keyframe = np.concatenate(
        [[0], np.cumsum((episodes[order[1:]] != episodes[order[:-1]]) | (t[order[1:]] != t[order[:-1]]))]
    )
    rig = [
        (order[i], order[j]) for start, stop in _runs(keyframe) for i in range(start, stop) for j in range(i + 1, stop)
    ]
    order = np.lexsort((t, cameras, episodes))
    same = (episodes[order[1:]] == episodes[order[:-1]]) & (cameras[order[1:]] == cameras[order[:-1]])
    following = np.column_stack([order[:-1][same], order[1:][same]])
    return np.array(rig, dtype=int).reshape(-1, 2), following


def covisible_pairs(point_ids: Sequence[np.ndarray], min_shared: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, 2) index pairs (i < j) of nodes sharing at least `min_shared` points, and the (M,) counts."""
    rows = np.repeat(np.arange(len(point_ids)), [len(p) for p in point_ids])
    points = np.concatenate([np.asarray(p, dtype=np.int64) for p in point_ids]) if len(point_ids) else np.empty(0)
    _, columns = np.unique(points, return_inverse=True)
    incidence = coo_array(
        (np.ones(len(rows), np.int32), (rows, columns)), shape=(len(point_ids), columns.max(initial=-1) + 1)
    ).tocsr()
    incidence.data[:] = 1  # a point seen twice in one image counts once
    shared = triu(incidence @ incidence.T, k=1).tocoo()
    keep = shared.data >= min_shared
    return np.column_stack([shared.row[keep], shared.col[keep]]).astype(int), shared.data[keep]


def proximity_pairs(nodes: GraphNodes, radius: float) -> np.ndarray:
    """(M, 2) index pairs of registered nodes of one camera at different keyframes with base_link within `radius`."""
    registered = np.flatnonzero(nodes.registered)
    pairs = registered[cKDTree(nodes.base_positions[registered]).query_pairs(radius, output_type="ndarray")]
    episodes, t, cameras = np.asarray(nodes.episode_ids), np.asarray(nodes.t_ns), np.asarray(nodes.cameras)
    a, b = pairs[:, 0], pairs[:, 1]
    same_keyframe = (episodes[a] == episodes[b]) & (t[a] == t[b])
    return pairs[(cameras[a] == cameras[b]) & ~same_keyframe].reshape(-1, 2)


def build_edges(nodes: GraphNodes, config: GraphConfig = GraphConfig()) -> pa.Table:
    """The map table `edges` (schemas.map) over `nodes`."""
    rig, following = sequential_pairs(nodes)
    covisible, shared = covisible_pairs(nodes.point_ids, config.min_shared_points)
    near = proximity_pairs(nodes, config.proximity_radius_m)
    parts = [
        (rig, "sequential", None, {"relation": "rig"}),
        (following, "sequential", None, {"relation": "next"}),
        (covisible, "covisibility", shared, None),
        (near, "proximity", None, None),
    ]
    pairs = np.concatenate([p for p, *_ in parts]).astype(int).reshape(-1, 2)
    ids = np.asarray(nodes.node_ids, dtype=object)
    lengths = np.linalg.norm(nodes.base_positions[pairs[:, 0]] - nodes.base_positions[pairs[:, 1]], axis=1)
    table = pa.table(
        {
            "source": ids[pairs[:, 0]].tolist(),
            "target": ids[pairs[:, 1]].tolist(),
            "kind": [kind for p, kind, *_ in parts for _ in range(len(p))],
            "length_m": lengths,
            "shared_points": [
                None if counts is None else int(counts[i]) for p, _, counts, _ in parts for i in range(len(p))
            ],
            "closed": np.zeros(len(pairs), bool),
            "metadata": pa.array(
                [None if meta is None else list(meta.items()) for p, _, _, meta in parts for _ in p],
                pa.map_(pa.string(), pa.string()),
            ),
        }
    )
    return conform_table("edges", table)


def _runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of equal values in sorted `labels`."""
    bounds = np.flatnonzero(np.diff(labels)) + 1
    return list(
        zip(np.concatenate([[0], bounds]).tolist(), np.concatenate([bounds, [len(labels)]]).tolist(), strict=True)
    )
