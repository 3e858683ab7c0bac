"""The auxiliary losses of Astra-Local's planner, as pure functions of tensors.

`masked_esdf_loss` keeps predicted waypoints off obstacles: each waypoint reads the true ESDF (bilinear) at its
position, at the ESDF instant nearest its own time, and pays relu(safe_distance - distance). Waypoints within `band`
of the expert's path pay nothing: there the expert is the authority (a doorway narrower than the safe distance, a
wall the expert brushes past), and the loss only shapes where the model strays from it.

`info_nce_loss` is the contrastive dynamics loss: matching (state, action) embeddings must be more alike, by cosine,
than every mismatched pair in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from schemas.local_dataset import LOCAL_GEOMETRY, LocalGeometry
from schemas.robot import DEFAULT_ROBOT

DEFAULT_SAFE_DISTANCE = DEFAULT_ROBOT.radius + 0.1
DEFAULT_BAND = 0.3


def masked_esdf_loss(
    waypoints_xy: torch.Tensor,
    esdf: torch.Tensor,
    expert_xy: torch.Tensor,
    geometry: LocalGeometry = LOCAL_GEOMETRY,
    safe_distance: float = DEFAULT_SAFE_DISTANCE,
    band: float = DEFAULT_BAND,
) -> torch.Tensor:
    """Mean over all B x K waypoints of mask * relu(safe_distance - ESDF at the waypoint), in metres.

    waypoints_xy, expert_xy: (B, K, 2) ego positions of waypoints 1..K, at times k * geometry.waypoint_period_s.
    esdf: (B, 2, G, G) distances now and geometry.esdf_ahead_s later; waypoint k reads the one nearer its time, now
    on a tie (with 1 s and 0.25 s waypoints: t <= 0.5 s now, later ones 1 s ahead). Outside the grid the border
    cells' values hold. The mask, 0 within `band` of the expert's polyline (from the origin through expert_xy) and 1
    elsewhere, is not differentiated. The mean counts masked waypoints too: a stray waypoint weighs the same however
    many others follow the expert.
    """
    batch, waypoints, _ = waypoints_xy.shape
    if esdf.shape[1] != 2:
        raise ValueError(f"esdf must hold 2 instants, now and {geometry.esdf_ahead_s} s ahead, not {esdf.shape[1]}")
    distances = esdf_at(waypoints_xy, esdf, geometry)
    times = torch.arange(1, waypoints + 1, dtype=esdf.dtype, device=esdf.device) * geometry.waypoint_period_s
    esdf_times = torch.tensor([0.0, geometry.esdf_ahead_s], dtype=esdf.dtype, device=esdf.device)
    nearest = (times[:, None] - esdf_times[None]).abs().argmin(dim=1)  # argmin takes the first of ties: the earlier
    distance = distances.gather(1, nearest.expand(batch, 1, waypoints))[:, 0]
    with torch.no_grad():
        off_path = polyline_distance(waypoints_xy, expert_xy) > band
    return (F.relu(safe_distance - distance) * off_path).mean()


def esdf_at(points_xy: torch.Tensor, esdf: torch.Tensor, geometry: LocalGeometry = LOCAL_GEOMETRY) -> torch.Tensor:
    """(B, T, N) bilinear values of the ESDF crops (B, T, G, G) at ego points (B, N, 2); off the crop the border's."""
    coords = points_xy / geometry.half_extent_m
    return F.grid_sample(esdf, coords[:, None], align_corners=False, padding_mode="border")[:, :, 0]


def polyline_distance(points: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """(B, N) distance of each of points (B, N, 2) to the polyline from the origin through vertices (B, K, 2)."""
    path = torch.cat([vertices.new_zeros(vertices.shape[0], 1, 2), vertices], dim=1)
    start, step = path[:, None, :-1], (path[:, 1:] - path[:, :-1])[:, None]  # (B, 1, K, 2)
    along = ((points[:, :, None] - start) * step).sum(-1) / (step * step).sum(-1).clamp_min(1e-12)
    nearest = start + along.clamp(0, 1)[..., None] * step  # (B, N, K, 2)
    return (points[:, :, None] - nearest).norm(dim=-1).min(dim=2).values


def info_nce_loss(state_embeddings: torch.Tensor, action_embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of pairs (B, D): row i of each is the other's positive, every other row a
    negative. logits = cosine similarity / temperature; the loss is the mean of the cross entropy of picking the
    action from each state (rows) and the state from each action (columns), as CLIP does."""
    logits = F.normalize(state_embeddings, dim=1) @ F.normalize(action_embeddings, dim=1).T / temperature
    labels = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
