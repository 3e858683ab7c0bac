"""The learned landmark extractor: detections placed by the map's points, grouped across nodes, and a map built from
a recording that carries no world."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from deltalake import DeltaTable
from PIL import Image

from datasets.lake import Lake
from datasets.map_store import read_map
from datasets.site_log import read_pictures, read_rig, recorded_world, rig_frames, site_episodes
from datasets.tours import record_tour
from models.landmark_detector import Detection
from models.landmark_extraction import (
    DEFAULT_CHECKPOINT,
    DetectedLandmark,
    DetectedLandmarkExtractor,
    ExtractionConfig,
    LandmarkFunctions,
    PlacedDetection,
    group_detections,
    place_detections,
)
from models.landmarks import NodeGeometry, NodeView, describe
from models.mapping.sfm import FEATURES, SfmConfig, recorded_sfm_config
from pipelines.ingest import ingest
from pipelines.mapping import build_site_map
from schemas.episode import WORLD_ATTACHMENT_NAME
from schemas.map import KEY_ENV
from schemas.messages import decode_jpeg
from schemas.topics import DEPTH_OUTPUTS

K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])


def _detection(category: str, box: tuple[int, int, int, int] = (0, 0, 10, 10), **labels: object) -> Detection:
    attributes = {"color": "red", "material": "fabric", "text": "", "score": 0.8} | labels
    return Detection(box, category, **attributes)


def test_a_detection_lies_at_the_median_of_the_points_in_its_box_else_on_its_ray_at_a_depth_near_or_typical() -> None:
    # The camera stands at x = 1 m looking along map x: optical (x, y, z) is map (z, -x, -y) + (1, 0, 0).
    map_from_camera = np.eye(4)
    map_from_camera[:3, :3] = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]
    map_from_camera[:3, 3] = [1.0, 0.0, 0.0]
    # Keypoints in COLMAP's pixels: pixel 20 spans [20, 21), so x = 30.0 lies outside the box [20, 30).
    keypoints = np.array([[20.0, 10.0], [25.5, 12.5], [29.9, 14.0], [30.0, 12.0], [60.0, 60.0]])
    points = np.array([[4.0, 0.2, 0.1], [5.0, 0.3, 0.2], [4.5, 0.9, 0.3], [9.0, 9.0, 9.0], [7.0, 0.0, 0.0]])
    geometry = NodeGeometry(map_from_camera, K, keypoints, points, np.arange(5))
    view = NodeView("front/n", "front", (0.0, 0.0, 0.0), geometry=geometry)
    sofa_with_points = _detection("sofa", (20, 10, 30, 15))
    sofa_in_the_dark = _detection("sofa", (45, 35, 56, 46))  # centre pixel (50, 40) in K's: the principal point
    plant_in_the_dark = _detection("plant", (45, 35, 56, 46))
    sign_on_a_wall = _detection("room sign", (62, 62, 66, 66))  # no keypoint inside; the wall's at (60, 60) around
    config = ExtractionConfig(default_depth_m=2.5, nearby_margin=1.0)

    placed = place_detections([view], [[sofa_with_points, sofa_in_the_dark, plant_in_the_dark, sign_on_a_wall]], config)

    assert [p.placement for p in placed] == ["points", "typical depth", "typical depth", "nearby points"]
    np.testing.assert_allclose(placed[0].position, [4.5, 0.3, 0.2])
    assert placed[0].point_ids == {0, 1, 2} and not placed[1].point_ids
    # The sofa's typical depth is that of the sofa placed by points (3.5 m in front of the camera) ...
    np.testing.assert_allclose(placed[1].position, [1.0 + 3.5, 0.0, 0.0])
    # ... and a category placed by no points takes the median depth over all that were.
    np.testing.assert_allclose(placed[2].position, [1.0 + 3.5, 0.0, 0.0])
    # The sign takes the wall's depth (6 m) on the ray through its centre, pixel (63.5, 63.5).
    np.testing.assert_allclose(placed[3].position, [1.0 + 6.0, -0.135 * 6.0, -0.235 * 6.0])
    alone = place_detections([view], [[plant_in_the_dark]], config)
    np.testing.assert_allclose(alone[0].position, [1.0 + 2.5, 0.0, 0.0])


def _placed(node: str, detection: Detection, x: float, y: float = 0.0, points: range = range(0)) -> PlacedDetection:
    return PlacedDetection(node, detection, np.array([x, y, 0.5]), "points", frozenset(points))


def test_sightings_of_one_landmark_from_several_nodes_make_one_group() -> None:
    sofa, blue_sofa, rack = _detection("sofa"), _detection("sofa", color="blue"), _detection("pallet rack")
    placed = [
        _placed("n1", sofa, 2.0),
        _placed("n2", sofa, 2.3),  # the same sofa from the next node
        _placed("n3", sofa, 2.1, 0.2),  # and from a third
        _placed("n2", blue_sofa, 2.2),  # another colour is another sofa
        _placed("n1", sofa, 2.6),  # a second sofa beside the first: one picture never shows a landmark twice
        _placed("n3", sofa, 6.0),  # far away: another sofa
        _placed("n1", _detection("room sign", text="Radiology"), 0.0, 3.0),
        _placed("n2", _detection("room sign", text="Radiolgy"), 0.2, 3.0),  # misread, still the same sign
        _placed("n3", _detection("room sign", text="Kitchen"), 0.4, 3.0),  # another sign beside it
        _placed("n4", _detection("room sign"), 0.1, 3.0),  # unread: joins the nearest sign it may
        _placed("n1", rack, 10.0, points=range(0, 10)),
        _placed("n2", rack, 13.0, points=range(7, 20)),  # 3 m on along the rack, 3 of its points seen again
        _placed("n3", rack, 16.0, points=range(18, 30)),  # 3 m further: only 2 points in common, too few
    ]

    groups = group_detections(placed, ("room sign",), ExtractionConfig(merge_radius_m=1.0, min_shared_points=3))

    assert groups == [[0, 1, 2], [3], [4], [5], [6, 7, 9], [8], [10, 11], [12]]


def test_functions_are_learned_by_category_where_the_training_set_agrees_else_by_text() -> None:
    rows = [
        {"category": "sofa", "text": "", "function": "a place to rest"},
        {"category": "sofa", "text": "", "function": "a place to rest"},
        {"category": "room sign", "text": "Kitchen", "function": "marks the entrance to Kitchen: cooking"},
        {"category": "room sign", "text": "Lobby", "function": "marks the entrance to Lobby: waiting"},
    ]
    functions = LandmarkFunctions.learn(rows)

    assert functions.function("sofa", "") == "a place to rest"
    assert functions.function("room sign", "Lobby") == "marks the entrance to Lobby: waiting"
    assert functions.function("room sign", "Lobb") == ""
    # The committed table was learned from the detector's training buildings: every category but the signs.
    committed = LandmarkFunctions.load(DEFAULT_CHECKPOINT)
    assert committed.function("fire extinguisher", "") == "for putting out fires"
    assert "room sign" not in committed.by_category and committed.by_text


def test_a_description_leaves_out_what_is_unknown() -> None:
    sofa = DetectedLandmark("det-0000", "sofa", "", "red", "fabric", "a place to rest", np.zeros(3))
    assert describe(sofa, "") == "red fabric sofa, a place to rest"
    assert describe(sofa, "Lounge") == "red fabric sofa, a place to rest, in the Lounge"
    sign = DetectedLandmark("det-0001", "room sign", "Leceon", "dark gray", "metal", "", np.zeros(3))
    assert describe(sign, "") == 'dark gray metal room sign reading "Leceon"'


@pytest.fixture(scope="module")
def lake_without_world(office_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short tour of the office as a real robot logs it: no ground truth, no world.json."""
    root = tmp_path_factory.mktemp("robot_log")
    record_tour(office_world, root / "logs" / "tour.mcap", 5.0, leave_out=DEPTH_OUTPUTS | {"ground_truth"})
    ingest([root / "logs"], root / "lake", progress=False)
    DeltaTable(root / "lake" / "attachments").delete(f"name = '{WORLD_ATTACHMENT_NAME}'")
    return root / "lake"


def test_a_map_builds_from_a_recording_alone(lake_without_world: Path, tmp_path: Path) -> None:
    lake = Lake(lake_without_world)
    with pytest.raises(ValueError, match=WORLD_ATTACHMENT_NAME):
        recorded_world(lake, site_episodes(lake, "office-0"))
    with pytest.raises(ValueError, match=WORLD_ATTACHMENT_NAME):
        build_site_map(lake_without_world, "office-0", tmp_path / "annotated", extractor="annotated", progress=False)

    out = tmp_path / "map"
    astra = Path(sys.executable).parent / "astra"
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    argv = [astra, "map", "build", "--site", "office-0", "--lake", str(lake_without_world), "--out", str(out)]
    proc = subprocess.run([*argv, "--features", "fast"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])

    topo = read_map(out)
    assert recorded_sfm_config(topo.manifest.build["sfm"]).sift == FEATURES["fast"] != SfmConfig().sift
    assert topo.manifest.build["extractor"] == "detector" and summary["landmarks"] == topo.landmarks.num_rows > 0
    report = summary["landmark_extraction"]
    assert report["nodes"] == summary["nodes"] and sum(report["placed_by"].values()) == report["detections"]
    assert report["sightings"] == topo.node_landmarks.num_rows <= report["detections"]
    landmarks = topo.landmarks.to_pylist()
    assert all(row["landmark_id"].startswith("det-") and row["room"] == "" for row in landmarks)
    assert all(row["function"] for row in landmarks if row["category"] not in ("room sign", "aisle sign"))
    sightings = Counter(topo.node_landmarks["landmark_id"].to_pylist())
    assert min(sightings.values()) >= ExtractionConfig().min_sightings  # a landmark seen once is not kept
    scores = topo.node_landmarks["visible_fraction"].to_numpy()
    assert ((scores > 0) & (scores <= 1)).all()


def test_boxes_are_found_at_the_detectors_size_and_given_in_the_nodes_pixels(lake_without_world: Path) -> None:
    lake = Lake(lake_without_world)
    episode = site_episodes(lake, "office-0")[0]
    rig = read_rig(lake, episode)
    jpeg = next(iter(read_pictures(lake, episode, rig, rig_frames(lake, episode, rig)[-1:]).values()))
    picture = decode_jpeg(jpeg)  # 320x240, as recorded
    extractor = DetectedLandmarkExtractor()
    width, height = extractor.config.input_size
    shrunk = np.asarray(Image.fromarray(picture).resize((width, height), Image.Resampling.BILINEAR))

    found = extractor.detect([NodeView("front/n", "front", (0.0, 0.0, 0.0), image=picture)])[0]
    small = extractor.detector.detect([shrunk])[0]

    scale = picture.shape[1] / width
    scaled = {
        (d.category, (math.floor(x0 * scale), math.floor(y0 * scale), math.ceil(x1 * scale), math.ceil(y1 * scale)))
        for d in small
        for x0, y0, x1, y1 in [d.box]
    }
    assert found and {(d.category, d.box) for d in found} <= scaled
