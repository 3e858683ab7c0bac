"""Route planning on the map graph: hand-made graphs, random ones against networkx's A*, and subgoals."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import networkx as nx
import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from models.routing import NoRouteError, RouteGraph, base_poses, disconnected_rooms, plan_route, subgoal_poses
from schemas.robot import DEFAULT_ROBOT, camera_mount
from schemas.topics import CAMERAS


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


def posed_nodes(base: np.ndarray, cameras: Sequence[str]) -> pa.Table:
    """Node ids and camera poses (optical frames in `map`) of base_link poses (N, 3) seen from `cameras`."""
    rows = {"node_id": [f"n{i}" for i in range(len(base))], "camera": list(cameras)}
    position, orientation = [], []
    for (x, y, yaw), camera in zip(base, cameras, strict=True):
        translation, base_from_camera = camera_mount(DEFAULT_ROBOT, camera)
        map_from_base = Rotation.from_euler("z", yaw)
        position.append(np.array([x, y, 0.0]) + map_from_base.apply(translation))
        orientation.append((map_from_base * base_from_camera).as_quat())
    rows |= {f"position_{a}": np.array(position)[:, i] for i, a in enumerate("xyz")}
    rows |= {f"orientation_{a}": np.array(orientation)[:, i] for i, a in enumerate("xyzw")}
    return pa.table(rows)


def test_base_poses_undo_the_camera_mount() -> None:
    rng = np.random.default_rng(0)
    base = np.column_stack([rng.uniform(-10, 10, (30, 2)), rng.uniform(-np.pi, np.pi, 30)])
    poses = base_poses(posed_nodes(base, [CAMERAS[i % len(CAMERAS)] for i in range(30)]))
    np.testing.assert_allclose(poses[:, :2], base[:, :2], atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (poses[:, 2] - base[:, 2]))), 0.0, atol=1e-9)


def test_nearest_node_is_in_the_main_component() -> None:
    # A - B - C along x; D, alone, lies nearest to the query point.
    base = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [4.0, 0.0, 0.0], [4.0, 3.0, 0.0]])
    nodes = posed_nodes(base, ["front"] * 4)
    _, edges = graph([("n0", "n1", 2.0, False), ("n1", "n2", 2.0, False)], ["n0", "n1", "n2", "n3"])
    routes = RouteGraph(nodes, edges)
    assert routes.nearest_node((0.3, -0.2)) == "n0"
    assert routes.nearest_node((4.0, 2.8)) == "n2"
    with pytest.raises(ValueError, match="no poses"):
        RouteGraph(*graph(TRIANGLE)).nearest_node((0.0, 0.0))


@pytest.mark.parametrize("length", [0.4, 1.6, 2.9, 3.1, 7.0, 23.5])
def test_subgoals_are_evenly_spaced_and_end_at_the_goal(length: float) -> None:
    # An L-shaped route of `length` m: along x to the corner, then along y, the goal pose 0.2 m past the last node.
    half = length / 2
    polyline = np.array([[0.0, 0.0], [half, 0.0], [half, half - 0.2]])
    goal = (half, half, 1.0)
    subgoals = subgoal_poses(polyline, goal)
    assert tuple(subgoals[-1]) == goal
    on_x = np.abs(subgoals[:, 1]) < 1e-9
    assert np.all(on_x | (np.abs(subgoals[:, 0] - half) < 1e-9))  # on the route
    travelled = np.where(on_x, subgoals[:, 0], half + subgoals[:, 1])
    steps = np.diff(travelled, prepend=0.0)
    if length >= 1.5:
        assert steps.min() >= 1.5 - 1e-9 and steps.max() <= 3.0 + 1e-9
    else:
        assert len(subgoals) == 1
    # Each faces along its leg of the route (one on the corner may face either way).
    inside = (np.abs(travelled - half) > 1e-6)[:-1]
    np.testing.assert_allclose(subgoals[:-1, 2][inside], np.where(on_x, 0.0, np.pi / 2)[:-1][inside])


def test_route_subgoals_follow_its_nodes() -> None:
    base = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [3.0, 3.0, 0.0], [0.0, 3.0, 0.0]])
    nodes = posed_nodes(base, ["front", "rear_left", "rear_right", "front"])
    edges = [("n0", "n1", 3.0, False), ("n1", "n2", 3.0, False), ("n0", "n3", 3.0, True), ("n2", "n3", 3.0, False)]
    routes = RouteGraph(nodes, graph(edges, ["n0", "n1", "n2", "n3"])[1])
    route = routes.route("n0", "n3")
    subgoals = routes.subgoals(route, (0.0, 3.0, np.pi))  # 9 m in four steps of 2.25 m
    np.testing.assert_allclose(subgoals[:, :2], [[2.25, 0.0], [3.0, 1.5], [2.25, 3.0], [0.0, 3.0]], atol=1e-9)
    assert subgoals[-1, 2] == np.pi
