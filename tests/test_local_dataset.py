"""Astra-Local's training set (`astra dataset local`): tours in the lake into frames and windows, with the robot's
own filter and costmap replayed and the truth beside them."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.dataset as pads
import pytest
from PIL import Image

from datasets.lake import Lake
from datasets.local_windows import LocalWindows
from datasets.tours import record_tour
from models.astra_local.crops import costmap_codes, true_crops
from models.costmap import FREE as COSTMAP_FREE
from models.costmap import OCCUPIED as COSTMAP_OCCUPIED
from models.navigation import se2
from models.planning import ClearanceMap
from pipelines.ingest import ingest
from pipelines.local_dataset import build_local_dataset
from schemas.local_dataset import (
    FRAMES,
    FRAMES_DIR,
    LOCAL_GEOMETRY,
    OCCUPIED,
    UNKNOWN,
    WINDOWS,
    WINDOWS_DIR,
    LocalDatasetManifest,
)
from schemas.robot import DEFAULT_ROBOT
from schemas.topics import DEPTH_OUTPUTS
from schemas.world import GridSpec

SECONDS = 14.0
ROBOT = replace(DEFAULT_ROBOT, camera_width=160, camera_height=120)  # twice the stored pictures' size


@pytest.fixture(scope="module")
def lake(office_world: Path, hospital_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tour of the office (static) and one of the hospital with people walking, both with depth."""
    root = tmp_path_factory.mktemp("local")
    for world in (office_world, hospital_world):
        record_tour(world, root / "logs" / f"{world.name}.mcap", SECONDS, ROBOT)
    summary = ingest([root / "logs"], root / "lake", progress=False)
    assert summary.episodes == 2 and not summary.quarantined
    return root / "lake"


@pytest.fixture(scope="module")
def dataset(lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local-set") / "set"
    summary = build_local_dataset(lake, out, progress=False)
    assert (summary.sites, summary.episodes) == (2, 2)
    return out


def _windows(dataset: Path) -> list[dict]:
    return pads.dataset(dataset / WINDOWS_DIR).to_table().to_pylist()


def test_a_frame_every_half_second_and_a_window_at_each_with_the_manifest_naming_its_lake(
    dataset: Path, lake: Path
) -> None:
    manifest = LocalDatasetManifest.read(dataset)
    g = manifest.local_geometry
    frames = pads.dataset(dataset / FRAMES_DIR).to_table()
    windows = pads.dataset(dataset / WINDOWS_DIR).to_table()
    assert frames.schema.equals(FRAMES) and windows.schema.equals(WINDOWS)
    assert manifest.lake_version == Lake(lake).version
    assert manifest.counts == {"frames": frames.num_rows, "windows": windows.num_rows}
    assert manifest.sites["hospital-1"]["dynamic_episodes"] == manifest.sites["hospital-1"]["episodes"]
    assert manifest.sites["office-0"]["dynamic_episodes"] == []
    for episode in manifest.episodes:
        stamps = np.sort(frames.filter(pads.field("episode_id") == episode)["t_ns"].to_numpy())
        assert np.allclose(np.diff(stamps), g.frame_period_s * 1e9, atol=2e6)
        assert len(stamps) >= SECONDS / g.frame_period_s - 3
        mine = windows.filter(pads.field("episode_id") == episode).to_pylist()
        # One window at each frame with F frames before it and the expert's horizon after it.
        assert len(mine) == len(stamps) - (g.frames - 1) - math.ceil(g.horizon_s / g.frame_period_s)
        for window in mine:
            assert window["frame_t_ns"] == [s for s in stamps.tolist() if s <= window["t_ns"]][-g.frames :]


def test_frames_hold_every_cameras_pictures_and_the_samples_between_frames(dataset: Path) -> None:
    g = LocalDatasetManifest.read(dataset).local_geometry
    frames = pl.read_parquet(dataset / FRAMES_DIR).sort("episode_id", "t_ns")
    for frame in frames.filter(pl.col("t_ns") > pl.col("t_ns").min().over("episode_id")).iter_rows(named=True):
        assert len(frame["jpeg"]) == len(frame["depth"]) == len(frame["k"]) == 3
        picture = Image.open(io.BytesIO(frame["jpeg"][0]))
        assert picture.size == (g.image_width, g.image_height)
        depth = np.frombuffer(frame["depth"][0], "<f2").reshape(g.image_height, g.image_width)
        assert np.nanmedian(depth) > 0.3
        # The matrix at the stored size: the recorded one over the factor (2).
        assert frame["k"][0][0] == pytest.approx(ROBOT.focal_px / 2)
        assert frame["k"][0][2] == pytest.approx((ROBOT.camera_width - 1) / 2 / 2, abs=0.5)
        assert len(frame["imu"]) == 6 * len(frame["imu_t_ns"]) and len(frame["imu_t_ns"]) == pytest.approx(50, abs=2)
        assert len(frame["wheels"]) == 4 * len(frame["wheels_t_ns"])
        assert len(frame["wheels_t_ns"]) == pytest.approx(25, abs=2)


def test_the_filters_motion_between_frames_follows_the_truth(dataset: Path) -> None:
    frames = pl.read_parquet(dataset / FRAMES_DIR).sort("episode_id", "t_ns")
    errors, travelled = [], 0.0
    for _, rows in frames.group_by("episode_id"):
        odom = rows.select("odom_x", "odom_y", "odom_yaw").rows()
        true = rows.select("true_x", "true_y", "true_yaw").rows()
        for i in range(1, len(odom)):
            seen = se2.compose(se2.inverse(odom[i - 1]), odom[i])
            moved = se2.compose(se2.inverse(true[i - 1]), true[i])
            errors.append(math.hypot(seen[0] - moved[0], seen[1] - moved[1]))
            travelled += math.hypot(*moved[:2])
    assert travelled > 5.0
    assert sum(errors) < 0.05 * travelled


def test_the_expert_trajectory_and_goal_are_the_true_poses_ahead_in_the_robots_frame(dataset: Path) -> None:
    g = LocalDatasetManifest.read(dataset).local_geometry
    frames = pl.read_parquet(dataset / FRAMES_DIR)
    true = {
        (r["episode_id"], r["t_ns"]): (r["true_x"], r["true_y"], r["true_yaw"]) for r in frames.iter_rows(named=True)
    }
    per_frame = round(g.frame_period_s / g.waypoint_period_s)
    checked = 0
    for window in _windows(dataset):
        trajectory = np.reshape(window["trajectory"], (g.waypoints, 3))
        later = (window["episode_id"], window["t_ns"] + round(g.frame_period_s * 1e9))
        if later not in true:  # frames lie on depth stamps: one may be a stamp off the half-second grid
            continue
        expected = se2.compose(se2.inverse(true[window["episode_id"], window["t_ns"]]), true[later])
        assert trajectory[per_frame - 1] == pytest.approx(expected, abs=0.03)
        checked += 1
        # The goal lies on the path ahead, goal_ahead_m along it: no farther, closer where the path bends.
        assert math.hypot(window["goal_x"], window["goal_y"]) <= g.goal_ahead_m + 0.01
        ahead = [
            se2.compose(se2.inverse(true[window["episode_id"], window["t_ns"]]), pose)
            for (episode, t), pose in true.items()
            if episode == window["episode_id"] and t > window["t_ns"]
        ]
        assert min(math.hypot(x - window["goal_x"], y - window["goal_y"]) for x, y, _ in ahead) < 0.3
    assert checked > 20


def test_the_robots_costmap_crops_lie_on_the_true_obstacles(dataset: Path) -> None:
    """What the depth costmap marks is where the truth has obstacles: the crops of both share the ego frame."""
    g = LocalDatasetManifest.read(dataset).local_geometry
    near, marked = 0, 0
    for window in _windows(dataset):
        codes = np.frombuffer(window["occupancy"], np.uint8).reshape(g.frames, g.grid, g.grid)[-1]
        esdf = np.frombuffer(window["esdf"], "<f2").reshape(2, g.grid, g.grid)[0]
        seen = codes == OCCUPIED
        marked += int(seen.sum())
        near += int((esdf[seen] <= 2 * g.resolution).sum())
    assert marked > 500
    assert near / marked > 0.95


def test_the_expert_keeps_clear_of_the_true_obstacles(dataset: Path) -> None:
    windows = LocalWindows(dataset)
    g = windows.geometry
    assert len(windows) == len(windows.index)
    half = g.half_extent_m
    clearances = []
    for i in range(len(windows)):
        item = windows[i]
        xy = item["trajectory"][:, :2].numpy()
        cells = np.clip(((xy + half) / g.resolution).astype(int), 0, g.grid - 1)
        clearances += item["esdf"][0].numpy()[cells[:, 1], cells[:, 0]].tolist()
        assert set(np.unique(item["occupancy"].numpy())) <= {0.0, 0.5, 1.0}
    # The expert keeps its radius (minus a cell of lattice) from every wall, piece of furniture and person.
    assert min(clearances) > DEFAULT_ROBOT.radius - 2 * g.resolution
    hospital = LocalWindows(dataset, sites=["hospital-1"])
    assert 0 < len(hospital) < len(windows) and set(hospital.index["site"]) == {"hospital-1"}


def test_crops_put_what_lies_ahead_and_left_of_the_robot_ahead_and_left() -> None:
    """The crop's lattice: rows along the robot's y, columns along its x, for costmap codes and true crops alike."""
    g = LOCAL_GEOMETRY

    def cell(x: float, y: float) -> tuple[int, int]:  # the crop's cell whose centre is at ego (x, y)
        return round((y + g.half_extent_m) / g.resolution - 0.5), round((x + g.half_extent_m) / g.resolution - 0.5)

    pose = (3.0, -2.0, math.pi / 2)
    spec = GridSpec(0.05, (-5.0, -10.0), (300, 300))  # 15 m square around the pose
    cells = np.full(spec.shape, COSTMAP_FREE, np.int8)
    cells[tuple(spec.world_to_cell(se2.apply(pose, np.array([1.05, 0.55]))))] = COSTMAP_OCCUPIED
    codes = costmap_codes(cells, spec, pose, g)
    assert codes[cell(1.05, 0.55)] == OCCUPIED and (codes == OCCUPIED).sum() == 1
    far = GridSpec(0.05, (100.0, 100.0), (10, 10))  # the costmap's window elsewhere: nothing known
    assert (costmap_codes(cells[:10, :10], far, pose, g) == UNKNOWN).all()

    posts = np.zeros(spec.shape, bool)
    posts[tuple(spec.world_to_cell(se2.apply(pose, np.array([-2.05, 0.05]))))] = True  # a post behind
    person = np.array([[*se2.apply(pose, np.array([1.05, 0.55])), 0.3]])  # ahead and to the left
    occupied, esdf = true_crops(posts, ClearanceMap.from_occupancy(posts, spec), pose, person, g)
    assert occupied[cell(1.05, 0.55)] and not occupied[cell(-1.05, 0.55)] and not occupied[cell(1.05, -0.55)]
    assert esdf[cell(2.05, 0.55)] == pytest.approx(1.0 - 0.3, abs=0.01)  # to the person's edge
    assert occupied[cell(-2.05, 0.05)] and esdf[cell(-2.05, 0.05)] == 0
    assert esdf[cell(-1.05, 0.05)] == pytest.approx(1.0, abs=0.06)  # to the post, a 5 cm cell


def test_the_command_refuses_tours_without_depth(office_world: Path, tmp_path: Path) -> None:
    record_tour(office_world, tmp_path / "logs" / "tour.mcap", 3.0, ROBOT, leave_out=DEPTH_OUTPUTS)
    ingest([tmp_path / "logs"], tmp_path / "lake", progress=False)
    astra = Path(sys.executable).parent / "astra"
    proc = subprocess.run(
        [astra, "dataset", "local", "--lake", tmp_path / "lake", "--out", tmp_path / "set"],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--depth" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "set").exists()
