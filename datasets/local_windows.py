"""Astra-Local's training set (schemas.local_dataset) as a torch Dataset of windows, held in memory.

Each item is the planner's batch contract, float32 tensors in the ego frame (F frames, G cells, K waypoints):

- `occupancy` [F, G, G]: the robot's costmap at each frame, 1 occupied, 0 free, 0.5 unknown
- `velocity` [F, 2], `motion` [F, 3], `goal` [2]
- `trajectory` [K, 3]: the expert's future poses
- `esdf` [2, G, G] (m) and `true_occupancy` [2, G, G]: the truth now and `esdf_ahead_s` later
- `voxels` [V, C], given a file of the 4D encoder's tokens (schemas.local_dataset.VOXELS): only the windows it
  holds are read (tour windows with their past frames; DAgger windows have no frames)

The windows of DAgger rounds (`pipelines.dagger`) are read beside the tours'. Windows are chosen by site, by
whether people and carts walked (`dynamic`), or by a polars expression on the windows' columns, so that whole
buildings can be held out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset

from models.astra_local.crops import codes_to_input
from schemas.local_dataset import WINDOWS_DIR, LocalDatasetManifest, voxel_shape

_ARRAYS = ("occupancy", "true_occupancy", "esdf")
_LISTS = ("velocity", "motion", "trajectory")


class LocalWindows(Dataset):
    """The windows of a local training set folder, optionally only those of `sites` or matching `where`, and with
    `voxels` (a VOXELS file) only those it holds, with their tokens."""

    def __init__(
        self,
        folder: Path,
        sites: Sequence[str] | None = None,
        where: pl.Expr | None = None,
        voxels: Path | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = LocalDatasetManifest.read(self.folder)
        self.geometry = self.manifest.local_geometry
        episodes = [
            e
            for site, info in sorted(self.manifest.sites.items())
            for e in info["episodes"] + info.get("dagger_episodes", [])
            if sites is None or site in sites
        ]
        frames = [pl.read_parquet(self.folder / WINDOWS_DIR / f"{e}.parquet") for e in episodes]
        windows = pl.concat(frames) if frames else pl.DataFrame()
        if where is not None and not windows.is_empty():
            windows = windows.filter(where)
        self._voxels = None
        if voxels is not None:
            shape = voxel_shape(voxels)
            if len(windows):
                windows = windows.join(pl.read_parquet(voxels), on=["episode_id", "t_ns"])
            self._voxels = np.stack([np.frombuffer(b, "<f2").reshape(shape) for b in windows["voxels"]])
        self.index = windows.select("site", "kind", "world_seed", "dynamic", "episode_id", "t_ns", "expert_v")
        g = self.geometry
        shapes = {
            "occupancy": (g.frames, g.grid, g.grid),
            "true_occupancy": (2, g.grid, g.grid),
            "esdf": (2, g.grid, g.grid),
        }
        dtypes = {"occupancy": np.uint8, "true_occupancy": np.uint8, "esdf": "<f2"}
        self._arrays = {
            name: np.stack([np.frombuffer(b, dtypes[name]).reshape(shapes[name]) for b in windows[name]])
            if len(windows)
            else np.zeros((0, *shapes[name]), dtypes[name])
            for name in _ARRAYS
        }
        widths = {"velocity": (g.frames, 2), "motion": (g.frames, 3), "trajectory": (g.waypoints, 3)}
        self._lists = {
            name: np.asarray(windows[name].to_list(), np.float32).reshape(-1, *widths[name]) for name in _LISTS
        }
        self._goal = windows.select("goal_x", "goal_y").to_numpy().astype(np.float32).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._goal)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: value[0] for name, value in self.batch(np.array([index])).items()}

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """The windows at `indices`, stacked: the contract's fields with a leading batch dimension."""
        return {
            "occupancy": torch.from_numpy(codes_to_input(self._arrays["occupancy"][indices])),
            "velocity": torch.from_numpy(self._lists["velocity"][indices]),
            "motion": torch.from_numpy(self._lists["motion"][indices]),
            "goal": torch.from_numpy(self._goal[indices]),
            "trajectory": torch.from_numpy(self._lists["trajectory"][indices]),
            "esdf": torch.from_numpy(self._arrays["esdf"][indices].astype(np.float32)),
            "true_occupancy": torch.from_numpy(self._arrays["true_occupancy"][indices].astype(np.float32)),
        } | ({} if self._voxels is None else {"voxels": torch.from_numpy(self._voxels[indices].astype(np.float32))})


# Each field's sign under the mirror across the robot's heading (y -> -y): lateral offsets, yaws and yaw rates flip.
_MIRROR_SIGNS = {
    "velocity": torch.tensor([1.0, -1.0]),
    "motion": torch.tensor([1.0, -1.0, -1.0]),
    "goal": torch.tensor([1.0, -1.0]),
    "trajectory": torch.tensor([1.0, -1.0, -1.0]),
}
_GRIDS = ("occupancy", "esdf", "true_occupancy")  # rows run along y, symmetric about the robot


def mirrored(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The windows of `batch` mirrored across the robot's heading: the same situations with left and right swapped.
    The robot (three cameras at 0 and +-120 degrees) and its costmap are symmetric, so each mirror is a window it
    could have driven. The 4D encoder's tokens have no mirror image (its features are learned, not symmetric)."""
    if "voxels" in batch:
        raise ValueError("windows with the 4D encoder's tokens cannot be mirrored")
    flipped = {name: batch[name].flip(-2) for name in _GRIDS}
    return batch | flipped | {name: batch[name] * sign for name, sign in _MIRROR_SIGNS.items()}


class Mirrored:
    """Training data of twice the windows: index i < N is window i, index N + i its mirror image (`mirrored`)."""

    def __init__(self, windows: LocalWindows) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return 2 * len(self.windows)

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        n = len(self.windows)
        batch = self.windows.batch(indices % n)
        flip = torch.from_numpy(indices >= n)
        other = mirrored(batch)
        return {name: torch.where(flip.view(-1, *[1] * (value.dim() - 1)), other[name], value)
                for name, value in batch.items()}  # fmt: skip
