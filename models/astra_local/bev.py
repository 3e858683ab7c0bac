"""The bird's-eye view the odometry head correlates: one frame's depth and colour from the three cameras, lifted
into a grid around the robot (the depth sensor stands in for the Astra paper's pseudo-depth).

Channels of the [BEV_CHANNELS, G, G] grid (rows along y, columns along x, as schemas.local_dataset's crops):
0 obstacle points (above the floor, below the ceiling) and 1 floor points, each as a density scaled to [0, 1],
and 2-4 the mean colour of every point in the cell (0 where none fell).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from models.costmap import back_project
from schemas.local_dataset import LOCAL_GEOMETRY, LocalGeometry
from schemas.messages import CameraInfo, DepthImage
from schemas.robot import DEFAULT_ROBOT, camera_mount
from schemas.topics import CAMERAS

BEV_CHANNELS = 5
FLOOR_MAX_Z = 0.05  # m: depth noise puts floor points a few cm off the plane
OBSTACLE_Z = (0.1, 1.8)  # m: what the robot could hit, not the ceiling
SATURATING_POINTS = 16  # points per cell at which a density channel reaches 1
_MAX_RANGE = 6.0  # m: farther than the grid reaches from any camera

_MOUNTS = {
    camera: (np.asarray(t), r.as_matrix()) for camera, (t, r) in ((c, camera_mount(DEFAULT_ROBOT, c)) for c in CAMERAS)
}


def lift_frame(
    depth: Sequence[np.ndarray],
    rgb: Sequence[np.ndarray],
    k: Sequence[Sequence[float]],
    geometry: LocalGeometry = LOCAL_GEOMETRY,
) -> np.ndarray:
    """[BEV_CHANNELS, G, G] float32 from each camera's (CAMERAS order) depth [H, W] (m, NaN invalid), RGB
    [H, W, 3] uint8 and row-major 3x3 matrix at that size."""
    points, colours = [], []
    for camera, metres, picture, matrix in zip(CAMERAS, depth, rgb, k, strict=True):
        height, width = metres.shape
        image = DepthImage(0, camera, width, height, np.ascontiguousarray(metres, dtype="<f4").tobytes())
        info = CameraInfo(0, camera, width, height, tuple(matrix), "plumb_bob", (), (), ())
        ends, hit, _ = back_project(image, info, _MOUNTS[camera], 1, _MAX_RANGE)
        points.append(ends[hit])
        colours.append(picture[hit])
    xyz, colour = np.concatenate(points), np.concatenate(colours).astype(np.float32) / 255
    g = geometry.grid
    col = np.floor(xyz[:, 0] / geometry.resolution + g / 2).astype(int)
    row = np.floor(xyz[:, 1] / geometry.resolution + g / 2).astype(int)
    inside = (row >= 0) & (row < g) & (col >= 0) & (col < g)
    cell, z, colour = row[inside] * g + col[inside], xyz[inside, 2], colour[inside]
    floor = z <= FLOOR_MAX_Z
    obstacle = (z >= OBSTACLE_Z[0]) & (z <= OBSTACLE_Z[1])
    counts = np.bincount(cell, minlength=g * g)
    grid = np.zeros((BEV_CHANNELS, g * g), np.float32)
    for channel, chosen in ((0, obstacle), (1, floor)):
        grid[channel] = np.bincount(cell[chosen], minlength=g * g)
    grid[:2] = np.minimum(1.0, np.log1p(grid[:2]) / np.log1p(SATURATING_POINTS))
    for c in range(3):
        grid[2 + c] = np.bincount(cell, weights=colour[:, c], minlength=g * g) / np.maximum(counts, 1)
    return grid.reshape(BEV_CHANNELS, g, g)


def lift_stored_frame(
    jpeg: Sequence[bytes],
    depth: Sequence[bytes],
    k: Sequence[Sequence[float]],
    geometry: LocalGeometry = LOCAL_GEOMETRY,
) -> np.ndarray:
    """`lift_frame` of one row of schemas.local_dataset.FRAMES (JPEG pictures, float16 depth)."""
    shape = (geometry.image_height, geometry.image_width)
    return lift_frame(
        [np.frombuffer(d, "<f2").reshape(shape).astype(np.float32) for d in depth],
        [np.asarray(Image.open(io.BytesIO(j)).convert("RGB")) for j in jpeg],
        k,
        geometry,
    )
