"""Messages exchanged between dora nodes, and their pyarrow encoding.

Each message is a frozen dataclass of plain values (a TFMessage holds a tuple of Transforms). On
the wire every message is a one-row pyarrow StructArray whose fields are the dataclass fields (a
tuple of dataclasses is a list of structs), plus dora metadata ``{"kind": <class name>, "t_ns":
<stamp>}``. Nodes build and parse messages only with :func:`to_arrow` and :func:`from_arrow`;
conversion to ROS 2 lives in :mod:`schemas.ros2`.

Timestamps are int64 nanoseconds. Vectors are (x, y, z); quaternions are (x, y, z, w),
the ROS order.
"""

from __future__ import annotations

import dataclasses
import io
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
from PIL import Image

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]


@dataclass(frozen=True)
class Imu:
    t_ns: int
    frame_id: str
    orientation: Quat
    angular_velocity: Vec3
    linear_acceleration: Vec3


@dataclass(frozen=True)
class WheelState:
    """Wheel encoders: positions in rad, velocities in rad/s (ROS JointState)."""

    t_ns: int
    names: tuple[str, ...]
    position: tuple[float, ...]
    velocity: tuple[float, ...]


@dataclass(frozen=True)
class Odometry:
    t_ns: int
    frame_id: str  # "odom" for wheel odometry, "map" for ground truth
    child_frame_id: str
    position: Vec3
    orientation: Quat
    linear_velocity: Vec3  # in child frame
    angular_velocity: Vec3


@dataclass(frozen=True)
class Twist:
    """A velocity command in base_link: linear[0] forward m/s, angular[2] yaw rate rad/s."""

    t_ns: int
    linear: Vec3
    angular: Vec3


@dataclass(frozen=True)
class CompressedImage:
    t_ns: int
    frame_id: str  # camera optical frame
    format: str  # "jpeg" | "png"
    data: bytes


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB (H, W, 3) uint8 of a CompressedImage's data (JPEG, or PNG)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@dataclass(frozen=True)
class DepthImage:
    """Metric depth along the optical axis, float32 little-endian, row-major (32FC1)."""

    t_ns: int
    frame_id: str
    width: int
    height: int
    data: bytes


@dataclass(frozen=True)
class CameraInfo:
    t_ns: int
    frame_id: str
    width: int
    height: int
    k: tuple[float, ...]  # 3x3 row-major intrinsics
    distortion_model: str
    d: tuple[float, ...]
    r: tuple[float, ...]
    p: tuple[float, ...]


@dataclass(frozen=True)
class Transform:
    """One stamped transform (geometry_msgs/TransformStamped): the child frame's pose in the parent frame."""

    t_ns: int
    parent_frame_id: str
    child_frame_id: str
    translation: Vec3
    rotation: Quat


@dataclass(frozen=True)
class TFMessage:
    """Every transform published at one stamp, as one tf2_msgs/TFMessage."""

    t_ns: int
    transforms: tuple[Transform, ...]


@dataclass(frozen=True)
class Event:
    """Something that happened: a collision, an e-stop, an episode boundary."""

    t_ns: int
    kind: str  # see EVENT_KINDS
    source: str  # node that raised it
    detail: str  # free text, e.g. the geom that was hit
    value: float  # kind-specific magnitude (contact force, speed at impact, ...)


@dataclass(frozen=True)
class Clock:
    """Simulation or robot time, the tick that drives time-based safety (rosgraph_msgs/Clock)."""

    t_ns: int


@dataclass(frozen=True)
class DynamicObstacles:
    """Privileged simulator truth about moving people and carts, in `map`."""

    t_ns: int
    ids: tuple[str, ...]
    x: tuple[float, ...]
    y: tuple[float, ...]
    vx: tuple[float, ...]
    vy: tuple[float, ...]
    radius: tuple[float, ...]


@dataclass(frozen=True)
class EstopState:
    """The e-stop button: actuation holds the robot stopped while `engaged`. Sent when it changes."""

    t_ns: int
    engaged: bool


@dataclass(frozen=True)
class PoseWithCovariance:
    """A pose estimate (geometry_msgs/PoseWithCovarianceStamped); covariance 6x6 row-major, x y z rx ry rz."""

    t_ns: int
    frame_id: str
    position: Vec3
    orientation: Quat
    covariance: tuple[float, ...]


@dataclass(frozen=True)
class PoseStamped:
    """A pose in a frame (geometry_msgs/PoseStamped), such as the navigation goal."""

    t_ns: int
    frame_id: str
    position: Vec3
    orientation: Quat


@dataclass(frozen=True)
class Path:
    """Planar poses along a path (nav_msgs/Path, each pose stamped with the path's stamp): x, y in m, yaw in rad."""

    t_ns: int
    frame_id: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    yaw: tuple[float, ...]


@dataclass(frozen=True)
class OccupancyGrid:
    """A 2-D grid (nav_msgs/OccupancyGrid): int8 cells, row-major from the origin; -1 unknown, 0 free, 100 occupied."""

    t_ns: int
    frame_id: str
    resolution: float  # m per cell
    width: int  # cells along x
    height: int  # cells along y
    origin: Vec3  # corner of cell (0, 0) in frame_id; the grid is axis-aligned with it
    data: bytes


@dataclass(frozen=True)
class MissionGoal:
    """A goal given as text, from the mission node to global (astra_msgs/MissionGoal)."""

    t_ns: int
    mission_id: str
    text: str


@dataclass(frozen=True)
class MissionStatus:
    """Where a mission stands (astra_msgs/MissionStatus); `state` is one of MISSION_STATES."""

    t_ns: int
    mission_id: str
    state: str
    goal_text: str
    goal_node: str
    goal_label: str
    goal_room: str
    distance_remaining_m: float
    candidates: tuple[str, ...]  # on goal_not_found, the three closest map descriptions
    detail: str


RECHECK = "recheck"  # the LocalizationResult.trigger of a confirmed estimate's search of the whole map


@dataclass(frozen=True)
class LocalizationResult:
    """One relocalization from camera images (astra_msgs/LocalizationResult): base_link in `frame_id` (map)."""

    t_ns: int  # stamp of the images it localized
    frame_id: str
    success: bool
    position: Vec3
    orientation: Quat
    covariance: tuple[float, ...]  # 6x6 row-major, x, y, z, rx, ry, rz
    confidence: float  # 0..1
    inliers: int
    candidates: tuple[str, ...]  # map nodes retrieved
    latency_s: float  # from the images' stamp to the result
    trigger: str  # "initial" | "confirm" | "periodic" | RECHECK | "request"
    reason: str  # why it failed; "" on success


@dataclass(frozen=True)
class CandidatePaths:
    """The trajectories the local planner weighed in one cycle (astra_msgs/CandidatePaths), in `frame_id` (odom).

    Path i is the `lengths[i]` points of `x`, `y` after the first sum(lengths[:i]); flat, so that a cycle is a
    few arrays rather than a list of messages. `chosen` indexes the path the planner took, -1 when none."""

    t_ns: int
    frame_id: str
    x: tuple[float, ...]
    y: tuple[float, ...]
    lengths: tuple[int, ...]
    costs: tuple[float, ...]  # lower is better, one per path; inf where a path was rejected
    chosen: int


EVENT_KINDS = (
    "collision",
    "estop",
    "watchdog_stop",
    "episode_start",
    "episode_end",
    "goal_reached",
    # Navigation: local asks global, recoveries, actuation's fallbacks.
    "relocalize_request",
    "recovery",
    "route_blocked",
    "localization_fallback",
    "localization_lost",
    "people_slowdown",
    "loop_stats",
    "handover",  # the learned local planner handed control to the classical one; detail: why
    "perturbation",  # the expert's commands are bent from now (sim.perturbation); detail: how, value: for how long (s)
)
MISSION_STATES = ("accepted", "localizing", "navigating", "recovering", "succeeded", "goal_not_found", "failed")
MISSION_FINAL_STATES = frozenset({"succeeded", "goal_not_found", "failed"})

MESSAGE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Imu,
        WheelState,
        Odometry,
        Twist,
        CompressedImage,
        DepthImage,
        CameraInfo,
        TFMessage,
        Event,
        Clock,
        DynamicObstacles,
        EstopState,
        PoseWithCovariance,
        PoseStamped,
        Path,
        OccupancyGrid,
        MissionGoal,
        MissionStatus,
        LocalizationResult,
        CandidatePaths,
    )
}

M = TypeVar("M")

_SCALARS: dict[Any, pa.DataType] = {
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    str: pa.string(),
    bytes: pa.binary(),
}


def _arrow_type(annotation: Any) -> pa.DataType:
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if dataclasses.is_dataclass(annotation):
        return arrow_schema(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        return pa.list_(_arrow_type(args[0]))
    raise TypeError(f"no arrow type for {annotation!r}")


def arrow_schema(cls: type) -> pa.StructType:
    """The pyarrow struct type of a message class."""
    hints = typing.get_type_hints(cls)
    return pa.struct([pa.field(f.name, _arrow_type(hints[f.name]), nullable=False) for f in dataclasses.fields(cls)])


def _to_row(msg: Any) -> dict[str, Any]:
    """A message as a dict; pyarrow takes tuples as lists, but nested dataclasses only as dicts."""
    row = {}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            value = [_to_row(item) for item in value]
        row[f.name] = value
    return row


def _from_row(cls: type[M], row: dict[str, Any]) -> M:
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        value, hint = row[f.name], hints[f.name]
        if typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            value = tuple(_from_row(item, v) for v in value) if dataclasses.is_dataclass(item) else tuple(value)
        values[f.name] = value
    return cls(**values)


def to_arrow(msg: Any) -> tuple[pa.Array, dict[str, Any]]:
    """Encode one message as (one-row StructArray, dora metadata)."""
    cls = type(msg)
    if cls.__name__ not in MESSAGE_TYPES:
        raise TypeError(f"{cls.__name__} is not a registered message type")
    array = pa.array([_to_row(msg)], type=arrow_schema(cls))
    return array, {"kind": cls.__name__, "t_ns": int(msg.t_ns)}


def from_arrow(array: pa.Array, metadata: dict[str, Any] | None = None, cls: type[M] | None = None) -> M:
    """Decode a message; the class comes from ``cls`` or from the ``kind`` metadata."""
    if cls is None:
        kind = (metadata or {}).get("kind")
        if kind not in MESSAGE_TYPES:
            raise ValueError(f"unknown message kind {kind!r}; expected one of {sorted(MESSAGE_TYPES)}")
        cls = MESSAGE_TYPES[kind]
    if len(array) != 1:
        raise ValueError(f"expected a one-row message, got {len(array)} rows")
    return _from_row(cls, array[0].as_py())
