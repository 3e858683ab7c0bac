"""Astra-Global's training sets (schemas.global_dataset) read into arrays, as the models train on them.

Pictures are decoded and shrunk to the size a model asks for, and their landmark boxes scaled alike; a frame's
camera heading is the direction of its optical axis in the world's plane.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from PIL import Image
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from schemas.global_dataset import FRAMES_DIR, LANDMARKS_FILE, GlobalDatasetManifest


@dataclass(frozen=True)
class FrameSet:
    """N labelled camera frames: pictures (N, H, W, 3) uint8 at the size asked for, and per frame its building,
    tour, instant, camera, true pose and the landmarks it sees (boxes in the shrunk picture's pixels)."""

    images: np.ndarray
    site: np.ndarray  # (N,) str
    kind: np.ndarray  # (N,) str
    world_seed: np.ndarray  # (N,) int
    episode_id: np.ndarray  # (N,) str
    t_ns: np.ndarray  # (N,) int
    camera: np.ndarray  # (N,) str
    camera_xy: np.ndarray  # (N, 2) the camera's position in the world's plane, m
    camera_yaw: np.ndarray  # (N,) heading of its optical axis, rad
    base_pose: np.ndarray  # (N, 3) x, y, yaw of base_link
    sightings: list[list[dict[str, Any]]]  # landmark_id, box_x0..box_y1, visible_fraction

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, keep: np.ndarray) -> FrameSet:
        """The frames where the boolean mask `keep` holds (or at the given indices)."""
        index = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
        fields = {
            name: value[index] if isinstance(value, np.ndarray) else [value[i] for i in index]
            for name, value in vars(self).items()
        }
        return FrameSet(**fields)


def optical_axis_yaw(quaternions: np.ndarray) -> np.ndarray:
    """Heading in the world's plane of each optical frame's z axis (REP-103 optical: z forward)."""
    forward = Rotation.from_quat(quaternions).apply([0.0, 0.0, 1.0])
    return np.arctan2(forward[:, 1], forward[:, 0])


def read_frames(
    folder: Path, size: tuple[int, int], world_seeds: Sequence[int] | None = None, progress: bool = False
) -> FrameSet:
    """The frames of the dataset at `folder` (of buildings with these seeds, or all), pictures shrunk to
    `size` = (width, height)."""
    GlobalDatasetManifest.read(folder)  # a clear error for a folder that is not a dataset of this version
    dataset = pads.dataset(Path(folder) / FRAMES_DIR, format="parquet")
    wanted = None if world_seeds is None else pc.field("world_seed").isin(list(world_seeds))
    order = [(column, "ascending") for column in ("site", "episode_id", "t_ns", "camera")]
    table = dataset.to_table(filter=wanted).sort_by(order)
    width, height = size
    images = np.empty((table.num_rows, height, width, 3), np.uint8)
    jpegs = table["jpeg"].to_pylist()
    for i, jpeg in enumerate(tqdm(jpegs, desc="frames", disable=not progress)):
        picture = Image.open(io.BytesIO(jpeg)).convert("RGB")
        images[i] = np.asarray(picture.resize((width, height), Image.Resampling.BILINEAR))
    scale_x = width / table["width"].to_numpy()
    scale_y = height / table["height"].to_numpy()
    sightings = [
        [
            {
                **seen,
                "box_x0": int(np.floor(seen["box_x0"] * sx)),
                "box_x1": int(np.ceil(seen["box_x1"] * sx)),
                "box_y0": int(np.floor(seen["box_y0"] * sy)),
                "box_y1": int(np.ceil(seen["box_y1"] * sy)),
            }
            for seen in frame
        ]
        for frame, sx, sy in zip(table["sightings"].to_pylist(), scale_x, scale_y, strict=True)
    ]
    quaternions = np.column_stack([table[f"camera_q{n}"].to_numpy() for n in "xyzw"])
    return FrameSet(
        images=images,
        site=table["site"].to_numpy(zero_copy_only=False),
        kind=table["kind"].to_numpy(zero_copy_only=False),
        world_seed=table["world_seed"].to_numpy(),
        episode_id=table["episode_id"].to_numpy(zero_copy_only=False),
        t_ns=table["t_ns"].to_numpy(),
        camera=table["camera"].to_numpy(zero_copy_only=False),
        camera_xy=np.column_stack([table["camera_x"].to_numpy(), table["camera_y"].to_numpy()]),
        camera_yaw=optical_axis_yaw(quaternions),
        base_pose=np.column_stack([table[f"base_{n}"].to_numpy() for n in ("x", "y", "yaw")]),
        sightings=sightings,
    )


def read_landmarks(folder: Path) -> list[dict[str, Any]]:
    """Every landmark of the dataset's buildings, as LANDMARKS rows."""
    return pq.read_table(Path(folder) / LANDMARKS_FILE).to_pylist()
