"""Learned visual place recognition (VPR): a small CNN with a MixVPR head, its training and its evaluation.

`VprModel` maps RGB pictures, shrunk to `VprConfig.input_width` x `input_height`, to L2-normalised
descriptors: a four-stage CNN gives a C x h x w feature map, and MixVPR's head (Ali-bey et al., WACV 2023)
mixes each channel's flattened map through MLPs, then projects channels and rows down to
`out_channels * out_rows` numbers.

`train_vpr` learns it from camera poses alone: two pictures of the same building (`group`) are positives
when their cameras are close in position and heading, negatives when far apart in either, and the
multi-similarity loss with its miner (Wang et al., CVPR 2019, MixVPR's choice) is applied to every pair of a
batch of places with a few views each. `retrieval_recall` scores any descriptor by nearest-neighbour retrieval.

`models.descriptors.VprDescriptor` serves a trained checkpoint behind the `GlobalDescriptor` interface.
"""

# No `from __future__ import annotations`: PyTorchModelHubMixin reads `config`'s annotation at run time to
# rebuild the dataclass from config.json.
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import nn
from tqdm import tqdm

from models.hub import HubModel

MODEL_CARD = """---
{{ card_data }}
---

# Astra VPR descriptor

A small CNN with a MixVPR head, trained from scratch on simulator pictures with positives from true camera
poses (`models/vpr.py`). It maps an RGB picture to a unit vector of `out_channels * out_rows` float32 numbers;
the cosine similarity of two pictures says how likely they show the same place.

Load it offline with `models.vpr.VprModel.from_pretrained(dir)` or, as a map descriptor,
`models.descriptors.VprDescriptor(dir)`.

## Training

{{ training | default("Not recorded.", true) }}
"""


@dataclass(frozen=True)
class VprConfig:
    """Architecture: input size, CNN widths and the MixVPR head; the descriptor has out_channels * out_rows numbers."""

    input_width: int = 80
    input_height: int = 60
    channels: tuple[int, ...] = (16, 32, 64, 128)  # the stem's, then each stride-2 stage's
    mixer_depth: int = 2
    mixer_ratio: int = 2  # hidden width of each mixer MLP, in multiples of the feature map's cells
    out_channels: int = 64
    out_rows: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))  # config.json gives a list back

    @property
    def dim(self) -> int:
        return self.out_channels * self.out_rows


@dataclass(frozen=True)
class VprTrainConfig:
    """Steps, batch make-up, optimiser, pair thresholds and the multi-similarity loss."""

    steps: int = 2000
    places_per_batch: int = 32  # anchors drawn at random ...
    views_per_place: int = 4  # ... each with this many views: itself and random positives of it
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    positive_distance_m: float = 1.5  # positives: same group, cameras closer than this and ...
    positive_yaw_deg: float = 30.0  # ... headings closer than this
    negative_distance_m: float = 4.0  # negatives: another group, or cameras farther than this or ...
    negative_yaw_deg: float = 90.0  # ... headings farther apart than this; pairs in between are left out
    alpha: float = 1.0  # multi-similarity weights of positives and negatives, and the similarity they meet at
    beta: float = 50.0
    base: float = 0.0
    miner_margin: float = 0.1  # pairs that break this margin against the hardest opposite pair are trained
    seed: int = 0


@dataclass(frozen=True)
class CameraPoses:
    """Where each picture was taken: camera x, y (N, 2) in m, yaw (N,) in rad, and its group (building) id (N,)."""

    xy: np.ndarray
    yaw: np.ndarray
    group: np.ndarray

    @classmethod
    def of(cls, xy: Sequence, yaw: Sequence, group: Sequence) -> "CameraPoses":
        poses = cls(np.asarray(xy, np.float64).reshape(-1, 2), np.asarray(yaw, np.float64), np.asarray(group))
        if not len(poses.xy) == len(poses.yaw) == len(poses.group):
            raise ValueError(f"{len(poses.xy)} positions, {len(poses.yaw)} yaws and {len(poses.group)} groups")
        return poses

    def __len__(self) -> int:
        return len(self.yaw)

    def __getitem__(self, index: np.ndarray) -> "CameraPoses":
        return CameraPoses(self.xy[index], self.yaw[index], self.group[index])

    def close(self, other: "CameraPoses", distance_m: float, yaw_deg: float) -> np.ndarray:
        """Whether each camera here and there (broadcast: e.g. self[:, None] against other[None]) is in one
        group, closer than `distance_m` and turned by less than `yaw_deg`."""
        turn = np.abs(np.angle(np.exp(1j * (self.yaw - other.yaw))))
        near = np.linalg.norm(self.xy - other.xy, axis=-1) < distance_m
        return (self.group == other.group) & near & (turn < np.radians(yaw_deg))


class MixVprHead(nn.Module):
    """MixVPR: feature-mixer MLPs over each channel's flattened map, then channel and row projections."""

    def __init__(self, channels: int, cells: int, config: VprConfig) -> None:
        super().__init__()
        self.mixers = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(cells),
                nn.Linear(cells, cells * config.mixer_ratio),
                nn.ReLU(),
                nn.Linear(cells * config.mixer_ratio, cells),
            )
            for _ in range(config.mixer_depth)
        )
        self.channel_proj = nn.Linear(channels, config.out_channels)
        self.row_proj = nn.Linear(cells, config.out_rows)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.flatten(2)  # (B, C, cells)
        for mixer in self.mixers:
            x = x + mixer(x)
        x = self.channel_proj(x.transpose(1, 2))  # (B, cells, out_channels)
        x = self.row_proj(x.transpose(1, 2))  # (B, out_channels, out_rows)
        return F.normalize(x.flatten(1), dim=1)


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class VprModel(nn.Module, HubModel, model_card_template=MODEL_CARD, tags=["astra", "vpr"]):
    """Pictures (B, 3, input_height, input_width), as `to_input` makes them, -> unit descriptors (B, dim)."""

    def __init__(self, config: VprConfig = VprConfig()) -> None:
        super().__init__()
        self.config = config
        first, *rest = config.channels
        stages = [_conv(3, first, 2)]
        for c_in, c_out in zip(config.channels, rest, strict=False):
            stages.append(nn.Sequential(_conv(c_in, c_out, 2), _conv(c_out, c_out, 1)))
        self.backbone = nn.Sequential(*stages)
        with torch.no_grad():  # the head's sizes follow from the map the backbone makes of one picture
            cells = self.backbone(torch.zeros(1, 3, config.input_height, config.input_width))[0, 0].numel()
        self.head = MixVprHead(config.channels[-1], cells, config)

    @property
    def dim(self) -> int:
        return self.config.dim

    def forward(self, pictures: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(pictures))

    def to_input(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """RGB (H, W, 3) uint8 images, of any size, -> (N, 3, input_height, input_width) uint8, shrunk with
        antialiasing; `normalise` turns them into the network's floats."""
        size = (self.config.input_height, self.config.input_width)
        shrunk = []
        for image in images:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"expected an RGB (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
            # A float copy: torch warns on read-only arrays, which decoded pictures may be.
            picture = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
            if picture.shape[2:] != size:
                picture = F.interpolate(picture, size, mode="bilinear", antialias=True, align_corners=False)
            shrunk.append(picture.round_().clamp_(0, 255).to(torch.uint8))
        return torch.cat(shrunk) if shrunk else torch.zeros((0, 3, *size), dtype=torch.uint8)

    @staticmethod
    def normalise(pictures: torch.Tensor) -> torch.Tensor:
        """uint8 pictures -> floats about [-2, 2], what the network sees."""
        return (pictures.float() / 255 - 0.5) / 0.25

    @torch.inference_mode()
    def describe(self, images: Sequence[np.ndarray] | np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, dim) float32 unit rows of RGB (H, W, 3) uint8 images, in evaluation mode."""
        self.eval()
        device = next(self.parameters()).device
        rows = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(images), batch_size):
            pictures = self.to_input(images[start : start + batch_size]).to(device)
            rows.append(self(self.normalise(pictures)).float().cpu().numpy())
        return np.concatenate(rows)


@dataclass
class VprTraining:
    """A trained model, the loss of every step and what the model card says about the run."""

    model: VprModel
    losses: list[float]
    summary: dict = field(default_factory=dict)

    def save(self, directory: str) -> None:
        """save_pretrained, with the run's summary in the model card."""
        training = "\n".join(f"- {key}: {value}" for key, value in self.summary.items())
        Path(directory, "README.md").unlink(missing_ok=True)  # save_pretrained keeps an old card: a stale run
        self.model.save_pretrained(directory, model_card_kwargs={"training": training})


def train_vpr(
    images: Sequence[np.ndarray] | np.ndarray,
    poses: CameraPoses,
    config: VprTrainConfig = VprTrainConfig(),
    model_config: VprConfig = VprConfig(),
    progress: bool = True,
) -> VprTraining:
    """Train a VprModel from scratch on RGB (H, W, 3) uint8 `images` taken at `poses`; a tqdm bar on stderr.

    Anchors are drawn among the pictures that have a positive; the model comes back on the CPU, in eval mode.
    """
    if len(images) != len(poses):
        raise ValueError(f"{len(images)} images but {len(poses)} poses")
    start = time.perf_counter()
    positives = positive_lists(poses, config.positive_distance_m, config.positive_yaw_deg)
    anchors = np.flatnonzero([len(p) > 0 for p in positives])
    if not len(anchors):
        raise ValueError("no picture has a positive: cameras must come closer than the positive thresholds")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = VprModel(model_config).to(device)
    pictures = model.to_input(images)  # shrunk once: a uint8 copy at the network's size
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.steps)
    model.train()
    losses = []
    bar = tqdm(range(config.steps), desc="train vpr", unit="step", file=sys.stderr, disable=not progress)
    for _ in bar:
        batch = _sample_batch(anchors, positives, config, rng)
        pairs = poses[batch[:, None]], poses[batch[None]]
        positive = torch.from_numpy(pairs[0].close(pairs[1], config.positive_distance_m, config.positive_yaw_deg))
        positive.fill_diagonal_(False)
        negative = torch.from_numpy(~pairs[0].close(pairs[1], config.negative_distance_m, config.negative_yaw_deg))
        descriptors = model(model.normalise(pictures[batch].to(device)))
        loss = multi_similarity_loss(descriptors, positive.to(device), negative.to(device), config)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.cpu().eval()
    seconds = time.perf_counter() - start
    summary = {
        "images": len(poses),
        "groups": len(np.unique(poses.group)),
        "anchors": len(anchors),
        "steps": config.steps,
        "batch": config.places_per_batch * config.views_per_place,
        "seconds": round(seconds, 1),
        "final loss (mean of the last tenth of steps)": round(float(np.mean(losses[-max(1, len(losses) // 10) :])), 4),
        "config": asdict(config),
    }
    return VprTraining(model, losses, summary)


def positive_lists(poses: CameraPoses, distance_m: float, yaw_deg: float) -> list[np.ndarray]:
    """For each picture, the other pictures of its group within `distance_m` and `yaw_deg`, found with a k-d tree
    per group, so that memory grows with the pairs and not with the square of the pictures."""
    found: list[np.ndarray] = [np.zeros(0, np.int64)] * len(poses)
    for group in np.unique(poses.group):
        members = np.flatnonzero(poses.group == group)
        tree = cKDTree(poses.xy[members])
        for i, near in zip(members, tree.query_ball_point(poses.xy[members], distance_m), strict=True):
            near = members[near]
            near = near[(near != i) & poses[near].close(poses[np.array([i])], distance_m, yaw_deg)]
            found[i] = near
    return found


def _sample_batch(
    anchors: np.ndarray, positives: list[np.ndarray], config: VprTrainConfig, rng: np.random.Generator
) -> np.ndarray:
    """Random anchors, each followed by random positives of it (repeated only where it has too few)."""
    batch = []
    for anchor in rng.choice(anchors, config.places_per_batch, replace=len(anchors) < config.places_per_batch):
        near = positives[anchor]
        views = config.views_per_place - 1
        batch += [anchor, *rng.choice(near, views, replace=len(near) < views)]
    return np.array(batch)


def multi_similarity_loss(
    descriptors: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, config: VprTrainConfig
) -> torch.Tensor:
    """Multi-similarity loss over the mined pairs of a batch of unit descriptors (B, D); `positive` and `negative`
    (B, B) bool say which pairs are which. The miner keeps negatives more similar than the anchor's least similar
    positive minus the margin, and positives less similar than its most similar negative plus the margin."""
    similarity = descriptors @ descriptors.T
    inf = torch.tensor(torch.inf, device=similarity.device)
    hardest_positive = torch.where(positive, similarity, inf).min(dim=1, keepdim=True).values
    hardest_negative = torch.where(negative, similarity, -inf).max(dim=1, keepdim=True).values
    mined_negative = negative & (similarity + config.miner_margin > hardest_positive)
    mined_positive = positive & (similarity - config.miner_margin < hardest_negative)
    zero = torch.zeros_like(similarity[:, :1])  # log(1 + sum exp(x)) = logsumexp over [0, x...]
    pull = torch.where(mined_positive, -config.alpha * (similarity - config.base), -inf)
    push = torch.where(mined_negative, config.beta * (similarity - config.base), -inf)
    per_anchor = (
        torch.logsumexp(torch.cat([zero, pull], 1), 1) / config.alpha
        + torch.logsumexp(torch.cat([zero, push], 1), 1) / config.beta
    )
    counted = positive.any(1) & negative.any(1)
    return per_anchor[counted].mean() if counted.any() else similarity.sum() * 0


def retrieval_recall(
    queries: np.ndarray,
    query_poses: CameraPoses,
    database: np.ndarray,
    database_poses: CameraPoses,
    ks: Sequence[int] = (1, 5),
    distance_m: float = 2.0,
    yaw_deg: float = 30.0,
    exclude_same: bool = False,
) -> dict[int, float]:
    """Recall@k of retrieval by cosine similarity: the share of queries with a database picture within `distance_m`
    and `yaw_deg` (same group) among their k most similar. Every query counts, even one with no such picture.

    `exclude_same` drops database row i from query i's candidates, for leave-one-out scoring of one set.
    """
    similarity = np.asarray(queries, np.float32) @ np.asarray(database, np.float32).T
    if exclude_same:
        np.fill_diagonal(similarity, -np.inf)
    k = min(max(ks), similarity.shape[1])
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    hit = query_poses[np.arange(len(query_poses))[:, None]].close(database_poses[top], distance_m, yaw_deg)
    return {n: float(np.mean(hit[:, :n].any(1))) for n in ks}
