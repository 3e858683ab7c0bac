"""Astra-Local's learned local planner: past occupancy, velocity and motion plus a subgoal -> K future poses.

One backbone serves every planner kind. A small CNN stem turns each of the F occupancy frames into P patch tokens
(convs: 64 x 64 cells -> 4 x 4 patches). The token sequence has one segment per frame: for frame f < F-1 its
patches, its state token (v, w) and its action token, the odometry motion from f to f+1; the last frame's segment
holds its patches, with `voxel_tokens` the 4D encoder's tokens of the current frame (models.astra_local.encoder4d:
its map of the last frames' cameras, pooled to a grid of cells, each projected here with a learned position), its
state, the goal, for the CVAE kinds a latent token, and the action tokens being predicted:
3 learned queries (x, y, yaw), each carrying its dimension's K values, or, the ablation, one token per waypoint.
A pre-norm transformer runs over it under trajectory attention (models.astra_local.attention) or a causal mask.

The kinds differ only in what the action tokens carry, what is read out of them, and the losses:
- fm: conditional flow matching: x_t = (1 - t) noise + t x1, the tokens carry x_t and t; sampling integrates the
  velocity (x1 - x_t) / (1 - t) in Euler steps from noise. The head predicts x1 itself, trained by MSE (the
  velocity loss weighted by (1 - t)^2), not the velocity: a velocity head must put a gain of -1 / (1 - t) on its
  input, which additive time embeddings learn slowly (overfitting the tests' 8 samples for 250 steps, a velocity
  head's samples were 0.24 to 0.37 m off, no closer than the samples' mean trajectory, 0.27 m; x1's 0.06 to 0.07 m).
- dp: DDPM diffusion policy with a cosine schedule: the head predicts the noise; sampling is deterministic DDIM.
- vae: a CVAE: an MLP over (the observation summary, the trajectory) gives q(z); sampling draws z ~ N(0, I).
- act: ACT's CVAE: a transformer over [CLS, velocity, K waypoints] (no images) gives q(z), L1 reconstruction;
  sampling gives sample 0 ACT's z = 0 and the others z ~ N(0, I), so that samples still differ.
- bc: regression of the trajectory, MSE.
On top, from models.astra_local.losses: the masked ESDF loss on each kind's clean estimate, and the contrastive
dynamics loss, InfoNCE between embeddings of an augmented observation-and-state and of the jittered expert trajectory.

Trajectories are normalised by fixed scales (the distance and turn the robot can make over the horizon), so a
checkpoint carries no data statistics.
"""

# No `from __future__ import annotations`: PyTorchModelHubMixin reads `config`'s annotation at run time to
# rebuild the dataclass from config.json.
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.astra_local.attention import (
    KeyValues,
    MaskedTransformer,
    causal_attention_mask,
    independent_prefix,
    trajectory_attention_mask,
)
from models.astra_local.guidance import push_off_obstacles
from models.astra_local.losses import DEFAULT_BAND, DEFAULT_SAFE_DISTANCE, info_nce_loss, masked_esdf_loss
from models.hub import HubModel
from schemas.local_dataset import LOCAL_GEOMETRY, LocalGeometry
from schemas.robot import MOTION_LIMITS

KINDS = ("fm", "dp", "vae", "act", "bc")
ATTENTIONS = ("trajectory", "causal")
NOISY_KINDS = ("fm", "dp")  # their action tokens carry noisy values and a time
LATENT_KINDS = ("vae", "act")

MODEL_CARD = """---
{{ card_data }}
---

# Astra-Local planner

A small transformer local planner (`models/astra_local/planner.py`): from four past occupancy frames, velocities and
odometry motions and a subgoal, all in the robot's frame, it samples trajectories of future poses (x, y, yaw).

Load it offline with `models.astra_local.planner.LocalPlannerModel.from_pretrained(dir)`.

## Training

{{ training | default("Not recorded.", true) }}
"""


@dataclass(frozen=True)
class PlannerConfig:
    """Planner kind, ablation switches, loss weights, the (tiny) architecture, and the geometry of its samples
    (schemas.local_dataset's, kept in the checkpoint)."""

    kind: str = "fm"  # one of KINDS
    attention: str = "trajectory"  # or "causal"
    action_queries: bool = True  # 3 tokens (x, y, yaw) of K values each; False: K tokens of 3 values
    esdf_weight: float = 0.5  # 0 disables the masked ESDF loss
    # False: the velocities and motions are withheld (zeros), so the planner cannot copy its past motion (copycat)
    history: bool = True
    contrastive_weight: float = 0.1  # 0 disables the contrastive dynamics loss
    # The 4D encoder's tokens of the current frame (batch field `voxels` (B, voxel_tokens, voxel_channels)); 0: none
    voxel_tokens: int = 0
    voxel_channels: int = 16  # the encoder's bev_channels
    kl_weight: float = 0.01  # vae, act
    d_model: int = 64
    layers: int = 3
    heads: int = 4
    stem_channels: tuple[int, ...] = (16, 32)  # then d_model; 64 x 64 cells -> /4 -> /2 per conv -> 4 x 4 patches
    latent_dim: int = 16  # vae, act
    flow_steps: int = 5  # fm: Euler steps when sampling
    diffusion_steps: int = 20  # dp: noise levels in training ...
    diffusion_sample_steps: int = 10  # ... and the DDIM steps among them when sampling
    contrastive_temperature: float = 0.1
    contrastive_flip_fraction: float = 0.03  # positives: this share of occupancy cells flipped ...
    contrastive_trajectory_noise: float = 0.02  # ... and the expert trajectory jittered (normalised units)
    safe_distance_m: float = DEFAULT_SAFE_DISTANCE
    esdf_band_m: float = DEFAULT_BAND
    # Fixed normalisation, kept in the checkpoint: trajectories are divided by the distance and turn these allow over
    # the horizon, velocities by these, motions by what these allow in a frame period.
    max_speed: float = MOTION_LIMITS.max_speed  # m/s
    max_yaw_rate: float = MOTION_LIMITS.max_yaw_rate  # rad/s
    geometry: LocalGeometry = LOCAL_GEOMETRY

    def __post_init__(self) -> None:
        object.__setattr__(self, "stem_channels", tuple(self.stem_channels))  # config.json gives lists and dicts
        if isinstance(self.geometry, dict):
            object.__setattr__(self, "geometry", LocalGeometry(**self.geometry))
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is none of {KINDS}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention {self.attention!r} is none of {ATTENTIONS}")
        if not 1 <= self.diffusion_sample_steps <= self.diffusion_steps:
            raise ValueError("diffusion_sample_steps must be 1 .. diffusion_steps")


class ConvStem(nn.Module):
    """Occupancy frames (N, 1, G, G) -> patch tokens (N, P, d_model): a 4 x 4-cell patchify conv (stride 4: a 3 x 3
    stride-2 conv on the full grid costs most of a training step on a CPU), then stride-2 3 x 3 convs.

    GroupNorm, not BatchNorm: the planner runs on one sample at a time, and training and sampling must agree."""

    def __init__(self, channels: tuple[int, ...], d_model: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, channels[0], 4, 4), nn.GroupNorm(4, channels[0]), nn.GELU()]
        for c_in, c_out in itertools.pairwise(channels):
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.GroupNorm(4, c_out), nn.GELU()]
        layers.append(nn.Conv2d(channels[-1], d_model, 3, 2, 1))
        self.convs = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.convs(frames).flatten(2).transpose(1, 2)


class TimeEmbedding(nn.Module):
    """A time in [0, 1] (N,) -> (N, d_model): sinusoids of 1000 t at geometric frequencies, then an MLP, as DiT
    embeds its diffusion steps."""

    def __init__(self, d_model: int, frequencies: int = 16) -> None:
        super().__init__()
        self.register_buffer(
            "frequencies", torch.exp(-math.log(1e4) * torch.arange(frequencies) / frequencies), persistent=False
        )
        self.mlp = nn.Sequential(nn.Linear(2 * frequencies, d_model), nn.SiLU(), nn.Linear(d_model, d_model))

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        angles = 1000 * time[:, None] * self.frequencies
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=1))


class ActPosterior(nn.Module):
    """ACT's CVAE encoder: a transformer over [CLS, velocity, the K expert waypoints] -> (mean, log variance) of z."""

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        d = config.d_model
        self.cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.velocity_embedding = nn.Linear(2, d)
        self.waypoint_embedding = nn.Linear(3, d)
        self.position_embedding = nn.Parameter(torch.randn(config.geometry.waypoints + 2, d) * 0.02)
        self.transformer = MaskedTransformer(d, config.heads, config.layers)
        self.head = nn.Linear(d, 2 * config.latent_dim)

    def forward(self, velocity: torch.Tensor, trajectory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.cat(
            [
                self.cls.expand(len(velocity), -1, -1),
                self.velocity_embedding(velocity)[:, None],
                self.waypoint_embedding(trajectory),
            ],
            dim=1,
        )
        return self.head(self.transformer(tokens + self.position_embedding)[0][:, 0]).chunk(2, dim=1)


class LocalPlannerModel(nn.Module, HubModel, model_card_template=MODEL_CARD, tags=["astra", "local-planner"]):
    """The planner family of `PlannerConfig.kind` on one shared backbone; batches follow the module's contract:
    occupancy (B, F, G, G), velocity (B, F, 2), motion (B, F, 3), goal (B, 2), with `voxel_tokens` voxels (B, V, C),
    and for training trajectory (B, K, 3) and esdf (B, 2, G, G), all float32 in the robot's frame at the last frame
    (datasets.local_windows gives them)."""

    def __init__(self, config: PlannerConfig = PlannerConfig()) -> None:
        super().__init__()
        self.config = config
        geometry, d = config.geometry, config.d_model
        self.stem = ConvStem(config.stem_channels, d)
        with torch.no_grad():  # the patch count follows from the grid the stem shrinks
            patches = self.stem(torch.zeros(1, 1, geometry.grid, geometry.grid)).shape[1]
        self.state_embedding = nn.Linear(2, d)
        self.motion_embedding = nn.Linear(3, d)
        self.goal_embedding = nn.Linear(2, d)
        self.voxel_embedding = nn.Linear(config.voxel_channels, d) if config.voxel_tokens else None
        self.latent_embedding = nn.Linear(config.latent_dim, d) if config.kind in LATENT_KINDS else None
        self.action_tokens = 3 if config.action_queries else geometry.waypoints
        action_width = geometry.waypoints if config.action_queries else 3  # the values each action token holds
        self.action_embedding = nn.Parameter(torch.randn(self.action_tokens, d) * 0.02)
        noisy = config.kind in NOISY_KINDS
        self.action_value_embedding = nn.Linear(action_width, d) if noisy else None
        self.time_embedding = TimeEmbedding(d) if noisy else None
        self.action_readout = nn.Linear(d, action_width)

        # Segment f < F-1: patches, state, motion to f+1; the last: patches, [voxels], state, goal, [latent], actions.
        last = patches + config.voxel_tokens + 2 + (self.latent_embedding is not None)
        segments = [f for f in range(geometry.frames - 1) for _ in range(patches + 2)]
        segments += [geometry.frames - 1] * (last + self.action_tokens)
        self.encoded_tokens = len(segments) - self.action_tokens - (self.latent_embedding is not None)
        self.past_tokens = segments.index(geometry.frames - 1)  # the past frames' segments: no mask lets them see on
        self.register_buffer("segment_ids", torch.tensor(segments), persistent=False)
        mask = (
            trajectory_attention_mask(self.segment_ids)
            if config.attention == "trajectory"
            else causal_attention_mask(len(segments))
        )
        self.register_buffer("attention_mask", mask, persistent=False)
        self.cached_tokens = independent_prefix(mask, self.encoded_tokens)  # sampling runs these once
        self.position_embedding = nn.Parameter(torch.randn(len(segments), d) * 0.02)
        self.transformer = MaskedTransformer(d, config.heads, config.layers)

        self.vae_posterior = (
            nn.Sequential(nn.Linear(d + 3 * geometry.waypoints, d), nn.GELU(), nn.Linear(d, 2 * config.latent_dim))
            if config.kind == "vae"
            else None
        )
        self.act_posterior = ActPosterior(config) if config.kind == "act" else None
        if config.contrastive_weight > 0:
            self.state_projection = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
            self.trajectory_projection = nn.Sequential(nn.Linear(3 * geometry.waypoints, d), nn.GELU(), nn.Linear(d, d))

        speeds = torch.tensor([config.max_speed, config.max_speed, config.max_yaw_rate])
        self.register_buffer("trajectory_scale", speeds * geometry.horizon_s, persistent=False)
        self.register_buffer("velocity_scale", speeds[1:], persistent=False)
        self.register_buffer("motion_scale", speeds * geometry.frame_period_s, persistent=False)
        if config.kind == "dp":
            self.register_buffer("alphas_cumprod", _cosine_alphas_cumprod(config.diffusion_steps), persistent=False)
            steps = torch.linspace(config.diffusion_steps - 1, 0, config.diffusion_sample_steps).round().long()
            self.register_buffer("ddim_steps", steps.unique_consecutive(), persistent=False)

    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The context tokens (B, C, d_model) before the latent and action tokens, embedded from the batch's fields."""
        patches = self.patches(batch["occupancy"])
        history = float(self.config.history)
        state = self.state_embedding(history * batch["velocity"] / self.velocity_scale)[:, :, None]
        # Motion row f is the motion into frame f, so frame f's action is row f+1 (row 0 is unused).
        motion = self.motion_embedding(history * batch["motion"][:, 1:] / self.motion_scale)[:, :, None]
        past = torch.cat([patches[:, :-1], state[:, :-1], motion], dim=2).flatten(1, 2)
        goal = self.goal_embedding(batch["goal"] / self.config.geometry.half_extent_m)[:, None]
        now = [patches[:, -1]]
        if self.voxel_embedding is not None:
            now.append(self.voxel_embedding(batch["voxels"]))
        return torch.cat([past, *now, state[:, -1], goal], dim=1)

    def patches(self, occupancy: torch.Tensor) -> torch.Tensor:
        """(B, F, G, G) occupancy frames -> (B, F, P, d_model) patch tokens."""
        batch_size, frames, cells, _ = occupancy.shape
        # Centred: unknown (0.5) is 0, between free (-1) and occupied (+1).
        patches = self.stem((occupancy.reshape(-1, 1, cells, cells) - 0.5) * 2)
        return patches.reshape(batch_size, frames, -1, self.config.d_model)

    def forward(
        self,
        context: torch.Tensor,
        values: torch.Tensor | None = None,
        time: torch.Tensor | None = None,
        latent: torch.Tensor | None = None,
        past: KeyValues | None = None,
    ) -> torch.Tensor:
        """The head's output (N, K, 3), normalised: the clean trajectory, or for dp the noise, from `encode`'s tokens
        (N, C, d). fm and dp pass the noisy trajectory `values` (N, K, 3) and its `time` (N,) in [0, 1], vae and act
        a `latent` (N, latent_dim). `past`, from `prefix_key_values`, spares running the first `cached_tokens` tokens
        again (or any shorter prefix's, as training passes them)."""
        tokens = [context]
        if self.latent_embedding is not None:
            tokens.append(self.latent_embedding(latent)[:, None])
        actions = self.action_embedding.expand(len(context), -1, -1)
        if self.action_value_embedding is not None:
            per_token = values.transpose(1, 2) if self.config.action_queries else values
            actions = actions + self.action_value_embedding(per_token) + self.time_embedding(time)[:, None]
        tokens.append(actions)
        tokens, mask = torch.cat(tokens, dim=1) + self.position_embedding, self.attention_mask
        if past is not None:
            n = past[0][0].shape[2]  # the tokens whose keys and values it holds
            tokens, mask = tokens[:, n:], mask[n:]
        hidden, _ = self.transformer(tokens, mask, past)
        out = self.action_readout(hidden[:, -self.action_tokens :])
        return out.transpose(1, 2) if self.config.action_queries else out

    def summarise(self, context: torch.Tensor, past: KeyValues | None = None) -> torch.Tensor:
        """(N, d_model): the observation-and-state part alone through the transformer, read at its last token (the
        goal), which every mask lets see the whole context; `past` as `forward`'s."""
        n, p = self.encoded_tokens, 0 if past is None else past[0][0].shape[2]
        tokens = context[:, p:n] + self.position_embedding[p:n]
        return self.transformer(tokens, self.attention_mask[p:n, :n], past)[0][:, -1]

    def prefix_key_values(self, context: torch.Tensor, tokens: int | None = None) -> KeyValues:
        """The keys and values of the first `tokens` (default `cached_tokens`) tokens of `encode`'s (N, C, d), which
        no later token changes, for `forward`'s `past`."""
        n = self.cached_tokens if tokens is None else tokens
        return self.transformer(context[:, :n] + self.position_embedding[:n], self.attention_mask[:n, :n])[1]

    def loss(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss and its unweighted terms: imitation, and esdf, contrastive, kl where they apply."""
        config = self.config
        target = batch["trajectory"] / self.trajectory_scale
        context = self.encode(batch)
        past = self.prefix_key_values(context, self.past_tokens)  # run once for the passes below
        terms: dict[str, torch.Tensor] = {}
        if config.kind == "fm":
            noise = _randn(target.shape, generator, target)
            time = torch.rand(len(target), generator=generator, device=target.device)
            noisy = (1 - time[:, None, None]) * noise + time[:, None, None] * target
            estimate = self(context, noisy, time, past=past)  # x1-prediction: see the module's docstring
            terms["imitation"] = F.mse_loss(estimate, target)
        elif config.kind == "dp":
            noise = _randn(target.shape, generator, target)
            step = torch.randint(config.diffusion_steps, (len(target),), generator=generator, device=target.device)
            signal = self.alphas_cumprod[step][:, None, None]
            noisy = signal.sqrt() * target + (1 - signal).sqrt() * noise
            predicted = self(context, noisy, self._diffusion_time(step), past=past)
            terms["imitation"] = F.mse_loss(predicted, noise)
            # Clamped as the sampler clamps it: at high noise x0 is a guess blown up by 1 / sqrt(alpha_bar).
            estimate = ((noisy - (1 - signal).sqrt() * predicted) / signal.sqrt()).clamp(-1, 1)
        elif config.kind in LATENT_KINDS:
            if config.kind == "vae":
                observed_and_target = torch.cat([self.summarise(context, past), target.flatten(1)], dim=1)
                mean, log_var = self.vae_posterior(observed_and_target).chunk(2, dim=1)
            else:
                mean, log_var = self.act_posterior(batch["velocity"][:, -1] / self.velocity_scale, target)
            latent = mean + (0.5 * log_var).exp() * _randn(mean.shape, generator, mean)
            estimate = self(context, latent=latent, past=past)
            reconstruction = F.l1_loss if config.kind == "act" else F.mse_loss  # ACT trains with L1
            terms["imitation"] = reconstruction(estimate, target)
            terms["kl"] = (0.5 * (mean.square() + log_var.exp() - 1 - log_var)).sum(1).mean()
        else:
            estimate = self(context, past=past)
            terms["imitation"] = F.mse_loss(estimate, target)
        if config.esdf_weight > 0:
            terms["esdf"] = masked_esdf_loss(
                (estimate * self.trajectory_scale)[..., :2],
                batch["esdf"],
                batch["trajectory"][..., :2],
                config.geometry,
                config.safe_distance_m,
                config.esdf_band_m,
            )
        if config.contrastive_weight > 0:
            terms["contrastive"] = self._contrastive_loss(batch, context, past, target, generator)
        weights = {"esdf": config.esdf_weight, "contrastive": config.contrastive_weight, "kl": config.kl_weight}
        total = sum(weights.get(name, 1.0) * term for name, term in terms.items())
        return total, {name: term.item() for name, term in terms.items()}

    def _contrastive_loss(
        self,
        batch: dict[str, torch.Tensor],
        context: torch.Tensor,
        past: KeyValues,
        target: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """InfoNCE between (a few of the current frame's occupancy cells flipped, the observation-and-state summary)
        and (the expert trajectory, jittered): sample i's pair is the positive, its pairings with the batch's others
        the negatives. Only the current frame is augmented, so the past frames' tokens are `past`, run once."""
        now = batch["occupancy"][:, -1:]
        flipped = torch.rand(now.shape, generator=generator, device=now.device)
        augmented = self.patches(torch.where(flipped < self.config.contrastive_flip_fraction, 1 - now, now))[:, 0]
        start, end = self.past_tokens, self.past_tokens + augmented.shape[1]  # the current frame's patch tokens
        context = torch.cat([context[:, :start], augmented, context[:, end:]], dim=1)
        state = self.state_projection(self.summarise(context, past))
        jittered = target + self.config.contrastive_trajectory_noise * _randn(target.shape, generator, target)
        action = self.trajectory_projection(jittered.flatten(1))
        return info_nce_loss(state, action, self.config.contrastive_temperature)

    @torch.inference_mode()
    def sample(
        self,
        batch: dict[str, torch.Tensor],
        samples: int,
        generator: torch.Generator | None = None,
        esdf: torch.Tensor | None = None,
        guidance_m: float = 0.0,
    ) -> torch.Tensor:
        """(B, samples, K, 3) trajectories (x, y, yaw) in the robot's frame, from the conditioning fields alone.

        With `esdf` (B, G, G), the robot's observed ESDF in metres, and `guidance_m` > 0, each refinement's clean
        estimate is pushed off obstacles by up to `guidance_m` (models.astra_local.guidance); a planner that samples
        in one pass (vae, act, bc) has its output pushed as many times as fm refines."""
        config = self.config
        context = self.encode(batch)
        batch_size = len(context)
        shape = (batch_size * samples, config.geometry.waypoints, 3)
        guide = _identity
        if esdf is not None and guidance_m > 0:
            scale = self.trajectory_scale

            def guide(clean: torch.Tensor) -> torch.Tensor:
                pushed = push_off_obstacles(clean * scale, esdf, config.safe_distance_m, guidance_m, config.geometry)
                return pushed / scale

        if config.kind == "bc":  # deterministic: one regression, repeated
            trajectory = self(context).repeat_interleave(samples, 0)
        elif config.kind in NOISY_KINDS:
            past = [
                (k.repeat_interleave(samples, 0), v.repeat_interleave(samples, 0))
                for k, v in self.prefix_key_values(context)
            ]
            context = context.repeat_interleave(samples, 0)
            trajectory = _randn(shape, generator, context)
            if config.kind == "fm":
                for step in range(config.flow_steps):
                    time = torch.full((len(context),), step / config.flow_steps, device=context.device)
                    clean = guide(self(context, trajectory, time, past=past))
                    # Euler: velocity (x1 - x_t) / (1 - t) for dt = 1 / steps, with 1 - t = (steps - step) / steps.
                    trajectory = trajectory + (clean - trajectory) / (config.flow_steps - step)
            else:
                signals = [*self.alphas_cumprod[self.ddim_steps].tolist(), 1.0]
                for step, signal, next_signal in zip(self.ddim_steps, signals, signals[1:], strict=False):
                    noise = self(context, trajectory, self._diffusion_time(step.expand(len(context))), past=past)
                    clean = ((trajectory - math.sqrt(1 - signal) * noise) / math.sqrt(signal)).clamp(-1, 1)
                    guided = guide(clean)
                    if guided is not clean:  # DDIM goes on with the noise the guided estimate implies
                        clean, noise = guided, (trajectory - math.sqrt(signal) * guided) / math.sqrt(1 - signal)
                    trajectory = math.sqrt(next_signal) * clean + math.sqrt(1 - next_signal) * noise
        else:
            past = [
                (k.repeat_interleave(samples, 0), v.repeat_interleave(samples, 0))
                for k, v in self.prefix_key_values(context)
            ]
            latent = _randn((batch_size, samples, config.latent_dim), generator, context)
            if config.kind == "act":
                latent[:, 0] = 0  # ACT's own inference: the prior's mean
            trajectory = self(context.repeat_interleave(samples, 0), latent=latent.flatten(0, 1), past=past)
        if config.kind not in NOISY_KINDS and guide is not _identity:
            for _ in range(config.flow_steps):
                trajectory = guide(trajectory)
        return (trajectory * self.trajectory_scale).reshape(batch_size, samples, *shape[1:])

    def _diffusion_time(self, step: torch.Tensor) -> torch.Tensor:
        return (step + 1).float() / self.config.diffusion_steps


def _cosine_alphas_cumprod(steps: int) -> torch.Tensor:
    """alpha_bar of the cosine schedule (Nichol and Dhariwal 2021; diffusers' squaredcos_cap_v2, Diffusion Policy's)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    alpha_bar = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, 0).float()


def _identity(trajectory: torch.Tensor) -> torch.Tensor:
    return trajectory


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
