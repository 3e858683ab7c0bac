"""The LeRobot dataset format, codebase version v3.0, as `astra export lerobot` writes it.

Layout under the dataset root (paths relative to it):

    meta/info.json                               version, fps, totals, path templates, features
    meta/stats.json                              per feature: min, max, mean, std, count, q01 ... q99
    meta/tasks.parquet                           task text (pandas index "task") -> task_index
    meta/episodes/chunk-000/file-000.parquet     one row per episode: frame range, files, video span, stats
    data/chunk-CCC/file-FFF.parquet              one row per frame: indices, timestamp, state, action
    videos/<video_key>/chunk-CCC/file-FFF.mp4    one camera's episodes back to back

Episodes are appended to the current data or video file until the next one would pass the file's size
cap; a chunk folder holds `chunks_size` files. Frame `i` of an episode has `timestamp = i / fps` and
sits at `from_timestamp + i / fps` in its video file. Image statistics are per RGB channel, scaled to
0..1, shaped (3, 1, 1).

Statistics follow LeRobot's `compute_stats`. An episode's are over every one of its frames (every pixel for
images); its quantiles are numpy's default (linear) ones, exact where LeRobot estimates them from a 5000-bin
histogram of sampled frames. The dataset's min, max, mean, std and count are over every frame, and its
quantiles are the count-weighted mean of the episodes' quantiles, as LeRobot's `aggregate_stats` makes them
(not the quantiles of the pooled frames), kept within min..max against rounding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

CODEBASE_VERSION = "v3.0"
ROBOT_TYPE = "astra_diff_drive"
TASK_TEMPLATE = "tour every room of {site}"

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
_CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
EPISODES_PATH = f"meta/episodes/{_CHUNK_FILE}.parquet"
DATA_PATH = f"data/{_CHUNK_FILE}.parquet"
VIDEO_PATH = f"videos/{{video_key}}/{_CHUNK_FILE}.mp4"

STATE_KEY, ACTION_KEY = "observation.state", "action"
# Wheel odometry (odom -> base_link): pose in the plane and body-frame velocities.
STATE_NAMES = ("x", "y", "yaw", "v", "omega")
# /cmd_vel after the safety layer.
ACTION_NAMES = ("linear_x", "angular_z")

# Video encoding: H.264 plays everywhere and LeRobot decodes it; a keyframe every 2 frames (LeRobot's
# default) keeps random access to any frame cheap; zero latency (no lookahead, no B-frames) makes each
# frame's packet come out at once, so a file's size is known after every episode. Codec name as PyAV
# reports it, encoder as FFmpeg names it.
VIDEO_CODEC, VIDEO_ENCODER, VIDEO_PIX_FMT = "h264", "libx264", "yuv420p"
VIDEO_OPTIONS = {"g": "2", "crf": "23", "tune": "zerolatency"}

# LeRobot's DEFAULT_QUANTILES and their stat names; QUANTILES normalization needs q01 and q99.
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_NAMES = tuple(f"q{round(q * 100):02d}" for q in QUANTILES)
STAT_NAMES = ("min", "max", "mean", "std", "count", *QUANTILE_NAMES)

# Where an episode came from in the lake: frame i was sampled at lake time `t0_ns + i * 10**9 // fps`.
SOURCE_EPISODE_COLUMN, SOURCE_T0_COLUMN = "lake/episode_id", "lake/t0_ns"


@dataclass(frozen=True)
class FileLimits:
    """How many files a chunk folder holds and how large data and video files grow (LeRobot's defaults)."""

    chunks_size: int = 1000
    data_files_size_in_mb: float = 100
    video_files_size_in_mb: float = 500


DEFAULT_LIMITS = FileLimits()


def image_key(camera: str) -> str:
    """Feature key of a camera's video."""
    return f"observation.images.{camera}"


def video_column(video_key: str, field: str) -> str:
    """Episodes column of a video: chunk_index, file_index, from_timestamp or to_timestamp."""
    return f"videos/{video_key}/{field}"


def stats_column(feature: str, stat: str) -> str:
    """Episodes column holding one statistic of one feature over the episode."""
    return f"stats/{feature}/{stat}"


# Per-frame scalars every LeRobot dataset has, with their dtypes.
_SCALARS = {
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}

DATA_SCHEMA = pa.schema(
    [
        pa.field(STATE_KEY, pa.list_(pa.float32(), len(STATE_NAMES))),
        pa.field(ACTION_KEY, pa.list_(pa.float32(), len(ACTION_NAMES))),
        *(pa.field(name, pa.type_for_alias(dtype)) for name, dtype in _SCALARS.items()),
    ]
)


def _pandas_column(name: str | None, pandas_type: str, numpy_type: str, metadata: dict | None = None) -> dict:
    return {
        "name": name,
        "field_name": name,
        "pandas_type": pandas_type,
        "numpy_type": numpy_type,
        "metadata": metadata,
    }


# LeRobot reads tasks with pandas and looks them up by the index, so the file carries the pandas metadata
# `DataFrame.to_parquet` would write, marking "task" as the index.
TASKS_SCHEMA = pa.schema(
    [pa.field("task_index", pa.int64()), pa.field("task", pa.string())],
    metadata={
        "pandas": json.dumps(
            {
                "index_columns": ["task"],
                "column_indexes": [_pandas_column(None, "unicode", "object", {"encoding": "UTF-8"})],
                "columns": [
                    _pandas_column("task_index", "int64", "int64"),
                    _pandas_column("task", "unicode", "object"),
                ],
                "creator": {"library": "pyarrow", "version": pa.__version__},
                "pandas_version": "2.2.3",
            }
        )
    },
)


def features(fps: int, camera_shapes: dict[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
    """The `features` of info.json; `camera_shapes` maps each camera to its (height, width)."""
    vectors = {STATE_KEY: STATE_NAMES, ACTION_KEY: ACTION_NAMES}
    out: dict[str, dict[str, Any]] = {
        key: {"dtype": "float32", "shape": [len(names)], "names": list(names), "fps": fps}
        for key, names in vectors.items()
    }
    for camera, (height, width) in camera_shapes.items():
        out[image_key(camera)] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": VIDEO_CODEC,
                "video.pix_fmt": VIDEO_PIX_FMT,
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    for name, dtype in _SCALARS.items():
        out[name] = {"dtype": dtype, "shape": [1], "names": None, "fps": fps}
    return out


def info(
    fps: int,
    camera_shapes: dict[str, tuple[int, int]],
    total_episodes: int,
    total_frames: int,
    total_tasks: int,
    limits: FileLimits,
    source: dict[str, Any],
) -> dict[str, Any]:
    """The content of meta/info.json. `source`: the lake and the lake version the frames were read from (ours;
    LeRobot reads the keys it knows)."""
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": ROBOT_TYPE,
        "total_episodes": total_episodes,
        "total_frames": total_frames,
        "total_tasks": total_tasks,
        "chunks_size": limits.chunks_size,
        "data_files_size_in_mb": limits.data_files_size_in_mb,
        "video_files_size_in_mb": limits.video_files_size_in_mb,
        "fps": fps,
        "splits": {"train": f"0:{total_episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH,
        "features": features(fps, camera_shapes),
        "source": source,
    }
