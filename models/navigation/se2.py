"""Planar rigid transforms (x, y, yaw) for the navigation stack: REP-105 frames on a flat floor.

`a_from_b` maps coordinates in frame b to frame a, so `map_from_odom * odom_from_base = map_from_base`.
"""

from __future__ import annotations

import math

import numpy as np

Pose2 = tuple[float, float, float]  # x, y, yaw


def wrap(angle: float) -> float:
    """The angle in [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def compose(a: Pose2, b: Pose2) -> Pose2:
    """a * b: b expressed in a's parent frame."""
    c, s = math.cos(a[2]), math.sin(a[2])
    return (a[0] + c * b[0] - s * b[1], a[1] + s * b[0] + c * b[1], wrap(a[2] + b[2]))


def inverse(a: Pose2) -> Pose2:
    c, s = math.cos(a[2]), math.sin(a[2])
    return (-(c * a[0] + s * a[1]), -(-s * a[0] + c * a[1]), wrap(-a[2]))


def apply(a: Pose2, xy: np.ndarray) -> np.ndarray:
    """Points (..., 2) in b mapped by a_from_b to a."""
    xy = np.asarray(xy, dtype=float)
    c, s = math.cos(a[2]), math.sin(a[2])
    return np.stack([a[0] + c * xy[..., 0] - s * xy[..., 1], a[1] + s * xy[..., 0] + c * xy[..., 1]], axis=-1)


def yaw_of(quat: tuple[float, float, float, float]) -> float:
    """Yaw of an xyzw quaternion (its rotation about z, for a level robot)."""
    x, y, z, w = quat
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
