"""Routes on the map graph: shortest paths over open edges, and which parts of the map connect.

Edges are undirected, and where two nodes share several edges the shortest one counts. Closed edges
(a shut door, a blocked aisle) are left out unless `avoid_closed=False`. Shortest paths are scipy's
Dijkstra, run in C from the start node: on maps of thousands of keyframes one run takes about a
millisecond, which an A* in Python would not beat, and A*'s straight-line heuristic would need edge
lengths never shorter than the distance between poses, which the map does not promise.

Routes become subgoals for the local planner: points every `spacing` metres (1.5 to 3 m) along the polyline
of the route's base_link positions, ending exactly at the goal pose.

Tables are the map's (schemas.map) as Arrow tables, or anything `pyarrow.table` takes, such as polars
DataFrames.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from schemas.map import TABLES
from schemas.robot import DEFAULT_ROBOT, RobotConfig, camera_mount

SUBGOAL_SPACING_M = 2.0  # nominal; subgoal_poses spaces them evenly between 1.5 and 3 m


class NoRouteError(ValueError):
    """No route over open edges joins the two nodes."""


@dataclass(frozen=True)
class Route:
    nodes: list[str]  # from start to goal, both included
    length_m: float


def base_poses(nodes: Any, config: RobotConfig = DEFAULT_ROBOT) -> np.ndarray:
    """(N, 3) x, y, yaw of base_link in `map` at each node: its camera's pose times camera_from_base."""
    nodes = pa.table(nodes)
    position = np.column_stack([nodes[f"position_{a}"].to_numpy() for a in "xyz"])
    map_from_camera = Rotation.from_quat(np.column_stack([nodes[f"orientation_{a}"].to_numpy() for a in "xyzw"]))
    cameras = np.asarray(nodes["camera"].to_pylist())
    poses = np.empty((len(position), 3))
    for camera in np.unique(cameras):
        rows = cameras == camera
        mount_translation, base_from_camera = camera_mount(config, str(camera))
        map_from_base = map_from_camera[rows] * base_from_camera.inv()
        poses[rows, :2] = (position[rows] - map_from_base.apply(mount_translation))[:, :2]
        # A tilted map_from_base (SfM noise) still has a heading: that of its x axis on the floor.
        forward = map_from_base.apply([1.0, 0.0, 0.0])
        poses[rows, 2] = np.arctan2(forward[:, 1], forward[:, 0])
    return poses


def subgoal_poses(
    polyline: np.ndarray, goal_pose: tuple[float, float, float], spacing: float = SUBGOAL_SPACING_M
) -> np.ndarray:
    """(M, 3) x, y, yaw every ~`spacing` m along `polyline` (K, 2) then to `goal_pose`, which is the last row.

    Subgoals are spaced evenly along the path, `spacing` rounded so that the path divides into whole steps
    (between 1.5 and 3 m for the default 2 m, on paths of 1.5 m and more; shorter ones give the goal alone).
    Each faces along the path; the goal keeps its own yaw.
    """
    path = np.vstack([np.asarray(polyline, float).reshape(-1, 2), goal_pose[:2]])
    steps = np.hypot(*np.diff(path, axis=0).T)
    path = path[np.concatenate([[True], steps > 1e-9])]
    arc = np.concatenate([[0.0], np.cumsum(steps[steps > 1e-9])])
    count = max(1, round(arc[-1] / spacing))
    at = arc[-1] * np.arange(1, count + 1) / count
    xy = np.column_stack([np.interp(at, arc, path[:, 0]), np.interp(at, arc, path[:, 1])])
    segment = np.minimum(np.searchsorted(arc, at, side="left"), len(path) - 1)
    heading = path[segment] - path[np.maximum(segment - 1, 0)]
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    yaw[-1] = goal_pose[2]
    return np.column_stack([xy, yaw])


class RouteGraph:
    """The traversable edges of a map as a sparse matrix, built once for many queries.

    Where `nodes` has the map's poses, `nearest_node` and `subgoals` work on the nodes' base_link poses.
    """

    def __init__(self, nodes: Any, edges: Any, avoid_closed: bool = True) -> None:
        nodes = pa.table(nodes)
        self.node_ids: list[str] = nodes.column("node_id").to_pylist()
        self.base_poses: np.ndarray | None = base_poses(nodes) if "orientation_w" in nodes.column_names else None
        self._index = {node: i for i, node in enumerate(self.node_ids)}
        if len(self._index) != len(self.node_ids):
            raise ValueError("node ids are not unique")
        columns = ["source", "target", "length_m", *(["closed"] if avoid_closed else [])]
        # Casting to the map's types also turns polars' string_view columns into strings that every kernel takes.
        edges = pa.table(edges).select(columns).cast(pa.schema([TABLES["edges"].field(c) for c in columns]))
        if avoid_closed:
            edges = edges.filter(pc.invert(edges["closed"]))
        ends = [self._indices(edges[column], column) for column in ("source", "target")]
        lengths = edges["length_m"].to_numpy()
        if not (np.isfinite(lengths) & (lengths >= 0)).all():
            raise ValueError("edge lengths must be finite and not negative")
        # One entry per node pair, the shortest: a sparse matrix would sum duplicates instead.
        pairs = pa.table({"a": np.minimum(*ends), "b": np.maximum(*ends), "length": lengths})
        pairs = pairs.group_by(["a", "b"]).aggregate([("length", "min")])
        n = len(self.node_ids)
        # Explicit zeros stay edges in csgraph, so zero-length edges keep their meaning.
        self._adjacency = coo_array(
            (pairs["length_min"].to_numpy(), (pairs["a"].to_numpy(), pairs["b"].to_numpy())), shape=(n, n)
        ).tocsr()

    def _indices(self, ids: pa.ChunkedArray, column: str) -> np.ndarray:
        indices = pc.index_in(ids, value_set=pa.array(self.node_ids, pa.string()))
        if indices.null_count:
            unknown = pc.filter(ids, pc.is_null(indices))[0].as_py()
            raise ValueError(f"edge {column} {unknown!r} is not a node")
        return indices.to_numpy().astype(np.int64)

    def _node(self, node: str) -> int:
        try:
            return self._index[node]
        except KeyError:
            raise KeyError(f"unknown node {node!r}") from None

    def route(self, start: str, goal: str) -> Route:
        """The shortest route from `start` to `goal`; NoRouteError where none exists."""
        i, j = self._node(start), self._node(goal)
        distances, predecessors = dijkstra(self._adjacency, directed=False, indices=i, return_predecessors=True)
        if not np.isfinite(distances[j]):
            raise NoRouteError(f"no route from {start!r} to {goal!r} over open edges")
        path = [j]
        while path[-1] != i:
            path.append(int(predecessors[path[-1]]))
        return Route(nodes=[self.node_ids[k] for k in reversed(path)], length_m=float(distances[j]))

    def components(self) -> dict[str, int]:
        """Node id -> label of its connected component; nodes share a label where a route joins them."""
        return dict(zip(self.node_ids, self._labels.tolist(), strict=True))

    @cached_property
    def _labels(self) -> np.ndarray:
        return connected_components(self._adjacency, directed=False)[1]

    def _poses(self) -> np.ndarray:
        if self.base_poses is None:
            raise ValueError("the nodes table has no poses (position_*, orientation_*)")
        return self.base_poses

    @cached_property
    def _main_component(self) -> tuple[np.ndarray, cKDTree]:
        """Indices of the nodes of the largest connected component, and a k-d tree of their positions."""
        members = np.flatnonzero(self._labels == np.bincount(self._labels).argmax())
        return members, cKDTree(self._poses()[members, :2])

    def nearest_node(self, xy: tuple[float, float]) -> str:
        """The node nearest to `xy` among those of the largest connected component, where routes start."""
        members, tree = self._main_component
        return self.node_ids[members[tree.query(xy)[1]]]

    def subgoals(
        self, route: Route, goal_pose: tuple[float, float, float], spacing: float = SUBGOAL_SPACING_M
    ) -> np.ndarray:
        """(M, 3) x, y, yaw in `map` along the route's base positions, the last exactly `goal_pose`."""
        return subgoal_poses(self._poses()[[self._node(n) for n in route.nodes], :2], goal_pose, spacing)


def plan_route(nodes: Any, edges: Any, start_node: str, goal_node: str, avoid_closed: bool = True) -> Route:
    """The shortest route between two nodes of a map; see RouteGraph for many queries on one map."""
    return RouteGraph(nodes, edges, avoid_closed).route(start_node, goal_node)


def disconnected_rooms(graph: RouteGraph, room_of: Mapping[str, str]) -> list[tuple[str, str]]:
    """Pairs of rooms (sorted) with no route between any of their nodes; `room_of` maps node id -> room."""
    labels = graph.components()
    components: dict[str, set[int]] = defaultdict(set)
    for node, room in room_of.items():
        if node not in labels:
            raise KeyError(f"unknown node {node!r}")
        components[room].add(labels[node])
    return [(a, b) for a, b in itertools.combinations(sorted(components), 2) if not components[a] & components[b]]
