"""Global localization from camera images against a small real map: fixes, honest confidence, the prior, the table."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pycolmap
import pytest
from scipy.spatial.transform import Rotation

from datasets.map_store import read_map, write_map
from models.descriptors import TinyImageDescriptor
from models.localization import Localizer, LocalizerConfig, _PlaceFix
from models.mapping.evaluation import alignment, keyframe_poses, pose_error
from models.mapping.graph import GraphConfig
from models.mapping.sfm import FEATURES, RigCamera, SfmConfig, SiftSettings, rig_cameras
from models.planning import ClearanceMap, occupancy_grid
from pipelines.mapping import DEFAULT_SFM, EpisodeKeyframes, map_graph, reconstruct
from schemas.map import TABLES, generate_key, parse_key
from schemas.messages import decode_jpeg
from schemas.robot import DEFAULT_ROBOT
from schemas.world import World
from sim.simulator import Simulator
from tests.test_sfm import _office_tour, _rig

TOUR_S = 20.0
QUERY_SEED = 3  # not the tour's: rooms are lit differently


@dataclass(frozen=True)
class SmallMap:
    """A map of a short office tour as `astra map build` makes it, and how it sits in the simulator's world."""

    tables: dict[str, pa.Table]
    rig: tuple[RigCamera, ...]
    world_from_map: pycolmap.Rigid3d
    keyframes_in_world: np.ndarray  # (K, 3) base_link positions


@pytest.fixture(scope="module")
def small_map(office_world: Path, tmp_path_factory: pytest.TempPathFactory) -> SmallMap:
    keyframes, rig, truth = _office_tour(office_world, TOUR_S)
    describe = TinyImageDescriptor()
    descriptors = np.array([describe.describe([decode_jpeg(k.images[c.name]) for c in rig]) for k in keyframes])
    episode = EpisodeKeyframes("office-tour", 0, tuple(rig), tuple(keyframes), descriptors, pycolmap.Rigid3d())
    work = str(tmp_path_factory.mktemp("localization"))
    site = reconstruct([episode], work, DEFAULT_SFM)
    graph = map_graph(site, GraphConfig())
    tables = {name: TABLES[name].empty_table() for name in TABLES}
    tables.update(nodes=graph.nodes, edges=graph.edges, node_features=site.node_features)
    stamps, poses = keyframe_poses(graph.nodes, rig[0])
    truth_poses = [truth.at(np.array([t])).poses()[0] for _, t in stamps]
    world_from_map = alignment(poses, truth_poses)
    return SmallMap(tables, tuple(rig), world_from_map, np.array([p.translation for p in truth_poses]))


@pytest.fixture(scope="module")
def localizer(small_map: SmallMap) -> Localizer:
    config = LocalizerConfig.for_map({"sfm": asdict(DEFAULT_SFM)})  # as the map was built
    return Localizer(small_map.tables["nodes"], small_map.tables["node_features"], small_map.rig, config)


@pytest.fixture(scope="module")
def query_sim(office_world: Path) -> Iterator[Simulator]:
    sim = Simulator(office_world, seed=QUERY_SEED)
    yield sim
    sim.close()


def _pose(x: float, y: float, yaw: float) -> pycolmap.Rigid3d:
    return pycolmap.Rigid3d(pycolmap.Rotation3d(Rotation.from_euler("z", yaw).as_quat()), [x, y, 0.0])


def _pictures(sim: Simulator, rig: tuple[RigCamera, ...], x: float, y: float, yaw: float) -> dict[str, np.ndarray]:
    sim.place(x, y, yaw)
    return {c.name: sim.render(c.name)[0] for c in rig}


def _off_the_tour(small_map: SmallMap, world: World, count: int) -> list[tuple[float, float, float]]:
    """World poses beside the toured path (0.4 m to either side, where there is room) and turned by 60 deg,
    half a camera spacing, from the tour's heading there."""
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    positions = small_map.keyframes_in_world
    poses = []
    for index in np.linspace(2, len(positions) - 3, count).astype(int):
        heading = positions[index + 1, :2] - positions[index - 1, :2]
        yaw = float(np.arctan2(heading[1], heading[0]))
        aside = 0.4 * np.array([-np.sin(yaw), np.cos(yaw)])
        xy = max((positions[index, :2] + s * aside for s in (1, -1)), key=lambda p: clearance.at(p[None])[0])
        poses.append((float(xy[0]), float(xy[1]), yaw + np.radians(60.0)))
    return poses


def test_queries_are_described_as_the_map_was_built() -> None:
    built = {"descriptor": "vpr", "sfm": asdict(SfmConfig(sift=FEATURES["fast"]))}
    assert LocalizerConfig.for_map(built) == LocalizerConfig(descriptor="vpr", sift=FEATURES["fast"])
    # Maps made before `sift` record at most `upright` (session 35) beside the other settings.
    older = {k: v for k, v in asdict(SfmConfig()).items() if k != "sift"}
    assert LocalizerConfig.for_map({"sfm": {**older, "upright": True}}).sift == SiftSettings(upright=True)
    assert LocalizerConfig.for_map({"sfm": older}).sift == FEATURES["accurate"]


def test_rig_cameras_are_the_simulators(office_world: Path) -> None:
    sim = Simulator(office_world)
    try:
        expected = _rig(sim)
    finally:
        sim.close()
    built = rig_cameras(DEFAULT_ROBOT)
    assert [(c.name, c.width, c.height) for c in built] == [(c.name, c.width, c.height) for c in expected]
    for camera, truth in zip(built, expected, strict=True):
        np.testing.assert_allclose(camera.k, truth.k)
        np.testing.assert_allclose(camera.base_from_camera.matrix(), truth.base_from_camera.matrix(), atol=1e-9)


def test_fixes_off_the_tour_are_within_1_m_and_5_deg(
    small_map: SmallMap, localizer: Localizer, query_sim: Simulator, office_world: Path
) -> None:
    for x, y, yaw in _off_the_tour(small_map, World.load(office_world), count=4):
        fix = localizer.localize(_pictures(query_sim, small_map.rig, x, y, yaw))
        assert fix.success, fix.reason
        metres, degrees = pose_error(small_map.world_from_map * fix.map_from_base, _pose(x, y, yaw))
        assert metres < 1.0 and degrees < 5.0, (x, y, yaw, metres, degrees)
        assert fix.confidence > 0.3 and fix.inliers >= localizer.config.min_inliers
        assert fix.covariance.shape == (6, 6) and np.all(np.linalg.eigvalsh(fix.covariance) > 0)
        assert np.sqrt(fix.covariance[0, 0]) < 0.5


def _unmapped_room_centre(small_map: SmallMap, world: World) -> tuple[float, float]:
    """The centre of the room farthest from every keyframe of the tour."""
    centres = [((r.bounds[0] + r.bounds[2]) / 2, (r.bounds[1] + r.bounds[3]) / 2) for r in world.rooms]
    distance = [np.min(np.linalg.norm(small_map.keyframes_in_world[:, :2] - c, axis=1)) for c in centres]
    assert max(distance) > 4.0  # the short tour leaves a room unseen
    return centres[int(np.argmax(distance))]


def test_an_unmapped_room_gets_no_confident_fix(
    small_map: SmallMap, localizer: Localizer, query_sim: Simulator, office_world: Path
) -> None:
    x, y = _unmapped_room_centre(small_map, World.load(office_world))
    for yaw in (0.0, 2.0):
        fix = localizer.localize(_pictures(query_sim, small_map.rig, x, y, yaw))
        assert fix.confidence < 0.3, (fix.inliers, fix.confidence)
        assert fix.success or fix.reason


def test_a_prior_keeps_candidates_near_it(small_map: SmallMap, localizer: Localizer, query_sim: Simulator) -> None:
    keyframes = small_map.keyframes_in_world
    x, y, yaw = *keyframes[len(keyframes) // 2, :2], 0.5
    pictures = _pictures(query_sim, small_map.rig, x, y, yaw)
    nodes = small_map.tables["nodes"]
    camera_xy = dict(
        zip(nodes["node_id"].to_pylist(), np.column_stack([nodes["position_x"], nodes["position_y"]]), strict=True)
    )
    # Cameras sit within a camera_mount_radius of their keyframe's base.
    reach = localizer.config.prior_radius_m + DEFAULT_ROBOT.camera_mount_radius + 1e-6
    far_away = keyframes[np.argmax(np.linalg.norm(keyframes[:, :2] - (x, y), axis=1)), :2]
    for prior_xy in ((x + 0.3, y), far_away):
        prior = small_map.world_from_map.inverse() * _pose(*prior_xy, yaw)
        fix = localizer.localize(pictures, prior, prior_sigma_m=0.3)
        assert fix.candidates
        assert all(np.linalg.norm(camera_xy[n] - prior.translation[:2]) <= reach for n in fix.candidates)
    assert fix.confidence < 0.5 or pose_error(small_map.world_from_map * fix.map_from_base, _pose(x, y, yaw))[0] > 1
    near = localizer.localize(pictures, small_map.world_from_map.inverse() * _pose(x + 0.3, y, yaw), 0.3)
    assert near.success and pose_error(small_map.world_from_map * near.map_from_base, _pose(x, y, yaw))[0] < 1.0


def test_node_features_hold_points_that_project_onto_their_keypoints(small_map: SmallMap) -> None:
    nodes = small_map.tables["nodes"].to_pylist()
    features = small_map.tables["node_features"]
    cameras = {c.name: c.colmap_camera() for c in small_map.rig}
    assert set(features["node_id"].to_pylist()) == {n["node_id"] for n in nodes if n["registered"]}
    errors = []
    for node in nodes:
        own = features.filter(pa.compute.equal(features["node_id"], node["node_id"]))
        map_from_camera = pycolmap.Rigid3d(
            pycolmap.Rotation3d([node[f"orientation_{a}"] for a in "xyzw"]), [node[f"position_{a}"] for a in "xyz"]
        )
        points = np.column_stack([own[f"point_{a}"].to_numpy() for a in "xyz"]).astype(float)
        in_camera = (map_from_camera.inverse().matrix() @ np.column_stack([points, np.ones(len(points))]).T).T
        projected = cameras[node["camera"]].img_from_cam(in_camera)
        errors.append(np.linalg.norm(projected - np.column_stack([own["x"], own["y"]]), axis=1))
    assert np.median(np.concatenate(errors)) < 1.0  # px: bundle-adjusted points on their keypoints


def test_node_features_survive_an_encrypted_round_trip(small_map: SmallMap, tmp_path: Path) -> None:
    key = parse_key(generate_key())
    write_map(tmp_path / "map", small_map.tables, None, {"site": "office-0"}, key)
    stored = (tmp_path / "map" / "node_features.parquet.enc").read_bytes()
    descriptor = small_map.tables["node_features"]["descriptor"][0].as_py()
    assert descriptor not in stored and b"PAR1" not in stored
    features = read_map(tmp_path / "map", key).node_features
    assert features.num_rows > 1000 and features.equals(small_map.tables["node_features"])


def test_the_place_that_explains_every_camera_outranks_one_that_explains_two_by_more_matches() -> None:
    # Inliers and map points in view per camera (front, rear left, rear right) of two places tried for one query of
    # the tuning warehouse (warehouse-42, 38.7 s into its query tour): the rear cameras looked along racks that every
    # aisle repeats.
    look_alike = _PlaceFix(pycolmap.Rigid3d(), np.array([4, 164, 179]), np.array([225, 621, 510]), np.eye(6))
    truth = _PlaceFix(pycolmap.Rigid3d(), np.array([115, 32, 59]), np.array([261, 167, 367]), np.eye(6))

    assert look_alike.inliers > truth.inliers
    assert truth.evidence > look_alike.evidence
    weight = LocalizerConfig().view_share_weight
    assert truth.score(weight) > look_alike.score(weight)


def test_the_place_that_matches_what_its_view_should_hold_outranks_a_look_alike_with_more_evidence() -> None:
    # Inliers and the place's map points in view, per camera, of the look-alike aisle 9.6 m away and the true place
    # for one query of warehouse-700 (its wrong answers were diagnosed, so the rule was found there; on the tuning
    # warehouse-42 it changed no answer): the look-alike matched the repeated racks and missed most of its view.
    # Without the view share the look-alike would win.
    look_alike = _PlaceFix(pycolmap.Rigid3d(), np.array([266, 73, 31]), np.array([611, 382, 807]), np.eye(6))
    truth = _PlaceFix(pycolmap.Rigid3d(), np.array([81, 22, 76]), np.array([140, 76, 448]), np.eye(6))

    assert look_alike.evidence > truth.evidence
    weight = LocalizerConfig().view_share_weight
    assert truth.score(weight) > look_alike.score(weight)


def test_a_camera_sees_the_points_ahead_of_it_within_range_and_inside_its_picture(localizer: Localizer) -> None:
    rig_from_world = pycolmap.Rigid3d()  # the rig at the map's origin
    ahead = []
    for camera in localizer.rig:
        axis = camera.base_from_camera.rotation * np.array([0.0, 0.0, 1.0])
        origin = camera.base_from_camera.translation
        ahead.append([origin + d * axis for d in (1.0, 5.0, 15.0, 30.0, -5.0)])  # 30 m is too far, -5 m behind
    visible = localizer._visible(rig_from_world, np.concatenate(ahead))

    assert (visible >= 3).all()  # each camera's own three points; neighbours may see some of theirs
    alone = localizer._visible(rig_from_world, np.array(ahead[0]))
    assert alone[0] == 3
