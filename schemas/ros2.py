"""ROS 2 message definitions and conversions between our messages and ROS 2 (CDR) dicts.

Definitions live as `.msg` files under `schemas/ros2/<package>/msg/`. MCAP `ros2msg`
schemas are the main definition followed by each dependency, separated by a line of
80 `=` and a `MSG: pkg/Type` header, as rosbag2 writes them.
"""

from __future__ import annotations

import array
import dataclasses
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from schemas import messages as m
from schemas.topics import Topic

MSG_ROOT = Path(__file__).parent / "ros2"
_SEPARATOR = "=" * 80
_PRIMITIVES = {
    "bool",
    "byte",
    "char",
    "float32",
    "float64",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "string",
    "wstring",
}
_ZERO_COV9 = [0.0] * 9
_ZERO_COV36 = [0.0] * 36
# ROS convention: covariance[0] = -1 means "this field is not provided".
_UNKNOWN_COV9 = [-1.0] + [0.0] * 8


# rosbag2's `offered_qos_profiles` channel metadata: a YAML list of profiles, keys in the order its MCAP
# storage plugin writes them. 9223372036 s 854775807 ns is rmw's "infinite" duration.
_QOS_PROFILE = """\
- history: keep_last
  depth: {depth}
  reliability: reliable
  durability: {durability}
  deadline:
    sec: 9223372036
    nsec: 854775807
  lifespan:
    sec: 9223372036
    nsec: 854775807
  liveliness: automatic
  liveliness_lease_duration:
    sec: 9223372036
    nsec: 854775807
  avoid_ros_namespace_conventions: false"""


def channel_metadata(topic: Topic) -> dict[str, str]:
    """MCAP channel metadata as `ros2 bag record` writes it: the QoS the topic's publisher offers.

    A latched topic is offered as tf2's static broadcaster offers /tf_static (transient local, depth 1),
    so that `ros2 bag play` republishes it latched; others with rclcpp's default (volatile, depth 10).
    """
    durability, depth = ("transient_local", 1) if topic.latched else ("volatile", 10)
    return {"offered_qos_profiles": _QOS_PROFILE.format(depth=depth, durability=durability)}


def _msg_path(ros_type: str) -> Path:
    package, _, name = ros_type.partition("/msg/")
    return MSG_ROOT / package / "msg" / f"{name}.msg"


def _dependencies(ros_type: str) -> list[str]:
    """Direct dependencies of a type, as `pkg/msg/Name`."""
    package = ros_type.split("/")[0]
    deps = []
    for line in _msg_path(ros_type).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        field_type = re.sub(r"\[.*\]$", "", line.split()[0])
        if field_type in _PRIMITIVES or re.match(r"^(string|wstring)<=\d+$", field_type):
            continue
        pkg, _, name = field_type.rpartition("/")
        deps.append(f"{pkg or package}/msg/{name}")
    return deps


@cache
def message_definition(ros_type: str) -> str:
    """The full `ros2msg` schema text for an MCAP Schema record."""
    if not _msg_path(ros_type).exists():
        raise KeyError(f"no .msg definition for {ros_type} under {MSG_ROOT}")
    ordered: list[str] = []
    pending = list(_dependencies(ros_type))
    while pending:
        dep = pending.pop(0)
        if dep not in ordered:
            ordered.append(dep)
            pending.extend(_dependencies(dep))
    parts = [_msg_path(ros_type).read_text().rstrip("\n")]
    for dep in ordered:
        pkg, _, name = dep.partition("/msg/")
        parts.append(f"{_SEPARATOR}\nMSG: {pkg}/{name}\n{_msg_path(dep).read_text().rstrip(chr(10))}")
    return "\n".join(parts) + "\n"


def stamp(t_ns: int) -> dict[str, int]:
    sec, nanosec = divmod(int(t_ns), 1_000_000_000)
    return {"sec": sec, "nanosec": nanosec}


def _header(t_ns: int, frame_id: str) -> dict[str, Any]:
    return {"stamp": stamp(t_ns), "frame_id": frame_id}


def _vec3(v: tuple[float, float, float]) -> dict[str, float]:
    return {"x": v[0], "y": v[1], "z": v[2]}


def _quat(q: tuple[float, float, float, float]) -> dict[str, float]:
    return {"x": q[0], "y": q[1], "z": q[2], "w": q[3]}


def _transform_stamped(msg: m.Transform) -> dict[str, Any]:
    return {
        "header": _header(msg.t_ns, msg.parent_frame_id),
        "child_frame_id": msg.child_frame_id,
        "transform": {"translation": _vec3(msg.translation), "rotation": _quat(msg.rotation)},
    }


def _pose(position: tuple[float, float, float], orientation: tuple[float, float, float, float]) -> dict[str, Any]:
    return {"position": _vec3(position), "orientation": _quat(orientation)}


def _yaw_quat(yaw: float) -> dict[str, float]:
    return {"x": 0.0, "y": 0.0, "z": math.sin(yaw / 2), "w": math.cos(yaw / 2)}


def to_ros2(msg: Any) -> dict[str, Any]:
    """Convert one of our messages to a ROS 2 message dict for :func:`ros_type_of` its class."""
    match msg:
        case m.Clock():
            return {"clock": stamp(msg.t_ns)}
        case m.Imu():
            return {
                "header": _header(msg.t_ns, msg.frame_id),
                "orientation": _quat(msg.orientation),
                "orientation_covariance": _ZERO_COV9,
                "angular_velocity": _vec3(msg.angular_velocity),
                "angular_velocity_covariance": _ZERO_COV9,
                "linear_acceleration": _vec3(msg.linear_acceleration),
                "linear_acceleration_covariance": _ZERO_COV9,
            }
        case m.WheelState():
            return {
                "header": _header(msg.t_ns, ""),
                "name": list(msg.names),
                "position": list(msg.position),
                "velocity": list(msg.velocity),
                "effort": [],
            }
        case m.Odometry():
            return {
                "header": _header(msg.t_ns, msg.frame_id),
                "child_frame_id": msg.child_frame_id,
                "pose": {
                    "pose": {"position": _vec3(msg.position), "orientation": _quat(msg.orientation)},
                    "covariance": _ZERO_COV36,
                },
                "twist": {
                    "twist": {"linear": _vec3(msg.linear_velocity), "angular": _vec3(msg.angular_velocity)},
                    "covariance": _ZERO_COV36,
                },
            }
        case m.Twist():
            return {"linear": _vec3(msg.linear), "angular": _vec3(msg.angular)}
        case m.CompressedImage():
            return {"header": _header(msg.t_ns, msg.frame_id), "format": msg.format, "data": msg.data}
        case m.DepthImage():
            return {
                "header": _header(msg.t_ns, msg.frame_id),
                "height": msg.height,
                "width": msg.width,
                "encoding": "32FC1",
                "is_bigendian": 0,
                "step": msg.width * 4,
                "data": msg.data,
            }
        case m.CameraInfo():
            return {
                "header": _header(msg.t_ns, msg.frame_id),
                "height": msg.height,
                "width": msg.width,
                "distortion_model": msg.distortion_model,
                "d": list(msg.d),
                "k": list(msg.k),
                "r": list(msg.r),
                "p": list(msg.p),
                "binning_x": 0,
                "binning_y": 0,
                "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
            }
        case m.TFMessage():
            return {"transforms": [_transform_stamped(t) for t in msg.transforms]}
        case m.Event():
            return {
                "header": _header(msg.t_ns, ""),
                "kind": msg.kind,
                "source": msg.source,
                "detail": msg.detail,
                "value": msg.value,
            }
        case m.DynamicObstacles():
            return {
                "header": _header(msg.t_ns, "map"),
                "ids": list(msg.ids),
                **{name: list(getattr(msg, name)) for name in ("x", "y", "vx", "vy", "radius")},
            }
        case m.PoseWithCovariance():
            return {
                "header": _header(msg.t_ns, msg.frame_id),
                "pose": {"pose": _pose(msg.position, msg.orientation), "covariance": list(msg.covariance)},
            }
        case m.PoseStamped():
            return {"header": _header(msg.t_ns, msg.frame_id), "pose": _pose(msg.position, msg.orientation)}
        case m.Path():
            header = _header(msg.t_ns, msg.frame_id)
            return {
                "header": header,
                "poses": [
                    {"header": header, "pose": {"position": {"x": x, "y": y, "z": 0.0}, "orientation": _yaw_quat(yaw)}}
                    for x, y, yaw in zip(msg.x, msg.y, msg.yaw, strict=True)
                ],
            }
        case m.OccupancyGrid():
            return {
                "header": _header(msg.t_ns, msg.frame_id),
                "info": {
                    "map_load_time": stamp(msg.t_ns),
                    "resolution": msg.resolution,
                    "width": msg.width,
                    "height": msg.height,
                    "origin": _pose(msg.origin, (0.0, 0.0, 0.0, 1.0)),
                },
                # mcap_ros2 writes int8[] element by element from a sequence of ints.
                "data": array.array("b", msg.data).tolist(),
            }
        case m.MissionGoal():
            return {"header": _header(msg.t_ns, ""), "mission_id": msg.mission_id, "text": msg.text}
        case m.MissionStatus():
            return {
                "header": _header(msg.t_ns, ""),
                **{f.name: getattr(msg, f.name) for f in dataclasses.fields(msg) if f.name != "t_ns"},
                "candidates": list(msg.candidates),
            }
        case m.LocalizationResult():
            return {
                "header": _header(msg.t_ns, msg.frame_id),
                "success": msg.success,
                "pose": {"pose": _pose(msg.position, msg.orientation), "covariance": list(msg.covariance)},
                "confidence": msg.confidence,
                "inliers": msg.inliers,
                "candidates": list(msg.candidates),
                "latency_s": msg.latency_s,
                "trigger": msg.trigger,
                "reason": msg.reason,
            }
        case m.CandidatePaths():
            return {
                "header": _header(msg.t_ns, msg.frame_id),
                **{name: list(getattr(msg, name)) for name in ("x", "y", "lengths", "costs")},
                "chosen": msg.chosen,
            }
    raise TypeError(f"no ROS 2 conversion for {type(msg).__name__}")


def _ns(stamp_: Any) -> int:
    return stamp_.sec * 1_000_000_000 + stamp_.nanosec


def _tuple3(v: Any) -> tuple[float, float, float]:
    return (v.x, v.y, v.z)


def _tuple4(q: Any) -> tuple[float, float, float, float]:
    return (q.x, q.y, q.z, q.w)


def _yaw(q: Any) -> float:
    return math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))


def from_ros2(ros_type: str, msg: Any, log_time_ns: int = 0) -> Any:
    """One of our messages from a ROS 2 message decoded by mcap_ros2, for every type of schemas.topics.

    `log_time_ns` (the MCAP log time) stamps what carries no stamp of its own: a Twist, an empty TFMessage."""
    match ros_type:
        case "rosgraph_msgs/msg/Clock":
            return m.Clock(_ns(msg.clock))
        case "sensor_msgs/msg/Imu":
            h = msg.header
            return m.Imu(
                _ns(h.stamp),
                h.frame_id,
                _tuple4(msg.orientation),
                _tuple3(msg.angular_velocity),
                _tuple3(msg.linear_acceleration),
            )
        case "sensor_msgs/msg/JointState":
            return m.WheelState(_ns(msg.header.stamp), tuple(msg.name), tuple(msg.position), tuple(msg.velocity))
        case "nav_msgs/msg/Odometry":
            h, pose, twist = msg.header, msg.pose.pose, msg.twist.twist
            return m.Odometry(
                _ns(h.stamp),
                h.frame_id,
                msg.child_frame_id,
                _tuple3(pose.position),
                _tuple4(pose.orientation),
                _tuple3(twist.linear),
                _tuple3(twist.angular),
            )
        case "sensor_msgs/msg/CompressedImage":
            return m.CompressedImage(_ns(msg.header.stamp), msg.header.frame_id, msg.format, bytes(msg.data))
        case "sensor_msgs/msg/Image" if msg.encoding == "32FC1":
            h = msg.header
            return m.DepthImage(_ns(h.stamp), h.frame_id, msg.width, msg.height, bytes(msg.data))
        case "sensor_msgs/msg/CameraInfo":
            h = msg.header
            return m.CameraInfo(
                _ns(h.stamp),
                h.frame_id,
                msg.width,
                msg.height,
                tuple(msg.k),
                msg.distortion_model,
                tuple(msg.d),
                tuple(msg.r),
                tuple(msg.p),
            )
        case "tf2_msgs/msg/TFMessage":
            transforms = tuple(
                m.Transform(
                    _ns(t.header.stamp),
                    t.header.frame_id,
                    t.child_frame_id,
                    _tuple3(t.transform.translation),
                    _tuple4(t.transform.rotation),
                )
                for t in msg.transforms
            )
            return m.TFMessage(transforms[0].t_ns if transforms else log_time_ns, transforms)
        case "astra_msgs/msg/DynamicObstacles":
            return m.DynamicObstacles(
                _ns(msg.header.stamp),
                tuple(msg.ids),
                *(tuple(getattr(msg, name)) for name in ("x", "y", "vx", "vy", "radius")),
            )
        case "geometry_msgs/msg/Twist":
            return m.Twist(log_time_ns, _tuple3(msg.linear), _tuple3(msg.angular))
        case "astra_msgs/msg/Event":
            return m.Event(_ns(msg.header.stamp), msg.kind, msg.source, msg.detail, msg.value)
        case "geometry_msgs/msg/PoseWithCovarianceStamped":
            h, pose = msg.header, msg.pose
            return m.PoseWithCovariance(
                _ns(h.stamp),
                h.frame_id,
                _tuple3(pose.pose.position),
                _tuple4(pose.pose.orientation),
                tuple(pose.covariance),
            )
        case "geometry_msgs/msg/PoseStamped":
            h = msg.header
            return m.PoseStamped(_ns(h.stamp), h.frame_id, _tuple3(msg.pose.position), _tuple4(msg.pose.orientation))
        case "nav_msgs/msg/Path":
            h, poses = msg.header, [p.pose for p in msg.poses]
            return m.Path(
                _ns(h.stamp),
                h.frame_id,
                tuple(p.position.x for p in poses),
                tuple(p.position.y for p in poses),
                tuple(_yaw(p.orientation) for p in poses),
            )
        case "nav_msgs/msg/OccupancyGrid":
            h, info = msg.header, msg.info
            return m.OccupancyGrid(
                _ns(h.stamp),
                h.frame_id,
                float(str(np.float32(info.resolution))),  # float32 on the wire: the decimal it was written from
                info.width,
                info.height,
                _tuple3(info.origin.position),
                bytes(array.array("b", msg.data)),
            )
        case "astra_msgs/msg/MissionGoal":
            return m.MissionGoal(_ns(msg.header.stamp), msg.mission_id, msg.text)
        case "astra_msgs/msg/MissionStatus":
            fields = {f.name: getattr(msg, f.name) for f in dataclasses.fields(m.MissionStatus) if f.name != "t_ns"}
            return m.MissionStatus(_ns(msg.header.stamp), **{**fields, "candidates": tuple(msg.candidates)})
        case "astra_msgs/msg/LocalizationResult":
            h, pose = msg.header, msg.pose
            return m.LocalizationResult(
                _ns(h.stamp),
                h.frame_id,
                msg.success,
                _tuple3(pose.pose.position),
                _tuple4(pose.pose.orientation),
                tuple(pose.covariance),
                msg.confidence,
                msg.inliers,
                tuple(msg.candidates),
                msg.latency_s,
                msg.trigger,
                msg.reason,
            )
        case "astra_msgs/msg/CandidatePaths":
            return m.CandidatePaths(
                _ns(msg.header.stamp),
                msg.header.frame_id,
                *(tuple(getattr(msg, name)) for name in ("x", "y", "lengths", "costs")),
                msg.chosen,
            )
    raise TypeError(f"no conversion from ROS 2 {ros_type}")
