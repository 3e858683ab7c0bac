"""`astra eval odometry`: the odometry head's variants against the robot's wheel + IMU filter, on tours of a
building no model has seen.

The building is generated and toured by the expert (`astra sim tours --depth`, its sensor errors drawn per tour),
the tours are ingested into a lake and cut into frames (`astra dataset local`), all under the work folder, where
a later run finds them. Every variant then integrates its own motions over each whole tour from the true start,
and is scored against the truth (models.odometry_drift): `wheel_imu_filter` is the robot's own
filter as `local` runs it, replayed over the same recording.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datasets.odometry_sequences import OdometrySequences
from datasets.tours import Building, record_building_tours
from models.astra_local.odometry import AstraOdometry
from models.odometry_drift import integrate, odometry_drift
from pipelines.ingest import ingest
from pipelines.local_dataset import build_local_dataset, replay_digest
from schemas.local_dataset import LocalDatasetError, LocalDatasetManifest
from schemas.robot import DEFAULT_ROBOT

FILTER = "wheel_imu_filter"
_FIGURES = ("rte_pct", "rre_deg_per_10m", "ate_m")


@dataclass(frozen=True)
class OdometryEvalConfig:
    tours: int = 2
    seconds: float = 60.0
    camera_width: int = 160  # as the training tours: the stored frames are these shrunk by a whole factor
    camera_height: int = 120
    batch_size: int = 64


def vision_tokens(model: AstraOdometry, sequences: OdometrySequences, batch_size: int = 64) -> list[np.ndarray]:
    """Per episode, [N, d_model]: the model's vision token of the step into each frame (row 0, no step: zeros),
    each step's two frames encoded once."""
    steps = sequences.with_history(1)
    out = []
    with torch.inference_mode():
        for episode in range(len(sequences.episodes)):
            rows = np.flatnonzero(steps.index[:, 0] == episode)
            tokens = [np.zeros((1, model.config.d_model), np.float32)]
            for start in range(0, len(rows), batch_size):
                bev = steps.batch(rows[start : start + batch_size])["bev"]
                tokens.append(model.vision(bev)[:, 0].numpy())
            out.append(np.concatenate(tokens))
    return out


def predicted_motions(model: AstraOdometry, sequences: OdometrySequences, batch_size: int = 64) -> list[np.ndarray]:
    """Per episode, [N - 1, 3]: the model's motion into each frame but the first, each from its own history."""
    if model.vision is not None:
        sequences = sequences.with_vision_tokens(vision_tokens(model, sequences, batch_size))
    out = []
    for episode in range(len(sequences.episodes)):
        rows = np.flatnonzero(sequences.index[:, 0] == episode)
        batches = [sequences.batch(rows[s : s + batch_size]) for s in range(0, len(rows), batch_size)]
        out.append(np.concatenate([model.predict(b).numpy() for b in batches]))
    return out


def odometry_errors(
    sequences: OdometrySequences, models: dict[str, AstraOdometry], batch_size: int = 64
) -> dict[str, Any]:
    """Per variant (the filter, then `models`), the mean of each figure over the tours, and per tour."""
    estimates = {FILTER: [e.odom_motion[1:] for e in sequences.episodes]}
    estimates |= {name: predicted_motions(model, sequences, batch_size) for name, model in models.items()}
    variants = {}
    for name, motions in estimates.items():
        tours = [
            odometry_drift(integrate(m, tuple(e.true[0])), e.true)
            for m, e in zip(motions, sequences.episodes, strict=True)
        ]
        variants[name] = {f: _mean([t[f] for t in tours]) for f in _FIGURES}
        variants[name]["tours"] = [{f: _rounded(t[f]) for f in (*_FIGURES, "segments")} for t in tours]
    return variants


def _rounded(value: float) -> float | None:
    """JSON has no NaN: a figure with nothing to measure (a tour shorter than a segment) is null."""
    return None if np.isnan(value) else round(float(value), 4)


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if not np.isnan(v)]
    return _rounded(float(np.mean(finite))) if finite else None


def held_out_tours(building: Building, work: Path, config: OdometryEvalConfig, progress: bool = True) -> Path:
    """The frames of `config.tours` expert tours of `building`, recorded, ingested and cut under `work`; the
    tours and the lake are kept for the next run, the frames as long as the filter and costmap that cut them."""
    folder = Path(work) / building.folder
    dataset = folder / "frames"
    if (dataset / "manifest.json").is_file():
        if _manifest_replay(dataset) == replay_digest():
            return dataset
        shutil.rmtree(dataset)  # cut by another filter or costmap: cut again from the same tours
    robot = replace(DEFAULT_ROBOT, camera_width=config.camera_width, camera_height=config.camera_height)
    paths = record_building_tours(
        [building], folder / "tours", config.tours, config.seconds, robot, workers=1, progress=progress
    )
    ingest(paths, folder / "lake", progress=progress)
    build_local_dataset(folder / "lake", dataset, progress=progress)
    return dataset


def _manifest_replay(dataset: Path) -> str:
    try:
        return LocalDatasetManifest.read(dataset).replay
    except LocalDatasetError:  # of another version: cut again
        return ""


def evaluate_odometry(
    building: Building,
    work: Path,
    checkpoints: dict[str, Path],
    config: OdometryEvalConfig = OdometryEvalConfig(),
    progress: bool = True,
) -> dict[str, Any]:
    """The eval's summary: the building, the tours and frames, and every variant's figures."""
    dataset = held_out_tours(building, work, config, progress)
    sequences = OdometrySequences(dataset, progress=progress)
    models = {name: AstraOdometry.from_pretrained(path).eval() for name, path in checkpoints.items()}
    return {
        "site": building.site,
        "dynamic": building.dynamic,
        "tours": len(sequences.episodes),
        "frames": len(sequences) + len(sequences.episodes),
        "variants": odometry_errors(sequences, models, config.batch_size),
    }
