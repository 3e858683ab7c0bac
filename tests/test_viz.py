"""The episode's Rerun recording, read back from the saved .rrd: the tf tree as entities, each trajectory in
its own frame (wheel odometry placed by map -> odom lies on the ground truth), cameras, command and IMU
plots, and the blueprint that lays them out."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import rerun as rr
from scipy.spatial.transform import Rotation

from models.safety import SafetyGovernor
from schemas.robot import RobotConfig
from schemas.topics import CAMERAS, camera_frame
from schemas.world import World
from sim.expert import ExpertDriver
from sim.simulator import Simulator
from sim.tour import STEP_S
from viz.episode import TIMELINE, EpisodeLogger, episode_recording, image_path

SECONDS = 4.0
PLOTS = ("commands/linear", "commands/angular", "imu/linear_acceleration", "imu/angular_velocity")
# Entity -> component -> [(robot time in ns, or None when static; value)].
Entities = dict[str, dict[str, list[tuple[int | None, Any]]]]


def _record_episode(world_dir: Path, rrd: Path) -> None:
    """Drive the expert through the safety layer, logging every message as the viz node would."""
    world = World.load(world_dir)
    sim = Simulator(world_dir, RobotConfig(camera_width=32, camera_height=24), seed=0)
    expert, governor = ExpertDriver(world, seed=0), SafetyGovernor()
    rec = episode_recording(world, "test", rrd)
    logger = EpisodeLogger(rec)
    try:
        while sim.t_ns < SECONDS * 1e9:
            command = expert.command(sim.t_ns, sim.pose())
            governor.on_command(command, sim.t_ns)
            safe = governor.step(sim.t_ns)
            logger.log("expert_cmd_vel", command)
            logger.log("cmd_vel", safe)
            for output_id, msg in sim.advance(safe, STEP_S):
                logger.log(output_id, msg)
    finally:
        sim.close()
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


def test_blueprint_lays_out_a_top_down_map_cameras_and_plots(rrd: Path) -> None:
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
