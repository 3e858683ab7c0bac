"""ESDF guidance of sampled trajectories: the masked ESDF loss's idea applied while sampling, on what the robot sees.

Training's ESDF loss teaches the planner to keep off obstacles on average; at run time the robot's own costmap says
where they are now. Each refinement of a sample (a flow or DDIM step's clean estimate, or a latent planner's
output) moves every waypoint closer than the safe distance to an observed obstacle out along the ESDF's gradient, at
most `step_m` per refinement: the next refinement then pulls the moved trajectory back toward the model's
distribution, so the model keeps the trajectory's shape and the push only settles where it leaves walls.

The ESDF is the costmap's own, the one the classical planner's checks read, sampled at the crop's cell centres
(`models.astra_local.crops.crop_clearance`): not one made from the model's occupancy crop, whose 0.1 m cells, each
read at its centre, miss a one-cell surface of the 0.05 m costmap wherever no centre falls on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.astra_local.losses import esdf_at
from schemas.local_dataset import LOCAL_GEOMETRY, LocalGeometry


def push_off_obstacles(
    trajectory: torch.Tensor,
    esdf: torch.Tensor,
    safe_distance: float,
    step_m: float,
    geometry: LocalGeometry = LOCAL_GEOMETRY,
) -> torch.Tensor:
    """Trajectories (N, K, 3) in metres with each waypoint nearer than `safe_distance` to an obstacle of its ESDF
    moved up to `step_m` along the ESDF's gradient (central differences, read bilinearly), by its shortfall; headings
    are kept. The ESDFs (B, G, G) are one per N / B consecutive trajectories (a batch row's samples), so that each is
    differentiated and read once for all its samples."""
    rows_gradient, columns_gradient = torch.gradient(esdf, dim=(1, 2))  # rows run along y, columns along x
    fields = torch.stack([esdf, columns_gradient, rows_gradient], dim=1)  # (B, 3, G, G)
    points = trajectory[..., :2].reshape(len(esdf), -1, 2)  # (B, N / B * K, 2)
    values = esdf_at(points, fields, geometry).transpose(0, 1).reshape(3, *trajectory.shape[:2])  # (3, N, K)
    distance, gradient_x, gradient_y = values.unbind(0)
    shift = (safe_distance - distance).clamp(0.0, step_m)
    moved = trajectory[..., :2] + shift[..., None] * F.normalize(torch.stack([gradient_x, gradient_y], -1), dim=-1)
    return torch.cat([moved, trajectory[..., 2:]], dim=-1)
