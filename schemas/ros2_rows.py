"""Decoded ROS 2 messages as rows of the lake's typed tables: one converter per type in
`schemas.lake.ROS2_TABLES` (tests check the two agree).

A converter takes the MCAP log time, the topic and a message decoded by `mcap-ros2-support`, and
returns the message's rows: tuples in the column order of `schemas.lake.TABLES[table]`. Most types
give one row; a `TFMessage` gives one per transform.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable
from typing import Any

Row = tuple[Any, ...]
RowConverter = Callable[[int, str, Any], list[Row]]


def stamp_ns(stamp: Any) -> int:
    """A `builtin_interfaces/Time` in integer nanoseconds."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def is_static_tf(topic: str) -> bool:
    # Namespaced robots publish `/<ns>/tf_static`.
    return topic.rpartition("/")[2] == "tf_static"


# `since_previous_ns` of images is left null: one message does not know its topic's previous frame, so whoever
# writes the rows fills it in (`schemas.lake.since_previous`).
def _compressed_image(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    return [(t_ns, topic, stamp_ns(h.stamp), h.frame_id, None, msg.format, None, None, None, None, None, msg.data)]


def _image(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    return [
        (
            t_ns,
            topic,
            stamp_ns(h.stamp),
            h.frame_id,
            None,
            None,
            msg.encoding,
            msg.width,
            msg.height,
            bool(msg.is_bigendian),
            msg.step,
            msg.data,
        )
    ]


def _imu(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h, o, w, a = msg.header, msg.orientation, msg.angular_velocity, msg.linear_acceleration
    return [(t_ns, topic, stamp_ns(h.stamp), h.frame_id, o.x, o.y, o.z, o.w, w.x, w.y, w.z, a.x, a.y, a.z)]


def _joint_state(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    return [(t_ns, topic, stamp_ns(h.stamp), h.frame_id, msg.name, msg.position, msg.velocity, msg.effort)]


def _odometry(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h, pose, twist = msg.header, msg.pose.pose, msg.twist.twist
    p, o, v, w = pose.position, pose.orientation, twist.linear, twist.angular
    return [
        (
            t_ns,
            topic,
            stamp_ns(h.stamp),
            h.frame_id,
            msg.child_frame_id,
            p.x,
            p.y,
            p.z,
            o.x,
            o.y,
            o.z,
            o.w,
            v.x,
            v.y,
            v.z,
            w.x,
            w.y,
            w.z,
        )
    ]


def _twist(t_ns: int, topic: str, msg: Any) -> list[Row]:
    v, w = msg.linear, msg.angular
    return [(t_ns, topic, v.x, v.y, v.z, w.x, w.y, w.z)]


def _tf(t_ns: int, topic: str, msg: Any) -> list[Row]:
    static = is_static_tf(topic)
    rows = []
    for tf in msg.transforms:
        h, p, q = tf.header, tf.transform.translation, tf.transform.rotation
        rows.append(
            (t_ns, topic, stamp_ns(h.stamp), h.frame_id, tf.child_frame_id, p.x, p.y, p.z, q.x, q.y, q.z, q.w, static)
        )
    return rows


def _camera_info(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    return [
        (
            t_ns,
            topic,
            stamp_ns(h.stamp),
            h.frame_id,
            msg.width,
            msg.height,
            msg.distortion_model,
            msg.d,
            msg.k,
            msg.r,
            msg.p,
        )
    ]


def _navsatfix(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h, s = msg.header, msg.status
    return [
        (
            t_ns,
            topic,
            stamp_ns(h.stamp),
            h.frame_id,
            s.status,
            s.service,
            msg.latitude,
            msg.longitude,
            msg.altitude,
            msg.position_covariance,
            msg.position_covariance_type,
        )
    ]


def _laser_scan(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    return [
        (
            t_ns,
            topic,
            stamp_ns(h.stamp),
            h.frame_id,
            msg.angle_min,
            msg.angle_max,
            msg.angle_increment,
            msg.time_increment,
            msg.scan_time,
            msg.range_min,
            msg.range_max,
            msg.ranges,
            msg.intensities,
        )
    ]


def _pose_with_covariance(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h, pose = msg.header, msg.pose
    p, o = pose.pose.position, pose.pose.orientation
    return [(t_ns, topic, stamp_ns(h.stamp), h.frame_id, p.x, p.y, p.z, o.x, o.y, o.z, o.w, pose.covariance)]


def _event(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    return [(t_ns, topic, stamp_ns(h.stamp), h.frame_id, msg.kind, msg.source, msg.detail, msg.value)]


def _obstacles(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    return [(t_ns, topic, stamp_ns(h.stamp), h.frame_id, msg.ids, msg.x, msg.y, msg.vx, msg.vy, msg.radius)]


def _yaw(q: Any) -> float:
    return math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))


def _path(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    points = [p.pose.position for p in msg.poses]
    yaws = [_yaw(p.pose.orientation) for p in msg.poses]
    xs, ys, zs = ([getattr(p, a) for p in points] for a in "xyz")
    return [(t_ns, topic, stamp_ns(h.stamp), h.frame_id, xs, ys, zs, yaws)]


def _pose_stamped(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h, p, o = msg.header, msg.pose.position, msg.pose.orientation
    return [(t_ns, topic, stamp_ns(h.stamp), h.frame_id, p.x, p.y, p.z, o.x, o.y, o.z, o.w)]


def _occupancy_grid(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h, info = msg.header, msg.info
    o = info.origin.position
    cells = bytes(array.array("b", msg.data))
    return [
        (t_ns, topic, stamp_ns(h.stamp), h.frame_id, info.resolution, info.width, info.height, o.x, o.y, o.z, cells)
    ]


def _localization(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h, pose = msg.header, msg.pose
    p, o = pose.pose.position, pose.pose.orientation
    return [
        (
            t_ns,
            topic,
            stamp_ns(h.stamp),
            h.frame_id,
            msg.success,
            p.x,
            p.y,
            p.z,
            o.x,
            o.y,
            o.z,
            o.w,
            pose.covariance,
            msg.confidence,
            msg.inliers,
            msg.candidates,
            msg.latency_s,
            msg.trigger,
            msg.reason,
        )
    ]


def _mission_goal(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    return [(t_ns, topic, stamp_ns(h.stamp), h.frame_id, msg.mission_id, msg.text)]


def _mission_status(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    return [
        (
            t_ns,
            topic,
            stamp_ns(h.stamp),
            h.frame_id,
            msg.mission_id,
            msg.state,
            msg.goal_text,
            msg.goal_node,
            msg.goal_label,
            msg.goal_room,
            msg.distance_remaining_m,
            msg.candidates,
            msg.detail,
        )
    ]


def _candidate_paths(t_ns: int, topic: str, msg: Any) -> list[Row]:
    h = msg.header
    return [(t_ns, topic, stamp_ns(h.stamp), h.frame_id, msg.x, msg.y, msg.lengths, msg.costs, msg.chosen)]


CONVERTERS: dict[str, RowConverter] = {
    "sensor_msgs/msg/CompressedImage": _compressed_image,
    "sensor_msgs/msg/Image": _image,
    "sensor_msgs/msg/Imu": _imu,
    "sensor_msgs/msg/JointState": _joint_state,
    "nav_msgs/msg/Odometry": _odometry,
    "geometry_msgs/msg/Twist": _twist,
    "tf2_msgs/msg/TFMessage": _tf,
    "sensor_msgs/msg/CameraInfo": _camera_info,
    "sensor_msgs/msg/NavSatFix": _navsatfix,
    "sensor_msgs/msg/LaserScan": _laser_scan,
    "geometry_msgs/msg/PoseWithCovarianceStamped": _pose_with_covariance,
    "astra_msgs/msg/Event": _event,
    "astra_msgs/msg/DynamicObstacles": _obstacles,
    "nav_msgs/msg/Path": _path,
    "geometry_msgs/msg/PoseStamped": _pose_stamped,
    "nav_msgs/msg/OccupancyGrid": _occupancy_grid,
    "astra_msgs/msg/LocalizationResult": _localization,
    "astra_msgs/msg/MissionGoal": _mission_goal,
    "astra_msgs/msg/MissionStatus": _mission_status,
    "astra_msgs/msg/CandidatePaths": _candidate_paths,
}
