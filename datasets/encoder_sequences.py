"""Astra-Local's training set (schemas.local_dataset) as frame sequences for the 4D encoder, held in memory.

Item = one window at frame n whose frames n-P+1 .. n+F all exist in its episode, in the encoder's batch contract
(models.astra_local.encoder4d), float32 unless said, T = P + F frames oldest first, cameras in CAMERAS order:

- `rgb` [T, 3, 3, H, W] in [0, 1]; `depth` [T, 3, H, W] m, 0 where invalid; `depth_valid` [T, 3, H, W] bool
- `k` [3, 3, 3]: each camera's matrix at the stored size (frame n's)
- `poses` [T, 3]: each frame's true pose (x, y, yaw) in the ego frame of the true pose at frame n
- `odom_poses` [T, 3]: the same from the robot's wheel + IMU filter's poses
- `true_occupancy` [2, G, G]: the window's true occupancy now and 1 s later, in frame n's ego

The decoded pictures and depth are cached beside the dataset (`cache/encoder/<episode>.npz`: uint8 RGB, float16
depth), so that every run after the first reads no JPEG. Episodes are chosen by site or by a polars expression on
the frames' tour columns (site, kind, world_seed, dynamic, episode_id), whole tours only, so that whole buildings
can be held out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from models.astra_local.pictures import encoder_frames, picture_array
from schemas.local_dataset import FRAMES_DIR, WINDOWS_DIR, LocalDatasetManifest, LocalGeometry

PAST, FUTURE = 4, 4
ENCODER_CACHE = Path("cache", "encoder")
_INDEX = {
    "site": pl.String,
    "kind": pl.String,
    "world_seed": pl.Int64,
    "dynamic": pl.Boolean,
    "episode_id": pl.String,
    "t_ns": pl.Int64,
}


def _decoded(frames: pl.DataFrame, geometry: LocalGeometry) -> tuple[np.ndarray, np.ndarray]:
    """(rgb uint8 [N, cams, 3, H, W], depth float16 [N, cams, H, W] with NaN where invalid) of frames' rows."""
    shape = (geometry.image_height, geometry.image_width)
    rgb = np.stack([np.stack([picture_array(j) for j in jpeg]) for jpeg in frames["jpeg"]])
    depth = np.stack([np.stack([np.frombuffer(d, "<f2").reshape(shape) for d in row]) for row in frames["depth"]])
    return rgb, depth


def _cached(folder: Path, episode: str, frames: pl.DataFrame, geometry: LocalGeometry) -> tuple[np.ndarray, ...]:
    path = folder / ENCODER_CACHE / f"{episode}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return stored["rgb"], stored["depth"]
    rgb, depth = _decoded(frames, geometry)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")  # each writer its own
    with partial.open("wb") as out:
        np.savez(out, rgb=rgb, depth=depth)
    partial.rename(path)  # whole or absent, for runs that read the set side by side
    return rgb, depth


def _in_ego(poses: np.ndarray, n: int) -> np.ndarray:
    """[N, 3] every pose (x, y, yaw) in the frame of pose n: inverse(pose_n) * pose_i, yaw wrapped to [-pi, pi)."""
    x, y, yaw = poses[n]
    cos, sin = np.cos(yaw), np.sin(yaw)
    dx, dy = poses[:, 0] - x, poses[:, 1] - y
    turn = (poses[:, 2] - yaw + np.pi) % (2 * np.pi) - np.pi
    return np.stack([cos * dx + sin * dy, -sin * dx + cos * dy, turn], axis=1).astype(np.float32)


class _Episode:
    def __init__(self, frames: pl.DataFrame, rgb: np.ndarray, depth: np.ndarray) -> None:
        self.rgb, self.depth = rgb, depth
        self.k = np.asarray(frames["k"].to_list(), np.float32).reshape(len(frames), -1, 3, 3)
        self.true = frames.select("true_x", "true_y", "true_yaw").to_numpy()
        self.odom = frames.select("odom_x", "odom_y", "odom_yaw").to_numpy()


class EncoderSequences(Dataset):
    """The windows of the episodes of `sites` (or all) whose frames all match `where`, with their frames n-past+1 ..
    n+future; `index` names each item's tour and time."""

    def __init__(
        self,
        folder: Path,
        sites: Sequence[str] | None = None,
        where: pl.Expr | None = None,
        past: int = PAST,
        future: int = FUTURE,
        progress: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = LocalDatasetManifest.read(self.folder)
        self.geometry = self.manifest.local_geometry
        self.past, self.future = past, future
        names = [
            e
            for site, info in sorted(self.manifest.sites.items())
            for e in info["episodes"]
            if sites is None or site in sites
        ]
        g = self.geometry.grid
        self.episodes: list[_Episode] = []
        items, occupancy, tours = [], [], []
        for name in tqdm(names, desc="encoder frames", unit="episode", disable=not progress):
            frames = pl.read_parquet(self.folder / FRAMES_DIR / f"{name}.parquet").sort("t_ns")
            if where is not None and frames.filter(where).height < frames.height:
                continue  # whole tours only
            windows = pl.read_parquet(self.folder / WINDOWS_DIR / f"{name}.parquet", columns=["t_ns", "true_occupancy"])
            position = {t: i for i, t in enumerate(frames["t_ns"].to_list())}
            kept = [
                (position[t], occupied)
                for t, occupied in windows.sort("t_ns").iter_rows()
                if t in position and position[t] >= past - 1 and position[t] + future < len(frames)
            ]
            if not kept:
                continue
            episode = len(self.episodes)
            self.episodes.append(_Episode(frames, *_cached(self.folder, name, frames, self.geometry)))
            for n, occupied in kept:
                items.append((episode, n))
                occupancy.append(np.frombuffer(occupied, np.uint8).reshape(2, g, g))
                tours.append(frames.select(*_INDEX).row(n))
        self.items = np.array(items, dtype=np.int64).reshape(-1, 2)
        self.true_occupancy = np.stack(occupancy) if occupancy else np.zeros((0, 2, g, g), np.uint8)
        self.index = pl.DataFrame(tours, schema=_INDEX, orient="row")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: value[0] for name, value in self.batch(np.array([index])).items()}

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """The items at `indices`, stacked: the contract's fields with a leading batch dimension."""
        parts = [self.item(*self.items[i]) for i in indices]
        stacked = {name: np.stack([p[name] for p in parts]) for name in parts[0]}
        stacked["true_occupancy"] = self.true_occupancy[indices].astype(np.float32)
        return {name: torch.from_numpy(value) for name, value in stacked.items()}

    def item(self, episode: int, n: int) -> dict[str, np.ndarray]:
        """Frames n-past+1 .. n+future of `self.episodes[episode]`, but the window's occupancy."""
        ep = self.episodes[episode]
        frames = slice(n - self.past + 1, n + self.future + 1)
        fields = encoder_frames(ep.rgb[frames], ep.depth[frames], ep.k[n], _in_ego(ep.odom, n)[frames])
        return fields | {"poses": _in_ego(ep.true, n)[frames]}
