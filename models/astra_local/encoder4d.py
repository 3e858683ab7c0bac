"""Astra-Local's 4D spatio-temporal encoder (the ByteDance Astra paper's), sized to train on one CPU core: the three
cameras of the last frames lifted into a voxel grid around the robot, aligned to the current frame, and rolled
forward in time, self-supervised by volume rendering the cameras' depth and colour.

1. Image encoder: a small CNN shared by the cameras reads each picture with its depth as a fourth channel (the robot
   has a depth sensor, which stands in for the paper's pseudo-depth) and gives, at 1/4 of the picture's resolution,
   C feature channels and D + 1 depth-bin logits (Lift-Splat-Shoot); the last bin is "nothing to lift" (farther than
   the bins reach, or no depth).
2. Lift-splat (`lift_rays`, `splat`): each feature pixel's ray, at each bin's depth, lands in a voxel of the
   G x G grid of `resolution` m cells around the robot (schemas.local_dataset's lattice: rows along y, columns along
   x) and one of the height bins between `height_edges`; the features weighted by the bin's probability are
   sum-pooled there, with a constant channel that counts the probability mass. Height is folded into channels, and
   a 1x1 convolution makes each frame's map of `bev_channels`.
3. Each past frame is lifted in its own ego frame and warped into the current frame n's (`warp`) with its pose from
   the robot's wheel + IMU filter (`odom_poses`), as the robot would.
4. Temporal module (`TemporalPredictor`): SimVP-style, one small U-Net over the stacked aligned past maps gives at
   once the current map and those of the F future frames (0.5 s apart), all in frame n's ego.
5. Heads on every map: a voxel field of density and colour for rendering (`render_levels` heights), obstacle
   occupancy logits (1x1), and, on the current map, `token_grid`^2 tokens for a planner to attend to: the map
   average-pooled to a token_grid x token_grid grid, C' features each. The planner embeds them with its own
   projection (models.astra_local.planner), so the encoder can stay frozen and its tokens cached.

Losses (`loss`), every term self-supervised but the occupancy:
- depth_l1, colour_l1: `rays` random pixels per camera of frame n and of each future frame are volume-rendered
  (`render`) through the current map's field and each future map's, from that frame's cameras at its true pose
  relative to n, and compared (L1) to the depth sensor and the picture; only pixels with valid depth whose surface
  lies inside the grid's volume count. The floor (z = 0) ends every ray that reaches it: the buildings are flat.
- depth_bins: cross-entropy of the depth-bin logits against each feature pixel's histogram of the sensor's depths
  (BEVDepth's depth supervision): without it the lifting learns its depths only through the renders, slowly.
- feature (off by default, `feature_weight`): the predicted future maps against the frame maps the future frames
  themselves give (stop-gradient, warped with the true poses), mean squared over the cells those frames saw. The
  frame encoder that makes the targets also makes the inputs, so the term is cheapest met by maps that say less:
  after 150 steps on the tests' scenes, with it the colour render had not moved (L1 0.16, 0.11 without it) and
  the depth render was 0.10 m off (0.02 m without it). The future frames' renders supervise the predicted maps.
- occupancy_bce: binary cross-entropy of the current map's occupancy against the true occupancy now and of the
  +1 s map's against the truth 1 s ahead, weighted by `occupancy_weight` (0: the encoder is purely self-supervised
  and the occupancy head is left untouched; a probe can be trained on it afterwards).

Batch contract (float32 unless said; B batch, T >= P frames n-P+1 .. n+F, oldest first, 3 cameras in
schemas.topics.CAMERAS order, H x W pictures; `loss` needs all P + F frames, `encode` reads the first P):
- rgb (B, T, 3, 3, H, W) in [0, 1]; depth (B, T, 3, H, W) m, 0 where invalid; depth_valid (B, T, 3, H, W) bool;
- k (B, 3, 3, 3): each camera's matrix at H x W;
- odom_poses (B, T, 3): each frame's (x, y, yaw) in frame n's ego as the filter saw it (past frames only are read);
- poses (B, T, 3): the same from the true poses, for the future frames' renders and features (loss only);
- true_occupancy (B, 2, G, G): 1 occupied, now and 1 s ahead (frame n + ahead_frame), in frame n's ego (loss only).
"""

# No `from __future__ import annotations`: PyTorchModelHubMixin reads `config`'s annotation at run time to
# rebuild the dataclass from config.json.
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.hub import HubModel
from schemas.robot import DEFAULT_ROBOT, camera_mount
from schemas.topics import CAMERAS

IMAGE_STRIDE = 4  # the image encoder's two stride-2 convolutions
FIELD_CHANNELS = 4  # the render field: density, then colour
OCCUPIED = 0.5  # the occupancy probability a cell counts as occupied from
SEEN_MASS = 0.5  # lifted probability mass (about half a feature pixel's) that makes a cell seen by a frame

MODEL_CARD = """---
{{ card_data }}
---

# Astra-Local 4D spatio-temporal encoder

A small 4D encoder (`models/astra_local/encoder4d.py`) after the ByteDance Astra paper's: the three cameras' pictures
and depth of the last frames are lifted into a voxel grid around the robot (Lift-Splat-Shoot), aligned to the
current frame with the robot's odometry, and a temporal module predicts the bird's-eye-view feature maps of the
next frames. It is trained by volume rendering the cameras' depth and colour from those maps, now and in the future
frames, and, as configured, by the true obstacle occupancy now and 1 s ahead. It gives a planner the current map,
the future ones, a small grid of tokens and the occupancy probabilities.

Load it offline with `models.astra_local.encoder4d.Encoder4D.from_pretrained(dir)`; its config.json gives the
shapes of its inputs (the module's docstring gives the batch contract).

## Training

{{ training | default("Not recorded.", true) }}
"""


@dataclass(frozen=True)
class Encoder4DConfig:
    """The frames, the input shapes, the (tiny) architecture, the grid and the losses' weights."""

    past: int = 4  # P frames n-P+1 .. n, 0.5 s apart
    future: int = 4  # F predicted frames n+1 .. n+F
    ahead_frame: int = 2  # the future frame of the truth 1 s ahead: 2 frames of 0.5 s
    image_height: int = 60
    image_width: int = 80
    image_channels: int = 32  # the image CNN's width
    feature_channels: int = 8  # C lifted per feature pixel
    depth_bins: int = 32  # D, even over [depth_min, depth_max) along the optical axis
    lift_bins: int = 4  # each feature pixel's most probable bins that are lifted
    depth_min: float = 0.2  # m
    depth_max: float = 4.2  # m: the grid's far corners are 4.5 m from the centre, walls there are seen edge-on
    height_edges: tuple[float, ...] = (-0.1, 0.1, 0.6, 1.2, 2.0)  # m: floor, the robot's height, above
    grid: int = 64  # G cells a side
    resolution: float = 0.1  # m per cell
    bev_channels: int = 16  # C' of every map
    temporal_channels: int = 24  # the temporal U-Net's width at full resolution; twice that at half
    render_levels: int = 8  # heights of the render field, even over [0, render_top)
    render_top: float = 2.0  # m
    render_samples: int = 24  # points along each rendered ray, even from depth_min to where it ends
    rays: int = 32  # rendered pixels per camera, frame and window in each loss: 3,840 per batch of 8
    token_grid: int = 8  # token_grid^2 tokens of bev_channels features
    depth_weight: float = 1.0  # per metre
    colour_weight: float = 1.0
    depth_bin_weight: float = 0.5
    feature_weight: float = 0.0  # see the module's docstring
    occupancy_weight: float = 1.0

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.height_edges)  # config.json gives a list
        object.__setattr__(self, "height_edges", edges)
        if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError(f"height_edges {edges} must rise, at least two")
        if self.past < 1 or self.future < 1 or not 1 <= self.ahead_frame <= self.future:
            raise ValueError("past and future must be >= 1 and ahead_frame one of the future frames")
        if self.image_height % IMAGE_STRIDE or self.image_width % IMAGE_STRIDE:
            raise ValueError(f"pictures must be a multiple of {IMAGE_STRIDE} a side")
        if self.grid % 2 or self.grid % self.token_grid:
            raise ValueError("grid must be even and a multiple of token_grid")
        if self.render_levels < 2:
            raise ValueError("render_levels must be at least 2")
        if not 0 < self.depth_min < self.depth_max:
            raise ValueError("depth bins must lie in 0 < depth_min < depth_max")

    @property
    def heights(self) -> int:
        """Z, the lifted height bins."""
        return len(self.height_edges) - 1

    @property
    def half_extent_m(self) -> float:
        return self.grid * self.resolution / 2


# --- geometry ---------------------------------------------------------------------------------------------------------


def camera_mounts() -> tuple[torch.Tensor, torch.Tensor]:
    """The cameras' (CAMERAS order) optical frames in base_link: rotations (3, 3, 3) and translations (3, 3)."""
    mounts = [camera_mount(DEFAULT_ROBOT, camera) for camera in CAMERAS]
    rotations = torch.tensor(np.stack([rotation.as_matrix() for _, rotation in mounts]), dtype=torch.float32)
    return rotations, torch.tensor([translation for translation, _ in mounts], dtype=torch.float32)


def pixel_rays(k: torch.Tensor, height: int, width: int, stride: int = 1) -> torch.Tensor:
    """(..., height // stride, width // stride, 3): optical-frame directions (z = 1) through the centres of the
    stride x stride blocks of pixels, from matrices (..., 3, 3) at height x width. Pixel centres lie at integer
    coordinates, as models.costmap.back_project's: block j's centre is at stride * j + (stride - 1) / 2."""
    offset = (stride - 1) / 2
    u = torch.arange(width // stride, dtype=k.dtype) * stride + offset
    v = torch.arange(height // stride, dtype=k.dtype) * stride + offset
    x = (u - k[..., 0, 2, None]) / k[..., 0, 0, None]  # (..., w)
    y = (v - k[..., 1, 2, None]) / k[..., 1, 1, None]  # (..., h)
    x, y = torch.broadcast_tensors(x[..., None, :], y[..., :, None])
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def cameras_at(
    poses: torch.Tensor, rotations: torch.Tensor, translations: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For robot poses (N, 3) (x, y, yaw) in some frame, each camera's origin (N, cams, 3) and rotation from its
    optical frame (N, cams, 3, 3) in that frame: the mounts (cams, 3, 3), (cams, 3) turned by yaw about z."""
    cos, sin = poses[:, 2].cos(), poses[:, 2].sin()
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    yaw = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).view(-1, 1, 3, 3)
    origins = (yaw @ translations[None, :, :, None])[..., 0] + F.pad(poses[:, None, :2], (0, 1))
    return origins, yaw @ rotations


def depth_centres(config: Encoder4DConfig) -> torch.Tensor:
    """(D,) the depth bins' centres (m along the optical axis)."""
    width = (config.depth_max - config.depth_min) / config.depth_bins
    return config.depth_min + (torch.arange(config.depth_bins) + 0.5) * width


def lift_rays(k: torch.Tensor, config: Encoder4DConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The cameras' origins (cams, 3) and their feature pixels' ray directions (N, cams, h, w, 3) in base_link
    (optical z = 1: a point at depth d along the optical axis is origin + d * direction), for matrices
    (N, cams, 3, 3)."""
    rays = pixel_rays(k, config.image_height, config.image_width, IMAGE_STRIDE)  # (N, cams, h, w, 3)
    rotations, translations = camera_mounts()
    return translations, rays @ rotations[None, :, None].transpose(-1, -2)


def splat(
    features: torch.Tensor,
    probabilities: torch.Tensor,
    origins: torch.Tensor,
    directions: torch.Tensor,
    config: Encoder4DConfig,
) -> torch.Tensor:
    """(N, C*Z, G, G): features (N, cams, C, h, w) weighted by depth-bin probabilities (N, cams, D, h, w) and
    sum-pooled into the voxels where each feature pixel's ray (`lift_rays`' origins (cams, 3) and directions
    (N, cams, h, w, 3)) reaches each bin's centre; channel c * Z + z is feature c at height bin z. Only each pixel's
    `lift_bins` most probable bins are lifted (the depth sensor makes the distributions sharp, and the lifting's cost
    grows with the bins lifted); points off the grid or outside the height bins are dropped."""
    n, channels = features.shape[0], features.shape[2]
    g, heights = config.grid, config.heights
    # Top-k over a contiguous last dimension: several times faster than over the bins' own.
    probabilities, bins = probabilities.permute(0, 1, 3, 4, 2).topk(min(config.lift_bins, config.depth_bins), dim=-1)
    probabilities, bins = probabilities.permute(0, 1, 4, 2, 3), bins.permute(0, 1, 4, 2, 3)  # (N, cams, K, h, w)
    depths = depth_centres(config).to(directions.dtype)[bins]
    points = origins[None, :, None, None, None] + depths[..., None] * directions[:, :, None]  # (N, cams, K, h, w, 3)
    column = torch.floor(points[..., 0] / config.resolution + g / 2).long()
    row = torch.floor(points[..., 1] / config.resolution + g / 2).long()
    edges = torch.tensor(config.height_edges, dtype=points.dtype)
    level = torch.bucketize(points[..., 2].contiguous(), edges, right=True) - 1
    inside = (column >= 0) & (column < g) & (row >= 0) & (row < g) & (level >= 0) & (level < heights)
    # Flat addresses in a channels-last (N, G, G, C, Z) layout, one per point and channel: one broadcast add from
    # each point's cell, no permuted copies, and the 1x1 convolution after reads channels-last fastest.
    frame = torch.arange(n).view(n, 1, 1, 1, 1)
    depth = channels * heights
    dump = n * g * g * depth  # a spare cell takes every dropped point
    cell = torch.where(inside, ((frame * g + row) * g + column) * depth + level, dump)
    address = cell[:, :, :, None] + (torch.arange(channels) * heights).view(1, 1, 1, channels, 1, 1)
    values = probabilities[:, :, :, None] * features[:, :, None]  # (N, cams, K, C, h, w)
    pooled = features.new_zeros(dump + depth).index_add_(0, address.flatten(), values.flatten())[:dump]
    return pooled.view(n, g, g, depth).permute(0, 3, 1, 2)


def warp(maps: torch.Tensor, poses: torch.Tensor, half_extent_m: float) -> torch.Tensor:
    """Maps (N, C, G, G) in their frames' ego into the target ego, given each frame's pose (N, 3) in the target's:
    a point p of the frame lands at R(yaw) p + (x, y). Bilinear; zero where the frame's map does not reach."""
    cos, sin = poses[:, 2].cos(), poses[:, 2].sin()
    x, y = poses[:, 0] / half_extent_m, poses[:, 1] / half_extent_m
    # For each target cell q (normalised), the source point R(-yaw) (q - t).
    theta = torch.stack(
        [torch.stack([cos, sin, -(cos * x + sin * y)], 1), torch.stack([-sin, cos, sin * x - cos * y], 1)], 1
    )
    grid = F.affine_grid(theta, list(maps.shape), align_corners=False)
    return F.grid_sample(maps, grid, align_corners=False)


def render(
    maps: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    origins: torch.Tensor,
    directions: torch.Tensor,
    config: Encoder4DConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Volume-rendered (depth (N, R) m along the optical axis, colour (N, R, 3)) of rays from origins (N, R, 3)
    along optical-frame directions of z = 1 turned into the maps' frame (N, R, 3), through the voxel field that
    `head` (a pointwise linear map, features (N, P, C) -> (N, P, 4 * L)) decodes from maps (N, C, G, G): raw density
    (softplus: per metre) at L even heights over [0, render_top), channels 0 .. L-1, and colour (sigmoid), channels
    L .. 4L-1, colour-major.

    A ray ends where it leaves the grid's volume, at the floor (z = 0: the buildings are flat) or at depth_max,
    whichever comes first; `render_samples` points sit evenly between depth_min and that end (none wasted past the
    floor), and the rest of the ray's transmittance renders the end's depth and the field's colour there (at the
    floor, the lowest level's). The field is read trilinearly, clamped at the grid's edges; as the head is linear
    and the bilinear weights sum to 1, the maps are sampled first and decoded at the points alone, not everywhere."""
    half, top, levels = config.half_extent_m, config.render_top, config.render_levels
    bounds = torch.tensor([half, half, top], dtype=origins.dtype)
    lower = torch.tensor([-half, -half, 0.0], dtype=origins.dtype)
    # Per axis, where the ray leaves the volume's slab; never along an axis it does not move on.
    parallel = directions.abs() < 1e-9
    safe = torch.where(parallel, 1.0, directions)
    exits = torch.where(directions > 0, (bounds - origins) / safe, (lower - origins) / safe)
    exits = torch.where(parallel, math.inf, exits)  # (N, R, 3)
    end = exits.amin(dim=-1).clamp(min=config.depth_min, max=config.depth_max)  # (N, R)
    fraction = (torch.arange(config.render_samples, dtype=origins.dtype) + 0.5) / config.render_samples
    spacing = (end - config.depth_min) / config.render_samples
    samples = config.depth_min + fraction * (end - config.depth_min)[..., None]  # (N, R, S)
    points = origins[:, :, None] + samples[..., None] * directions[:, :, None]  # (N, R, S, 3)
    points = torch.cat([points, (origins + end[..., None] * directions)[:, :, None]], dim=2)  # (N, R, S+1, 3)
    count, rays, steps = points.shape[:3]
    # Columns along x are grid_sample's width, rows along y its height.
    planar = points[..., :2].reshape(count, 1, -1, 2) / half
    planar = F.grid_sample(maps, planar, align_corners=False, padding_mode="border")[:, :, 0]  # (N, C, P)
    values = head(planar.transpose(1, 2)).view(count, -1, FIELD_CHANNELS, levels)  # (N, P, 4, L)
    level = (points[..., 2].flatten(1) * levels / top - 0.5).clamp(0, levels - 1)  # (N, P): the levels' centres
    below = level.floor().clamp(max=levels - 2).long()
    weight = (level - below)[..., None]
    pair = values.gather(3, torch.stack([below, below + 1], dim=-1)[:, :, None].expand(-1, -1, FIELD_CHANNELS, -1))
    values = (pair[..., 0] * (1 - weight) + pair[..., 1] * weight).view(count, rays, steps, FIELD_CHANNELS)
    density = F.softplus(values[:, :, :-1, 0])  # (N, R, S)
    optical = density * (spacing * directions.norm(dim=-1))[..., None]  # along the ray, not the optical axis
    passed = torch.cumsum(optical, dim=-1)
    weights = torch.exp(-(passed - optical)) - torch.exp(-passed)  # transmittance before x opacity of the sample
    rest = torch.exp(-passed[..., -1])
    colours = torch.sigmoid(values[..., 1:])  # (N, R, S+1, 3)
    depth = (weights * samples).sum(-1) + rest * end
    colour = (weights[..., None] * colours[:, :, :-1]).sum(2) + rest[..., None] * colours[:, :, -1]
    return depth, colour


def seen_cells(
    depth: torch.Tensor, valid: torch.Tensor, k: torch.Tensor, poses: torch.Tensor, config: Encoder4DConfig
) -> torch.Tensor:
    """(B, G, G) bool: the cells that some frame's valid depth point fell into, from depth (B, T, cams, H, W) m,
    valid (B, T, cams, H, W), matrices (B, cams, 3, 3) and the frames' poses (B, T, 3) in the target's ego."""
    batch, frames, cams, height, width = depth.shape
    rays = pixel_rays(k, height, width)[:, None].expand(-1, frames, -1, -1, -1, -1)  # (B, T, cams, H, W, 3)
    origins, rotations = cameras_at(poses.reshape(-1, 3), *camera_mounts())
    origins, rotations = origins.view(batch, frames, cams, 1, 1, 3), rotations.view(batch, frames, cams, 1, 1, 3, 3)
    points = origins + depth[..., None] * (rotations @ rays[..., None])[..., 0]
    g = config.grid
    column = torch.floor(points[..., 0] / config.resolution + g / 2).long()
    row = torch.floor(points[..., 1] / config.resolution + g / 2).long()
    hit = valid & (column >= 0) & (column < g) & (row >= 0) & (row < g)
    cell = torch.arange(batch).view(batch, 1, 1, 1, 1) * g * g + row * g + column
    seen = torch.zeros(batch * g * g, dtype=torch.bool)
    seen[cell[hit]] = True
    return seen.view(batch, g, g)


def iou(predicted: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Intersection over union of two bool maps, pooled over all their cells (those of `mask` alone if given);
    nan when both are empty there."""
    if mask is not None:
        predicted, truth = predicted & mask, truth & mask
    union = (predicted | truth).sum().item()
    return (predicted & truth).sum().item() / union if union else math.nan


# --- modules ----------------------------------------------------------------------------------------------------------


def _norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: each picture and map is normalised alone, so training and inference agree.
    return nn.GroupNorm(4, channels)


class ImageEncoder(nn.Module):
    """RGB-D pictures (N, 4, H, W) -> features (N, C, H/4, W/4) and depth-bin logits (N, D+1, H/4, W/4)."""

    def __init__(self, config: Encoder4DConfig) -> None:
        super().__init__()
        width, self.channels = config.image_channels, config.feature_channels
        self.net = nn.Sequential(
            nn.Conv2d(4, width // 2, 3, 2, 1),
            _norm(width // 2),
            nn.GELU(),
            nn.Conv2d(width // 2, width, 3, 2, 1),
            _norm(width),
            nn.GELU(),
            nn.Conv2d(width, width, 3, 1, 1),
            _norm(width),
            nn.GELU(),
            nn.Conv2d(width, config.feature_channels + config.depth_bins + 1, 1),
        )

    def forward(self, pictures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(pictures)
        return out[:, : self.channels], out[:, self.channels :]


class TemporalPredictor(nn.Module):
    """Past maps aligned to frame n (B, P, C', G, G) -> the current map and the F future ones (B, 1+F, C', G, G),
    in frame n's ego. SimVP-style: every step at once from the stacked past, no recurrence. A U-Net of one level:
    a 1x1 mix at full resolution, three residual 3x3 blocks at half with dilations 1, 2, 4 (people walk about 1 m in
    1 s, 10 cells: the half-resolution blocks reach about 15 cells), a 3x3 refinement at full resolution."""

    def __init__(self, config: Encoder4DConfig) -> None:
        super().__init__()
        c, width = config.bev_channels, config.temporal_channels
        self.steps = 1 + config.future
        self.mix = nn.Sequential(nn.Conv2d(config.past * c, width, 1), _norm(width), nn.GELU())
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), _norm(2 * width), nn.GELU())
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, 1, d, dilation=d), _norm(2 * width)) for d in (1, 2, 4)
        )
        self.up = nn.Conv2d(2 * width, width, 1)
        self.refine = nn.Sequential(_norm(width), nn.GELU(), nn.Conv2d(width, width, 3, 1, 1), _norm(width), nn.GELU())
        self.out = nn.Conv2d(width, self.steps * c, 1)

    def forward(self, past: torch.Tensor) -> torch.Tensor:
        full = self.mix(past.flatten(1, 2))
        half = self.down(full)
        for block in self.blocks:
            half = F.gelu(half + block(half))
        full = self.refine(full + F.interpolate(self.up(half), scale_factor=2, mode="nearest"))
        return self.out(full).unflatten(1, (self.steps, -1))


class Encoder4D(nn.Module, HubModel, model_card_template=MODEL_CARD, tags=["astra", "encoder4d"]):
    """The 4D encoder of `config`; batches follow the module's contract."""

    def __init__(self, config: Encoder4DConfig = Encoder4DConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.bev_channels
        self.image = ImageEncoder(config)
        self.frame = nn.Sequential(nn.Conv2d((config.feature_channels + 1) * config.heights, c, 1), _norm(c), nn.GELU())
        self.temporal = TemporalPredictor(config)
        self.occupancy_head = nn.Conv2d(c, 1, 1)
        self.render_head = nn.Linear(c, FIELD_CHANNELS * config.render_levels)  # read at points: see `render`

    # --- the maps ---

    def lift(self, batch: dict[str, torch.Tensor], frames: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames `frames` of the batch each lifted in its own ego: (maps (B, T', C' + 1, G, G), the last channel the
        lifted probability mass; depth-bin logits (B, T', cams, D+1, h, w))."""
        config = self.config
        rgb, depth = batch["rgb"][:, frames], batch["depth"][:, frames]
        size, count, cams = rgb.shape[:3]
        scaled = torch.where(batch["depth_valid"][:, frames], depth / config.depth_max, 0.0)
        pictures = torch.cat([rgb, scaled[:, :, :, None]], dim=3).flatten(0, 2)  # (B*T'*cams, 4, H, W)
        features, logits = self.image(pictures)
        probabilities = logits.softmax(dim=1)[:, : config.depth_bins]  # the last bin is lifted nowhere
        features = torch.cat([features, torch.ones_like(features[:, :1])], dim=1)  # the mass channel
        h, w = features.shape[-2:]
        origins, directions = lift_rays(batch["k"], config)
        lifted = splat(
            features.view(size * count, cams, -1, h, w),
            probabilities.view(size * count, cams, -1, h, w),
            origins,
            directions.repeat_interleave(count, dim=0),
            config,
        )
        mass = lifted[:, -config.heights :].sum(dim=1, keepdim=True)
        maps = torch.cat([self.frame(lifted), mass], dim=1)
        return maps.unflatten(0, (size, count)), logits.view(size, count, cams, *logits.shape[1:])

    def frame_maps(
        self, batch: dict[str, torch.Tensor], frames: slice, poses: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frames `frames` of the batch each lifted in its own ego and warped by `poses` (B, T', 3) into frame n's:
        (maps (B, T', C', G, G), lifted probability mass (B, T', G, G), depth-bin logits (B, T', cams, D+1, h, w))."""
        lifted, logits = self.lift(batch, frames)
        maps = self._aligned(lifted, poses)
        return maps[:, :, :-1], maps[:, :, -1], logits

    def _aligned(self, lifted: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """`lift`'s maps (B, T', C' + 1, G, G) warped by `poses` (B, T', 3) into frame n's ego."""
        return warp(lifted.flatten(0, 1), poses.flatten(0, 1), self.config.half_extent_m).unflatten(0, lifted.shape[:2])

    def _maps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(maps (B, 1+F, C', G, G): now and the future frames', the past frames' depth-bin logits)."""
        past = self.config.past
        lifted, logits = self.lift(batch, slice(0, past))
        return self._now_and_ahead(lifted, batch["odom_poses"][:, :past]), logits

    def _now_and_ahead(self, lifted: torch.Tensor, odom_poses: torch.Tensor) -> torch.Tensor:
        return self.temporal(self._aligned(lifted, odom_poses)[:, :, :-1])

    def _tokens(self, bev: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(bev, self.config.token_grid).flatten(2).transpose(1, 2)

    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """bev (B, C', G, G) the current map; future (B, F, C', G, G); tokens (B, token_grid^2, C') of the
        current map, row-major over its token grid (row along y); occupancy (B, 2, G, G) probabilities now and
        1 s ahead."""
        past = self.config.past
        return self.encode_lifted(self.lift(batch, slice(0, past))[0], batch["odom_poses"][:, :past])

    def encode_lifted(self, lifted: torch.Tensor, odom_poses: torch.Tensor) -> dict[str, torch.Tensor]:
        """`encode`'s outputs from the past frames lifted already (`lift`'s maps (B, P, C' + 1, G, G)) and their filter
        poses (B, P, 3) in frame n's ego: on the robot each frame is lifted once, not once per window it is in."""
        maps = self._now_and_ahead(lifted, odom_poses)
        occupancy = self.occupancy_head(maps[:, [0, self.config.ahead_frame]].flatten(0, 1)).view(len(maps), 2, -1)
        return {
            "bev": maps[:, 0],
            "future": maps[:, 1:],
            "tokens": self._tokens(maps[:, 0]),
            "occupancy": torch.sigmoid(occupancy).view(len(maps), 2, *maps.shape[-2:]),
        }

    # --- training ---

    def loss(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted sum of the module docstring's terms, and each term; `generator` draws the rendered pixels."""
        config = self.config
        maps, logits = self._maps(batch)
        parts = {"depth_bins": self._depth_bin_loss(logits, batch)}
        parts["depth_l1"], parts["colour_l1"] = self._render_losses(maps, batch, generator)
        if config.feature_weight:  # the future frames' own maps cost a pass of the image encoder over them
            parts["feature"] = self._feature_loss(maps[:, 1:], batch)
        occupancy = self.occupancy_head(maps[:, [0, config.ahead_frame]].flatten(0, 1)).view(len(maps), 2, -1)
        parts["occupancy_bce"] = F.binary_cross_entropy_with_logits(occupancy, batch["true_occupancy"].flatten(2))
        weights = {
            "depth_bins": config.depth_bin_weight,
            "depth_l1": config.depth_weight,
            "colour_l1": config.colour_weight,
            "feature": config.feature_weight,
            "occupancy_bce": config.occupancy_weight,
        }
        # A term of weight 0 is reported but left out of the sum: no gradient reaches what only it reads (with
        # occupancy_weight 0, the occupancy head).
        total = sum(weights[name] * value for name, value in parts.items() if weights[name])
        return total, {name: value.item() for name, value in parts.items()}

    def _depth_bin_loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the past frames' depth-bin logits (B, P, cams, D+1, h, w) against each feature pixel's
        histogram of the sensor's depths over its stride x stride block (invalid or out of range: the last bin)."""
        config = self.config
        depth, valid = batch["depth"][:, : config.past], batch["depth_valid"][:, : config.past]
        step = (config.depth_max - config.depth_min) / config.depth_bins
        index = torch.floor((depth - config.depth_min) / step).long()
        index = torch.where(valid & (index >= 0) & (index < config.depth_bins), index, config.depth_bins)
        # Each pixel's vote in its feature pixel's histogram, counted by address (a one-hot of every pixel costs
        # several times more).
        images, height, width = index.flatten(0, 2).shape
        h, w, bins = height // IMAGE_STRIDE, width // IMAGE_STRIDE, config.depth_bins + 1
        block = (torch.arange(height) // IMAGE_STRIDE)[:, None] * w + torch.arange(width) // IMAGE_STRIDE
        address = (torch.arange(images)[:, None, None] * h * w + block) * bins + index.flatten(0, 2)
        counts = torch.bincount(address.flatten(), minlength=images * h * w * bins).view(images, h, w, bins)
        histogram = counts.permute(0, 3, 1, 2).float() / IMAGE_STRIDE**2
        return -(histogram * logits.flatten(0, 2).log_softmax(dim=1)).sum(dim=1).mean()

    def _render_losses(
        self, maps: torch.Tensor, batch: dict[str, torch.Tensor], generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """L1 of rendered depth and colour: frame n through the current map, each future frame through its
        predicted map, from that frame's cameras at its true pose; `rays` pixels per camera and frame, drawn among
        those with valid depth on a surface inside the grid's volume."""
        config = self.config
        steps = maps.shape[1]
        frames = slice(config.past - 1, config.past - 1 + steps)
        rgb, depth = batch["rgb"][:, frames].flatten(0, 1), batch["depth"][:, frames].flatten(0, 1)
        valid = batch["depth_valid"][:, frames].flatten(0, 1)  # (N, cams, H, W), N = B * steps
        count, cams, height, width = depth.shape
        rays = pixel_rays(batch["k"], height, width).repeat_interleave(steps, dim=0)  # (N, cams, H, W, 3)
        origins, rotations = cameras_at(batch["poses"][:, frames].reshape(-1, 3), *camera_mounts())
        directions = (rays.flatten(2, 3) @ rotations.transpose(-1, -2)).view(rays.shape)  # a matmul per camera
        surfaces = origins[:, :, None, None] + depth[..., None] * directions
        usable = (
            valid
            & (surfaces[..., :2].abs() < config.half_extent_m).all(dim=-1)
            & (surfaces[..., 2] < config.render_top)
        ).flatten(2)  # (N, cams, H*W)
        # A camera with no usable pixel still draws (uniformly), but its rays do not count.
        chances = usable.flatten(0, 1).float() + 1e-6
        chosen = torch.multinomial(chances, config.rays, replacement=True, generator=generator).view(count, -1)
        pick = chosen + (torch.arange(cams) * height * width).repeat_interleave(config.rays)  # (N, cams*R)

        def picked(values: torch.Tensor) -> torch.Tensor:  # (N, cams, H, W, ...) -> (N, cams*R, ...)
            flat = values.flatten(1, 3)
            return flat.gather(1, pick.view(count, -1, *[1] * (flat.ndim - 2)).expand(-1, -1, *flat.shape[2:]))

        ray_origins = origins.repeat_interleave(config.rays, dim=1)
        rendered_depth, rendered_colour = render(
            maps.flatten(0, 1), self.render_head, ray_origins, picked(directions), config
        )
        weight = picked(usable.view(count, cams, height, width)).float()
        colour = picked(rgb.permute(0, 1, 3, 4, 2))
        counted = weight.sum().clamp(min=1)
        depth_l1 = ((rendered_depth - picked(depth)).abs() * weight).sum() / counted
        colour_l1 = ((rendered_colour - colour).abs().mean(-1) * weight).sum() / counted
        return depth_l1, colour_l1

    def _feature_loss(self, future: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean squared error of the predicted future maps (B, F, C', G, G) against the maps of the future frames
        themselves (stop-gradient), warped into frame n's ego with their true poses, over the cells they saw."""
        config = self.config
        frames = slice(config.past, config.past + config.future)
        with torch.no_grad():
            targets, mass, _ = self.frame_maps(batch, frames, batch["poses"][:, frames])
        seen = (mass > SEEN_MASS).unsqueeze(2).float()
        error = ((future - targets) ** 2).mean(dim=2, keepdim=True)
        return (error * seen).sum() / seen.sum().clamp(min=1)

    # --- evaluation ---

    @torch.no_grad()
    def occupancy_maps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bool maps to score the occupancy by: predicted (B, 2, G, G) at OCCUPIED, now and 1 s ahead; the truth
        (B, 2, G, G); and the cells a past frame's valid depth points fell into (B, G, G), geometrically. The
        model's mode is restored after."""
        training = self.training
        self.eval()
        try:
            with torch.no_grad():
                predicted = self.encode(batch)["occupancy"] > OCCUPIED
        finally:
            self.train(training)
        past = self.config.past
        seen = seen_cells(
            batch["depth"][:, :past],
            batch["depth_valid"][:, :past],
            batch["k"],
            batch["odom_poses"][:, :past],
            self.config,
        )
        return predicted, batch["true_occupancy"] > 0.5, seen

    def occupancy_iou(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """`occupancy_ious` of the batch's `occupancy_maps`."""
        return occupancy_ious(*self.occupancy_maps(batch))


def occupancy_ious(predicted: torch.Tensor, truth: torch.Tensor, seen: torch.Tensor) -> dict[str, float]:
    """IoU of predicted against true occupancy (B, 2, G, G), now and 1 s ahead, pooled over all cells and over the
    `seen` ones (B, G, G) alone."""
    return {
        "iou_now": iou(predicted[:, 0], truth[:, 0]),
        "iou_1s": iou(predicted[:, 1], truth[:, 1]),
        "iou_now_seen": iou(predicted[:, 0], truth[:, 0], seen),
        "iou_1s_seen": iou(predicted[:, 1], truth[:, 1], seen),
    }


def moving_ious(predicted: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Whether the 1 s map predicts motion: IoU on the cells whose true occupancy changes within the second alone,
    of the 1 s map against the truth 1 s ahead, and of the map of now held still (what predicting nothing scores),
    from predicted and true occupancy (B, 2, G, G)."""
    changed = truth[:, 0] != truth[:, 1]
    return {
        "iou_1s_moving": iou(predicted[:, 1], truth[:, 1], changed),
        "iou_1s_moving_held_still": iou(predicted[:, 0], truth[:, 1], changed),
    }
