"""Map building: the pure graph construction, and one real build from two simulated tours, evaluated and viewed
through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pycolmap
import pytest

from datasets import map_eval
from datasets.lake import Lake
from datasets.map_store import read_map
from datasets.site_log import recorded_world
from models.mapping.evaluation import evaluate_map
from models.mapping.graph import GraphConfig, GraphNodes, build_edges
from models.mapping.keyframes import Trajectory
from models.mapping.sfm import RigCamera
from models.routing import RouteGraph
from pipelines.mapping import MapSummary, build_site_map
from schemas.map import KEY_ENV, MapKeyError, generate_key, parse_key
from schemas.world import World
from viz.map import node_rooms

MIN_REGISTRATION, MAX_ATE_M = 0.95, 0.10  # the bars
MAX_PLACED_BY_ODOMETRY = 0.10  # the map benchmark measured 0.000-0.022 on 60 s tours of all four kinds
VENV_BIN = Path(sys.executable).parent
ASTRA = VENV_BIN / "astra"


def _nodes(registered: list[bool], point_ids: list[list[int]]) -> GraphNodes:
    """Two episodes: `a` drives three keyframes along x, `b` one keyframe back near a's last; two cameras each."""
    keyframes = [("a", 0, 0.0), ("a", 1, 1.0), ("a", 2, 2.0), ("b", 0, 2.2)]
    rows = [(f"{c}/{e}_{t}", e, t, c, x) for e, t, x in keyframes for c in ("front", "rear")]
    return GraphNodes(
        node_ids=[r[0] for r in rows],
        episode_ids=[r[1] for r in rows],
        t_ns=np.array([r[2] for r in rows]),
        cameras=[r[3] for r in rows],
        base_positions=np.array([(r[4], 0.0, 0.0) for r in rows]),
        registered=np.array(registered),
        point_ids=[np.array(p, np.int64) for p in point_ids],
    )


def test_edges_join_rig_siblings_next_keyframes_covisible_and_nearby_nodes() -> None:
    registered = [True, True, False, False, True, True, True, True]  # a's middle keyframe failed to register
    points = [list(range(20)), [100, 101], [], [], list(range(4, 40)), [101], list(range(30, 35)), []]
    nodes = _nodes(registered, points)
    edges = build_edges(nodes, GraphConfig(min_shared_points=15, proximity_radius_m=0.5)).to_pylist()
    by_kind = {}
    for edge in edges:
        key = (edge["kind"], dict(edge["metadata"] or {}).get("relation", ""))
        by_kind.setdefault(key, set()).add(frozenset((edge["source"], edge["target"])))
    rigs = {frozenset((f"front/{k}", f"rear/{k}")) for k in ("a_0", "a_1", "a_2", "b_0")}
    assert by_kind[("sequential", "rig")] == rigs
    assert by_kind[("sequential", "next")] == {
        frozenset((f"{c}/a_{t}", f"{c}/a_{t + 1}")) for c in ("front", "rear") for t in (0, 1)
    }
    # front/a_0 and front/a_2 share points 4..19; front/a_2 and front/b_0 only 5.
    assert by_kind[("covisibility", "")] == {frozenset(("front/a_0", "front/a_2"))}
    assert [e["shared_points"] for e in edges if e["kind"] == "covisibility"] == [16]
    assert by_kind[("proximity", "")] == {frozenset((f"{c}/a_2", f"{c}/b_0")) for c in ("front", "rear")}
    lengths = {(e["kind"], frozenset((e["source"], e["target"]))): e["length_m"] for e in edges}
    assert lengths["sequential", frozenset(("front/a_0", "rear/a_0"))] == 0.0
    assert lengths["sequential", frozenset(("front/a_0", "front/a_1"))] == pytest.approx(1.0)
    assert lengths["covisibility", frozenset(("front/a_0", "front/a_2"))] == pytest.approx(2.0)
    assert lengths["proximity", frozenset(("rear/a_2", "rear/b_0"))] == pytest.approx(0.2)

    graph = RouteGraph(pa.table({"node_id": nodes.node_ids}), edges=pa.Table.from_pylist(edges))
    assert len(set(graph.components().values())) == 1
    assert graph.route("front/a_0", "rear/b_0").length_m == pytest.approx(2.2)


def test_unregistered_nodes_get_no_covisibility_or_proximity_edges() -> None:
    nodes = _nodes([False] * 8, [[]] * 8)
    kinds = set(build_edges(nodes).column("kind").to_pylist())
    assert kinds == {"sequential"}


def test_the_evaluator_counts_keyframes_placed_by_odometry_and_their_error(office_world: Path) -> None:
    """Four keyframes; the third is off by 0.3 m in y, two were placed by odometry, one is not registered."""
    xs, ys = np.arange(4.0) + 3.0, np.array([3.0, 3.5, 4.5, 3.0])  # not on a line: the alignment is unique
    truth = Trajectory(np.arange(4, dtype=np.int64), np.column_stack([xs, ys, np.zeros(4)]),
                       np.tile([0.0, 0.0, 0.0, 1.0], (4, 1)))  # fmt: skip
    rows = [
        {"node_id": f"front/{i}", "episode_id": "e", "t_ns": i, "camera": "front", "image_topic": "/img",
         "position_x": xs[i], "position_y": ys[i] + 0.3 * (i == 2), "position_z": 0.0,
         "orientation_x": 0.0, "orientation_y": 0.0, "orientation_z": 0.0, "orientation_w": 1.0,
         "descriptor": [0.0], "registered": i < 3, "placed_by_odometry": i in (0, 1)}
        for i in range(4)
    ]  # fmt: skip
    edges = pa.table({"source": ["front/0"], "target": ["front/1"], "kind": ["sequential"], "length_m": [1.0],
                      "closed": [False]})  # fmt: skip
    reference = RigCamera("front", 4, 4, (1.0,) * 9, pycolmap.Rigid3d())  # mounted at base_link

    metrics = evaluate_map(pa.Table.from_pylist(rows), edges, pa.table({"landmark_id": ["x"]}), reference,
                           {"e": truth}, World.load(office_world))  # fmt: skip

    assert (metrics["keyframes"], metrics["registered"], metrics["placed_by_odometry"]) == (4, 3, 2)
    assert metrics["placed_by_odometry_rate"] == pytest.approx(2 / 3)
    assert 0.05 < metrics["ate_rmse_m"] < 0.3 and metrics["landmarks"] == 1


def _astra(*argv: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV} | ({KEY_ENV: key} if key else {})
    return subprocess.run([ASTRA, *argv], capture_output=True, text=True, env=env)


def test_two_tours_merge_into_one_encrypted_map(office_map: tuple[Path, str, MapSummary]) -> None:
    out, key, summary = office_map
    assert summary.encrypted and summary.episodes == 2 and summary.keyframes > 40
    assert summary.nodes == 3 * summary.keyframes and summary.landmarks > 0
    assert set(summary.edges) == {"sequential", "covisibility", "proximity"}
    with pytest.raises(MapKeyError):
        read_map(out)

    topo = read_map(out, parse_key(key))
    nodes, edges = pl.from_arrow(topo.nodes), pl.from_arrow(topo.edges)
    assert nodes["episode_id"].n_unique() == 2
    episode_of = dict(nodes.select("node_id", "episode_id").rows())
    assert any(episode_of[a] != episode_of[b] for a, b in edges.select("source", "target").rows())
    heights = nodes.filter(pl.col("registered"))["position_z"].to_numpy()
    assert np.ptp(heights) < 0.05  # z up and level: every camera is mounted at one height


def test_eval_map_meets_the_bars(office_map: tuple[Path, str, MapSummary], tour_lake: Path) -> None:
    out, key, summary = office_map
    proc = _astra("eval", "map", "--map", str(out), "--json", key=key)  # the lake comes from the map's manifest
    assert proc.returncode == 0, proc.stderr

    metrics = json.loads(proc.stdout)
    assert metrics["lake"] == str(tour_lake.resolve())
    # The map names the lake version it was built from, and its truth is read at that version.
    assert metrics["lake_version"] == summary.lake_version == Lake(tour_lake).version is not None
    assert metrics["keyframes"] == summary.keyframes and metrics["nodes"] == summary.nodes
    assert metrics["registration_rate"] >= MIN_REGISTRATION
    # Registered from the images, not merely put where wheel odometry said: the mapper seeds a few metres at
    # odometry poses and replaces look-alike registrations, and no more than that.
    assert metrics["placed_by_odometry"] == summary.placed_by_odometry
    assert metrics["placed_by_odometry_rate"] <= MAX_PLACED_BY_ODOMETRY
    assert metrics["odometry_seams"] == summary.odometry_seams == 0
    assert metrics["ate_rmse_m"] <= MAX_ATE_M
    assert metrics["rotation_median_deg"] <= 1.0
    assert metrics["landmarks"] == summary.landmarks
    assert metrics["rooms"] >= 2 and metrics["connected"]


def test_map_build_on_dask_builds_the_same_map(
    office_map: tuple[Path, str, MapSummary], tour_lake: Path, tmp_path: Path
) -> None:
    """Two Dask workers build the map the direct runner built: the same keyframes, each submap joined once, and the
    same bars met."""
    _, _, direct = office_map
    out = tmp_path / "office-0"
    summary = build_site_map(
        tour_lake, "office-0", out, extractor="annotated", progress=False, runner="dask", workers=2
    )
    assert (summary.episodes, summary.keyframes, summary.nodes) == (direct.episodes, direct.keyframes, direct.nodes)
    assert summary.submaps["submaps"] == direct.submaps["submaps"]
    built = read_map(out).manifest.build
    assert len(built["sfm_submaps"]) == summary.submaps["submaps"]
    assert sum(s["keyframes"] for s in built["sfm_submaps"]) >= summary.keyframes  # neighbours share keyframes
    metrics = map_eval.evaluate_map_dir(out, tour_lake)
    assert metrics["registration_rate"] >= MIN_REGISTRATION and metrics["ate_rmse_m"] <= MAX_ATE_M
    assert metrics["connected"]


def test_landmarks_lie_in_the_map_where_they_stand_in_the_world(
    office_map: tuple[Path, str, MapSummary], tour_lake: Path
) -> None:
    """`map` is the first tour's odometry frame, off the world by its start and drift: landmarks are moved into it."""
    out, key, _ = office_map
    topo = read_map(out, parse_key(key))
    lake = Lake(tour_lake)
    world = recorded_world(lake, sorted(set(topo.nodes["episode_id"].to_pylist())))
    world_from_map = map_eval.world_from_map(topo, lake)
    truth = {lm.id: lm.box.center for lm in world.landmarks}
    for row in topo.landmarks.to_pylist():
        in_world = world_from_map * np.array([row[f"position_{a}"] for a in "xyz"])
        assert np.linalg.norm(in_world - truth[row["landmark_id"]]) < 0.15, row["landmark_id"]


def test_eval_map_with_a_wrong_or_missing_key_fails_clearly(
    office_map: tuple[Path, str, MapSummary], tour_lake: Path
) -> None:
    out, _, _ = office_map
    for key in (generate_key(), None):
        proc = _astra("eval", "map", "--map", str(out), "--lake", str(tour_lake), "--json", key=key)
        assert proc.returncode == 2 and not proc.stdout
        assert "key" in proc.stderr and "Traceback" not in proc.stderr


def test_viz_map_saves_a_recording_with_a_route_between_rooms(
    office_map: tuple[Path, str, MapSummary], tour_lake: Path, tmp_path: Path
) -> None:
    out, key, _ = office_map
    topo = read_map(out, parse_key(key))
    world = recorded_world(Lake(tour_lake), pl.from_arrow(topo.nodes)["episode_id"].unique().to_list())
    start, goal = sorted(set(node_rooms(pl.from_arrow(topo.nodes), world).values()))[:2]
    rrd = tmp_path / "map.rrd"

    proc = _astra("viz", "map", str(out), "--lake", str(tour_lake), "--route", start, goal, "--save", str(rrd), key=key)

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["route_m"] > 0
    verify = subprocess.run([VENV_BIN / "rerun", "rrd", "verify", str(rrd)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    unknown = _astra(
        "viz", "map", str(out), "--lake", str(tour_lake), "--route", start, "no such room", "--save", str(rrd), key=key
    )
    assert unknown.returncode == 2 and "no such room" in unknown.stderr
