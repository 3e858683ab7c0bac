"""Routes on the map graph: shortest paths over open edges, and which parts of the map connect.

Edges are undirected, and where two nodes share several edges the shortest one counts. Closed edges
(a shut door, a blocked aisle) are left out unless `avoid_closed=False`. Shortest paths are scipy's
Dijkstra, run in C from the start node: on maps of thousands of keyframes one run takes about a
millisecond, which an A* in Python would not beat, and A*'s straight-line heuristic would need edge
lengths never shorter than the distance between poses, which the map does not promise.

Tables are the map's (schemas.map) as Arrow tables, or anything `pyarrow.table` takes, such as polars
DataFrames.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components, dijkstra

from schemas.map import TABLES


class NoRouteError(ValueError):
    """No route over open edges joins the two nodes."""


@dataclass(frozen=True)
class Route:
    nodes: list[str]  # from start to goal, both included
    length_m: float


class RouteGraph:
    """The traversable edges of a map as a sparse matrix, built once for many queries."""

    def __init__(self, nodes: Any, edges: Any, avoid_closed: bool = True) -> None:
        self.node_ids: list[str] = pa.table(nodes).column("node_id").to_pylist()
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
        _, labels = connected_components(self._adjacency, directed=False)
        return dict(zip(self.node_ids, labels.tolist(), strict=True))


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
