"""Depth images drawn by hand: what a robot's cameras would see of simple scenes, for costmap tests."""

from __future__ import annotations

import math

import numpy as np

from schemas.messages import CameraInfo, DepthImage
from schemas.robot import DEFAULT_ROBOT, camera_mount
from schemas.topics import camera_frame


def front_view(panels: list[tuple[float, float, float]], blind: bool = False) -> tuple[DepthImage, CameraInfo]:
    """What the front camera of a robot at the origin sees: the floor, and vertical panels (x, y_min, y_max) 1.7 m tall.

    A `blind` camera returns NaN everywhere (REP-118 invalid).
    """
    width, height = 64, 48
    f = width / 2 / math.tan(math.radians(DEFAULT_ROBOT.camera_hfov_deg) / 2)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    (tx, ty, tz), _ = camera_mount(DEFAULT_ROBOT, "front")
    v, u = np.mgrid[:height, :width].astype(float)
    left, down = -(u - cx) / f, (v - cy) / f  # base_link y and -z of the ray per unit of depth (optical z = base x)
    depth = np.where(down > 0, tz / np.maximum(down, 1e-9), np.inf)
    for x, y_min, y_max in panels:
        z = x - tx
        on_panel = (y_min <= ty + left * z) & (ty + left * z <= y_max) & (tz - down * z <= 1.7) & (z < depth)
        depth = np.where(on_panel, z, depth)
    if blind:
        depth[:] = np.nan
    frame = camera_frame("front")
    info = CameraInfo(0, frame, width, height, (f, 0, cx, 0, f, cy, 0, 0, 1), "plumb_bob", (0.0,) * 5, (), ())
    return DepthImage(0, frame, width, height, depth.astype("<f4").tobytes()), info
