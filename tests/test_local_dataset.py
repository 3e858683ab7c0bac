"""Astra-Local's training set (`astra dataset local`): tours in the lake into frames and windows, with the robot's
own filter and costmap replayed and the truth beside them."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.dataset as pads
import pytest
import rerun as rr
import torch
from PIL import Image

from astra.cli import main
from datasets.lake import Lake
from datasets.local_windows import LocalWindows, Mirrored, mirrored
from datasets.odometry_sequences import BEV_CACHE, HISTORY, OdometrySequences
from datasets.tours import record_tour
from models.astra_local.bev import BEV_CHANNELS, lift_frame
from models.astra_local.crops import clearance_at_robot, costmap_codes, true_crops
from models.astra_local.encoder4d import Encoder4D, Encoder4DConfig
from models.astra_local.odometry import ODOMETRY_VARIANTS, AstraOdometry
from models.astra_local.planner import LocalPlannerModel
from models.astra_local.serving import AstraPlanner, PlannerObservation
from models.astra_local.variants import DEFAULT_PLANNER, PLANNER_VARIANTS
from models.costmap import FREE as COSTMAP_FREE
from models.costmap import OCCUPIED as COSTMAP_OCCUPIED
from models.navigation import se2
from models.planning import ClearanceMap, occupancy_grid
from pipelines.dagger import DaggerRecorder, PendingWindow, touching
from pipelines.ingest import ingest
from pipelines.local_dataset import build_local_dataset, replay_digest
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
from sim.expert import ExpertConfig
from sim.perturbation import PerturbationConfig
from sim.world import generate_world
from viz.local import ego_pixels

SECONDS = 14.0
ROBOT = replace(DEFAULT_ROBOT, camera_width=160, camera_height=120)  # twice the stored pictures' size
ASTRA = Path(sys.executable).parent / "astra"


@pytest.fixture(scope="module")
def lake(office_world: Path, hospital_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tour of the office (static) and one of the hospital with people walking, both with depth, and one of the
    office with the expert's commands perturbed every three seconds."""
    root = tmp_path_factory.mktemp("local")
    for world in (office_world, hospital_world):
        record_tour(world, root / "logs" / f"{world.name}.mcap", SECONDS, ROBOT)
    perturbation = PerturbationConfig(gap_s=(2.5, 3.5))
    record_tour(office_world, root / "logs" / "perturbed.mcap", SECONDS, ROBOT, seed=1, perturbation=perturbation)
    summary = ingest([root / "logs"], root / "lake", progress=False)
    assert summary.episodes == 3 and not summary.quarantined
    return root / "lake"


@pytest.fixture(scope="module")
def dataset(lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local-set") / "set"
    summary = build_local_dataset(lake, out, progress=False)
    assert (summary.sites, summary.episodes) == (2, 3)
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
    events = Lake(lake).table("events").filter(pl.col("kind") == "perturbation").collect()
    assert events["episode_id"].n_unique() == 1 and events.height >= 2
    for episode in manifest.episodes:
        stamps = np.sort(frames.filter(pads.field("episode_id") == episode)["t_ns"].to_numpy())
        assert np.allclose(np.diff(stamps), g.frame_period_s * 1e9, atol=2e6)
        assert len(stamps) >= SECONDS / g.frame_period_s - 3
        mine = windows.filter(pads.field("episode_id") == episode).to_pylist()
        # One window at each frame with F frames before it and the expert's horizon after it, but where a
        # perturbation of the expert falls in that horizon.
        horizon_ns = max(g.horizon_s, g.esdf_ahead_s) * 1e9
        bends = events.filter(pl.col("episode_id") == episode)
        spans = np.column_stack([bends["t_ns"], bends["t_ns"] + bends["value"] * 1e9])
        wanted = [
            t
            for t in stamps[g.frames - 1 : len(stamps) - math.ceil(g.horizon_s / g.frame_period_s)]
            if not ((spans[:, 0] < t + horizon_ns) & (spans[:, 1] > t)).any()
        ]
        assert [w["t_ns"] for w in sorted(mine, key=lambda w: w["t_ns"])] == wanted
        assert len(spans) == 0 or 0 < len(wanted) < len(stamps) - g.frames
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
    proc = subprocess.run(
        [ASTRA, "dataset", "local", "--lake", tmp_path / "lake", "--out", tmp_path / "set"],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--depth" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "set").exists()


# --- the odometry head's sequences -------------------------------------------------------------------------------


def test_odometry_sequences_carry_each_steps_samples_and_true_motion(dataset: Path) -> None:
    sequences = OdometrySequences(dataset)
    frames = pl.read_parquet(dataset / FRAMES_DIR)
    assert len(sequences) == frames.height - frames["episode_id"].n_unique()  # a tour's first frame begins no step
    first = sequences.batch(np.array([0]))
    assert first["valid"][0].tolist() == [False] * (HISTORY - 1) + [True]
    assert not first["bev"][0, :-2].any() and first["bev"][0, -2:].any()  # only the tour's two frames
    assert not first["imu"][0, :-1].any() and not first["wheels"][0, :-1].any()
    assert first["bev"].shape[-3:] == (BEV_CHANNELS, LOCAL_GEOMETRY.grid, LOCAL_GEOMETRY.grid)
    late = sequences.batch(np.array([len(sequences) - 1]))  # the last tour's last frame: a full history
    assert late["valid"].all()
    driven = turned = 0.0
    for episode in sequences.episodes:
        for n in range(1, len(episode)):
            step = sequences.sequence(sequences.episodes.index(episode), n)
            true = se2.compose(se2.inverse(tuple(episode.true[n - 1])), tuple(episode.true[n]))
            np.testing.assert_allclose(step["motion"][-1], true, atol=1e-5)
            # The wheels' last travel is the step's distance, and the gyro's integral its turn (nominal radius,
            # episode's sensor errors, slip: a few per cent).
            wheels = step["wheels"][-1, -1, :2].mean()
            assert abs(wheels - math.hypot(*true[:2])) < 0.02 + 0.05 * abs(wheels)
            gyro = step["imu"][-1, :, 2].mean() * LOCAL_GEOMETRY.frame_period_s
            assert abs(gyro - true[2]) < 0.02 + 0.05 * abs(true[2])
            driven, turned = driven + abs(wheels), turned + abs(true[2])
    assert driven > 5.0 and turned > 0.5  # the checks above saw the robot drive and turn


def test_lifted_frames_are_cached_beside_the_dataset_and_reused(dataset: Path) -> None:
    sequences = OdometrySequences(dataset)
    cached = sorted((dataset / BEV_CACHE).glob("*.npy"))
    assert [p.stem for p in cached] == sorted(e.episode_id for e in sequences.episodes)
    marked = np.load(cached[0])
    marked[0, 0, 0, 0] = 0.5  # a mark only a reread cache carries
    np.save(cached[0], marked)
    again = OdometrySequences(dataset)
    episode = next(e for e in again.episodes if e.episode_id == cached[0].stem)
    assert episode.bev[0, 0, 0, 0] == np.float16(0.5)
    cached[0].unlink()  # the next reader lifts it again


def test_a_wall_ahead_lifts_into_the_obstacle_channel_at_its_distance() -> None:
    g = LOCAL_GEOMETRY
    width, height = g.image_width, g.image_height
    focal = DEFAULT_ROBOT.focal_px * width / DEFAULT_ROBOT.camera_width
    k = [focal, 0.0, (width - 1) / 2, 0.0, focal, (height - 1) / 2, 0.0, 0.0, 1.0]
    mount_x = DEFAULT_ROBOT.camera_mount_radius
    wall = np.full((height, width), 2.0 - mount_x, np.float32)  # a plane facing the front camera, 2 m ahead of base
    nothing = np.full((height, width), np.nan, np.float32)
    grey = np.full((height, width, 3), 128, np.uint8)
    bev = lift_frame([wall, nothing, nothing], [grey] * 3, [k] * 3)
    rows, cols = np.nonzero(bev[0])
    assert set(cols.tolist()) <= {int(2.0 / g.resolution + g.grid / 2) - 1, int(2.0 / g.resolution + g.grid / 2)}
    assert rows.min() < g.grid / 2 - 10 < g.grid / 2 + 10 < rows.max()  # wide across y, centred on the robot
    assert np.allclose(bev[2:, rows, cols], 128 / 255, atol=1e-3)
    assert not bev[:, :, : g.grid // 2].any()  # nothing behind the robot


def _logged(rrd: Path) -> dict[str, dict[str, list]]:
    """entity -> data column -> values, in the order logged."""
    logged: dict[str, dict[str, list]] = {}
    for chunk in rr.chunk.RrdReader(rrd).stream():
        batch = chunk.to_record_batch()
        for field in batch.schema:
            if field.metadata and field.metadata.get(b"rerun:kind") == b"data":
                logged.setdefault(chunk.entity_path, {}).setdefault(field.name, []).extend(
                    v for v in batch.column(field.name).to_pylist() if v is not None
                )
    return logged


def test_viz_local_draws_each_window_with_the_truth_and_plans_where_they_lie(dataset: Path, tmp_path: Path) -> None:
    planner = tmp_path / "planner"
    LocalPlannerModel(PLANNER_VARIANTS[DEFAULT_PLANNER]).save_pretrained(planner)
    episode = LocalDatasetManifest.read(dataset).episodes[0]
    rrd = tmp_path / "local.rrd"
    argv = ["viz", "local", str(dataset), "--episode", episode, "--planner", str(planner), "--samples", "3"]
    assert main([*argv, "--save", str(rrd)]) == 0
    windows = LocalWindows(dataset, where=pl.col("episode_id") == episode)
    logged = _logged(rrd)
    g = LOCAL_GEOMETRY
    for path in ("costmap", "truth/now", "truth/ahead", "overlay/expert", "overlay/samples", "overlay/chosen"):
        assert len(next(iter(logged[f"/local/{path}"].values()))) == len(windows), path
    assert len(logged["/local/bev"]["Image:buffer"]) == len(windows)
    for n, (picture, expert, samples, chosen) in enumerate(
        zip(
            logged["/local/truth/now"]["SegmentationImage:buffer"],
            logged["/local/overlay/expert"]["LineStrips2D:strips"],
            logged["/local/overlay/samples"]["LineStrips2D:strips"],
            logged["/local/overlay/chosen"]["LineStrips2D:strips"],
            strict=True,
        )
    ):
        window = windows[n]
        image = np.asarray(picture, np.uint8).reshape(g.grid, g.grid)
        # Every occupied cell of the truth is drawn occupied at the pixel of its centre (x right, y up).
        rows, cols = np.nonzero(window["true_occupancy"][0].numpy())
        centres = np.column_stack([(cols + 0.5 - g.grid / 2) * g.resolution, (rows + 0.5 - g.grid / 2) * g.resolution])
        pixels = np.floor(ego_pixels(centres, g)).astype(int)
        assert (image[pixels[:, 1], pixels[:, 0]] == 2).all()
        # The expert's line is its trajectory from the robot, at the same pixels.
        drawn = np.asarray(expert[0])
        np.testing.assert_allclose(drawn[1:], ego_pixels(window["trajectory"][:, :2].numpy(), g), atol=1e-4)
        assert drawn[0] == pytest.approx([g.grid / 2, g.grid / 2])
        assert len(samples) == 3 and any(np.allclose(chosen[0], s) for s in samples)
    ahead = logged["/local/overlay/expert"]["LineStrips2D:strips"][-1][0][-1]
    assert ahead[0] > g.grid / 2  # the expert drives forward: to the right of the robot in the picture


def test_train_local_trains_the_odometry_variants_and_the_4d_encoder_and_eval_odometry_scores_them(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The odometry variants train on the office's tours over one frozen vision encoder, are scored on the
    hospital's against the filter, and `astra eval odometry` runs them and the filter on a tour of a building of its
    own. The 4D encoder trains on the office's windows and is scored on the hospital's, with people."""
    weights = tmp_path / "weights"
    argv = ["train", "local", "--dataset", str(dataset), "--out", str(weights), "--planners", "none",
            "--odometry-steps", "3", "--encoder-steps", "3", "--encoder4d-steps", "2",
            "--holdout-seeds", "1"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary["odometry"]) == set(ODOMETRY_VARIANTS) and "planners" not in summary
    encoder4d = summary["encoder4d"]
    assert encoder4d["steps"] == 2 and encoder4d["data"]["held_out_seeds"] == [1]
    held_out = encoder4d["held_out"]["out_of_distribution"]
    ious = {"iou_now", "iou_1s", "iou_now_seen", "iou_1s_seen", "iou_1s_moving", "iou_1s_moving_held_still"}
    assert set(held_out) == {"windows", *ious}
    assert held_out["windows"] > 0 and "in_distribution" not in encoder4d["held_out"]
    assert Encoder4D.from_pretrained(weights / "encoder4d").config == Encoder4DConfig()
    encoder = AstraOdometry.from_pretrained(weights / "odometry" / "vision")
    torch.manual_seed(0)  # the trainer's seed: the encoder as initialised, before its steps
    untrained = AstraOdometry(ODOMETRY_VARIANTS["vision"])
    trained = zip(encoder.vision.parameters(), untrained.vision.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in trained)
    for name, result in summary["odometry"].items():
        assert set(result["held_out"]) == {"wheel_imu_filter", name}
        assert result["held_out"]["wheel_imu_filter"]["ate_m"] > 0 and result["data"]["held_out_seeds"] == [1]
        model = AstraOdometry.from_pretrained(weights / "odometry" / name)
        assert model.config == ODOMETRY_VARIANTS[name]
        for mine, shared in zip(model.vision.parameters(), encoder.vision.parameters(), strict=True):
            assert torch.equal(mine, shared)  # one encoder, frozen under every variant
    work = tmp_path / "eval"
    argv = ["eval", "odometry", "--kind", "office", "--seed", "3", "--tours", "1", "--seconds", "8",
            "--weights", str(weights), "--work", str(work), "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (result["kind"], result["seed"], result["tours"]) == ("office", 3, 1) and result["frames"] >= 15
    assert set(result["variants"]) == {"wheel_imu_filter", *ODOMETRY_VARIANTS}
    for figures in result["variants"].values():
        assert figures["ate_m"] >= 0 and figures["rte_pct"] is None  # 8 s drive no 10 m segment
    manifest = work / "office-3" / "frames" / "manifest.json"  # kept for the next run
    assert json.loads(manifest.read_text())["replay"] == replay_digest()
    fields = json.loads(manifest.read_text()) | {"replay": "another filter's"}
    manifest.write_text(json.dumps(fields))
    assert main(argv) == 0  # frames cut by another filter are cut again, not scored as this one's
    assert json.loads(manifest.read_text())["replay"] == replay_digest()
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result


def test_eval_odometry_names_what_is_wrong_with_its_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for argv, said in (
        (["--kind", "castle"], "unknown kind"),
        (["--kind", "office", "--tours", "0"], "--tours must be >= 1"),
        (["--kind", "office", "--weights", str(tmp_path)], "no trained vision"),
    ):
        with pytest.raises(SystemExit) as exit_:  # in process: each `astra` start would import torch again
            main(["eval", "odometry", *argv])
        assert exit_.value.code == 2 and said in capsys.readouterr().err, said


def test_a_mirrored_window_is_the_same_situation_with_left_and_right_swapped() -> None:
    """A person 0.6 m to the left, the robot turning left toward a goal on its left, mirrors into a person 0.6 m to
    the right, the robot turning right: the truth cropped around the robot for that situation."""
    g = LOCAL_GEOMETRY
    spec = GridSpec(0.05, (-5.0, -5.0), (200, 200))
    empty = np.zeros(spec.shape, bool)
    clearance = ClearanceMap.from_occupancy(empty, spec)
    left, right = (true_crops(empty, clearance, (0.0, 0.0, 0.0), np.array([[1.0, y, 0.3]]), g) for y in (0.6, -0.6))
    turn = torch.tensor([[0.2 * k, 0.01 * k * k, 0.05 * k] for k in range(1, g.waypoints + 1)])
    batch = {
        "occupancy": torch.from_numpy(left[0].astype(np.float32)).expand(1, g.frames, g.grid, g.grid),
        "esdf": torch.from_numpy(np.stack([left[1]] * 2).astype(np.float32))[None],
        "true_occupancy": torch.from_numpy(np.stack([left[0]] * 2).astype(np.float32))[None],
        "velocity": torch.tensor([[[0.5, 0.3]] * g.frames]),
        "motion": torch.tensor([[[0.1, 0.02, 0.05]] * g.frames]),
        "goal": torch.tensor([[2.0, 1.0]]),
        "trajectory": turn[None],
    }
    mirror = mirrored(batch)
    assert torch.equal(mirror["occupancy"][0, -1], torch.from_numpy(right[0].astype(np.float32)))
    assert torch.allclose(mirror["esdf"][0, 0], torch.from_numpy(right[1].astype(np.float32)), atol=1e-6)
    assert torch.allclose(mirror["velocity"][0, 0], torch.tensor([0.5, -0.3])) and mirror["goal"][0].tolist() == [
        2.0,
        -1.0,
    ]
    assert torch.allclose(mirror["motion"][0, 0], torch.tensor([0.1, -0.02, -0.05]))
    assert torch.equal(mirror["trajectory"][0], turn * torch.tensor([1.0, -1.0, -1.0]))
    assert torch.equal(mirrored(mirror)["esdf"], batch["esdf"])


def test_mirrored_windows_follow_each_window_with_its_mirror_image(dataset: Path) -> None:
    windows = LocalWindows(dataset)
    both = Mirrored(windows)
    n = len(windows)
    batch = both.batch(np.array([3, n + 3]))
    window = windows.batch(np.array([3]))
    assert len(both) == 2 * n
    for name, mirror in mirrored(window).items():
        assert torch.equal(batch[name][:1], window[name]) and torch.equal(batch[name][1:], mirror), name
    assert not torch.equal(batch["occupancy"][0], batch["occupancy"][1])


def test_touching_reads_the_clearance_where_the_robot_stands() -> None:
    esdf = np.full((LOCAL_GEOMETRY.grid, LOCAL_GEOMETRY.grid), 2.0)
    half = LOCAL_GEOMETRY.grid // 2
    esdf[half - 1 : half + 1, half - 1 : half + 1] = [[0.2, 0.3], [0.2, 0.3]]  # the robot's centre is 0.25 m off
    assert clearance_at_robot(esdf) == pytest.approx(0.25)
    assert touching(esdf, robot_radius=0.25, contact_m=0.02) and not touching(esdf, robot_radius=0.2, contact_m=0.02)


def test_dagger_drops_the_windows_where_the_robot_touches_an_obstacle() -> None:
    """A robot pinned against a wall is not where the planner should learn to be: that window is dropped, the one
    in the open kept."""
    world = generate_world("office", 0)
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid).distance
    cells = [np.argwhere((clearance > lo) & (clearance < hi))[0] for lo, hi in ((0.1, 0.2), (1.0, np.inf))]
    against_wall, in_the_open = ((*world.grid.cell_to_world(c[None])[0], 0.0) for c in cells)
    planner = AstraPlanner(LocalPlannerModel.from_pretrained(Path("models/weights/astra_local") / DEFAULT_PLANNER))
    recorder = DaggerRecorder(planner, world, (0.0, 0.0), LOCAL_GEOMETRY)
    g = LOCAL_GEOMETRY
    seen = PlannerObservation((0,) * g.frames, np.zeros((g.frames, g.grid, g.grid), np.uint8),
                              np.zeros((g.frames, 2), np.float32), np.zeros((g.frames, 3), np.float32),
                              np.zeros(2, np.float32))  # fmt: skip
    for t_s, pose in ((0.0, against_wall), (0.5, in_the_open)):
        recorder.pending.append(PendingWindow(round(t_s * 1e9), seen, pose, np.zeros((g.waypoints, 3)), 0.0))
    recorder.discs = [(0, np.zeros((0, 3))), (round(2e9), np.zeros((0, 3)))]
    rows = recorder.rows({})
    assert [r["t_ns"] for r in rows] == [round(0.5e9)] and recorder.touching == 1


def test_dagger_adds_the_learned_planners_own_drives_labelled_by_the_expert_and_train_reads_them(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The committed planner drives the office alone (the hospital's seed held out); each window keeps what the model
    saw, the expert's next 2 s from where the robot truly was, and the truth around it; `astra train local` reads
    them beside the tours'."""
    extended = tmp_path / "set"
    shutil.copytree(dataset, extended)
    before = len(LocalWindows(extended))
    planner = Path("models/weights/astra_local") / DEFAULT_PLANNER
    argv = ["dataset", "dagger", "--dataset", str(extended), "--planner", str(planner), "--time-limit", "8",
            "--holdout-seeds", "1", "--work", str(tmp_path / "worlds")]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["round"], summary["buildings"], summary["episodes"]) == (1, 1, 1)
    assert summary["windows"] >= 8  # 8 s of driving, a window every 0.5 s once the model has 1.5 s of history
    manifest = LocalDatasetManifest.read(extended)
    assert manifest.dagger[0]["episodes"] == ["dagger1-office-0-0"] and len(manifest.dagger[0]["planner_digest"]) == 16
    assert manifest.sites["office-0"]["dagger_episodes"] == ["dagger1-office-0-0"]
    assert "dagger_episodes" not in manifest.sites["hospital-1"]
    assert not (extended / FRAMES_DIR / "dagger1-office-0-0.parquet").exists()
    windows = LocalWindows(extended, where=pl.col("episode_id") == "dagger1-office-0-0")
    assert len(windows) == summary["windows"] and len(LocalWindows(extended)) == before + summary["windows"]
    g = windows.geometry
    batch = windows.batch(np.arange(len(windows)))
    distance = batch["goal"].norm(dim=-1)  # the subgoal 3 m along the route, from wherever the robot got to
    assert (distance <= g.goal_ahead_m + 1.0).all() and distance[-1] < distance[0]
    # The labels are the expert's: under its speed, and clear of the truth around the robot.
    steps = torch.diff(batch["trajectory"][:, :, :2], dim=1, prepend=torch.zeros(len(windows), 1, 2)).norm(dim=-1)
    # The expert starts from the robot's velocity, which the planner may have driven past the expert's own speed;
    # within the robot's limits it slows to that speed.
    assert (steps <= DEFAULT_ROBOT.limits.max_speed * g.waypoint_period_s + 0.02).all() and steps.sum() > 0.5
    assert (steps[:, -4:] <= ExpertConfig().cruise_speed * g.waypoint_period_s + 0.02).all()
    cells = ((batch["trajectory"][:, :, :2] + g.half_extent_m) / g.resolution).long().clamp(0, g.grid - 1)
    rows = torch.arange(len(windows))[:, None]
    assert batch["esdf"][rows, 0, cells[..., 1], cells[..., 0]].min() > DEFAULT_ROBOT.radius - 2 * g.resolution
    # The model's input is the robot's costmap: what it marked occupied lies on the truth.
    occupied = batch["occupancy"][:, -1] == 1.0
    assert occupied.any() and batch["esdf"][:, 0][occupied].mean() < 0.2
    weights = tmp_path / "weights"
    argv = ["train", "local", "--dataset", str(extended), "--out", str(weights), "--planners", DEFAULT_PLANNER,
            "--steps", "2", "--odometry", "none", "--no-encoder4d", "--holdout-seeds", "1"]  # fmt: skip
    assert main(argv) == 0
    trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["planners"][DEFAULT_PLANNER]
    assert trained["data"]["train_items"] == before - len(LocalWindows(dataset, sites=["hospital-1"])) + len(windows)
    assert [r["round"] for r in trained["data"]["dagger_rounds"]] == [1]
    for args, said in ((["--holdout-seeds", "0,1"], "no building to drive"), (["--episodes", "0"], "--episodes")):
        argv = [ASTRA, "dataset", "dagger", "--dataset", extended, "--planner", planner, *args]
        proc = subprocess.run(argv, capture_output=True, text=True, env=os.environ)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr
    assert len(LocalDatasetManifest.read(extended).dagger) == 1
