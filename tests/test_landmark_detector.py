"""The learned landmark detector, trained for seconds on simulator renders labelled from the segmentation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.landmark_detector import (
    DetectorConfig,
    LabelledBox,
    LandmarkDetector,
    TrainConfig,
    evaluate_detections,
    train_detector,
)
from schemas.robot import DEFAULT_ROBOT
from schemas.topics import CAMERAS
from sim.annotations import geom_owners, landmark_boxes
from sim.simulator import Simulator

SMALL = dataclasses.replace(DEFAULT_ROBOT, camera_width=96, camera_height=72)
TINY = DetectorConfig(widths=(8, 16, 24, 32), head_width=16, reader_width=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def renders(office_world: Path) -> tuple[np.ndarray, list[list[LabelledBox]]]:
    """Images of the office from random poses in its rooms, all cameras, with their landmarks' boxes."""
    sim = Simulator(office_world, SMALL)
    owners = geom_owners(sim.model, sim.world.landmarks)
    rng = np.random.default_rng(0)
    images, targets = [], []
    try:
        for _ in range(40):
            x0, y0, x1, y1 = sim.world.rooms[rng.integers(len(sim.world.rooms))].bounds
            sim.place(rng.uniform(x0 + 0.4, x1 - 0.4), rng.uniform(y0 + 0.4, y1 - 0.4), rng.uniform(-math.pi, math.pi))
            for camera in CAMERAS:
                images.append(sim.render(camera)[0])
                seen = landmark_boxes(sim.segmentation(camera), owners, sim.world.landmarks, min_pixels=10)
                targets.append(
                    [
                        LabelledBox(s.box, s.landmark.category, s.landmark.color, s.landmark.material, s.landmark.text)
                        for s in seen
                    ]
                )
    finally:
        sim.close()
    return np.stack(images), targets


def test_training_lowers_the_loss(renders: tuple[np.ndarray, list[list[LabelledBox]]]) -> None:
    images, targets = renders
    _, losses = train_detector(images, targets, TINY, TrainConfig(epochs=4, batch_size=16), progress=False)
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5])


def test_a_small_batch_is_overfit(renders: tuple[np.ndarray, list[list[LabelledBox]]]) -> None:
    images, targets = renders
    # The eight images with the most signs, then the most landmarks: 25 landmarks, 9 of them signs.
    chosen = sorted(range(len(targets)), key=lambda i: (-sum(bool(t.text) for t in targets[i]), -len(targets[i])))[:8]
    batch, truth = images[chosen], [targets[i] for i in chosen]
    training = TrainConfig(epochs=150, batch_size=8, learning_rate=1e-2)
    model, _ = train_detector(batch, truth, TINY, training, progress=False)
    metrics = evaluate_detections(model.detect(batch), truth)
    assert metrics.recall == 1.0 and metrics.precision == 1.0, metrics
    assert metrics.color_accuracy == 1.0 and metrics.material_accuracy == 1.0, metrics
    # Signs are 3-16 pixels wide at 96x72: in seconds the reader spells most characters, not yet whole texts.
    assert metrics.text_character_error < 0.4, metrics


def test_a_saved_detector_loads_with_identical_outputs(
    renders: tuple[np.ndarray, list[list[LabelledBox]]], tmp_path: Path
) -> None:
    images, targets = renders
    model, _ = train_detector(images[:16], targets[:16], TINY, TrainConfig(epochs=2, batch_size=8), progress=False)
    model.save_pretrained(tmp_path)
    loaded = LandmarkDetector.from_pretrained(tmp_path)
    assert loaded.config == model.config
    batch = torch.from_numpy(images[:4]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        for name, value in model.eval()(batch).items():
            assert torch.equal(loaded.eval()(batch)[name], value), name
    assert loaded.detect(images[:4]) == model.detect(images[:4])


def test_detections_match_annotation_by_category_and_overlap() -> None:
    sofa = LabelledBox((10, 10, 30, 30), "sofa", "red", "fabric", "")
    sign = LabelledBox((50, 5, 60, 12), "room sign", "blue", "plastic", "Ward A")
    found = [
        dataclasses.replace(sofa, box=(11, 10, 31, 30), color="blue"),  # a match with the wrong colour
        dataclasses.replace(sofa, box=(12, 10, 32, 30)),  # a second detection of the same sofa
        dataclasses.replace(sign, category="aisle sign"),  # right place, wrong category
        dataclasses.replace(sign, box=(56, 5, 66, 12)),  # right category, IoU 0.25
    ]
    metrics = evaluate_detections([found, [sign]], [[sofa, sign], [sign]])
    assert (metrics.matches, metrics.detections, metrics.targets) == (2, 5, 3)
    assert metrics.precision == pytest.approx(2 / 5) and metrics.recall == pytest.approx(2 / 3)
    assert metrics.color_accuracy == 0.5 and metrics.material_accuracy == 1.0
    assert metrics.text_exact_match == 1.0 and metrics.text_character_error == 0.0


def test_a_misread_text_counts_its_edits() -> None:
    sign = LabelledBox((50, 5, 60, 12), "room sign", "blue", "plastic", "Ward A")
    metrics = evaluate_detections([[dataclasses.replace(sign, text="Wrd B")]], [[sign]])
    assert metrics.text_exact_match == 0.0 and metrics.text_character_error == pytest.approx(2 / 6)
