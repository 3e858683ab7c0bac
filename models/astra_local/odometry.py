"""Astra-Local's learned odometry head (the ByteDance Astra paper's): the robot's motion over the newest step from the
bird's-eye-view grids of the last frames and the IMU and wheel samples between them.

Each of the T steps (frame i to frame i+1, the current step and the T-1 before it) gets one token per modality:
- vision: a shared CNN turns every BEV frame (depth lifted into a ground grid, computed elsewhere) into features at
  1 / feature_stride of the grid, each frame once. The step's two frames are correlated (`correlation_volume`) at
  `correlation_levels` scales, each one's features average-pooled 2x from the last's, so that with the same radius
  the coarser levels reach further: by default +-0.8 m, then +-1.6 m, while a 0.75 rad turn moves a cell 2 m from
  the robot by 1.5 m. A small CNN reads the volumes, each joining it at its own resolution, and is average-pooled to
  a coarse grid (pooled_grid a side), not to one cell, before the projection to d_model: a turn is a displacement
  that changes across the grid, not one peak, and the projection's per-cell weights can read that pattern.
- imu, wheel: an LSTM over the step's samples, its last hidden state projected to d_model.
A step's token is the sum of its configured modalities' tokens and a learned step-position embedding; modalities
not configured have no modules and their inputs are never read. A pre-norm transformer runs over [CLS, the T step
tokens] with the steps that do not exist (early in a tour) masked out as keys. The CLS output is the newest step's
motion; each step token's output is that step's motion too, an auxiliary target.

Motions (dx, dy, dyaw of frame i+1 in frame i's ego frame: x forward, y left, yaw counter-clockwise) are normalised
by fixed scales, so a checkpoint carries no data statistics.

Batch contract (float32, B batch, T = config.history, G = config.bev_grid), read only for configured modalities:
- bev (B, T+1, bev_channels, G, G): frames n-T .. n, oldest first, channels scaled to about [0, 1];
- imu (B, T, imu_samples, 6): step i's samples resampled to a fixed count: gyro xyz (rad/s), accel xyz / 9.81;
- wheels (B, T, wheel_samples, 4): left and right wheel travel since the step's start (m), their speeds (m/s);
- valid (B, T) bool: the steps that exist (both frames real); the newest, T-1, always does. The inputs of the
  others may hold any finite values: they do not change the output;
- odom_motion (B, T, 3): each step's motion as the robot's wheel + IMU filter saw it, read with filter_prior alone;
- motion (B, T, 3): each step's true (dx m, dy m, dyaw rad), for `loss` alone;
- vision_tokens (B, T, d_model), in place of bev where given: the vision encoder's tokens of the steps, computed
  once (pipelines.train_local trains the encoder on single steps, then the rest of each variant on its frozen
  tokens: training on the BEV frames themselves costs seconds per step on a CPU).
"""

# No `from __future__ import annotations`: PyTorchModelHubMixin reads `config`'s annotation at run time to
# rebuild the dataclass from config.json.
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.astra_local.attention import MaskedTransformer
from models.hub import HubModel

MODALITIES = ("vision", "imu", "wheel")
IMU_CHANNELS = 6  # gyro xyz, accel xyz
WHEEL_CHANNELS = 4  # left and right travel, left and right speed

MODEL_CARD = """---
{{ card_data }}
---

# Astra-Local odometry head

A small learned odometry head (`models/astra_local/odometry.py`): from the bird's-eye-view grids of the last frames
(depth lifted into a ground grid) and, as configured, the IMU and wheel samples between them, it estimates the
robot's motion over the newest step: dx and dy (m) and dyaw (rad) of the current frame in the previous frame's ego
frame. A correlation volume between consecutive BEV frames, an LSTM over the IMU and one over the wheels give one
token each per step; a transformer over a CLS token and the steps reads the motion out of the CLS token.

Load it offline with `models.astra_local.odometry.AstraOdometry.from_pretrained(dir)`; its config.json says which
modalities it reads and the shapes of its inputs (the module's docstring gives the batch contract).

## Training

{{ training | default("Not recorded.", true) }}
"""


@dataclass(frozen=True)
class OdometryConfig:
    """The modalities read, the input shapes, the (tiny) architecture, the loss and the fixed target scales."""

    modalities: tuple[str, ...] = MODALITIES  # a non-empty subset of MODALITIES, kept in MODALITIES' order
    history: int = 10  # T steps: the current one and the T-1 before it
    bev_channels: int = 5
    bev_grid: int = 64  # G cells a side
    imu_samples: int = 50
    wheel_samples: int = 25
    correlation_radius: int = 4  # displacements of -r .. r feature cells at each level
    correlation_levels: int = 2  # level l correlates features average-pooled by 2^l
    feature_stride: int = 2  # BEV features at 1 / stride of the grid before the correlation
    feature_channels: int = 16
    head_channels: int = 32  # of the CNN over the correlation volumes
    pooled_grid: int = 4  # that CNN's output is average-pooled to this many cells a side
    lstm_hidden: int = 32
    d_model: int = 64
    heads: int = 4
    layers: int = 2
    # True: the heads correct the robot's wheel + IMU filter's motion (`odom_motion`), which starts them at the
    # filter's accuracy: from scratch, networks integrate gyro and wheel samples to a few per cent at best, while the
    # filter's heading drifts 2-3 degrees per 10 m in a minute's tour (it is still learning the gyro's bias). The
    # filter reads the same IMU and wheels, so no input is added.
    filter_prior: bool = False
    step_loss_weight: float = 0.5  # of the per-step auxiliary loss
    smooth_l1_beta: float = 0.1  # normalised units: quadratic below 5 cm and 0.05 rad at the default scales
    translation_scale: float = 0.5  # m; targets and outputs are divided by these
    yaw_scale: float = 0.5  # rad

    def __post_init__(self) -> None:
        modalities = tuple(self.modalities)  # config.json gives a list
        unknown = [name for name in modalities if name not in MODALITIES]
        if not modalities or unknown or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities {modalities!r} must be a non-empty subset of {MODALITIES}, each once")
        object.__setattr__(self, "modalities", tuple(name for name in MODALITIES if name in modalities))
        if self.filter_prior and not {"imu", "wheel"} <= set(self.modalities):
            raise ValueError("filter_prior corrects the wheel + IMU filter: it needs the imu and wheel modalities")
        if self.history < 1:
            raise ValueError("history must be at least 1")
        if self.correlation_radius < 0 or self.correlation_levels < 1:
            raise ValueError("correlation_radius must be >= 0 and correlation_levels >= 1")
        if self.bev_grid % (self.feature_stride * 2**self.correlation_levels):
            # Each level halves the resolution and so does each stage of the CNN over it; they must line up.
            raise ValueError("bev_grid must be a multiple of feature_stride * 2 ** correlation_levels")
        if self.d_model % self.heads:
            raise ValueError("d_model must be a multiple of heads")


ODOMETRY_VARIANTS: dict[str, OdometryConfig] = {
    "vision": OdometryConfig(modalities=("vision",)),
    "vision_imu": OdometryConfig(modalities=("vision", "imu")),
    "vision_imu_wheel": OdometryConfig(modalities=("vision", "imu", "wheel"), filter_prior=True),
}
DEFAULT_ODOMETRY = "vision_imu_wheel"


def correlation_volume(a: torch.Tensor, b: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, (2r+1)^2, H, W) from feature maps a, b (B, C, H, W): channel k at (y, x) is the mean over channels of
    a(y, x) * b(y + dy, x + dx), b being zero outside its grid, for the k-th displacement in row-major order over
    (dy, dx) in [-r, r]^2, dy outer: k = (dy + r) * (2r + 1) + (dx + r); k = 0 is (-r, -r), k = 2r(r+1) is (0, 0)."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"a and b must be (B, C, H, W) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if radius < 0:
        raise ValueError("radius must be >= 0")
    channels, height, width = a.shape[1:]
    size, wide = 2 * radius + 1, width + 2 * radius
    rows = (a / channels).permute(0, 2, 3, 1).contiguous()  # (B, H, W, C), the mean's division on the smaller side
    padded = F.pad(b, (radius, radius, radius, radius)).permute(0, 2, 3, 1).contiguous()  # (B, H+2r, W+2r, C)
    # Per dy, one matmul of every row of a with the row dy below it in b, (W, C) x (C, W+2r), and from that the band
    # of 2r+1 diagonals, S[x, x + r + dx]: several times more products than needed, but in a matmul, and its
    # backward writes each gradient once. Looping over the (2r+1)^2 shifted products instead is several times slower
    # to train: every slice's backward writes a gradient the size of all of b.
    bands = []
    for dy in range(size):
        products = torch.matmul(rows, padded[:, dy : dy + height].transpose(2, 3))  # (B, H, W, W+2r)
        bands.append(products.flatten(2).unfold(2, size, wide + 1))  # (B, H, W, 2r+1): windows at x (W+2r+1)
    return torch.stack(bands, dim=3).flatten(3).permute(0, 3, 1, 2)


class CorrelationEncoder(nn.Module):
    """BEV frames (B, T+1, C, G, G) -> one vision token per step (B, T, d_model); see the module's docstring.

    GroupNorm, not BatchNorm: it normalises each frame alone, so a padded frame cannot change a real one's features,
    and training and inference agree."""

    def __init__(self, config: OdometryConfig) -> None:
        super().__init__()
        self.radius = config.correlation_radius
        features, hidden = config.feature_channels, config.head_channels
        self.features = nn.Sequential(
            nn.Conv2d(config.bev_channels, features, 3, config.feature_stride, 1),
            nn.GroupNorm(4, features),
            nn.GELU(),
            nn.Conv2d(features, features, 3, 1, 1),
            nn.GroupNorm(4, features),
        )
        volume = (2 * self.radius + 1) ** 2
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(volume + (hidden if level else 0), hidden, 3, 2, 1), nn.GroupNorm(4, hidden), nn.GELU()
            )
            for level in range(config.correlation_levels)
        )
        self.pool = nn.AdaptiveAvgPool2d(config.pooled_grid)
        self.project = nn.Linear(hidden * config.pooled_grid**2, config.d_model)

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        batch_size, frames = bev.shape[:2]
        features = self.features(bev.flatten(0, 1)).unflatten(0, (batch_size, frames))  # each frame once
        # Each cell's features scaled to a mean square of 1, so that the correlation is their cosine: bounded, and not
        # dominated by the cells whose features happen to be large. With raw features the vision variant took about
        # twice the steps to start reading the tests' shifted blobs off the volume.
        features = F.normalize(features, dim=2) * features.shape[2] ** 0.5
        first, second = features[:, :-1].flatten(0, 1), features[:, 1:].flatten(0, 1)
        hidden = None
        for level, stage in enumerate(self.stages):
            if level:
                first, second = F.avg_pool2d(first, 2), F.avg_pool2d(second, 2)
            volume = correlation_volume(first, second, self.radius)
            hidden = stage(volume if hidden is None else torch.cat([volume, hidden], dim=1))
        return self.project(self.pool(hidden).flatten(1)).unflatten(0, (batch_size, frames - 1))


class SequenceEncoder(nn.Module):
    """A step's samples (B, T, S, channels) -> one token per step (B, T, d_model): an LSTM's last hidden state,
    projected."""

    def __init__(self, channels: int, hidden: int, d_model: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(channels, hidden, batch_first=True)
        self.project = nn.Linear(hidden, d_model)

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        _, (last, _) = self.lstm(samples.flatten(0, 1))
        return self.project(last[-1]).unflatten(0, samples.shape[:2])


class AstraOdometry(nn.Module, HubModel, model_card_template=MODEL_CARD, tags=["astra", "odometry"]):
    """The odometry head of `config.modalities`; batches follow the module's contract."""

    def __init__(self, config: OdometryConfig = OdometryConfig()) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        modalities = config.modalities
        self.vision = CorrelationEncoder(config) if "vision" in modalities else None
        self.imu = SequenceEncoder(IMU_CHANNELS, config.lstm_hidden, d) if "imu" in modalities else None
        self.wheel = SequenceEncoder(WHEEL_CHANNELS, config.lstm_hidden, d) if "wheel" in modalities else None
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.step_embedding = nn.Parameter(torch.randn(config.history, d) * 0.02)
        self.transformer = MaskedTransformer(d, config.heads, config.layers)
        self.head = nn.Linear(d, 3)  # the CLS output -> the newest step's motion
        self.step_head = nn.Linear(d, 3)  # each step's output -> its motion (auxiliary)
        for head in (self.head, self.step_head):
            # Zero at first: a random head's predictions vary with the input but not with the target, and the quickest
            # way to cut that error is to flatten the tokens' variation: learning the tests' shifted blobs from random
            # heads, one seed of 11 had not recovered from that in 500 steps.
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        scale = [config.translation_scale, config.translation_scale, config.yaw_scale]
        self.register_buffer("motion_scale", torch.tensor(scale), persistent=False)

    def _normalised(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(the newest step's motion (B, 3), every step's (B, T, 3)), both normalised."""
        config = self.config
        valid = batch["valid"].bool()
        batch_size, history = valid.shape
        if history != config.history:
            raise ValueError(f"valid has {history} steps, the model {config.history}")
        shapes = {
            "bev": (history + 1, config.bev_channels, config.bev_grid, config.bev_grid),
            "imu": (history, config.imu_samples, IMU_CHANNELS),
            "wheels": (history, config.wheel_samples, WHEEL_CHANNELS),
        }
        tokens = self.step_embedding.expand(batch_size, -1, -1)
        if self.vision is not None and "vision_tokens" in batch:  # cached: the encoder's own tokens, computed once
            tokens = tokens + batch["vision_tokens"]
        for encoder, name in ((self.vision, "bev"), (self.imu, "imu"), (self.wheel, "wheels")):
            if encoder is None or (name == "bev" and "vision_tokens" in batch):  # not configured, or cached
                continue
            inputs = batch[name]
            if inputs.shape != (batch_size, *shapes[name]):
                raise ValueError(f"{name} must be {(batch_size, *shapes[name])}, got {tuple(inputs.shape)}")
            tokens = tokens + encoder(inputs)
        tokens = torch.cat([self.cls.expand(batch_size, -1, -1), tokens], dim=1)
        # Key padding: no token attends to a step that does not exist; (B, 1, 1, 1+T) broadcasts over heads and
        # queries. CLS is always there, so no query is left with nothing to attend to.
        attend = torch.cat([valid.new_ones(batch_size, 1), valid], dim=1)[:, None, None, :]
        hidden, _ = self.transformer(tokens, attend)
        prior = self._prior(batch, valid)
        return self.head(hidden[:, 0]) + prior[:, -1], self.step_head(hidden[:, 1:]) + prior

    def _prior(self, batch: dict[str, torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
        """(B, T, 3) normalised: the filter's motions that the heads correct, or zeros."""
        if not self.config.filter_prior:
            return valid.new_zeros((*valid.shape, 3), dtype=torch.float32)
        return torch.where(valid[..., None], batch["odom_motion"], 0.0) / self.motion_scale

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 3): the newest step's motion, dx and dy (m) and dyaw (rad)."""
        return self._normalised(batch)[0] * self.motion_scale

    def forward_steps(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T, 3): every step's motion as its own token's output reads it (the auxiliary head); zero where the
        step does not exist."""
        steps = self._normalised(batch)[1] * self.motion_scale
        return torch.where(batch["valid"].bool()[..., None], steps, 0.0)

    def loss(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """current + step_loss_weight * steps, and both terms: smooth L1 on normalised motions, of the CLS output
        against the newest step's motion and of the step outputs against theirs, averaged over existing steps.

        Smooth L1 rather than MSE: a wheel slip or a bad ground-truth pose makes the odd target far off, and a
        squared error would let those few steer the training; rather than L1: its gradient does not shrink with the
        error, which jitters the small motions it must get to within centimetres. It draws no noise: `generator`
        is there for the one signature every Astra-Local model trains by (pipelines.train_local)."""
        config = self.config
        current, steps = self._normalised(batch)
        valid = batch["valid"].bool()
        # A padded step's target may be anything, even not finite: zeroed, so that no NaN reaches the gradient.
        target = torch.where(valid[..., None], batch["motion"], 0.0) / self.motion_scale
        current_loss = F.smooth_l1_loss(current, target[:, -1], beta=config.smooth_l1_beta)
        per_step = F.smooth_l1_loss(steps, target, beta=config.smooth_l1_beta, reduction="none").mean(dim=2)
        steps_loss = per_step.masked_select(valid).mean()
        total = current_loss + config.step_loss_weight * steps_loss
        return total, {"current": current_loss.item(), "steps": steps_loss.item()}

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`forward` in eval mode, without gradients; the model's mode is restored after."""
        training = self.training
        self.eval()
        try:
            return self(batch)
        finally:
            self.train(training)
