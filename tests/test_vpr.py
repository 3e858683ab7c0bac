"""The learned VPR descriptor: it learns places from simulator pictures, round-trips, keeps the descriptor contract."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from models.descriptors import DESCRIPTORS, TinyImageDescriptor, VprDescriptor
from models.planning import occupancy_grid
from models.vpr import (
    CameraPoses,
    VprConfig,
    VprModel,
    VprTrainConfig,
    VprTraining,
    multi_similarity_loss,
    positive_lists,
    retrieval_recall,
    train_vpr,
)
from schemas.robot import DEFAULT_ROBOT, camera_mount
from schemas.topics import CAMERA_YAWS
from sim.simulator import Simulator

SMALL = replace(DEFAULT_ROBOT, camera_width=80, camera_height=60)
TINY = VprConfig(input_width=64, input_height=48, channels=(8, 16, 32, 32), out_channels=16, out_rows=4)
TRAIN = VprTrainConfig(steps=60, places_per_batch=16, views_per_place=4, learning_rate=3e-3)
PLACES, VIEWS = 30, 5  # views of each place: all but the last train, the last is a query


@dataclass(frozen=True)
class Views:
    images: np.ndarray  # (N, 60, 80, 3) uint8, front camera
    poses: CameraPoses
    place: np.ndarray  # (N,) which place each view was jittered around


def render_views(world_dir: Path, places: int, views: int, seed: int = 0) -> Views:
    """`views` front-camera pictures around each of `places` random free poses of a world: each within 0.5 m and
    12 degrees of its place, where the robot's centre is at least 0.5 m from any obstacle."""
    sim = Simulator(world_dir, SMALL)
    try:
        world, rng = sim.world, np.random.default_rng(seed)
        free = distance_transform_edt(~occupancy_grid(world)) * world.grid.resolution > 0.5
        cells = np.argwhere(free)
        (mount_x, mount_y, _), _ = camera_mount(SMALL, "front")
        images, xy, yaw, place = [], [], [], []
        for p in range(places):
            centre, heading = world.grid.cell_to_world(cells[rng.integers(len(cells))]), rng.uniform(-np.pi, np.pi)
            for _ in range(views):
                while True:  # jitter within the free space
                    x, y = centre + rng.uniform(-0.35, 0.35, 2)
                    if free[tuple(world.grid.world_to_cell(np.array([x, y])))]:
                        break
                turn = heading + math.radians(rng.uniform(-12, 12))
                sim.place(x, y, turn)
                images.append(sim.render("front")[0])
                c, s = math.cos(turn), math.sin(turn)
                xy.append((x + c * mount_x - s * mount_y, y + s * mount_x + c * mount_y))
                yaw.append(turn + CAMERA_YAWS["front"])
                place.append(p)
        return Views(np.stack(images), CameraPoses.of(xy, yaw, np.zeros(len(yaw), int)), np.array(place))
    finally:
        sim.close()


@pytest.fixture(scope="module")
def views(office_world: Path) -> Views:
    return render_views(office_world, PLACES, VIEWS)


@pytest.fixture(scope="module")
def split(views: Views) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training views and of the queries (one per place)."""
    query = np.arange(len(views.place)) % VIEWS == VIEWS - 1
    return np.flatnonzero(~query), np.flatnonzero(query)


@pytest.fixture(scope="module")
def trained(views: Views, split: tuple[np.ndarray, np.ndarray]) -> VprTraining:
    train, _ = split
    return train_vpr(views.images[train], views.poses[train], TRAIN, TINY, progress=False)


def test_training_loss_falls(trained: VprTraining) -> None:
    losses = np.array(trained.losses)
    assert len(losses) == TRAIN.steps and np.isfinite(losses).all()
    assert losses[-10:].mean() < 0.25 * losses[:10].mean()


def test_a_small_batch_is_overfit(views: Views) -> None:
    """Two views of each of eight places, trained on as one fixed batch: the mined pairs end up (nearly) all
    satisfied. The loss is read in training mode, where batch norm uses this batch's statistics."""
    batch = np.flatnonzero(np.arange(len(views.place)) % VIEWS < 2)[:16]
    poses = views.poses[batch]
    positive = torch.from_numpy(views.place[batch][:, None] == views.place[batch][None]).fill_diagonal_(False)
    negative = torch.from_numpy(~poses[:, None].close(poses[None], TRAIN.negative_distance_m, TRAIN.negative_yaw_deg))
    torch.manual_seed(0)
    model = VprModel(TINY)
    pictures = model.normalise(model.to_input(views.images[batch]))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = multi_similarity_loss(model(pictures), positive, negative, TRAIN)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[0] > 0.5 and np.mean(losses[-10:]) < 0.05 * losses[0]


def test_trained_descriptor_retrieves_its_places(
    views: Views, split: tuple[np.ndarray, np.ndarray], trained: VprTraining
) -> None:
    """Leave-one-out on the training views beats the tiny-image baseline (chance is about 3 %); the held-out
    views (one per place) find their place far above chance too."""
    train, query = split
    database = trained.model.describe(views.images[train])
    tiny = TinyImageDescriptor().describe(views.images[train])

    def leave_one_out(descriptors: np.ndarray) -> float:
        poses = views.poses[train]
        return retrieval_recall(descriptors, poses, descriptors, poses, exclude_same=True)[1]

    assert leave_one_out(database) >= 0.9 and leave_one_out(database) > leave_one_out(tiny)
    queries = trained.model.describe(views.images[query])
    recall = retrieval_recall(queries, views.poses[query], database, views.poses[train])
    assert recall[1] >= 0.7 and recall[5] >= recall[1]


def test_checkpoint_round_trips(views: Views, trained: VprTraining, tmp_path: Path) -> None:
    trained.save(tmp_path / "vpr")
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in (tmp_path / "vpr").iterdir()}
    assert f"steps: {TRAIN.steps}" in (tmp_path / "vpr" / "README.md").read_text()
    loaded = VprModel.from_pretrained(tmp_path / "vpr")
    assert loaded.config == TINY
    expected = trained.model.describe(views.images)
    assert np.array_equal(loaded.describe(views.images), expected)
    assert np.array_equal(DESCRIPTORS["vpr"](tmp_path / "vpr").describe(list(views.images)), expected)


def test_descriptor_contract(views: Views, trained: VprTraining, tmp_path: Path) -> None:
    trained.save(tmp_path / "vpr")
    descriptor = DESCRIPTORS["vpr"](tmp_path / "vpr", batch_size=16)
    rows = descriptor.describe(list(views.images[:40]))
    assert descriptor.dim == TINY.dim == 64
    assert rows.shape == (40, descriptor.dim) and rows.dtype == np.float32
    assert np.linalg.norm(rows, axis=1) == pytest.approx(1.0, abs=1e-5)
    # A picture's row does not depend on the others in its call, nor on the batches it is cut into.
    assert np.allclose(descriptor.describe(list(views.images[:3])), rows[:3], atol=1e-5)
    # Any picture size is shrunk to the network's input, as the map's 160 x 120 keyframes will be.
    larger = np.kron(views.images[:2], np.ones((2, 2, 1), np.uint8))
    assert np.allclose(descriptor.describe(list(larger)), rows[:2], atol=0.05)
    assert descriptor.describe([]).shape == (0, descriptor.dim)
    with pytest.raises(ValueError, match="uint8"):
        descriptor.describe([views.images[0].astype(np.float32)])
    with pytest.raises(FileNotFoundError, match="train_vpr"):
        VprDescriptor(tmp_path / "missing")


def test_pairs_follow_group_distance_and_heading() -> None:
    """Positives need one building, < 1.5 m and < 30 degrees, headings compared across the +-pi seam."""
    poses = CameraPoses.of(
        [(0, 0), (1, 0), (1, 0), (0, 0), (0, 2), (0, 0)],
        [math.pi - 0.1, -math.pi + 0.1, 0.0, math.pi, math.pi, math.pi],
        [0, 0, 0, 0, 0, 1],
    )
    found = positive_lists(poses, 1.5, 30.0)
    assert [sorted(p.tolist()) for p in found] == [[1, 3], [0, 3], [], [0, 1], [], []]


def test_multi_similarity_loss_vanishes_only_when_places_separate() -> None:
    positive = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    negative = ~positive & ~torch.eye(3, dtype=torch.bool)
    separated = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    swapped = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert multi_similarity_loss(separated, positive, negative, TRAIN).item() == 0.0
    assert multi_similarity_loss(swapped, positive, negative, TRAIN).item() > 0.5
