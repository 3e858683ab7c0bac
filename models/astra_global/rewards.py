"""The rule rewards of Astra-Global's GRPO stage (ByteDance Astra, arXiv 2506.06205, section on training):

- format: 1 when the answer parses (models.astra_global.answers), else 0, and then every other reward is 0 too;
- landmark recall: the share of the truly seen landmarks that the answer names (1 when none are seen and none named);
- IoU of the predicted map ids: |predicted nodes ∩ true nodes| / |predicted ∪ true| (1 when both are empty);
- pose: exp(-λ (w_d·d + w_θ·Δθ)), d the position error in metres and Δθ the heading error in radians, when the truth
  has a pose; 0 when the answer gives no pose or one relative to another node (its frame is not comparable).

The total is the weighted sum; GRPO normalises it within each group, so the weights set how the parts trade off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.astra_global.answers import Answer


@dataclass(frozen=True)
class RewardConfig:
    format: float = 1.0
    recall: float = 1.0
    iou: float = 1.0
    pose: float = 1.0
    pose_lambda: float = 1.0
    weight_distance: float = 1.0  # per metre
    weight_heading: float = 1.0  # per radian


@dataclass(frozen=True)
class Rewards:
    format: float
    recall: float
    iou: float
    pose: float
    total: float


def score(answer: Answer | None, truth: Answer, config: RewardConfig = RewardConfig()) -> Rewards:
    """The rewards of one parsed answer (None: malformed) against the true answer."""
    if answer is None:
        return Rewards(0.0, 0.0, 0.0, 0.0, 0.0)
    seen = set(truth.landmarks)
    recall = len(seen & set(answer.landmarks)) / len(seen) if seen else float(not answer.landmarks)
    union = set(truth.nodes) | set(answer.nodes)
    iou = len(set(truth.nodes) & set(answer.nodes)) / len(union) if union else 1.0
    pose = 0.0
    if truth.pose is not None and answer.pose is not None and answer.pose.node == truth.pose.node:
        distance = math.hypot(answer.pose.dx - truth.pose.dx, answer.pose.dy - truth.pose.dy)
        heading = abs(math.remainder(answer.pose.dyaw - truth.pose.dyaw, math.tau))
        pose = math.exp(-config.pose_lambda * (config.weight_distance * distance + config.weight_heading * heading))
    total = config.format + config.recall * recall + config.iou * iou + (config.pose * pose if truth.pose else 0.0)
    return Rewards(1.0, recall, iou, pose, total)
