"""LeRobot v3.0 export: the files read back with pyarrow and PyAV agree with the lake they came from."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from datasets.lake import Lake, LakeError, write_partition
from datasets.lerobot import ExportSummary, export_lerobot
from schemas import lerobot as fmt
from schemas.topics import BY_OUTPUT, CAMERAS
from tests.conftest import T0

MS = 1_000_000
WIDTH, HEIGHT = 32, 24
# episode id -> (site, collisions, camera ticks, rear_right tick the camera dropped)
EPISODES = {
    "ep-a": ("office-0", 0, 24, None),
    "ep-b": ("office-0", 2, 12, None),
    "ep-c": ("warehouse-1", 0, 17, 8),
    "ep-d": ("office-0", 0, 10, "all"),
}
SELECTED = ["ep-a", "ep-c", "ep-d"]  # collisions = 0, in recording order
EXPORTED = ["ep-a", "ep-c"]  # ep-d has no rear_right camera


def _jpeg(tick: int, camera: int) -> bytes:
    """A smooth picture that differs per tick and camera, so decoded frames can be matched to their source."""
    rgb = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb[..., 0] = (10 + 9 * tick) % 256
    rgb[..., 1] = 60 + 60 * camera
    rgb[..., 2] = np.linspace(0, 250, WIDTH, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _write_episode(lake: Path, number: int, episode_id: str) -> None:
    site, collisions, ticks, dropped = EPISODES[episode_id]
    start = T0 + number * 60_000 * MS
    end = start + ticks * 100 * MS
    write_partition(lake, "episodes", episode_id, {
        "site": [site], "robot_id": ["astra-sim-01"], "world_kind": [site.split("-")[0]],
        "start_ns": [start], "end_ns": [end], "collisions": [collisions], "duration_s": [(end - start) / 1e9],
    })
    images: dict[str, list] = {"t_ns": [], "topic": [], "format": [], "data": []}
    for c, camera in enumerate(CAMERAS):
        for tick in range(ticks):
            if camera == "rear_right" and dropped in (tick, "all"):
                continue
            images["t_ns"].append(start + tick * 100 * MS + (c - 1) * 2 * MS)  # cameras a few ms apart
            images["topic"].append(BY_OUTPUT[f"image_{camera}"].ros_topic)
            images["format"].append("jpeg")
            images["data"].append(_jpeg(tick, c))
    write_partition(lake, "images", episode_id, images)

    # /odom from just before the first image, ground truth beside it to be ignored; 50 Hz.
    t = start - 5 * MS + np.arange(ticks * 5 + 5) * 20 * MS
    s = (t - start) / 1e9
    yaw = np.sin(s) * 2.5
    for topic, offset in ((BY_OUTPUT["odom"].ros_topic, 0.0), (BY_OUTPUT["ground_truth"].ros_topic, 100.0)):
        write_partition(lake, "odometry", f"{episode_id}", {
            "t_ns": t.tolist(), "topic": [topic] * len(t),
            "position_x": (offset + 0.3 * s).tolist(), "position_y": (number - 0.1 * s**2).tolist(),
            "position_z": [0.0] * len(t), "orientation_x": [0.0] * len(t), "orientation_y": [0.0] * len(t),
            "orientation_z": np.sin(yaw / 2).tolist(), "orientation_w": np.cos(yaw / 2).tolist(),
            "linear_x": (0.3 + 0.01 * s).tolist(), "angular_z": np.cos(s).tolist(),
        }) if offset == 0.0 else None
    # /cmd_vel starts 0.35 s in; the expert's command is a different topic.
    c = start + 350 * MS + np.arange(ticks * 5) * 20 * MS
    write_partition(lake, "commands", episode_id, {
        "t_ns": [*c.tolist(), *c.tolist()],
        "topic": [BY_OUTPUT["cmd_vel"].ros_topic] * len(c) + [BY_OUTPUT["expert_cmd_vel"].ros_topic] * len(c),
        "linear_x": [*(0.5 + 0.001 * np.arange(len(c))).tolist(), *[9.0] * len(c)],
        "angular_z": [*(-0.2 + 0.002 * np.arange(len(c))).tolist(), *[9.0] * len(c)],
    })
