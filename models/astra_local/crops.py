"""Robot-centred crops of grids: what the local models see and are scored against.

One function per fact, shared by the training-set pipeline and the serving node, so that the model sees at run
time exactly what it was trained on: the robot's own costmap as codes (`costmap_codes`), and, for training, the true
occupancy and ESDF with people and carts as discs (`true_crops`). The crop's lattice is `schemas.local_dataset`'s.
"""

from __future__ import annotations

import numpy as np

from models.costmap import OCCUPIED as COSTMAP_OCCUPIED
from models.costmap import UNKNOWN as COSTMAP_UNKNOWN
from models.navigation import se2
from models.planning import ClearanceMap
from schemas.local_dataset import FREE, OCCUPIED, UNKNOWN, LocalGeometry
from schemas.world import GridSpec


def ego_points(pose: se2.Pose2, geometry: LocalGeometry) -> np.ndarray:
    """(G, G, 2) the centres of the crop's cells around `pose` (x, y, yaw), in the pose's frame's coordinates."""
    offsets = (np.arange(geometry.grid) + 0.5) * geometry.resolution - geometry.half_extent_m
    ego_y, ego_x = np.meshgrid(offsets, offsets, indexing="ij")  # rows along y, columns along x
    return se2.apply(pose, np.stack([ego_x, ego_y], axis=-1).reshape(-1, 2)).reshape(geometry.grid, geometry.grid, 2)


def sample_nearest(grid: np.ndarray, spec: GridSpec, points: np.ndarray, outside: float | int) -> np.ndarray:
    """The value of the cell each point (..., 2) falls in; `outside` where it falls off the grid."""
    rc = spec.world_to_cell(points)
    inside = (rc[..., 0] >= 0) & (rc[..., 0] < grid.shape[0]) & (rc[..., 1] >= 0) & (rc[..., 1] < grid.shape[1])
    rows, cols = np.where(inside, rc[..., 0], 0), np.where(inside, rc[..., 1], 0)
    return np.where(inside, grid[rows, cols], outside)


def costmap_codes(cells: np.ndarray, spec: GridSpec, pose: se2.Pose2, geometry: LocalGeometry) -> np.ndarray:
    """uint8 (G, G) FREE | OCCUPIED | UNKNOWN around `pose`, from a costmap's nav_msgs values (-1, 0, 100)."""
    values = sample_nearest(cells, spec, ego_points(pose, geometry), COSTMAP_UNKNOWN)
    codes = np.full(values.shape, FREE, dtype=np.uint8)
    codes[values == COSTMAP_OCCUPIED] = OCCUPIED
    codes[values == COSTMAP_UNKNOWN] = UNKNOWN
    return codes


def crop_clearance(clearance: ClearanceMap, pose: se2.Pose2, geometry: LocalGeometry) -> np.ndarray:
    """float32 (G, G) a clearance map's ESDF (m) at the centres of the crop's cells around `pose`."""
    return clearance.at(ego_points(pose, geometry)).astype(np.float32)


def clearance_at_robot(esdf: np.ndarray) -> float:
    """An ESDF crop's (G, G) clearance where the robot stands: its centre, the mean of the four cells around it."""
    half = esdf.shape[-1] // 2
    return float(esdf[half - 1 : half + 1, half - 1 : half + 1].mean())


def codes_to_input(codes: np.ndarray) -> np.ndarray:
    """float32 model input from occupancy codes: 1 occupied, 0 free, 0.5 unknown."""
    return np.choose(codes, np.array([0.0, 1.0, 0.5], dtype=np.float32)).astype(np.float32)


def true_crops(
    static_occupied: np.ndarray,
    static_clearance: ClearanceMap,
    pose: se2.Pose2,
    discs: np.ndarray,
    geometry: LocalGeometry,
) -> tuple[np.ndarray, np.ndarray]:
    """The true occupancy (bool) and ESDF (m, 0 inside) around `pose`, walls and furniture from the world's grid
    and moving bodies as `discs` (N, 3) x, y, radius in the same frame."""
    points = ego_points(pose, geometry)
    occupied = sample_nearest(static_occupied, static_clearance.spec, points, True).astype(bool)
    clearance = static_clearance.at(points)
    if len(discs):
        offsets = points[..., None, :] - discs[:, :2]  # (G, G, N, 2)
        nearest = (np.hypot(offsets[..., 0], offsets[..., 1]) - discs[:, 2]).min(axis=-1)
        occupied |= nearest <= 0
        clearance = np.minimum(clearance, np.maximum(nearest, 0.0))
    return occupied, np.where(occupied, 0.0, clearance)  # bilinear clearance leaves a sliver inside small obstacles
