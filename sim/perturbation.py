"""Perturbations of the expert's commands (DART, Laskey et al. 2017), so that its tours show how to recover.

An expert that never leaves its path teaches a learned planner nothing about coming back to it: closed loop, the
planner's small errors grow into states no window shows. Every few seconds the schedule bends the expert's nominal
command for about a second: a turn at a drawn yaw rate in place of the pure pursuit's, or a slow-down. (An offset
added to the pursuit's yaw rate is mostly steered away: the robot left its path by under 0.1 m; a turn in its place
pushes it 0.1-0.3 m off.) The expert's own safety search still vets the bent command, so a perturbation never
drives into a wall. Once it ends, the expert steers back to its path, and the windows whose future starts after it
(`pipelines.local_dataset` drops the ones it overlaps) are recoveries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERTURBATION_KINDS = ("turn", "slow")


@dataclass(frozen=True)
class PerturbationConfig:
    """How often, how long and how hard; times in s, rates in rad/s."""

    gap_s: tuple[float, float] = (3.0, 6.0)  # unperturbed time before each perturbation, drawn uniformly
    duration_s: tuple[float, float] = (0.6, 1.6)
    yaw_rate: tuple[float, float] = (0.6, 1.2)  # a turn's yaw rate magnitude; its sign is drawn too
    slow_share: float = 0.3  # the share of perturbations that slow the robot instead of turning it
    slow_factor: tuple[float, float] = (0.0, 0.3)  # a slow-down's scale of the nominal speed


@dataclass(frozen=True)
class Perturbation:
    start_s: float
    duration_s: float
    kind: str  # one of PERTURBATION_KINDS
    value: float  # a turn's yaw rate, a slow-down's speed scale

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.start_s + self.duration_s

    def apply(self, v: float, w: float) -> tuple[float, float]:
        return (v, self.value) if self.kind == "turn" else (v * self.value, w)


class PerturbationSchedule:
    """Perturbations drawn one after another from `seed`; `at(t)` is the one active at time t (asked in order)."""

    def __init__(self, config: PerturbationConfig = PerturbationConfig(), seed: int = 0) -> None:
        self.config = config
        self._rng = np.random.default_rng(seed)
        self.drawn: list[Perturbation] = []
        self._next = self._draw(0.0)

    def _draw(self, after_s: float) -> Perturbation:
        c, rng = self.config, self._rng
        start = after_s + rng.uniform(*c.gap_s)
        duration = rng.uniform(*c.duration_s)
        if rng.random() < c.slow_share:
            return Perturbation(start, duration, "slow", float(rng.uniform(*c.slow_factor)))
        return Perturbation(start, duration, "turn", float(rng.choice([-1.0, 1.0]) * rng.uniform(*c.yaw_rate)))

    def at(self, t: float) -> Perturbation | None:
        while t >= self._next.start_s + self._next.duration_s:  # a gap in the calls skips what it spans
            self._next = self._draw(self._next.start_s + self._next.duration_s)
        if not self._next.active(t):
            return None
        if not self.drawn or self.drawn[-1] is not self._next:
            self.drawn.append(self._next)
        return self._next
