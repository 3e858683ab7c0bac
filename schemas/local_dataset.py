"""The format of Astra-Local's training sets: frames and windows of expert tours, written by
`pipelines.local_dataset` from the lake and read by `datasets.local_windows` for the local models.

Layout of a dataset folder:

    manifest.json               format version, the lake and version it was read from, episodes, sites, geometry
    frames/<episode>.parquet    one row per frame instant, every `frame_period_s` of each tour (FRAMES)
    windows/<episode>.parquet   one row per window: the frames up to an instant, and what the planner learns (WINDOWS)
                                (also the windows of DAgger rounds, `astra dataset dagger`: they have no frames)
    cache/                      derived, rebuilt when absent: decoded frames (datasets.encoder_sequences) and the
                                4D encoder's tokens per window (VOXELS)

A frame holds what the robot sensed at one instant (the three cameras' pictures and depth, downsampled) and the IMU
and wheel samples since the previous frame, with the wheel + IMU filter's pose (`odom`, as the robot's own `local`
node fuses them) and the simulator's true pose (`world`).

A window at frame n holds frames n-F+1 .. n, all in the robot's ego frame at frame n (x forward, y left, metres; yaw
counter-clockwise): what the robot's own depth costmap showed at each of them, its velocities and the motions between
them, the subgoal, and, for training only, the expert's future trajectory and the true occupancy and ESDF (walls,
furniture, people and carts) now and `esdf_ahead_s` later. Tours recorded with the expert's commands perturbed
(`astra sim tours --perturb`) have no window whose future overlaps a perturbation: the windows after one show the
expert steering back. Grids are G x G cells of `resolution` metres centred on
the robot; cell [i, j] has its centre at x = (j + 0.5 - G/2) * resolution, y = (i + 0.5 - G/2) * resolution (rows
along y, columns along x, as `schemas.world.GridSpec`). Arrays are stored as raw little-endian bytes, row-major, of
the shapes given beside each column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.dataset_manifest import read_manifest, write_manifest

LOCAL_DATASET_VERSION = 1
FRAMES_DIR, WINDOWS_DIR = "frames", "windows"

# Occupancy codes of the robot's costmap crops (`occupancy`): what the robot has seen of each cell.
FREE, OCCUPIED, UNKNOWN = 0, 1, 2


@dataclass(frozen=True)
class LocalGeometry:
    """The shapes and times every local model, the dataset and the serving node share."""

    frames: int = 4  # F: past frames in a window, the newest the current one
    frame_period_s: float = 0.5
    grid: int = 64  # G: cells along each side of a crop
    resolution: float = 0.1  # m per cell
    waypoints: int = 8  # K: expert waypoints, every waypoint_period_s after the current frame
    waypoint_period_s: float = 0.25
    esdf_ahead_s: float = 1.0  # the second ESDF crop: the world this long after the current frame
    goal_ahead_m: float = 3.0  # the subgoal: this far along the expert's path, as global's subgoals lie ahead
    image_width: int = 80  # pictures and depth as stored, downsampled from the recording
    image_height: int = 60

    @property
    def half_extent_m(self) -> float:
        return self.grid * self.resolution / 2

    @property
    def horizon_s(self) -> float:
        return self.waypoints * self.waypoint_period_s


LOCAL_GEOMETRY = LocalGeometry()

_f32, _f64, _i64, _str = pa.float32(), pa.float64(), pa.int64(), pa.string()


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _pose(prefix: str) -> list[pa.Field]:
    return [_required(f"{prefix}_{n}", _f64) for n in ("x", "y", "yaw")]


_TOUR = [
    _required("site", _str),
    _required("kind", _str),  # office, warehouse, home, hospital
    _required("world_seed", _i64),
    _required("dynamic", pa.bool_()),  # the building had people and carts walking
    _required("episode_id", _str),
    _required("t_ns", _i64),
]

FRAMES = pa.schema(
    [
        *_TOUR,
        _required("cameras", pa.list_(_str)),  # schemas.topics.CAMERAS order
        _required("jpeg", pa.list_(pa.binary())),  # per camera, RGB image_height x image_width
        _required("depth", pa.list_(pa.binary())),  # per camera, float16 [image_height, image_width] m, NaN invalid
        _required("k", pa.list_(pa.list_(_f64, 9))),  # per camera, its matrix at the stored size, row-major
        *_pose("odom"),  # the wheel + IMU filter's pose in `odom`
        _required("odom_v", _f64),  # and its velocity (m/s, rad/s)
        _required("odom_w", _f64),
        *_pose("true"),  # the simulator's pose in `world`
        # Samples since the previous frame: IMU [n, 6] gyro xyz (rad/s), accel xyz (m/s^2); wheels [m, 4] left and
        # right position (rad), left and right velocity (rad/s).
        _required("imu_t_ns", pa.list_(_i64)),
        _required("imu", pa.list_(_f32)),
        _required("wheels_t_ns", pa.list_(_i64)),
        _required("wheels", pa.list_(_f32)),
    ]
)

WINDOWS = pa.schema(
    [
        *_TOUR,
        _required("frame_t_ns", pa.list_(_i64)),  # [F] the frames, oldest first
        _required("occupancy", pa.binary()),  # uint8 [F, G, G] FREE | OCCUPIED | UNKNOWN, the costmap at each frame
        _required("velocity", pa.list_(_f32)),  # [F, 2] v, w of the filter at each frame
        _required("motion", pa.list_(_f32)),  # [F, 3] dx, dy, dyaw from frame f-1 to f in f-1's frame; row 0 zeros
        _required("goal_x", _f64),
        _required("goal_y", _f64),
        _required("trajectory", pa.list_(_f32)),  # [K, 3] the expert's x, y, yaw at each waypoint time
        _required("true_occupancy", pa.binary()),  # uint8 [2, G, G] 1 occupied: now, and esdf_ahead_s later
        _required("esdf", pa.binary()),  # float16 [2, G, G] m to the nearest obstacle, 0 inside: now, and later
        _required("expert_v", _f64),  # the expert's speed at the frame (m/s), to tell standing from driving
    ]
)


# The frozen 4D encoder's tokens of each tour window (`pipelines.train_local.cached_voxel_tokens`), for planners that
# attend to them: one file per encoder checkpoint, VOXELS_DIR/<checkpoint digest>.parquet in the dataset folder.
VOXELS_DIR = Path("cache", "voxels")
VOXELS = pa.schema(
    [
        _required("episode_id", _str),
        _required("t_ns", _i64),  # the window's current frame
        _required("voxels", pa.binary()),  # float16 [V, C]: V tokens of the encoder's map, C channels each
    ]
)

VOXEL_SHAPE_KEY = b"voxel_shape"  # the file's metadata: "V,C"


def write_voxels(table: pa.Table, shape: tuple[int, int], path: Path) -> None:
    """A VOXELS table of tokens of `shape` (V, C) to `path`, whole or not at all (runs read the set side by side)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    metadata = {VOXEL_SHAPE_KEY: ",".join(map(str, shape)).encode()}
    pq.write_table(table.cast(VOXELS).replace_schema_metadata(metadata), partial)
    partial.rename(path)


def voxel_shape(path: Path) -> tuple[int, int]:
    """(V, C) of the tokens of a VOXELS file."""
    tokens, channels = pq.read_schema(path).metadata[VOXEL_SHAPE_KEY].decode().split(",")
    return int(tokens), int(channels)


class LocalDatasetError(ValueError):
    """A folder that is not a local training set of this version."""


@dataclass(frozen=True)
class LocalDatasetManifest:
    """What a dataset holds and where it came from, so that a trained model can name its data."""

    lake: str
    lake_version: int
    episodes: list[str]
    # site -> {"kind", "world_seed", "episodes", "dynamic_episodes" (with people and carts), "frames", "windows"}
    sites: dict[str, dict[str, Any]]
    geometry: dict[str, Any]  # LocalGeometry's fields
    version: int = LOCAL_DATASET_VERSION
    counts: dict[str, int] = field(default_factory=dict)  # frames, windows, dagger_windows
    # Rounds of windows from a learned planner's own drives (pipelines.dagger), oldest first: round, planner,
    # planner_digest, episodes, windows, collision_rate. Their episodes are in sites' "dagger_episodes".
    dagger: list[dict[str, Any]] = field(default_factory=list)
    replay: str = ""  # digest of the filter and costmap that cut the frames (pipelines.local_dataset.replay_digest)

    def write(self, folder: Path) -> None:
        write_manifest(self, folder)

    @property
    def local_geometry(self) -> LocalGeometry:
        return LocalGeometry(**self.geometry)

    @classmethod
    def read(cls, folder: Path) -> LocalDatasetManifest:
        return cls(**read_manifest(folder, "local", LOCAL_DATASET_VERSION, LocalDatasetError))
