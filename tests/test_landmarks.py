"""Landmark extraction from the annotated world and simulator segmentation; the baseline global descriptor."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import mujoco
import numpy as np
import pytest

from models.descriptors import DESCRIPTORS, TinyImageDescriptor
from models.landmarks import LandmarkObservations, NodeView, describe
from models.navigation import se2
from schemas.map import TABLES, TEXT_EMBEDDING_DIM
from schemas.robot import RobotConfig
from schemas.topics import CAMERA_YAWS
from schemas.world import Landmark, World
from sim.annotations import AnnotatedLandmarkExtractor
from sim.robot import BODY, camera_name
from sim.simulator import Simulator

SMALL = RobotConfig(camera_width=160, camera_height=120)
HALF_FOV = math.radians(SMALL.camera_hfov_deg) / 2


@pytest.fixture(scope="module")
def extractor(office_world: Path) -> AnnotatedLandmarkExtractor:
    return AnnotatedLandmarkExtractor(office_world, min_pixels=20, config=SMALL)


@pytest.fixture(scope="module")
def sim(office_world: Path) -> Iterator[Simulator]:
    sim = Simulator(office_world, SMALL)
    yield sim
    sim.close()


def corridor_sign(world: World) -> Landmark:
    corridor = next(r for r in world.rooms if r.kind == "corridor")
    return next(lm for lm in world.landmarks if lm.kind == "sign" and lm.room_id == corridor.id)


def facing(landmark: Landmark, distance: float, turn: float = 0.0) -> tuple[float, float, float]:
    """A base pose `distance` in front of a landmark, looking at it, then turned left by `turn`."""
    x, y, _ = landmark.box.center
    return (x + distance * math.cos(landmark.yaw), y + distance * math.sin(landmark.yaw), landmark.yaw + math.pi + turn)


def project(sim: Simulator, camera: str, points: np.ndarray) -> np.ndarray:
    """(n, 3) pixel u, v in K's convention and depth of map points, from MuJoCo's own camera pose."""
    cam = sim.model.camera(camera_name(camera)).id
    local = (points - sim.data.cam_xpos[cam]) @ sim.data.cam_xmat[cam].reshape(3, 3)
    x, y, z = local[:, 0], -local[:, 1], -local[:, 2]  # MuJoCo cameras look along -z with y up
    k = np.reshape(sim.camera_info(camera).k, (3, 3))
    return np.column_stack([k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2], z])


def box_points(landmark: Landmark, steps: int, extent: float = 1.0) -> np.ndarray:
    """A steps^3 grid over the landmark's box scaled by `extent` about its centre; steps=2 gives the corners."""
    grid = np.array(list(itertools.product(np.linspace(-extent, extent, steps), repeat=3)))
    return np.asarray(landmark.box.center) + grid * np.asarray(landmark.box.half_size)


def sightings(observations: LandmarkObservations) -> dict[tuple[str, str], dict]:
    return {(row["node_id"], row["landmark_id"]): row for row in observations.node_landmarks.to_pylist()}


def test_a_sign_in_front_is_seen_where_its_corners_project(
    extractor: AnnotatedLandmarkExtractor, sim: Simulator
) -> None:
    sign = corridor_sign(extractor.world)
    views = [
        NodeView("ahead", "front", facing(sign, 1.8)),
        NodeView("behind", "rear_left", facing(sign, 1.8, -CAMERA_YAWS["rear_left"])),
        NodeView("edge", "front", facing(sign, 1.8, HALF_FOV)),
    ]
    observations = extractor.extract(views)
    seen = sightings(observations)

    row = seen[("ahead", sign.id)]
    sim.place(*views[0].base_pose)
    corners = project(sim, "front", box_points(sign, 2))
    assert (corners[:, 2] > 0).all()
    # Projected box edges in K's convention sit 0.5 px before the first and after the last covered pixel centre.
    lo, hi = corners[:, :2].min(axis=0) + 0.5, corners[:, :2].max(axis=0) + 0.5
    assert (row["box_x0"], row["box_y0"]) == pytest.approx(tuple(lo), abs=1.5)
    assert (row["box_x1"], row["box_y1"]) == pytest.approx(tuple(hi), abs=1.5)
    assert 0 < row["box_x0"] < SMALL.camera_width / 2 < row["box_x1"] < SMALL.camera_width
    assert row["visible_fraction"] > 0.8
    assert seen[("behind", sign.id)]["visible_fraction"] > 0.8

    # Turned half a field of view, the sign straddles the image border: the box is cut there, and so is the fraction.
    cut = seen[("edge", sign.id)]
    assert cut["box_x1"] == SMALL.camera_width
    assert cut["visible_fraction"] < row["visible_fraction"] / 2

    landmark = next(r for r in observations.landmarks.to_pylist() if r["landmark_id"] == sign.id)
    corridor = extractor.world.room(sign.room_id).name
    assert (landmark["category"], landmark["text"], landmark["room"]) == ("room sign", sign.text, corridor)
    assert (landmark["position_x"], landmark["position_y"], landmark["position_z"]) == sign.box.center
    embedding = np.array(landmark["embedding"])
    assert embedding.shape == (TEXT_EMBEDDING_DIM,)
    assert embedding == pytest.approx(extractor.text_encoder.encode([describe(sign, corridor)])[0], abs=1e-5)


def test_walls_hide_landmarks_and_tables_conform(extractor: AnnotatedLandmarkExtractor, sim: Simulator) -> None:
    world = extractor.world
    views = [
        NodeView(f"{room.id}-{quarter}", "front", (*room.center, quarter * math.pi / 2))
        for room in world.rooms
        for quarter in range(4)
    ]
    observations = extractor.extract(views)
    seen = sightings(observations)

    robot = sim.model.body(BODY).id
    hidden = []
    for view in views:
        sim.place(*view.base_pose)
        camera = sim.data.cam_xpos[sim.model.camera(camera_name(view.camera)).id]
        for lm in world.landmarks:
            centre = project(sim, view.camera, np.array([lm.box.center]))[0]
            if not (centre[2] > 0 and 0 <= centre[0] < SMALL.camera_width and 0 <= centre[1] < SMALL.camera_height):
                continue
            own = sim.model.geom(f"lm_{lm.id}").id
            hits = []
            for point in box_points(lm, 3, extent=0.9):  # inside, off shared faces
                geom = np.array([-1], np.int32)
                fraction = mujoco.mj_ray(sim.model, sim.data, camera, point - camera, None, 1, robot, geom)
                hits.append(geom[0] != own and 0 <= fraction < 0.99)
            if all(hits):
                hidden.append((view.node_id, lm.id))
    # Ray casts say these landmarks lie in the frustum but wholly behind something else.
    assert len(hidden) >= 50
    assert not set(hidden) & set(seen)
    assert len(seen) >= 20

    for name in ("landmarks", "node_landmarks"):
        assert getattr(observations, name).schema == TABLES[name]
    ids = observations.landmarks["landmark_id"].to_pylist()
    assert len(ids) == len(set(ids)) and {lm for _, lm in seen} == set(ids)
    empty = extractor.extract([])
    assert (empty.landmarks.num_rows, empty.node_landmarks.num_rows) == (0, 0)
    assert empty.node_landmarks.schema == TABLES["node_landmarks"]


def test_views_posed_in_a_drifted_map_see_from_their_true_pose_and_landmarks_land_in_the_map(
    extractor: AnnotatedLandmarkExtractor,
) -> None:
    """`map` is the first tour's odometry frame, off the world by its drift: here 20 degrees and metres away."""
    sign = corridor_sign(extractor.world)
    map_from_world = (3.0, -2.0, math.radians(20.0))
    ahead = facing(sign, 1.8)
    side = (-math.sin(ahead[2]) * 0.4, math.cos(ahead[2]) * 0.4)  # 0.4 m to the robot's left
    true_poses = [ahead, facing(sign, 2.6), (ahead[0] + side[0], ahead[1] + side[1], ahead[2])]
    views = [
        NodeView(f"n{i}", "front", se2.compose(map_from_world, pose), world_pose=pose)
        for i, pose in enumerate(true_poses)
    ]
    observations = extractor.extract(views)
    assert {("n0", sign.id), ("n1", sign.id), ("n2", sign.id)} <= set(sightings(observations))
    # What each node sees is what its camera saw, from where it truly stood.
    in_the_world = extractor.extract([NodeView(f"n{i}", "front", pose) for i, pose in enumerate(true_poses)])
    assert observations.node_landmarks.equals(in_the_world.node_landmarks)
    landmark = next(r for r in observations.landmarks.to_pylist() if r["landmark_id"] == sign.id)
    expected = se2.apply(map_from_world, np.array(sign.box.center[:2]))
    assert (landmark["position_x"], landmark["position_y"]) == pytest.approx(tuple(expected), abs=1e-6)
    assert landmark["position_z"] == pytest.approx(sign.box.center[2])


def test_an_image_of_another_size_is_refused(extractor: AnnotatedLandmarkExtractor) -> None:
    view = NodeView("n0", "front", (1.0, 1.0, 0.0), np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(ValueError, match="extractor renders"):
        extractor.extract([view])


def test_tiny_image_descriptor_tells_places_apart(sim: Simulator) -> None:
    descriptor = DESCRIPTORS["tiny_image"]()

    def pictures(x: float, y: float, yaw: float) -> list[np.ndarray]:
        sim.place(x, y, yaw)
        return [sim.render(camera)[0] for camera in sim.config.cameras]

    rooms = sim.world.rooms
    here = np.stack([descriptor.describe(pictures(*room.center, 0.3)) for room in rooms])
    there = np.stack([descriptor.describe(pictures(*room.center, 0.3 + math.radians(5))) for room in rooms])

    assert here.shape == (len(rooms), len(sim.config.cameras), descriptor.dim) and here.dtype == np.float32
    assert np.linalg.norm(here, axis=2) == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(TinyImageDescriptor().describe(pictures(*rooms[0].center, 0.3)), here[0])
    # Each room's view matches its own 5-degree turn better than any other room's view, summed over the rig's
    # cameras as retrieval sums them (models.localization).
    similarity = np.einsum("icd,jcd->ij", here, there)
    others = np.einsum("icd,jcd->ij", here, here) - 10 * np.eye(len(rooms))
    assert (np.diag(similarity) > others.max(axis=1)).all()
    assert descriptor.describe([]).shape == (0, descriptor.dim)
