"""Time-aligned windows over lake episodes, as a torch Dataset for training."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from PIL import Image
from torch.utils.data import Dataset

from datasets.lake import Lake
from schemas.lake import EPISODE_ID
from schemas.topics import BY_OUTPUT, CAMERAS


@dataclass(frozen=True, eq=False)
class Stream:
    """A topic resampled onto a grid at its nominal rate (schemas.topics) in every window."""

    table: str
    output_id: str
    values: tuple[pl.Expr, ...]

    @property
    def topic(self) -> str:
        return BY_OUTPUT[self.output_id].ros_topic

    @property
    def rate_hz(self) -> float:
        return BY_OUTPUT[self.output_id].rate_hz


def _columns(prefix: str, names: str = "xyz") -> tuple[pl.Expr, ...]:
    return tuple(pl.col(f"{prefix}_{n}") for n in names)


_POSE = (*_columns("position"), *_columns("orientation", "xyzw"))
_TWIST = (pl.col("linear_x"), pl.col("angular_z"))  # all a differential drive can follow

STREAMS: dict[str, Stream] = {
    "imu": Stream("imu", "imu", (*_columns("angular_velocity"), *_columns("linear_acceleration"))),
    "wheels": Stream(
        "wheels",
        "wheels",
        tuple(
            pl.col(c).list.get(i).alias(f"{c}_{side}")
            for c in ("position", "velocity")
            for i, side in enumerate(("left", "right"))
        ),
    ),
    "odom": Stream("odometry", "odom", _POSE),
    "ground_truth": Stream("odometry", "ground_truth", _POSE),
    "cmd_vel": Stream("commands", "cmd_vel", _TWIST),
    "expert_cmd_vel": Stream("commands", "expert_cmd_vel", _TWIST),
}
IMAGE_TOPICS = tuple(BY_OUTPUT[f"image_{camera}"].ros_topic for camera in CAMERAS)


class EpisodeWindows(Dataset):
    """Windows of `window_s` seconds, one every `stride_s`, over lake episodes; every stream aligned on `t_ns`.

    Windows lie where every stream and camera has messages; episodes missing one, or still being
    ingested (no `episodes` row yet), are left out.
    `episodes` is an optional SQL condition on the `episodes` table, e.g. "site = 'office-0' AND collisions = 0".
    Items are read from the lake when asked for: only the window index is held in memory. `lake_version` is the
    version read: record it with what is trained on the windows; `Lake(path, version=...)` gives the same ones again.

    Each item is a dict (K = `keyframes`, C = len(CAMERAS), N = window_s × the stream's nominal rate):

    - `episode_id` str
    - `t0_ns` int64 scalar: window start (MCAP log time); the window is [t0_ns, t0_ns + window_s)
    - `keyframe_t_ns` int64[K]: t0_ns + k · window_s / K
    - `images` uint8[K, C, 3, H, W]: for each keyframe and camera (CAMERAS order), the JPEG nearest in time, as RGB
    - `image_t_ns` int64[K, C]: t_ns of each image
    - `<stream>` float32[N, D]: for each grid time t0_ns + i / rate, the values of the message nearest in time
    - `<stream>_t_ns` int64[N]: t_ns of each of those messages, to see how far they lie from the grid

    Streams (D columns, grid rate):

    - `imu`: angular velocity xyz (rad/s), linear acceleration xyz (m/s²); 100 Hz
    - `wheels`: left and right position (rad), left and right velocity (rad/s); 50 Hz
    - `odom`: wheel-odometry pose in `odom`, position xyz (m) and orientation quaternion xyzw; 50 Hz
    - `ground_truth`: simulator pose in `map`, the same columns; 50 Hz
    - `cmd_vel`: command after the safety layer, linear x (m/s) and angular z (rad/s); 50 Hz
    - `expert_cmd_vel`: the expert's command, the same columns; 20 Hz
    """

    def __init__(
        self,
        lake: Lake,
        window_s: float = 2.0,
        stride_s: float = 1.0,
        keyframes: int = 4,
        episodes: str | None = None,
    ) -> None:
        if window_s <= 0 or stride_s <= 0 or keyframes < 1:
            raise ValueError("window_s and stride_s must be > 0 and keyframes >= 1")
        self.lake = lake
        self.lake_version = lake.version
        self.window_ns = round(window_s * 1e9)
        self.keyframe_offsets_ns = np.arange(keyframes, dtype=np.int64) * self.window_ns // keyframes
        spans = self._spans(episodes)
        stride_ns = round(stride_s * 1e9)
        starts = [
            np.arange(start, end - self.window_ns + 1, stride_ns, dtype=np.int64) for start, end in spans.values()
        ]
        self.episode_ids = list(spans)
        self._episode = np.repeat(np.arange(len(starts)), [len(s) for s in starts])
        self._t0 = np.concatenate([np.empty(0, np.int64), *starts])

    def __len__(self) -> int:
        return len(self._t0)

    def __getitem__(self, index: int) -> dict[str, Any]:
        episode_id, t0 = self.episode_ids[self._episode[index]], int(self._t0[index])
        keyframe_t = t0 + self.keyframe_offsets_ns
        # A window of margin each side: the message nearest a grid time may lie outside the window.
        lo, hi = t0 - self.window_ns, t0 + 2 * self.window_ns
        scans = [
            self._scan(s.table, episode_id, (s.topic,), lo, hi).select("t_ns", *s.values) for s in STREAMS.values()
        ]
        image_scan = self._scan("images", episode_id, IMAGE_TOPICS, lo, hi).select("topic", "t_ns", "data")
        *frames, images = pl.collect_all([*scans, image_scan])

        item: dict[str, Any] = {
            "episode_id": episode_id,
            "t0_ns": torch.tensor(t0),
            "keyframe_t_ns": torch.from_numpy(keyframe_t),
        }
        for (name, stream), frame in zip(STREAMS.items(), frames, strict=True):
            samples = round(self.window_ns * stream.rate_hz / 1e9)
            grid = t0 + np.round(np.arange(samples) * 1e9 / stream.rate_hz).astype(np.int64)
            rows = frame[_nearest(frame["t_ns"].to_numpy(), grid, f"{stream.topic} in episode {episode_id}")]
            item[name] = torch.from_numpy(rows.drop("t_ns").to_numpy().astype(np.float32))
            item[f"{name}_t_ns"] = torch.tensor(rows["t_ns"].to_numpy())  # polars arrays are read-only

        per_camera = []
        for topic in IMAGE_TOPICS:
            frames_of_camera = images.filter(pl.col("topic") == topic)
            t_ns = frames_of_camera["t_ns"].to_numpy()
            per_camera.append(frames_of_camera[_nearest(t_ns, keyframe_t, f"{topic} in episode {episode_id}")])
        pixels = np.stack([[_decode(rows["data"][k]) for rows in per_camera] for k in range(len(keyframe_t))])
        item["images"] = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 1, 4, 2, 3)))
        item["image_t_ns"] = torch.from_numpy(np.stack([rows["t_ns"].to_numpy() for rows in per_camera], axis=1))
        return item

    def _scan(self, table: str, episode_id: str, topics: tuple[str, ...], lo: int, hi: int) -> pl.LazyFrame:
        return (
            self.lake.table(table)
            .filter(pl.col(EPISODE_ID) == episode_id, pl.col("topic").is_in(topics))
            .filter(pl.col("t_ns").is_between(lo, hi))
            .sort("t_ns")
        )

    def _spans(self, episodes: str | None) -> dict[str, tuple[int, int]]:
        """episode_id -> (start, end) of the time every stream and camera has messages, by episode_id."""
        needed = [(s.table, s.topic) for s in STREAMS.values()] + [("images", topic) for topic in IMAGE_TOPICS]
        firsts_lasts = pl.collect_all(
            [
                self.lake.table(table)
                .filter(pl.col("topic").is_in([topic for t, topic in needed if t == table]))
                .group_by(EPISODE_ID, "topic")
                .agg(first=pl.col("t_ns").min(), last=pl.col("t_ns").max())
                for table in sorted({table for table, _ in needed})
            ]
        )
        spans = (
            pl.concat(firsts_lasts)
            .group_by(EPISODE_ID)
            .agg(start=pl.col("first").max(), end=pl.col("last").min(), topics=pl.len())
            .filter(pl.col("topics") == len(needed))
        )
        # An episode's `episodes` row is published last: only episodes that have one are complete.
        chosen = self.lake.sql(f"SELECT {EPISODE_ID} FROM episodes WHERE {episodes or 'true'}")
        spans = spans.filter(pl.col(EPISODE_ID).is_in(chosen[EPISODE_ID].implode()))
        rows = spans.sort(EPISODE_ID).select(EPISODE_ID, "start", "end").iter_rows()
        return {episode_id: (start, end) for episode_id, start, end in rows}


def _nearest(t_ns: np.ndarray, targets: np.ndarray, what: str) -> np.ndarray:
    """Index into sorted `t_ns` of the time nearest each target; ties go to the earlier one."""
    if len(t_ns) == 0:
        raise ValueError(f"no {what} within one window length of the window")
    right = np.searchsorted(t_ns, targets).clip(0, len(t_ns) - 1)
    left = (right - 1).clip(0)
    return np.where(np.abs(targets - t_ns[left]) <= np.abs(t_ns[right] - targets), left, right)


def _decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
