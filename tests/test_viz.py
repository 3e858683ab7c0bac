"""The episode's Rerun recording, read back from the saved .rrd: the tf tree as entities, each trajectory in
its own frame (wheel odometry placed by map -> odom lies on the ground truth), cameras, command and IMU
plots, the navigation stack's topics (map graph, estimate, fixes, costmap and ESDF, plans and candidates,
events), and the blueprint that lays them out. `astra viz episode` draws a recorded run as the live node does."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import rerun as rr
import yaml
from scipy.spatial.transform import Rotation

from astra.cli import main
from datasets.map_store import read_map, write_map
from datasets.mcap_reader import SalvagingReader
from datasets.recording import EpisodeWriter
from datasets.replay import recorded_messages
from models.costmap import FREE, OCCUPIED, UNKNOWN
from models.safety import SafetyGovernor
from schemas import messages as m
from schemas.episode import EpisodeMetadata
from schemas.map import TABLES
from schemas.robot import RobotConfig
from schemas.topics import CAMERAS, TOPICS, camera_frame
from schemas.world import GridSpec, World
from sim.expert import ExpertDriver
from sim.simulator import Simulator
from sim.tour import STEP_S
from tests.conftest import T0, sample_message
from viz.episode import TIMELINE, EpisodeLogger, costmap_image_path, episode_recording, image_path

SECONDS = 4.0
PLOTS = ("commands/linear", "commands/angular", "imu/linear_acceleration", "imu/angular_velocity")
# Entity -> component -> [(robot time in ns, or None when static; value)].
Entities = dict[str, dict[str, list[tuple[int | None, Any]]]]


def _expert_run(world_dir: Path, seconds: float) -> Iterator[tuple[str, object]]:
    """The expert driving through the safety layer: every message as the viz node gets it."""
    world = World.load(world_dir)
    sim = Simulator(world_dir, RobotConfig(camera_width=32, camera_height=24), seed=0)
    expert, governor = ExpertDriver(world, seed=0), SafetyGovernor()
    try:
        while sim.t_ns < seconds * 1e9:
            command = expert.command(sim.t_ns, sim.pose())
            governor.on_command(command, sim.t_ns)
            safe = governor.step(sim.t_ns)
            yield "expert_cmd_vel", command
            yield "cmd_vel", safe
            for output_id, msg in sim.advance(safe, STEP_S):
                yield output_id, msg
                if output_id == "odom":  # standing in for a navigation run's fused odometry
                    yield "local_odom", msg
    finally:
        sim.close()


def _record_episode(world_dir: Path, rrd: Path) -> None:
    """Log every message of an expert run as the viz node would."""
    rec = episode_recording(World.load(world_dir), "test", rrd)
    logger = EpisodeLogger(rec)
    for output_id, msg in _expert_run(world_dir, SECONDS):
        logger.log(output_id, msg)
    rec.disconnect()  # flushes and writes the footer


def _entities(reader: rr.chunk.RrdReader, store: rr.chunk.StoreEntry | None = None) -> Entities:
    entities: Entities = defaultdict(lambda: defaultdict(list))
    for chunk in reader.stream(store=store):
        batch = chunk.to_record_batch()
        times = batch.column(TIMELINE).cast(pa.int64()).to_pylist() if TIMELINE in batch.schema.names else None
        for field in batch.schema:
            if field.metadata.get(b"rerun:kind") == b"data":
                for i, value in enumerate(batch.column(field.name).to_pylist()):
                    if value is not None:
                        entities[chunk.entity_path][field.name].append((times and times[i], value))
    for components in entities.values():
        for rows in components.values():
            rows.sort(key=lambda row: row[0] or 0)
    return entities


def _map_dir(world: World, out: Path, site: str | None = None) -> Path:
    """A map of `site` (default: the world's) whose graph joins the room centres in a chain (schemas.map tables,
    the rest empty)."""
    nodes = [
        {
            "node_id": f"n{i}",
            "episode_id": "e0",
            "t_ns": i,
            "camera": "front",
            "image_topic": "/camera/front/image/compressed",
            **dict(zip(("position_x", "position_y", "position_z"), (*room.center, 1.0), strict=True)),
            **dict(
                zip(("orientation_x", "orientation_y", "orientation_z", "orientation_w"), (0, 0, 0, 1), strict=True)
            ),
            "descriptor": [0.0] * 4,
            "registered": True,
            "placed_by_odometry": False,
        }
        for i, room in enumerate(world.rooms)
    ]
    edges = [
        {"source": a["node_id"], "target": b["node_id"], "kind": "proximity", "length_m": 1.0, "closed": False}
        for a, b in itertools.pairwise(nodes)
    ]
    rows = {"nodes": nodes, "edges": edges}
    tables = {n: pa.Table.from_pylist(rows.get(n, []), schema=s) for n, s in TABLES.items()}
    write_map(out, tables, None, {"site": site or world.site})
    return out


# The navigation topics' samples, costmap first so that the plan and robot are drawn over it; then a failed fix
# with no pose after the estimate began, marked where the estimate had the robot, and wheel odometry on /tf
# that has drifted from the fused odometry.
FAILED_FIX = dataclasses.replace(
    sample_message("localization"), success=False, position=(math.nan,) * 3, confidence=0.1, reason="few inliers"
)
_, WHEELS = sample_message("tf").transforms
DRIFTED_TF = m.TFMessage(T0, (dataclasses.replace(WHEELS, translation=(1.7, 2.0, 0.0)),))


def _costmap_under(plan: m.Path) -> m.OccupancyGrid:
    """A 2 m costmap in odom around the plan: its first pose at the centre of the only occupied cell, a strip
    unknown."""
    spec = GridSpec(0.05, (plan.x[0] - 1.025, plan.y[0] - 1.025), (40, 40))
    cells = np.full(spec.shape, FREE, dtype=np.int8)
    cells[:5] = UNKNOWN
    cells[tuple(spec.world_to_cell(np.array([plan.x[0], plan.y[0]])))] = OCCUPIED
    return m.OccupancyGrid(T0, plan.frame_id, spec.resolution, 40, 40, (*spec.origin, 0.0), cells.tobytes())


def _stamped(msg: object, t_ns: int) -> object:
    """The message at `t_ns`, the transforms of a TFMessage with it."""
    if isinstance(msg, m.TFMessage):
        return m.TFMessage(t_ns, tuple(dataclasses.replace(t, t_ns=t_ns) for t in msg.transforms))
    return dataclasses.replace(msg, t_ns=t_ns)


NAV_MESSAGES = [
    (output_id, _stamped(msg, T0 + i * 1_000_000))
    for i, (output_id, msg) in enumerate(
        [
            ("local_costmap", _costmap_under(sample_message("plan"))),
            *[(t.output_id, sample_message(t.output_id)) for t in TOPICS if t.output_id != "local_costmap"],
            ("localization", FAILED_FIX),
            ("tf", DRIFTED_TF),
        ]
    )
]
# Robot time and encoders: the plots and trails show what they drive; odom_tf: local_odom places base_link.
NOT_DRAWN = {"clock", "wheels", "odom_tf"}


@pytest.fixture(scope="module")
def nav_rrd(office_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every topic's sample message, each at its own time, over the building and a map graph."""
    world = World.load(office_world)
    out = tmp_path_factory.mktemp("viz_nav")
    path = out / "navigation.rrd"
    rec = episode_recording(world, "navigation", path, read_map(_map_dir(world, out / "map")))
    logger = EpisodeLogger(rec)
    for output_id, msg in NAV_MESSAGES:
        logger.log(output_id, msg)
    rec.disconnect()
    return path


@pytest.fixture(scope="module")
def rrd(office_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("viz") / "episode.rrd"
    _record_episode(office_world, path)
    return path


def test_entities_follow_the_tf_tree(rrd: Path) -> None:
    entities = _entities(rr.chunk.RrdReader(rrd))
    base = "/map/odom/base_link"
    for path in ("/map/walls", "/map/rooms", "/map/landmarks", f"{base}/body"):
        assert entities[path], path
    for path in ("/map/odom", base):
        assert len(entities[path]["Transform3D:translation"]) == 50 * SECONDS + 1, path
    for frame in ("imu_link", *map(camera_frame, CAMERAS)):
        [(stamp, _)] = entities[f"{base}/{frame}"]["Transform3D:translation"]
        assert stamp is None, f"{frame} is a static transform"
    for camera in CAMERAS:
        image = entities[f"{base}/{camera_frame(camera)}/image"]
        assert len(image["EncodedImage:blob"]) == 10 * SECONDS + 1 and image["Pinhole:image_from_camera"]
    assert entities[f"{base}/{camera_frame('front')}/image/depth"]["DepthImage:buffer"]
    for kind in ("linear", "angular"):
        for output_id in ("expert_cmd_vel", "cmd_vel"):
            assert len(entities[f"/commands/{kind}/{output_id}"]["Scalars:scalars"]) == 20 * SECONDS
    for quantity in ("linear_acceleration", "angular_velocity"):
        samples = entities[f"/imu/{quantity}"]["Scalars:scalars"]
        assert len(samples) == 100 * SECONDS + 1 and all(len(xyz) == 3 for _, xyz in samples)


def test_odometry_trail_placed_by_map_to_odom_lies_on_ground_truth(rrd: Path) -> None:
    entities = _entities(rr.chunk.RrdReader(rrd))
    assert "/map/trajectory/odom" not in entities, "odometry is not in the map frame"
    t, [odom] = entities["/map/odom/trajectory/odom"]["LineStrips3D:strips"][-1]
    [truth] = dict(entities["/map/trajectory/ground_truth"]["LineStrips3D:strips"])[t]
    [translation] = dict(entities["/map/odom"]["Transform3D:translation"])[t]
    [quaternion] = dict(entities["/map/odom"]["Transform3D:quaternion"])[t]
    placed, truth = Rotation.from_quat(quaternion).apply(odom) + translation, np.array(truth)
    assert len(placed) == len(truth) > 150
    driven = np.linalg.norm(np.diff(truth, axis=0), axis=1).sum()
    assert driven > 1.0
    error = np.linalg.norm(placed - truth, axis=1)
    assert error[-1] < 1e-3, "map -> odom makes the current pose exact"
    assert error.max() < 0.05 + 0.02 * driven, "earlier poses differ by the drift since"
    # The robot, map -> odom -> base_link, stands at the end of the ground truth.
    [odom_base] = dict(entities["/map/odom/base_link"]["Transform3D:translation"])[t]
    np.testing.assert_allclose(Rotation.from_quat(quaternion).apply(odom_base) + translation, truth[-1], atol=1e-3)


def test_blueprint_lays_out_a_top_down_map_the_costmap_cameras_and_plots(rrd: Path) -> None:
    reader = rr.chunk.RrdReader(rrd)
    [blueprint] = reader.blueprints()
    entities = _entities(reader, blueprint)
    views = {
        path: (components["ViewBlueprint:class_identifier"][0][1][0], components["ViewBlueprint:space_origin"][0][1][0])
        for path, components in entities.items()
        if "ViewBlueprint:class_identifier" in components
    }
    cameras = {("2D", image_path(camera_frame(camera))) for camera in CAMERAS}
    plots = {("TimeSeries", origin) for origin in PLOTS}
    assert {("3D", "map"), *cameras, *plots, ("TextLog", "events")} <= set(views.values())
    [map_view] = [path for path, view in views.items() if view == ("3D", "map")]
    [(_, [eye])] = entities[f"{map_view}/EyeControls3D"]["EyeControls3D:position"]
    [(_, [target])] = entities[f"{map_view}/EyeControls3D"]["EyeControls3D:look_target"]
    down = np.subtract(target, eye) / np.linalg.norm(np.subtract(target, eye))
    assert down[2] < -0.95, "the map is seen from above"
    # The local costmap and its ESDF side by side, each with the plan, subgoals and robot drawn over it.
    costmap_views = {
        tuple(entities[f"{path}/ViewContents"]["ViewContents:query"][0][1])
        for path, view in views.items()
        if view == ("2D", "local_costmap")
    }
    overlays = f"{costmap_image_path('overlay')}/**"
    assert costmap_views == {(costmap_image_path(layer), overlays) for layer in ("occupancy", "esdf")}


def test_estimate_through_map_to_odom_lies_on_ground_truth(rrd: Path) -> None:
    entities = _entities(rr.chunk.RrdReader(rrd))
    _, [estimate] = entities["/map/trajectory/local_odom"]["LineStrips3D:strips"][-1]
    _, [truth] = entities["/map/trajectory/ground_truth"]["LineStrips3D:strips"][-1]
    estimate, truth = np.array(estimate), np.array(truth)
    assert len(truth) >= len(estimate) > 150
    # Both trails have a pose per step; the estimate starts once /tf gave map -> odom. Each pose is placed by the
    # map -> odom of its time, so the whole trail lies on the truth, not only its end as for wheel odometry.
    errors = [
        np.linalg.norm(estimate - truth[start : start + len(estimate)], axis=1).max()
        for start in range(len(truth) - len(estimate) + 1)
    ]
    assert min(errors) < 0.01
    truth_color, estimate_color = (
        entities[f"/map/trajectory/{name}"]["LineStrips3D:colors"][0][1] for name in ("ground_truth", "local_odom")
    )
    assert truth_color != estimate_color


def test_every_topic_the_viz_node_gets_is_drawn_at_its_time(nav_rrd: Path) -> None:
    entities = _entities(rr.chunk.RrdReader(nav_rrd))
    stamps = {t for components in entities.values() for rows in components.values() for t, _ in rows}
    static = {"tf_static", *(f"camera_info_{c}" for c in CAMERAS)}  # drawn for all time: see the tf tree test
    drawn = {output_id for output_id, msg in NAV_MESSAGES if msg.t_ns in stamps}
    assert drawn == {t.output_id for t in TOPICS} - NOT_DRAWN - static
    dataflow = yaml.safe_load((Path(__file__).parents[1] / "dataflow.yml").read_text())
    [viz] = [node for node in dataflow["nodes"] if node["id"] == "viz"]
    assert set(viz["inputs"]) <= drawn | static


def test_navigation_recording_is_a_valid_rrd(nav_rrd: Path) -> None:
    verify = subprocess.run(
        [Path(sys.executable).parent / "rerun", "rrd", "verify", str(nav_rrd)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr


def test_navigation_is_drawn_in_the_frames_of_its_messages(nav_rrd: Path) -> None:
    entities = _entities(rr.chunk.RrdReader(nav_rrd))
    sample = dict(NAV_MESSAGES)
    [(stamp, nodes)] = entities["/map/graph/nodes"]["Points3D:positions"]
    assert stamp is None and len(nodes) > 2, "the graph is static"
    [(_, edges)] = entities["/map/graph/proximity"]["LineStrips3D:strips"]
    assert len(edges) == len(nodes) - 1
    for output_id, path in (("route", "/map/route"), ("subgoals", "/map/odom/subgoals"), ("plan", "/map/odom/plan")):
        [(_, [strip])] = entities[path]["LineStrips3D:strips"]
        np.testing.assert_allclose(np.array(strip)[:, :2], np.c_[sample[output_id].x, sample[output_id].y])
    [(_, [goal])] = entities["/map/goal"]["Arrows3D:origins"]
    np.testing.assert_allclose(goal[:2], sample["goal"].position[:2])
    [(_, moving)] = entities["/map/odom/base_link/moving_obstacles"]["Points3D:positions"]
    assert len(moving) == len(sample["moving_obstacles"].ids)
    # The estimate: the fused odometry placed by the latest map -> odom.
    [map_odom] = sample["map_odom"].transforms
    [(_, [estimate])] = entities["/map/trajectory/local_odom"]["LineStrips3D:strips"]
    expected = Rotation.from_quat(map_odom.rotation).apply(sample["local_odom"].position) + map_odom.translation
    np.testing.assert_allclose(estimate, [expected])


def test_fused_odometry_places_the_robot_once_it_begins(nav_rrd: Path) -> None:
    entities = _entities(rr.chunk.RrdReader(nav_rrd))
    [(_, tf), (local_t, local), (drifted_t, drifted)] = [
        (msg.t_ns, msg) for output_id, msg in NAV_MESSAGES if output_id in ("tf", "local_odom")
    ]
    assert local.position != drifted.transforms[0].translation
    # The wheels' odom -> base_link places the robot until the fused odometry, that map -> odom refers to, begins.
    rows = entities["/map/odom/base_link"]["Transform3D:translation"]
    assert [t for t, _ in rows] == [tf.t_ns, local_t] and drifted_t > local_t
    np.testing.assert_allclose(rows[-1][1], [local.position])


def test_relocalization_fixes_are_points_coloured_by_confidence_with_their_text(nav_rrd: Path) -> None:
    entities = _entities(rr.chunk.RrdReader(nav_rrd))
    fix = sample_message("localization")
    [(_, [position])] = entities["/map/localization/fixes"]["Points3D:positions"]
    np.testing.assert_allclose(position[:2], fix.position[:2])
    # The failure has no pose: it is marked where the estimate had the robot, in another colour.
    [(_, [estimate])] = entities["/map/trajectory/local_odom"]["LineStrips3D:strips"]
    [(_, [failed])] = entities["/map/localization/failures"]["Points3D:positions"]
    np.testing.assert_allclose(failed[:2], estimate[0][:2])
    [(_, [fix_color])] = entities["/map/localization/fixes"]["Points3D:colors"]
    [(_, [failed_color])] = entities["/map/localization/failures"]["Points3D:colors"]
    assert fix_color != failed_color
    texts = [text for _, [text] in entities["/events/localization"]["TextLog:text"]]
    assert len(texts) == 2 and f"{fix.inliers} inliers" in texts[0] and FAILED_FIX.reason in texts[1]
    [(_, [accepted])] = entities["/map/localization_pose"]["Ellipsoids3D:half_sizes"]
    np.testing.assert_allclose(accepted[:2], np.sqrt(np.diag(np.reshape(fix.covariance, (6, 6)))[:2]))


def test_local_costmap_and_its_esdf_are_drawn_in_odom_and_as_images(nav_rrd: Path) -> None:
    entities = _entities(rr.chunk.RrdReader(nav_rrd))
    grid = dict(NAV_MESSAGES)["local_costmap"]
    cells = np.frombuffer(grid.data, dtype=np.int8).reshape(grid.height, grid.width)
    [(_, occupied)] = entities["/map/odom/local_costmap"]["Points3D:positions"]
    assert len(occupied) == (cells == OCCUPIED).sum()
    [(_, esdf)] = entities[f"/{costmap_image_path('esdf')}"]["DepthImage:buffer"]
    [(_, classes)] = entities[f"/{costmap_image_path('occupancy')}"]["SegmentationImage:buffer"]
    esdf = np.frombuffer(bytes(esdf[0]), dtype=np.float32).reshape(grid.height, grid.width)
    classes = np.frombuffer(bytes(classes[0]), dtype=np.uint8).reshape(grid.height, grid.width)
    np.testing.assert_array_equal(classes.astype(int) - 1, np.flipud(cells), "class = cell value + 1, north up")
    assert (esdf[classes - 1 == OCCUPIED] == 0).all() and (esdf[classes - 1 != OCCUPIED] > 0).all()
    # The plan, drawn over the images, starts on the occupied cell, as it does in odom.
    [(_, [pixels])] = entities[f"/{costmap_image_path('overlay')}/plan"]["LineStrips2D:strips"]
    column, row = np.floor(pixels[0]).astype(int)
    assert classes[row, column] - 1 == OCCUPIED


def test_events_and_mission_states_are_text_logs(nav_rrd: Path) -> None:
    entities = _entities(rr.chunk.RrdReader(nav_rrd))
    sample = dict(NAV_MESSAGES)
    for output_id in ("events", "safety_events", "nav_events"):
        [(_, [text])] = entities[f"/events/{output_id}"]["TextLog:text"]
        assert sample[output_id].kind in text
    [(_, [status])] = entities["/events/mission_status"]["TextLog:text"]
    assert sample["mission_status"].state in status and all(c in status for c in sample["mission_status"].candidates)


def test_candidates_are_thin_grey_lines_lighter_the_cheaper_with_the_chosen_one_highlighted(nav_rrd: Path) -> None:
    entities = _entities(rr.chunk.RrdReader(nav_rrd))
    sample = dict(NAV_MESSAGES)["local_candidates"]
    drawn = entities["/map/odom/local_candidates"]
    [(_, strips)] = drawn["LineStrips3D:strips"]
    ends = np.cumsum(sample.lengths)
    expected = np.split(np.c_[sample.x, sample.y], ends[:-1])
    assert len(strips) == len(expected)
    for strip, points in zip(strips, expected, strict=True):
        np.testing.assert_allclose(np.array(strip)[:, :2], points)
    [(_, colors)] = drawn["LineStrips3D:colors"]
    [(_, radii)] = drawn["LineStrips3D:radii"]
    [chosen] = [i for i, radius in enumerate(radii) if radius == max(radii)]
    assert chosen == sample.chosen and len(set(radii)) == 2
    # Packed 0xRRGGBBAA: the others are grey, the cheaper lighter; the rejected one (infinite cost) darkest.
    rgb = [[(c >> shift) & 0xFF for shift in (24, 16, 8)] for c in colors]
    others = [i for i in range(len(rgb)) if i != chosen]
    assert all(len(set(rgb[i])) == 1 for i in others) and len(set(rgb[chosen])) > 1
    by_cost = sorted(others, key=lambda i: sample.costs[i])
    assert [rgb[i][0] for i in by_cost] == sorted((rgb[i][0] for i in others), reverse=True)
    assert not math.isfinite(sample.costs[by_cost[-1]])
    [(_, overlay)] = entities[f"/{costmap_image_path('overlay')}/local_candidates"]["LineStrips2D:strips"]
    assert len(overlay) == len(expected)


# --- astra viz episode: a recorded run ------------------------------------------------------------

RECORDED_SECONDS = 2.0


@pytest.fixture(scope="module")
def recording(office_world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, object]]]:
    """A run as the recorder writes it, with the building attached: an expert drive, then every navigation
    topic's sample; and the messages, as the live viz node got them."""
    world = World.load(office_world)
    path = tmp_path_factory.mktemp("viz_mcap") / "run.mcap"
    messages = [*_expert_run(office_world, RECORDED_SECONDS), *NAV_MESSAGES]
    metadata = EpisodeMetadata("robot-1", world.site, world.kind, world.seed, 0, "test", 32, 24)
    writer = EpisodeWriter(path, metadata, world.to_json().encode())
    for output_id, msg in messages:
        writer.write(output_id, msg)
    writer.close()
    return path, messages


def test_every_topic_reads_back_from_a_recording_as_it_was_written(recording) -> None:
    path, messages = recording
    with open(path, "rb") as stream:
        reader = SalvagingReader(stream)
        read = list(recorded_messages(reader))
    assert not reader.damage and len(read) == len(messages)
    # Outputs sharing /tf read back as the first of them; a Path's yaw comes back through a quaternion.
    shared = {"map_odom": "tf", "odom_tf": "tf"}
    for (output_id, msg), (read_id, read_msg) in zip(messages, read, strict=True):
        assert read_id == shared.get(output_id, output_id)
        if isinstance(msg, m.Path):
            np.testing.assert_allclose(read_msg.yaw, msg.yaw, atol=1e-12)
            read_msg = dataclasses.replace(read_msg, yaw=msg.yaw)
        assert type(read_msg) is type(msg), output_id
        # assert_equal: a failed fix's NaN position equals itself.
        np.testing.assert_equal(dataclasses.astuple(read_msg), dataclasses.astuple(msg), err_msg=output_id)
    assert {"local_candidates", "localization", "mission_status", "local_costmap"} <= {o for o, _ in read}


def test_viz_episode_draws_a_recording_as_the_live_node_did(
    recording, office_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path, messages = recording
    world = World.load(office_world)
    map_dir = _map_dir(world, tmp_path / "map")
    live = episode_recording(world, "live", tmp_path / "live.rrd", read_map(map_dir))
    logger = EpisodeLogger(live)
    for output_id, msg in messages:
        logger.log(output_id, msg)
    live.disconnect()

    rrd = tmp_path / "replayed" / "run.rrd"
    assert main(["viz", "episode", str(path), "--map", str(map_dir), "--save", str(rrd)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["messages"] == len(messages) and summary["site"] == world.site and not summary["damage"]
    replayed, drawn_live = (_entities(rr.chunk.RrdReader(f)) for f in (rrd, tmp_path / "live.rrd"))
    for entities in (replayed, drawn_live):
        del entities["/__properties"]  # when each recording began
    assert replayed == drawn_live
    for entity in ("/map/graph/nodes", "/map/route", "/map/trajectory/local_odom", "/map/odom/local_candidates"):
        assert replayed[entity], entity

    # The layout, beside the .rrd, is the recording's blueprint.
    assert summary["blueprint"] == str(rrd.with_suffix(".rbl"))
    [in_rrd] = rr.chunk.RrdReader(rrd).blueprints()
    saved = rr.chunk.RrdReader(rrd.with_suffix(".rbl"))
    [in_file] = saved.blueprints()
    views = [
        {
            path: components["ViewBlueprint:space_origin"]
            for path, components in _entities(reader, store).items()
            if "ViewBlueprint:space_origin" in components
        }
        for reader, store in ((rr.chunk.RrdReader(rrd), in_rrd), (saved, in_file))
    ]
    origins = [sorted(origin for rows in v.values() for _, [origin] in rows) for v in views]
    assert origins[0] == origins[1] and "map" in origins[0] and "local_costmap" in origins[0]


def test_viz_episode_names_what_is_wrong_with_its_input(
    recording, office_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path, _ = recording
    world = World.load(office_world)
    not_mcap = tmp_path / "notes.mcap"
    not_mcap.write_text("not a recording")
    worldless = tmp_path / "worldless.mcap"
    writer = EpisodeWriter(worldless, EpisodeMetadata("r", world.site, world.kind, world.seed, 0, "test", 32, 24))
    writer.write("clock", sample_message("clock"))
    writer.close()
    elsewhere = _map_dir(world, tmp_path / "elsewhere", site="hospital-9")
    cases = {
        "no such recording": [tmp_path / "missing.mcap"],
        "is not an MCAP file": [not_mcap],
        "carries no world.json: pass --world": [worldless],
        "the map is of site 'hospital-9'": [path, "--map", elsewhere],
        "no map at": [path, "--map", tmp_path / "nowhere"],
    }
    for message, argv in cases.items():
        with pytest.raises(SystemExit) as exit_:
            main(["viz", "episode", *map(str, argv), "--save", str(tmp_path / "out.rrd")])
        assert exit_.value.code == 2 and message in capsys.readouterr().err, message
    assert not (tmp_path / "out.rrd").exists()


def test_the_building_and_the_truth_are_drawn_where_the_world_lies_in_the_map(
    office_world: Path, tmp_path: Path
) -> None:
    """A navigation map is the mapping tour's odometry frame, off the simulator's world."""
    world, map_from_world = World.load(office_world), (2.0, -1.0, 0.3)
    rec = episode_recording(world, "placed", tmp_path / "placed.rrd", None, map_from_world)
    logger = EpisodeLogger(rec, map_from_world)
    for output_id in ("ground_truth", "obstacles", "plan"):
        logger.log(output_id, sample_message(output_id))
    rec.disconnect()
    entities = _entities(rr.chunk.RrdReader(tmp_path / "placed.rrd"))
    [(stamp, [translation])] = entities["/map/world"]["Transform3D:translation"]
    assert stamp is None and translation == pytest.approx([2.0, -1.0, 0.0])
    for drawn in ("walls", "rooms", "landmarks", "trajectory/ground_truth", "obstacles"):
        assert entities[f"/map/world/{drawn}"] and f"/map/{drawn}" not in entities, drawn
    assert entities["/map/odom/plan"], "what the stack computes stays in its own frames"
