"""The actuation safety layer: whatever a planner or driver asks, the robot stays within limits.

Pure and clock-agnostic: callers pass `now_ns` from the robot's clock (simulation time in sim,
wall time on hardware), so the same core runs in both and is testable without dora.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from schemas.messages import RECHECK, DynamicObstacles, LocalizationResult, Twist
from schemas.robot import MotionLimits


@dataclass(frozen=True)
class SafetyLimits(MotionLimits):
    """The robot's motion limits (schemas/robot.py), and how hard and how soon the layer may stop it."""

    brake_decel: float = 20.0  # m/s^2, any slowing down (including stops) may use this
    brake_yaw_decel: float = 40.0  # rad/s^2
    # Stale after this: tolerates one late command at 20 Hz, and timeout + braking + one 20 ms tick
    # still commands zero within 200 ms of the last command.
    command_timeout_s: float = 0.12
    # Slower near people, as the robot perceives them (moving obstacles in its costmap): full speed beyond
    # `people_slow_m` from the nearest one on the side it drives toward (ahead forwards, behind backwards), down
    # to `people_min_scale` of it at `people_near_m`. Driving away from someone is never slowed: that is how
    # the robot gives way to people who do not avoid it.
    people_slow_m: float = 2.5  # a track takes ~0.7 s to learn a crossing cart's velocity: 1.5 m was too late at 1 m/s
    # Distances across the robot's heading count this many times: someone beside its path is not in it, and slowing
    # down for a person about to cross just behind it took away the speed it needed to get clear.
    people_lateral_weight: float = 2.0
    people_near_m: float = 0.5
    people_min_scale: float = 0.3
    # Confidence fallback: once localized, a fix below `min_confidence` or none for `localization_stale_s`
    # slows the robot to `fallback_scale`; after `localization_lost_s` of that it stops until a good fix.
    min_confidence: float = 0.5
    localization_stale_s: float = 10.0
    localization_lost_s: float = 25.0
    fallback_scale: float = 0.4

    @property
    def stop_deadline_s(self) -> float:
        """Worst-case time from the last command until the output is exactly zero."""
        return self.command_timeout_s + max(self.max_speed / self.brake_decel, self.max_yaw_rate / self.brake_yaw_decel)


def nearest_obstacle_m(limits: SafetyLimits, obstacles: DynamicObstacles, side: float) -> float:
    """Distance from base_link to the nearest edge of the obstacles (given in base_link) whose centre is ahead
    of the robot (`side` 1: x >= 0) or behind it (`side` -1: x <= 0), lateral offsets weighted by
    `people_lateral_weight`; inf when there are none."""
    k = limits.people_lateral_weight
    gaps = [
        math.hypot(x, k * y) - r
        for x, y, r in zip(obstacles.x, obstacles.y, obstacles.radius, strict=True)
        if x * side >= 0.0
    ]
    return max(min(gaps), 0.0) if gaps else math.inf


def people_speed_scale(limits: SafetyLimits, people_m: float) -> float:
    """The fraction of its commanded speed the robot gets with the nearest person `people_m` away on the side it
    drives toward."""
    if people_m >= limits.people_slow_m:
        return 1.0
    fraction = (people_m - limits.people_near_m) / (limits.people_slow_m - limits.people_near_m)
    return limits.people_min_scale + (1 - limits.people_min_scale) * min(max(fraction, 0.0), 1.0)


def _ramp(current: float, target: float, accel: float, decel: float, dt: float) -> float:
    """Move `current` toward `target`: slowing down may use `decel`, speeding up only `accel`."""
    if current != 0.0 and (target == 0.0 or (target > 0.0) != (current > 0.0)):
        # Brake to zero first; reversing direction then happens at the acceleration limit.
        step = decel * dt
        return max(current - step, 0.0) if current > 0.0 else min(current + step, 0.0)
    step = (decel if abs(target) < abs(current) else accel) * dt
    return current + max(-step, min(step, target - current))


class SafetyGovernor:
    """Caps speed and acceleration, stops on stale commands (watchdog), e-stop and lost localization.

    It also slows down near perceived people and while localization is doubtful (the confidence fallback).
    """

    def __init__(self, limits: SafetyLimits = SafetyLimits()) -> None:
        self.limits = limits
        self._target = (0.0, 0.0)
        self._output = (0.0, 0.0)
        self._last_command_ns: int | None = None
        self._last_step_ns: int | None = None
        self.estop_engaged = False
        self.stopping_reason: str | None = None
        self.slowing_reasons: frozenset[str] = frozenset()
        self._people_m = {1.0: math.inf, -1.0: math.inf}  # ahead, behind
        self._last_good_fix_ns: int | None = None
        self._degraded_since_ns: int | None = None
        self._last_fix_good = True

    def on_command(self, cmd: Twist, now_ns: int) -> None:
        """Accept a requested command at robot time `now_ns`.

        Its age counts from its own stamp, not from its arrival: a command held up in transport is
        as stale as its data, and arrival order across dora inputs says nothing about robot time.
        """
        lim = self.limits
        v, w = float(cmd.linear[0]), float(cmd.angular[2])
        if not (math.isfinite(v) and math.isfinite(w)):
            v, w = 0.0, 0.0
        self._target = (
            min(max(v, -lim.max_reverse_speed), lim.max_speed),
            min(max(w, -lim.max_yaw_rate), lim.max_yaw_rate),
        )
        self._last_command_ns = min(cmd.t_ns, now_ns)  # a stamp from the future is not fresher than now

    def set_estop(self, engaged: bool) -> None:
        self.estop_engaged = bool(engaged)

    def set_people(self, obstacles: DynamicObstacles) -> None:
        """The moving obstacles the robot perceives, in base_link."""
        self._people_m = {side: nearest_obstacle_m(self.limits, obstacles, side) for side in (1.0, -1.0)}

    def on_localization(self, fix: LocalizationResult) -> None:
        """A relocalization result; fallbacks apply only once the robot has had a good fix."""
        good = fix.success and fix.confidence >= self.limits.min_confidence
        if fix.trigger == RECHECK and not good:
            return  # the whole map has look-alikes the estimate's neighbourhood lacks: unsure there says nothing here
        self._last_fix_good = good
        if good:
            self._last_good_fix_ns = fix.t_ns

    def _localization_state(self, now_ns: int) -> str | None:
        """None, "localization_fallback" (slow) or "localization_lost" (stop)."""
        lim = self.limits
        if self._last_good_fix_ns is None:
            return None
        stale = (now_ns - self._last_good_fix_ns) * 1e-9 > lim.localization_stale_s
        if not stale and self._last_fix_good:
            self._degraded_since_ns = None
            return None
        if self._degraded_since_ns is None:
            self._degraded_since_ns = now_ns
        lost = (now_ns - self._degraded_since_ns) * 1e-9 > lim.localization_lost_s
        return "localization_lost" if lost else "localization_fallback"

    def _speed_scale(self, now_ns: int) -> tuple[float, frozenset[str]]:
        lim = self.limits
        reasons = set()
        scale = people_speed_scale(lim, self._people_m[-1.0 if self._target[0] < 0.0 else 1.0])
        if scale < 1.0:
            reasons.add("people_slowdown")
        if self._localization_state(now_ns) == "localization_fallback":
            scale = min(scale, lim.fallback_scale)
            reasons.add("localization_fallback")
        return scale, frozenset(reasons)

    def step(self, now_ns: int) -> Twist:
        """The command to apply at `now_ns`; sets `stopping_reason` while forced to stop."""
        lim = self.limits
        dt = 0.0 if self._last_step_ns is None else max(0.0, (now_ns - self._last_step_ns) * 1e-9)
        self._last_step_ns = now_ns
        stale = self._last_command_ns is None or (now_ns - self._last_command_ns) * 1e-9 > lim.command_timeout_s
        lost = self._localization_state(now_ns) == "localization_lost"
        self.stopping_reason = (
            "estop" if self.estop_engaged else "watchdog_stop" if stale else "localization_lost" if lost else None
        )
        scale, self.slowing_reasons = self._speed_scale(now_ns)
        target = (
            (0.0, 0.0) if self.stopping_reason else (self._target[0] * scale, self._target[1])
        )  # turning in place endangers no one
        v = _ramp(self._output[0], target[0], lim.max_accel, lim.brake_decel, dt)
        w = _ramp(self._output[1], target[1], lim.max_yaw_accel, lim.brake_yaw_decel, dt)
        self._output = (v, w)
        return Twist(t_ns=now_ns, linear=(v, 0.0, 0.0), angular=(0.0, 0.0, w))
