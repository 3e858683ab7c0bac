"""`astra train global`: Astra-Global's models trained on a training set (`astra dataset global`), with whole
buildings held out, each checkpoint written with a model card naming its data and its held-out figures.

    vpr        the learned place-recognition descriptor (models.vpr), scored against the tiny-image placeholder by
               retrieval on held-out buildings: each building's first tour is the database, its later tours the queries
    detector   the learned landmark detector (models.landmark_detector), trained on the segmentation's boxes and
               scored against them on held-out buildings: precision, recall, attributes, sign text
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datasets.global_frames import FrameSet, read_frames, read_landmarks
from models.descriptors import GlobalDescriptor, TinyImageDescriptor, VprDescriptor
from models.landmark_detector import LabelledBox, TrainConfig, evaluate_detections, train_detector
from models.landmark_extraction import LandmarkFunctions
from models.vpr import CameraPoses, VprConfig, VprTrainConfig, retrieval_recall, train_vpr
from schemas.global_dataset import GlobalDatasetManifest

FRAME_SIZE = (160, 120)  # as the tours record them; each model shrinks further


@dataclass(frozen=True)
class HeldOut:
    """Buildings kept out of training, by seed: the evaluation's."""

    seeds: tuple[int, ...]

    def split(self, frames: FrameSet) -> tuple[FrameSet, FrameSet]:
        held = np.isin(frames.world_seed, self.seeds)
        return frames.subset(~held), frames.subset(held)


def _split(dataset: Path, held_out: HeldOut, progress: bool) -> tuple[GlobalDatasetManifest, FrameSet, FrameSet]:
    """The dataset's manifest, and its frames to train on and to test on; ValueError where either is empty."""
    manifest = GlobalDatasetManifest.read(dataset)
    train, held = held_out.split(read_frames(dataset, FRAME_SIZE, progress=progress))
    if not len(train) or not len(held):
        counts = f"{len(train)} frames to train and {len(held)} to test"
        raise ValueError(f"held-out seeds {list(held_out.seeds)} leave {counts}")
    return manifest, train, held


def camera_poses(frames: FrameSet) -> CameraPoses:
    """The frames' cameras, grouped by building."""
    return CameraPoses.of(frames.camera_xy, frames.camera_yaw, np.unique(frames.site, return_inverse=True)[1])


def retrieval_by_building(
    describe: GlobalDescriptor, frames: FrameSet, first_tours: set[str], ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Recall@k of each building's later tours against its first tour (`first_tours`: episode ids), pooled."""
    hits: dict[int, list[float]] = {k: [] for k in ks}
    descriptors = describe.describe(list(frames.images))
    poses = camera_poses(frames)
    for site in np.unique(frames.site):
        here = frames.site == site
        database = here & np.isin(frames.episode_id, list(first_tours))
        queries = here & ~database
        if not database.any() or not queries.any():
            continue
        query_poses, database_poses = poses[np.flatnonzero(queries)], poses[np.flatnonzero(database)]
        recall = retrieval_recall(descriptors[queries], query_poses, descriptors[database], database_poses, ks)
        for k in ks:
            hits[k] += [recall[k]] * int(queries.sum())
    return {f"recall@{k}": round(float(np.mean(v)), 3) if v else float("nan") for k, v in hits.items()}


def train_vpr_model(
    dataset: Path, out: Path, held_out: HeldOut, config: VprTrainConfig | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train the VPR descriptor on the dataset's other buildings, score it and the tiny-image descriptor on the held-out
    ones, and save the checkpoint with its model card to `out`; returns the figures."""
    manifest, train, held = _split(dataset, held_out, progress)
    training = train_vpr(train.images, camera_poses(train), config or VprTrainConfig(), VprConfig(), progress)
    first_tours = {site["episodes"][0] for site in manifest.sites.values()}
    figures = {
        "vpr": retrieval_by_building(VprDescriptor(model=training.model), held, first_tours),
        "tiny_image": retrieval_by_building(TinyImageDescriptor(), held, first_tours),
    }
    training.summary |= {
        "dataset": f"{dataset} (lake {manifest.lake} version {manifest.lake_version})",
        "trained on": f"{len(train)} frames of {len(np.unique(train.site))} buildings",
        "held out": f"seeds {list(held_out.seeds)}: {len(held)} frames of {len(np.unique(held.site))} buildings",
        "held-out retrieval (later tours against the first)": figures,
    }
    training.save(str(out))
    return {**training.summary, "out": str(out)}


def labelled_boxes(frames: FrameSet, landmarks: list[dict[str, Any]]) -> list[list[LabelledBox]]:
    """Each frame's sightings as the detector's annotation: box, category, colour, material, sign text."""
    described = {(lm["site"], lm["landmark_id"]): lm for lm in landmarks}
    return [
        [
            LabelledBox(
                (seen["box_x0"], seen["box_y0"], seen["box_x1"], seen["box_y1"]),
                (lm := described[site, seen["landmark_id"]])["category"],
                lm["color"],
                lm["material"],
                lm["text"],
            )
            for seen in sightings
        ]
        for site, sightings in zip(frames.site, frames.sightings, strict=True)
    ]


def train_detector_model(
    dataset: Path, out: Path, held_out: HeldOut, config: TrainConfig | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train the landmark detector on the dataset's other buildings, score it against annotation on the held-out ones,
    and save the checkpoint with its model card to `out`; returns the figures."""
    manifest, train, held = _split(dataset, held_out, progress)
    landmarks = read_landmarks(dataset)
    config = config or TrainConfig()
    model, losses = train_detector(train.images, labelled_boxes(train, landmarks), training=config, progress=progress)
    metrics = evaluate_detections(model.detect(held.images), labelled_boxes(held, landmarks))
    summary = {
        "dataset": f"{dataset} (lake {manifest.lake} version {manifest.lake_version})",
        "trained on": f"{len(train)} frames of {len(np.unique(train.site))} buildings",
        "held out": f"seeds {list(held_out.seeds)}: {len(held)} frames of {len(np.unique(held.site))} buildings",
        "steps": len(losses),
        "final loss (mean of the last tenth of steps)": round(float(np.mean(losses[-max(1, len(losses) // 10) :])), 4),
        "held-out detection against annotation": {
            name: None if isinstance(value, float) and np.isnan(value) else value
            for name, value in asdict(metrics).items()
        },
    }
    model.save_pretrained(str(out))
    LandmarkFunctions.learn(lm for lm in landmarks if lm["site"] in set(train.site)).save(out)
    card = Path(out) / "README.md"
    lines = "\n".join(f"- {key}: {value}" for key, value in summary.items())
    card.write_text(f"{card.read_text()}\n## Training\n\n{lines}\n")
    return {**summary, "out": str(out)}
