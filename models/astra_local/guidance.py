"""ESDF guidance of sampled trajectories: the masked ESDF loss's idea applied while sampling, on what the robot sees.

Training's ESDF loss teaches the planner to keep off obstacles on average; at run time the robot's own costmap says
where they are now. Each refinement of a sample (a flow or DDIM step's clean estimate, or a latent planner's
output) moves every waypoint closer than the safe distance to an observed obstacle out along the ESDF's gradient, at
most `step_m` per refinement: the next refinement then pulls the moved trajectory back toward the model's
distribution, so the model keeps the trajectory's shape and the push only settles where it leaves walls.

The observed ESDF is signed (negative inside occupied cells) so that a waypoint inside a wall is pushed out too;
unknown cells count as free, as the planner's own checks count them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from models.astra_local.losses import esdf_at
from schemas.local_dataset import LOCAL_GEOMETRY, OCCUPIED, LocalGeometry


def observed_esdf(codes: np.ndarray, geometry: LocalGeometry = LOCAL_GEOMETRY) -> np.ndarray:
    """float32 (G, G) signed distance (m) to the nearest occupied cell of a crop of codes: positive in free space,
    negative inside; with no occupied cell, the crop's diagonal everywhere."""
    occupied = codes == OCCUPIED
    if not occupied.any():
        return np.full(codes.shape, 2 * geometry.half_extent_m * np.sqrt(2), dtype=np.float32)
    # EDT measures centre to centre; the obstacle's surface lies half a cell nearer (models.planning.ClearanceMap).
    outside = ndimage.distance_transform_edt(~occupied) - 0.5
    inside = ndimage.distance_transform_edt(occupied) - 0.5
    return (np.where(occupied, -inside, outside) * geometry.resolution).astype(np.float32)


def push_off_obstacles(
    trajectory: torch.Tensor,
    esdf: torch.Tensor,
    safe_distance: float,
    step_m: float,
    geometry: LocalGeometry = LOCAL_GEOMETRY,
) -> torch.Tensor:
    """Trajectories (N, K, 3) in metres with each waypoint nearer than `safe_distance` to an obstacle of its ESDF
    (N, G, G) moved up to `step_m` along the ESDF's gradient (central differences, read bilinearly), by its shortfall;
    headings are kept."""
    rows_gradient, columns_gradient = torch.gradient(esdf, dim=(1, 2))  # rows run along y, columns along x
    fields = torch.stack([esdf, columns_gradient, rows_gradient], dim=1)  # (N, 3, G, G)
    distance, gradient_x, gradient_y = esdf_at(trajectory[..., :2], fields, geometry).unbind(1)  # (N, K) each
    shift = (safe_distance - distance).clamp(0.0, step_m)
    moved = trajectory[..., :2] + shift[..., None] * F.normalize(torch.stack([gradient_x, gradient_y], -1), dim=-1)
    return torch.cat([moved, trajectory[..., 2:]], dim=-1)
