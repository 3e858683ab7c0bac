"""Route planning on the map graph: hand-made graphs, and random ones against networkx's A*."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import networkx as nx
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from scipy.spatial import cKDTree

from models.routing import NoRouteError, RouteGraph, disconnected_rooms, plan_route


def graph(edges: list[tuple[str, str, float, bool]], nodes: Sequence[str] = "ABCD") -> tuple[pa.Table, pa.Table]:
    """Node and edge tables from (source, target, length_m, closed) tuples."""
    source, target, length, closed = zip(*edges, strict=True)
    return (
        pa.table({"node_id": list(nodes)}),
        pa.table({"source": source, "target": target, "length_m": pa.array(length, pa.float64()), "closed": closed}),
    )


# A - B - C is shorter than the direct A - C; D hangs off C.
TRIANGLE = [("A", "B", 1.0, False), ("B", "C", 1.5, False), ("A", "C", 3.0, False), ("C", "D", 1.0, False)]


def test_shortest_path_is_chosen() -> None:
    route = plan_route(*graph(TRIANGLE), "A", "D")
    assert route.nodes == ["A", "B", "C", "D"] and route.length_m == pytest.approx(3.5)
    assert plan_route(*graph(TRIANGLE), "D", "A").nodes == ["D", "C", "B", "A"]  # edges are undirected


def test_closed_edge_forces_a_detour() -> None:
    edges = [*TRIANGLE[:1], ("B", "C", 1.5, True), *TRIANGLE[2:]]
    route = plan_route(*graph(edges), "A", "D")
    assert route.nodes == ["A", "C", "D"] and route.length_m == pytest.approx(4.0)
    assert plan_route(*graph(edges), "A", "D", avoid_closed=False).nodes == ["A", "B", "C", "D"]


def test_closed_edge_that_disconnects_raises_no_route() -> None:
    edges = [*TRIANGLE[:3], ("C", "D", 1.0, True)]
    with pytest.raises(NoRouteError, match="no route from 'A' to 'D'"):
        plan_route(*graph(edges), "A", "D")


def test_parallel_edges_zero_lengths_and_trivial_routes() -> None:
    edges = [("A", "B", 5.0, False), ("B", "A", 2.0, False), ("B", "C", 0.0, False), ("C", "C", 1.0, False)]
    assert plan_route(*graph(edges), "A", "C").length_m == pytest.approx(2.0)
    assert plan_route(*graph(edges), "A", "C").nodes == ["A", "B", "C"]
    assert plan_route(*graph(edges), "D", "D").nodes == ["D"]


def test_unknown_nodes_and_bad_edges_are_named() -> None:
    with pytest.raises(KeyError, match="unknown node 'Z'"):
        plan_route(*graph(TRIANGLE), "A", "Z")
    with pytest.raises(ValueError, match="edge target 'Z' is not a node"):
        RouteGraph(*graph([("A", "Z", 1.0, False)]))
    with pytest.raises(ValueError, match="not negative"):
        RouteGraph(*graph([("A", "B", -1.0, False)]))


def test_polars_frames_are_accepted() -> None:
    nodes, edges = graph(TRIANGLE)
    assert plan_route(pl.from_arrow(nodes), pl.from_arrow(edges), "A", "D").length_m == pytest.approx(3.5)


def test_rooms_connect_only_over_open_edges() -> None:
    room_of = {"A": "Lobby", "B": "Lobby", "C": "Radiology", "D": "Charging bay"}
    door = [("A", "B", 1.0, False), ("B", "C", 1.0, True), ("C", "D", 1.0, False)]
    assert disconnected_rooms(RouteGraph(*graph(door)), room_of) == [
        ("Charging bay", "Lobby"),
        ("Lobby", "Radiology"),
    ]
    assert disconnected_rooms(RouteGraph(*graph(door), avoid_closed=False), room_of) == []


@pytest.mark.parametrize("seed", range(5))
def test_dijkstra_equals_networkx_astar_on_random_graphs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 60
    xy = rng.uniform(0, 20, size=(n, 2))
    _, neighbours = cKDTree(xy).query(xy, k=4)
    pairs = [(i, int(j)) for i in range(n) for j in neighbours[i, 1:]]
    # Paths are never shorter than the straight line, which keeps A*'s heuristic admissible.
    lengths = [float(np.linalg.norm(xy[i] - xy[j])) * rng.uniform(1.0, 1.5) for i, j in pairs]
    closed = rng.random(len(pairs)) < 0.15
    ids = [f"n{i}" for i in range(n)]
    nodes, edges = graph([(ids[i], ids[j], w, c) for (i, j), w, c in zip(pairs, lengths, closed, strict=True)], ids)
    reference = nx.Graph()
    reference.add_nodes_from(range(n))
    for (i, j), w, c in zip(pairs, lengths, closed, strict=True):
        if not c and (not reference.has_edge(i, j) or reference[i][j]["length"] > w):
            reference.add_edge(i, j, length=w)
    routes = RouteGraph(nodes, edges)

    def heuristic(a: int, b: int) -> float:
        return float(np.linalg.norm(xy[a] - xy[b]))

    for start, goal in rng.integers(0, n, size=(20, 2)):
        if not nx.has_path(reference, start, goal):
            with pytest.raises(NoRouteError):
                routes.route(ids[start], ids[goal])
            continue
        route = routes.route(ids[start], ids[goal])
        expected = nx.astar_path_length(reference, start, goal, heuristic=heuristic, weight="length")
        assert route.length_m == pytest.approx(expected)
        hops = [int(node[1:]) for node in route.nodes]
        assert hops[0] == start and hops[-1] == goal
        assert sum(reference[a][b]["length"] for a, b in itertools.pairwise(hops)) == pytest.approx(expected)
