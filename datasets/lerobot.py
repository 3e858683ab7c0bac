"""Export lake episodes as a LeRobot v3.0 dataset (the format: schemas/lerobot.py).

Each episode becomes frames on a uniform `fps` grid, from the first instant at which every camera and
/odom have published to the last instant every camera covers. At each tick a frame takes each camera's
nearest image, the latest /odom as state, and the latest /cmd_vel as action (zero before the first
command: the base stands still until commanded). At the cameras' own 10 Hz and `fps=10`, every image
becomes exactly one frame.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from tqdm import tqdm

from datasets.lake import Lake, LakeError
from schemas import lerobot as fmt
from schemas.topics import BY_OUTPUT, CAMERAS

_NS_PER_S = 1_000_000_000
_BYTES_PER_MB = 1 << 20
_CAMERA_TOPICS = {BY_OUTPUT[f"image_{camera}"].ros_topic: camera for camera in CAMERAS}
_ODOM_TOPIC, _CMD_TOPIC = BY_OUTPUT["odom"].ros_topic, BY_OUTPUT["cmd_vel"].ros_topic


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote; `skipped` maps lake episode ids left out to the reason."""

    out: str
    episodes: int
    frames: int
    videos: int
    bytes: int
    seconds: float
    skipped: dict[str, str]
    lake_version: int | None  # the version of the lake read, also in meta/info.json

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Skip(Exception):
    """An episode that cannot become LeRobot frames; the export goes on without it."""


def export_lerobot(
    lake: Path,
    episodes_filter: str | None,
    out: Path,
    fps: int = 10,
    progress: bool = True,
    limits: fmt.FileLimits = fmt.DEFAULT_LIMITS,
) -> ExportSummary:
    """Write the lake episodes matching `episodes_filter` (SQL over `episodes`; None: every episode) as a LeRobot
    dataset at `out`.

    Raises LakeError when there is no lake, FileExistsError when `out` is not empty, and ValueError for a
    bad filter, a bad `fps`, or no exportable episode. The dataset appears at `out` only once complete.
    """
    started = time.monotonic()
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    source = Lake(lake)
    selected = _select_episodes(source, episodes_filter)
    if selected.is_empty():
        raise ValueError(
            "the lake has no episodes" if episodes_filter is None else f"no episode matches {episodes_filter!r}"
        )
    matching = "" if episodes_filter is None else f" matching {episodes_filter!r}"

    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    skipped: dict[str, str] = {}
    try:
        writer = _DatasetWriter(staging, fps, limits, {"lake": str(source.path), "lake_version": source.version})
        for episode_id, site in tqdm(
            selected.iter_rows(), total=len(selected), desc="export lerobot", unit="episode", disable=not progress
        ):
            try:
                writer.add(_sample_episode(source, episode_id, fps), fmt.TASK_TEMPLATE.format(site=site))
            except _Skip as reason:
                skipped[episode_id] = str(reason)
        if not writer.episodes:
            raise ValueError(f"none of the {len(selected)} episodes{matching} has frames: {skipped}")
        writer.close()
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportSummary(
        out=str(out),
        episodes=len(writer.episodes),
        frames=writer.frames,
        videos=sum(1 for _ in out.glob("videos/*/*/*.mp4")),
        bytes=sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
        seconds=round(time.monotonic() - started, 3),
        skipped=skipped,
        lake_version=source.version,
    )


def _select_episodes(lake: Lake, episodes_filter: str | None) -> pl.DataFrame:
    """(episode_id, site) of the matching episodes (None: all), in recording order."""
    where = "" if episodes_filter is None else f"WHERE ({episodes_filter}) "
    try:
        return lake.sql(f"SELECT episode_id, site FROM episodes {where}ORDER BY start_ns, episode_id")
    except LakeError as err:
        if episodes_filter is None:
            raise  # no filter to blame: the lake itself lacks episodes
        raise ValueError(f"bad episodes filter {episodes_filter!r}: {err}") from err


@dataclass(frozen=True)
class _Episode:
    """One episode sampled on the frame grid."""

    episode_id: str
    t0_ns: int
    state: np.ndarray  # (frames, len(STATE_NAMES)) float32
    action: np.ndarray  # (frames, len(ACTION_NAMES)) float32
    images: dict[str, list[bytes]]  # camera -> encoded image of each frame
    shapes: dict[str, tuple[int, int]]  # camera -> (height, width)

    @property
    def frames(self) -> int:
        return len(self.state)


def _sample_episode(lake: Lake, episode_id: str, fps: int) -> _Episode:
    """One episode's frames on the `fps` grid (see the module doc); _Skip when it lacks a stream."""

    def rows(table: str, topics: list[str], columns: list[str]) -> pl.DataFrame:
        return (
            lake.table(table)
            .filter(pl.col("episode_id") == episode_id, pl.col("topic").is_in(topics))
            .select("t_ns", "topic", *columns)
            .sort("t_ns")
            .collect()
        )

    images = rows("images", list(_CAMERA_TOPICS), ["data"])
    cameras = {_CAMERA_TOPICS[topic]: part for (topic,), part in images.partition_by("topic", as_dict=True).items()}
    missing = [camera for camera in CAMERAS if camera not in cameras]
    if missing:
        raise _Skip(f"no images from camera {', '.join(missing)}")
    pose_columns = ["position_x", "position_y", *(f"orientation_{c}" for c in "xyzw"), "linear_x", "angular_z"]
    odom = rows("odometry", [_ODOM_TOPIC], pose_columns)
    if odom.is_empty():
        raise _Skip(f"no {_ODOM_TOPIC} odometry")
    commands = rows("commands", [_CMD_TOPIC], ["linear_x", "angular_z"])
    if commands.is_empty():
        raise _Skip(f"no {_CMD_TOPIC} commands")

    t0 = max(odom["t_ns"][0], *(part["t_ns"][0] for part in cameras.values()))
    end = min(part["t_ns"][-1] for part in cameras.values())
    if end < t0:
        raise _Skip(f"the cameras stop before {_ODOM_TOPIC} starts")
    # The span rounds to whole periods, so that camera jitter neither adds nor drops a frame.
    ticks = ((end - t0) * fps * 2 + _NS_PER_S) // (2 * _NS_PER_S) + 1
    grid = pl.DataFrame({"t_ns": t0 + np.arange(ticks, dtype=np.int64) * _NS_PER_S // fps}).set_sorted("t_ns")

    def at_ticks(frame: pl.DataFrame, strategy: str) -> pl.DataFrame:
        return grid.join_asof(frame.drop("topic"), on="t_ns", strategy=strategy)

    pose = at_ticks(odom, "backward")
    qx, qy, qz, qw = (pose[f"orientation_{c}"].to_numpy() for c in "xyzw")
    yaw = np.arctan2(2 * (qw * qz + qx * qy), 1 - 2 * (qy * qy + qz * qz))
    state = np.column_stack([pose["position_x"], pose["position_y"], yaw, pose["linear_x"], pose["angular_z"]])
    action = at_ticks(commands, "backward").select("linear_x", "angular_z").fill_null(0.0).to_numpy()
    sampled = {camera: at_ticks(part, "nearest")["data"].to_list() for camera, part in cameras.items()}
    shapes = {camera: Image.open(io.BytesIO(data[0])).size[::-1] for camera, data in sampled.items()}
    return _Episode(episode_id, t0, state.astype(np.float32), action.astype(np.float32), sampled, shapes)


@dataclass(frozen=True)
class _FeatureStats:
    """A feature's statistics per channel, kept in a form that merges across episodes.

    Count, sums and extremes merge exactly. Quantiles merge as LeRobot's `aggregate_stats` merges them, by
    their mean weighted by each episode's count (its frames), so they are kept multiplied by it and summed.
    """

    frames: int
    samples: int
    total: np.ndarray
    squares: np.ndarray
    low: np.ndarray
    high: np.ndarray
    weighted_quantiles: np.ndarray  # (len(QUANTILES), channels)

    @classmethod
    def of(cls, values: np.ndarray, frames: int) -> _FeatureStats:
        """Statistics of `values` (samples x channels) drawn from `frames` frames."""
        v = values.astype(np.float64)
        quantiles = np.quantile(v, fmt.QUANTILES, axis=0)
        return cls(frames, len(v), v.sum(0), np.square(v).sum(0), v.min(0), v.max(0), quantiles * frames)

    @classmethod
    def of_histograms(cls, counts: np.ndarray, frames: int) -> _FeatureStats:
        """Statistics of 8-bit channels from their histograms (channels x 256) over `frames` frames."""
        values = np.arange(counts.shape[1], dtype=np.float64)
        seen = counts > 0
        low, high = seen.argmax(1), counts.shape[1] - 1 - seen[:, ::-1].argmax(1)
        return cls(
            frames,
            int(counts[0].sum()),
            counts @ values,
            counts @ values**2,
            values[low],
            values[high],
            _histogram_quantiles(counts) * frames,
        )

    def __add__(self, other: _FeatureStats) -> _FeatureStats:
        return _FeatureStats(
            self.frames + other.frames,
            self.samples + other.samples,
            self.total + other.total,
            self.squares + other.squares,
            np.minimum(self.low, other.low),
            np.maximum(self.high, other.high),
            self.weighted_quantiles + other.weighted_quantiles,
        )

    def as_lerobot(self, image: bool) -> dict[str, list]:
        """LeRobot statistics; images per channel, scaled to 0..1 and shaped (3, 1, 1)."""
        scale, shape = (1 / 255, (-1, 1, 1)) if image else (1.0, (-1,))
        mean = self.total / self.samples
        std = np.sqrt(np.maximum(self.squares / self.samples - mean**2, 0.0))
        # Rounding in the weighted mean can stray an ulp past the extremes.
        quantiles = np.clip(self.weighted_quantiles / self.frames, self.low, self.high)
        values = {
            "min": self.low,
            "max": self.high,
            "mean": mean,
            "std": std,
            **dict(zip(fmt.QUANTILE_NAMES, quantiles, strict=True)),
        }
        return {**{k: (v * scale).reshape(shape).tolist() for k, v in values.items()}, "count": [self.frames]}


def _histogram_quantiles(counts: np.ndarray) -> np.ndarray:
    """QUANTILES (levels x channels) of the values 0..K-1 counted per channel in `counts` (channels x K), as
    np.quantile's default (linear) method gives them over the values themselves."""
    cumulative = counts.cumsum(1)
    last = cumulative[:, -1:] - 1  # index of each channel's largest value in sorted order
    position = np.asarray(fmt.QUANTILES) * last
    below = np.floor(position)

    def nth(k: np.ndarray) -> np.ndarray:
        """The k-th smallest value (from 0) of each channel: the first whose cumulative count passes k."""
        return np.array([np.searchsorted(c, row, side="right") for c, row in zip(cumulative, k, strict=True)])

    low, high = nth(below), nth(np.minimum(below + 1, last))
    return (low + (position - below) * (high - low)).T


@dataclass
class _FileSlot:
    """The chunk and file being filled; the next file begins when adding would pass the size cap."""

    chunks_size: int
    cap_bytes: float
    chunk: int = 0
    file: int = -1  # no file yet
    bytes: int = 0
    frames: int = 0

    def advance(self, nbytes: float) -> bool:
        """Make room for `nbytes` more; True when that takes a new file."""
        if self.file >= 0 and (self.frames == 0 or self.bytes + nbytes < self.cap_bytes):
            return False
        if self.file + 1 == self.chunks_size:
            self.chunk, self.file = self.chunk + 1, 0
        else:
            self.file += 1
        self.bytes = self.frames = 0
        return True


class _DataFiles:
    """data/chunk-*/file-*.parquet, filled episode by episode."""

    def __init__(self, root: Path, limits: fmt.FileLimits) -> None:
        self.root = root
        self.slot = _FileSlot(limits.chunks_size, limits.data_files_size_in_mb * _BYTES_PER_MB)
        self.writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> dict[str, int]:
        """Append one episode's rows; returns its data file columns."""
        if self.slot.advance(table.nbytes):
            self.close()
            path = self.root / fmt.DATA_PATH.format(chunk_index=self.slot.chunk, file_index=self.slot.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(path, fmt.DATA_SCHEMA)
        self.writer.write_table(table)
        self.slot.bytes += table.nbytes
        self.slot.frames += table.num_rows
        return {"data/chunk_index": self.slot.chunk, "data/file_index": self.slot.file}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _VideoFiles:
    """videos/<key>/chunk-*/file-*.mp4 of one camera, filled episode by episode at `fps`."""

    def __init__(self, root: Path, key: str, fps: int, limits: fmt.FileLimits, shape: tuple[int, int]) -> None:
        self.root, self.key, self.fps, self.shape = root, key, fps, shape
        self.slot = _FileSlot(limits.chunks_size, limits.video_files_size_in_mb * _BYTES_PER_MB)
        self.container: av.container.OutputContainer | None = None
        self.stream: av.VideoStream | None = None

    def begin(self, frames: int) -> dict[str, int | float]:
        """Place an episode of `frames` frames; returns its video columns."""
        # Encoded size is known only afterwards: predict it from this file's bytes per frame so far.
        per_frame = self.slot.bytes / self.slot.frames if self.slot.frames else 0.0
        if self.slot.advance(per_frame * frames):
            self.close()
            path = self.root / fmt.VIDEO_PATH.format(
                video_key=self.key, chunk_index=self.slot.chunk, file_index=self.slot.file
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(path), "w")
            self.stream = self.container.add_stream(fmt.VIDEO_ENCODER, rate=self.fps, options=fmt.VIDEO_OPTIONS)
            self.stream.height, self.stream.width = self.shape
            self.stream.pix_fmt = fmt.VIDEO_PIX_FMT
        start = self.slot.frames
        columns = {
            "chunk_index": self.slot.chunk,
            "file_index": self.slot.file,
            "from_timestamp": start / self.fps,
            "to_timestamp": (start + frames) / self.fps,
        }
        return {fmt.video_column(self.key, name): value for name, value in columns.items()}

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.slot.frames
        self._mux(self.stream.encode(frame))
        self.slot.frames += 1

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self.slot.bytes += packet.size
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            self._mux(self.stream.encode(None))
            self.container.close()
            self.container = None


class _DatasetWriter:
    """Writes episodes as a LeRobot v3.0 tree under `root`; `close` adds the metadata."""

    def __init__(self, root: Path, fps: int, limits: fmt.FileLimits, source: dict[str, Any]) -> None:
        self.root, self.fps, self.limits, self.source = root, fps, limits, source
        self.data = _DataFiles(root, limits)
        self.videos: dict[str, _VideoFiles] = {}
        self.image_keys: set[str] = set()
        self.shapes: dict[str, tuple[int, int]] = {}
        self.tasks: dict[str, int] = {}
        self.episodes: list[dict[str, Any]] = []
        self.stats: dict[str, _FeatureStats] = {}
        self.frames = 0

    def add(self, episode: _Episode, task: str) -> None:
        """Append an episode's rows, videos and statistics; _Skip when its camera sizes differ from the dataset's."""
        if not self.shapes:
            self.shapes = episode.shapes
            self.videos = {
                camera: _VideoFiles(self.root, fmt.image_key(camera), self.fps, self.limits, shape)
                for camera, shape in episode.shapes.items()
            }
            self.image_keys = {video.key for video in self.videos.values()}
        elif episode.shapes != self.shapes:
            raise _Skip(f"camera sizes {episode.shapes} differ from the dataset's {self.shapes}")
        index, frames = len(self.episodes), episode.frames
        task_index = self.tasks.setdefault(task, len(self.tasks))
        frame_index = np.arange(frames, dtype=np.int64)
        columns = {
            fmt.STATE_KEY: episode.state,
            fmt.ACTION_KEY: episode.action,
            "timestamp": (frame_index / self.fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(frames, index, dtype=np.int64),
            "index": self.frames + frame_index,
            "task_index": np.full(frames, task_index, dtype=np.int64),
        }
        table = pa.Table.from_arrays(
            [
                pa.FixedSizeListArray.from_arrays(v.ravel(), v.shape[1]) if v.ndim == 2 else pa.array(v)
                for v in columns.values()
            ],
            schema=fmt.DATA_SCHEMA,
        )
        row: dict[str, Any] = {
            "episode_index": index,
            "tasks": [task],
            "length": frames,
            **self.data.write(table),
            "dataset_from_index": self.frames,
            "dataset_to_index": self.frames + frames,
        }
        stats = {key: _FeatureStats.of(values.reshape(frames, -1), frames) for key, values in columns.items()}
        for camera, video in self.videos.items():
            row.update(video.begin(frames))
            stats[video.key] = self._encode(video, episode.images[camera])
        for key, feature in stats.items():
            self.stats[key] = self.stats[key] + feature if key in self.stats else feature
            for stat, value in feature.as_lerobot(image=key in self.image_keys).items():
                row[fmt.stats_column(key, stat)] = value
        row.update(
            {
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                fmt.SOURCE_EPISODE_COLUMN: episode.episode_id,
                fmt.SOURCE_T0_COLUMN: episode.t0_ns,
            }
        )
        self.episodes.append(row)
        self.frames += frames

    @staticmethod
    def _encode(video: _VideoFiles, images: list[bytes]) -> _FeatureStats:
        """Decode, encode and measure one camera's frames of an episode."""
        # Histograms keep exact image statistics cheap: a few hundred counts per frame, not every pixel squared.
        counts = np.zeros((3, 256), dtype=np.int64)
        for data in images:
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            video.write(rgb)
            counts += [np.bincount(rgb[..., channel].ravel(), minlength=256) for channel in range(3)]
        return _FeatureStats.of_histograms(counts, len(images))

    def close(self) -> None:
        """Finish the files and write meta/: episodes, tasks, stats and info."""
        self.data.close()
        for video in self.videos.values():
            video.close()
        episodes_path = self.root / fmt.EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(self.episodes), episodes_path)
        tasks = pa.table({"task_index": list(self.tasks.values()), "task": list(self.tasks)}, schema=fmt.TASKS_SCHEMA)
        pq.write_table(tasks, self.root / fmt.TASKS_PATH)
        stats = {key: feature.as_lerobot(image=key in self.image_keys) for key, feature in self.stats.items()}
        (self.root / fmt.STATS_PATH).write_text(json.dumps(stats, indent=4))
        info = fmt.info(
            self.fps, self.shapes, len(self.episodes), self.frames, len(self.tasks), self.limits, self.source
        )
        (self.root / fmt.INFO_PATH).write_text(json.dumps(info, indent=4))
