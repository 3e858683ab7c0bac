"""Astra-Global's training set (`astra dataset global`): tours in the lake into labelled frames with true poses."""

from __future__ import annotations

import io
import itertools
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from datasets.global_frames import read_frames, read_landmarks
from datasets.lake import Lake
from models.astra_global.maps import leads_to_room
from models.descriptors import TinyImageDescriptor
from models.mapping.keyframes import KeyframeConfig
from pipelines.global_dataset import GlobalDatasetConfig, build_global_dataset
from pipelines.train_global import (
    FINE_REACH_M,
    building_examples,
    claim_idle_cores,
    goal_examples,
    retrieval_by_building,
    run_trainings,
)
from schemas.global_dataset import FRAMES, FRAMES_DIR, LANDMARKS, LANDMARKS_FILE, GlobalDatasetManifest
from schemas.robot import DEFAULT_ROBOT
from schemas.topics import CAMERA_YAWS, CAMERAS
from sim.missions import every_instruction
from sim.world import generate_world
from tests.conftest import TOUR_SEEDS

SPARSE = GlobalDatasetConfig(frames=KeyframeConfig(min_distance=2.0, min_rotation_deg=60.0, max_interval_s=30.0))


@pytest.fixture(scope="module")
def dataset(tour_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("global") / "office"
    summary = build_global_dataset(tour_lake, out, config=SPARSE, progress=False)
    assert (summary.sites, summary.episodes) == (1, len(TOUR_SEEDS))
    return out


def test_every_tour_becomes_frames_of_every_camera_with_the_manifest_naming_its_lake(
    dataset: Path, tour_lake: Path
) -> None:
    manifest = GlobalDatasetManifest.read(dataset)
    frames = pads.dataset(dataset / FRAMES_DIR).to_table()
    assert frames.schema.equals(FRAMES)
    assert manifest.lake_version == Lake(tour_lake).version
    assert sorted(manifest.episodes) == sorted(Lake(tour_lake).sql("SELECT episode_id FROM episodes")["episode_id"])
    assert manifest.sites["office-0"]["frames"] == frames.num_rows == manifest.counts["frames"]
    instants = frames.group_by(["episode_id", "t_ns"]).aggregate([("camera", "count_distinct")])
    assert instants["camera_count_distinct"].to_pylist() == [len(CAMERAS)] * instants.num_rows
    picture = Image.open(io.BytesIO(frames["jpeg"][0].as_py()))
    assert picture.size == (frames["width"][0].as_py(), frames["height"][0].as_py())


def test_sightings_name_the_buildings_landmarks_and_lie_where_the_true_pose_projects_them(dataset: Path) -> None:
    frames = pads.dataset(dataset / FRAMES_DIR).to_table().to_pylist()
    landmarks = pq.read_table(dataset / LANDMARKS_FILE)
    assert landmarks.schema.equals(LANDMARKS)
    assert landmarks.num_rows == len(generate_world("office", 0).landmarks)
    where = {row["landmark_id"]: np.array([row[f"position_{n}"] for n in "xyz"]) for row in landmarks.to_pylist()}
    checked = 0
    for frame in frames:
        world_from_camera = Rotation.from_quat([frame[f"camera_q{n}"] for n in "xyz" + "w"])
        camera = np.array([frame[f"camera_{n}"] for n in "xyz"])
        assert np.hypot(*(camera[:2] - [frame["base_x"], frame["base_y"]])) < DEFAULT_ROBOT.radius
        k = np.reshape(frame["k"], (3, 3))
        for seen in frame["sightings"]:
            assert 0 <= seen["box_x0"] < seen["box_x1"] <= frame["width"]
            assert 0 <= seen["box_y0"] < seen["box_y1"] <= frame["height"]
            if seen["visible_fraction"] < 0.9:
                continue  # a part in view: its box need not hold the centre
            in_camera = world_from_camera.inv().apply(where[seen["landmark_id"]] - camera)
            assert in_camera[2] > 0, "a landmark seen behind the camera"
            u, v = (k @ in_camera)[:2] / in_camera[2]
            assert seen["box_x0"] - 1 <= u <= seen["box_x1"] and seen["box_y0"] - 1 <= v <= seen["box_y1"]
            checked += 1
    assert checked >= 10


def test_astra_dataset_global_refuses_a_folder_that_exists_and_a_lake_without_tours(
    dataset: Path, tour_lake: Path, tmp_path: Path
) -> None:
    astra = Path(sys.executable).parent / "astra"
    argv = [astra, "dataset", "global", "--lake", str(tour_lake), "--out", str(dataset)]
    taken = subprocess.run(argv, capture_output=True, text=True)
    assert taken.returncode == 2 and "exists already" in taken.stderr and "Traceback" not in taken.stderr
    with pytest.raises(ValueError, match="no tours of simulated buildings of sites nowhere"):
        build_global_dataset(tour_lake, tmp_path / "x", sites=["nowhere"], progress=False)
    assert not (tmp_path / "x").exists()


def test_frames_read_shrunk_with_their_boxes_and_the_headings_of_their_cameras(dataset: Path) -> None:
    frames = read_frames(dataset, (40, 30))
    assert frames.images.shape == (len(frames), 30, 40, 3) and frames.images.std() > 10
    turned = frames.camera_yaw - frames.base_pose[:, 2] - [CAMERA_YAWS[c] for c in frames.camera]
    assert np.abs(np.angle(np.exp(1j * turned))).max() < 1e-6
    boxes = [seen for frame in frames.sightings for seen in frame]
    assert boxes and all(0 <= b["box_x0"] < b["box_x1"] <= 40 and 0 <= b["box_y0"] < b["box_y1"] <= 30 for b in boxes)
    front = frames.subset(frames.camera == "front")
    assert len(front) * len(CAMERAS) == len(frames) and set(front.camera) == {"front"}
    assert len(read_frames(dataset, (40, 30), world_seeds=[1])) == 0


def test_retrieval_scores_each_buildings_later_tours_against_its_first(dataset: Path) -> None:
    frames = read_frames(dataset, (80, 60))
    first = {site["episodes"][0] for site in GlobalDatasetManifest.read(dataset).sites.values()}
    assert len(first) == 1 and first < set(frames.episode_id)
    recall = retrieval_by_building(TinyImageDescriptor(), frames, first)
    assert 0.0 < recall["recall@1"] <= recall["recall@5"] < 1.0


def test_astra_train_global_refuses_held_out_seeds_that_leave_nothing_to_train(dataset: Path, tmp_path: Path) -> None:
    astra = Path(sys.executable).parent / "astra"
    argv = [astra, "train", "global", "--dataset", str(dataset), "--out", str(tmp_path), "--holdout-seeds", "0"]
    refused = subprocess.run(argv, capture_output=True, text=True)
    assert refused.returncode == 2 and "leave 0 frames to train" in refused.stderr and not any(tmp_path.iterdir())


def _where_it_ran() -> dict[str, object]:
    """A stand-in training's summary: the process, torch threads and progress bar line it ran with."""
    import torch

    return {"pid": os.getpid(), "threads": torch.get_num_threads(), "bar_line": os.environ.get("TQDM_POSITION")}


def _steps_until_alone() -> dict[str, object]:
    """A stand-in first training: steps (claim_idle_cores between them, as trainings do) until it holds more threads
    than it began with, or 60 s have passed; the threads it began and ended with."""
    import torch

    began, deadline = torch.get_num_threads(), time.monotonic() + 60
    while torch.get_num_threads() == began and time.monotonic() < deadline:
        time.sleep(0.05)
        claim_idle_cores()
    return {"began": began, "ended": torch.get_num_threads()}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="with one core there is no idle core to take")
def test_the_first_training_takes_every_core_once_the_others_are_done() -> None:
    apart = run_trainings({"astra": _steps_until_alone, "detector": _where_it_ran, "vpr": _where_it_ran}, processes=2)
    assert apart["astra"] == {"began": max(1, (os.cpu_count() or 1) // 2), "ended": os.cpu_count()}


def test_trainings_side_by_side_run_in_their_own_processes_each_with_its_share_of_the_cores() -> None:
    trainings = {"astra": _where_it_ran, "detector": _where_it_ran, "vpr": _where_it_ran}
    apart = run_trainings(trainings, processes=2)
    assert list(apart) == list(trainings)
    assert all(summary["pid"] != os.getpid() for summary in apart.values())
    assert {summary["threads"] for summary in apart.values()} == {max(1, (os.cpu_count() or 1) // 2)}
    # The first (longest) keeps the first line; the others share the second, one after the other.
    assert [summary["bar_line"] for summary in apart.values()] == ["0", "1", "1"]
    assert {summary["pid"] for summary in run_trainings(trainings, processes=1).values()} == {os.getpid()}


def test_astra_examples_pair_the_tours_with_the_truth_of_what_each_instant_sees_and_where_it_stands(
    dataset: Path,
) -> None:
    frames = read_frames(dataset, (64, 48))
    buildings = building_examples(frames, read_landmarks(dataset))
    episodes = set(frames.episode_id)
    assert sorted((b.map_episode, b.query_episode) for b in buildings) == sorted(itertools.permutations(episodes, 2))
    rows = pads.dataset(dataset / FRAMES_DIR).to_table(columns=["episode_id", "t_ns", "base_x", "base_y", "sightings"])
    seen_at, where = defaultdict(set), {}
    for row in rows.to_pylist():
        seen_at[row["episode_id"], row["t_ns"]] |= {s["landmark_id"] for s in row["sightings"]}
        where[row["episode_id"], row["t_ns"]] = (row["base_x"], row["base_y"])
    for b in buildings:
        mapped = set().union(*(ids for (episode, _), ids in seen_at.items() if episode == b.map_episode))
        assert sorted(b.landmark_ids) == sorted(mapped) and len(b.landmark_map.landmarks) == len(mapped)
        assert len(b.coarse) == len(b.query_t_ns) == len({t for e, t in seen_at if e == b.query_episode})
        for t, pose, example in zip(b.query_t_ns, b.query_poses, b.coarse, strict=True):
            named = {b.landmark_ids[i] for i in example.answer.landmarks}
            assert named == seen_at[b.query_episode, t] & mapped and pose[:2] == where[b.query_episode, t]
        assert len(b.fine) > len(b.coarse) / 2
        for (query, keyframe), example in zip(b.fine_queries, b.fine, strict=True):
            pose = example.answer.pose
            assert math.hypot(pose.dx, pose.dy) <= FINE_REACH_M and example.answer.landmarks
            assert b.landmark_map.absolute_pose(keyframe, pose) == pytest.approx(b.query_poses[query])
            assert len(example.query.landmarks) == len(b.landmark_map.keyframes[keyframe].landmarks)
        # Every instruction of the building, with the place it names in the model's words.
        instructions = every_instruction(generate_world("office", 0))
        assert [g.instruction for g in b.goals] == [i.text for i in instructions]
        places = b.landmark_map.goal_places()
        for goal, family in zip(b.goals, [i.family for i in instructions], strict=True):
            assert goal.place == goal.room.lower() if family.startswith("room") else goal.place != goal.room.lower()
            assert (" in " in goal.place) == (family == "landmark")
            # Where the map saw the place, every landmark there leads to the room the instruction names.
            rows = [b.landmark_rows[i] for i in places.get(goal.place, [])]
            assert all(leads_to_room(r["room"], r["text"], goal.room) for r in rows)
        assert sum(g.place in places for g in b.goals) > len(b.goals) / 4
    # Once per building, however many tour pairs it has: the answer does not depend on the map.
    examples = goal_examples(buildings)
    assert [(e.query.instruction, e.answer) for e in examples] == [(g.instruction, g.place) for g in buildings[0].goals]
    assert all(not e.query.landmarks and not e.query.images for e in examples)
