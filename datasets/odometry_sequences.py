"""Astra-Local's training set (schemas.local_dataset) as sequences for the odometry head, held in memory.

Item n of an episode is the `history` steps that end at frame n, step i going from frame i-1 to frame i, in the
odometry head's batch contract (models.astra_local.odometry), float32 unless said:

- `bev` [T+1, BEV_CHANNELS, G, G]: frames n-T .. n lifted into the bird's-eye view (models.astra_local.bev)
- `imu` [T, IMU_SAMPLES, 6]: each step's gyro (rad/s) and accelerometer (in g), resampled evenly over the step
- `wheels` [T, WHEEL_SAMPLES, 4]: left and right wheel travel since the step began (m) and their speeds (m/s), at
  the nominal wheel radius, resampled likewise
- `valid` [T] bool: steps inside the episode (the first frame begins no step)
- `motion` [T, 3]: the true motion of each step (dx, dy, dyaw in the frame it starts from)
- `odom_motion` [T, 3]: the same motion as the robot's wheel + IMU filter saw it

The lifted frames are cached beside the dataset (`cache/bev/<episode>.npy`), so that every variant trained on it
lifts them once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from models.astra_local.bev import lift_stored_frame
from models.navigation import se2
from schemas.local_dataset import FRAMES_DIR, LocalDatasetManifest
from schemas.robot import DEFAULT_ROBOT

HISTORY = 10
IMU_SAMPLES, WHEEL_SAMPLES = 50, 25  # the IMU's and the wheels' rates over a 0.5 s step
GRAVITY = 9.81
BEV_CACHE = Path("cache", "bev")


def _resampled(t_ns: np.ndarray, values: np.ndarray, start_ns: int, stop_ns: int, count: int) -> np.ndarray:
    """[count, C]: `values` [n, C] at `count` even times over (start, stop], held at the ends."""
    times = np.linspace(start_ns, stop_ns, count + 1)[1:]
    return np.stack([np.interp(times, t_ns, values[:, c]) for c in range(values.shape[1])], 1).astype(np.float32)


def _motions(poses: np.ndarray) -> np.ndarray:
    """[N, 3] motion into each pose from the one before it, in that one's frame; row 0 zeros."""
    out = np.zeros_like(poses)
    for i in range(1, len(poses)):
        out[i] = se2.compose(se2.inverse(tuple(poses[i - 1])), tuple(poses[i]))
    return out


class Episode:
    """One tour's frames as arrays: step inputs and motions per frame (row i: from frame i-1 to i)."""

    def __init__(self, frames: pl.DataFrame, bev: np.ndarray) -> None:
        self.episode_id = frames["episode_id"][0]
        self.dynamic = bool(frames["dynamic"][0])
        self.world_seed = int(frames["world_seed"][0])
        self.bev = bev
        self.t_ns = frames["t_ns"].to_numpy()
        self.true = frames.select("true_x", "true_y", "true_yaw").to_numpy()
        self.odom = frames.select("odom_x", "odom_y", "odom_yaw").to_numpy()
        t_ns, n = self.t_ns, len(frames)
        self.imu = np.zeros((n, IMU_SAMPLES, 6), np.float32)
        self.wheels = np.zeros((n, WHEEL_SAMPLES, 4), np.float32)
        last_position = None
        for i, row in enumerate(frames.select("imu_t_ns", "imu", "wheels_t_ns", "wheels").iter_rows()):
            imu_t, imu, wheel_t, wheels = row
            imu = np.asarray(imu, np.float32).reshape(-1, 6) * [1, 1, 1, 1 / GRAVITY, 1 / GRAVITY, 1 / GRAVITY]
            wheels = np.asarray(wheels, np.float32).reshape(-1, 4)
            if i and len(imu):
                self.imu[i] = _resampled(np.asarray(imu_t), imu, t_ns[i - 1], t_ns[i], IMU_SAMPLES)
            if i and len(wheels):
                start = wheels[0, :2] if last_position is None else last_position
                travel = np.concatenate([wheels[:, :2] - start, wheels[:, 2:]], 1) * DEFAULT_ROBOT.wheel_radius
                self.wheels[i] = _resampled(np.asarray(wheel_t), travel, t_ns[i - 1], t_ns[i], WHEEL_SAMPLES)
            if len(wheels):
                last_position = wheels[-1, :2]
        self.motion = _motions(self.true).astype(np.float32)
        self.odom_motion = _motions(self.odom).astype(np.float32)

    def __len__(self) -> int:
        return len(self.true)


def _cached_bev(folder: Path, episode: str, frames: pl.DataFrame) -> np.ndarray:
    path = folder / BEV_CACHE / f"{episode}.npy"
    if path.is_file():
        return np.load(path)
    bev = np.stack([lift_stored_frame(*row) for row in frames.select("jpeg", "depth", "k").iter_rows()])
    bev = bev.astype(np.float16)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), bev)
    path.with_suffix(".tmp.npy").rename(path)  # whole or absent, for variants that train side by side
    return bev


class OdometrySequences(Dataset):
    """Every frame but each episode's first, of the episodes of `sites` (or all) whose frames all match `where`."""

    def __init__(
        self,
        folder: Path,
        sites: Sequence[str] | None = None,
        where: pl.Expr | None = None,
        history: int = HISTORY,
        progress: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.manifest = LocalDatasetManifest.read(self.folder)
        self.history = history
        self.vision_tokens: list[np.ndarray] | None = None
        names = [
            e
            for site, info in sorted(self.manifest.sites.items())
            for e in info["episodes"]
            if sites is None or site in sites
        ]
        self.episodes: list[Episode] = []
        for name in tqdm(names, desc="odometry frames", unit="episode", disable=not progress):
            frames = pl.read_parquet(self.folder / FRAMES_DIR / f"{name}.parquet")
            if where is not None and frames.filter(where).height < frames.height:
                continue  # whole tours only: a sequence must not skip frames
            if len(frames) > 1:
                self.episodes.append(Episode(frames, _cached_bev(self.folder, name, frames)))
        self.index = np.array([(e, n) for e, ep in enumerate(self.episodes) for n in range(1, len(ep))]).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.index)

    def with_history(self, history: int) -> OdometrySequences:
        """The same frames in sequences of `history` steps (1: single steps, as the vision encoder trains on)."""
        view = copy.copy(self)
        view.history = history
        return view

    def with_vision_tokens(self, tokens: list[np.ndarray]) -> OdometrySequences:
        """The same sequences with each step's cached vision token (`tokens[episode]` [N, d], row n the step into
        frame n) as `vision_tokens` [T, d] in place of the BEV frames."""
        view = copy.copy(self)
        view.vision_tokens = tokens
        return view

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: value[0] for name, value in self.batch(np.array([index])).items()}

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """The sequences at `indices`, stacked: the contract's fields with a leading batch dimension."""
        parts = [self.sequence(*self.index[i]) for i in indices]
        return {name: torch.from_numpy(np.stack([p[name] for p in parts])) for name in parts[0]}

    def sequence(self, episode: int, n: int) -> dict[str, np.ndarray]:
        """The `history` steps of `self.episodes[episode]` that end at its frame n, padded before the tour."""
        ep, t = self.episodes[episode], self.history
        steps = np.arange(n - t + 1, n + 1)  # step i: frame i-1 -> i
        valid = steps >= 1
        frames = np.arange(n - t, n + 1)
        real = frames >= 0
        clipped = np.clip(steps, 0, None)
        if self.vision_tokens is not None:
            seen = {"vision_tokens": self.vision_tokens[episode][clipped] * valid[:, None]}
        else:
            seen = {"bev": ep.bev[np.clip(frames, 0, None)].astype(np.float32) * real[:, None, None, None]}
        return seen | {
            "imu": ep.imu[clipped] * valid[:, None, None],
            "wheels": ep.wheels[clipped] * valid[:, None, None],
            "valid": valid,
            "motion": ep.motion[clipped] * valid[:, None],
            "odom_motion": ep.odom_motion[clipped] * valid[:, None],
        }
