"""Messages exchanged between dora nodes, and their pyarrow encoding.

Each message is a frozen dataclass of plain values. On the wire every message is a
one-row pyarrow StructArray whose fields are the dataclass fields, plus dora metadata
``{"kind": <class name>, "t_ns": <stamp>}``. Nodes build and parse messages only with
:func:`to_arrow` and :func:`from_arrow`; conversion to ROS 2 lives in :mod:`schemas.ros2`.

Timestamps are int64 nanoseconds. Vectors are (x, y, z); quaternions are (x, y, z, w),
the ROS order.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa

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
    t_ns: int
    parent_frame_id: str
    child_frame_id: str
    translation: Vec3
    rotation: Quat


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


EVENT_KINDS = ("collision", "estop", "watchdog_stop", "episode_start", "episode_end", "goal_reached")

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
        Transform,
        Event,
        Clock,
        DynamicObstacles,
    )
}

M = TypeVar("M")

_SCALARS: dict[Any, pa.DataType] = {int: pa.int64(), float: pa.float64(), str: pa.string(), bytes: pa.binary()}


def _arrow_type(annotation: Any) -> pa.DataType:
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        return pa.list_(_SCALARS[args[0]])
    raise TypeError(f"no arrow type for {annotation!r}")


def arrow_schema(cls: type) -> pa.StructType:
    """The pyarrow struct type of a message class."""
    hints = typing.get_type_hints(cls)
    return pa.struct([pa.field(f.name, _arrow_type(hints[f.name]), nullable=False) for f in dataclasses.fields(cls)])


def to_arrow(msg: Any) -> tuple[pa.Array, dict[str, Any]]:
    """Encode one message as (one-row StructArray, dora metadata)."""
    cls = type(msg)
    if cls.__name__ not in MESSAGE_TYPES:
        raise TypeError(f"{cls.__name__} is not a registered message type")
    row = {f.name: getattr(msg, f.name) for f in dataclasses.fields(cls)}
    array = pa.array([row], type=arrow_schema(cls))
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
    row = array[0].as_py()
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        value = row[f.name]
        values[f.name] = tuple(value) if typing.get_origin(hints[f.name]) is tuple else value
    return cls(**values)
