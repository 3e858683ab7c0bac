"""Nav2-style recoveries for the local planner: a progress monitor and a back-up / spin / replan sequence.

:class:`RecoveryManager` watches every planning cycle. When the distance still to go has not dropped for a
while, or the planner has found no admissible trajectory for a while, it takes over the command: it backs up a
little (only if the ESDF behind the robot is clear), rotates in place, then asks for a replan. When recoveries
keep starting at the same place, the route there is declared blocked: the caller asks `global` to close that
route edge and route around it, then calls :meth:`RecoveryManager.reset`. Every step is an event for the log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.local_planner import LocalPlan, Pose
from models.planning import ClearanceMap
from schemas.robot import DEFAULT_ROBOT


@dataclass(frozen=True)
class RecoveryConfig:
    """When recoveries start and what they do; metres, seconds, radians."""

    robot_radius: float = DEFAULT_ROBOT.radius
    margin: float = 0.05  # the back-up needs radius + margin of clearance all along
    progress_timeout_s: float = 5.0  # recover when the distance to go has not dropped by progress_m for this long
    progress_m: float = 0.25
    blocked_timeout_s: float = 1.5  # ... or the planner has reported "blocked" for this long
    backup_distance: float = 0.3
    backup_speed: float = 0.15
    spin_angle: float = math.pi / 2
    spin_rate: float = 1.0
    behaviour_timeout_s: float = 4.0  # give a back-up or spin up after this long (pushed against something)
    same_place_radius: float = 1.0  # recoveries starting this close together count as the same trouble ...
    attempts: int = 2  # ... and after this many of them the route there is declared blocked


@dataclass(frozen=True)
class RecoveryCommand:
    """A velocity command that replaces the planner's, and the behaviour that asks for it.

    "replan" (one cycle, standing still): drop the cached local plan and ask `global` for the route again.
    "route_blocked" (standing still until reset): ask `global` to close the route edge at `blocked_at`.
    """

    v: float
    w: float
    behaviour: str  # "back_up" | "spin" | "replan" | "route_blocked"


@dataclass(frozen=True)
class RecoveryEvent:
    t_ns: int
    name: str  # "recovery" | "back_up" | "back_up_skipped" | "spin" | "replan" | "route_blocked"
    detail: str


class RecoveryManager:
    """Progress monitor and recovery sequence; feed it every planning cycle with :meth:`update`."""

    def __init__(self, config: RecoveryConfig = RecoveryConfig()) -> None:
        self.config = config
        self.events: list[RecoveryEvent] = []
        self.reset()

    def reset(self) -> None:
        """Start afresh (a new route): no trouble known, the progress clock restarts on the next update."""
        self.blocked = False
        self.blocked_at: np.ndarray | None = None
        self._best: tuple[float, float] | None = None  # (smallest distance to go, time it was reached)
        self._blocked_since: float | None = None
        self._trouble_at: np.ndarray | None = None
        self._trouble_remaining = math.inf
        self._tries = 0
        self._queue: list[str] = []
        self._behaviour: str | None = None
        self._started = 0.0
        self._start_pose = np.zeros(3)
        self._turned = 0.0
        self._last_yaw = 0.0

    def hold(self, t_ns: int, remaining_m: float) -> None:
        """The robot is giving way to someone: the progress clock restarts and the behaviour under way is dropped.

        A route found blocked stays blocked.
        """
        self._best, self._blocked_since = (remaining_m, t_ns * 1e-9), None
        self._behaviour, self._queue = None, []

    def update(
        self, t_ns: int, pose: Pose, plan: LocalPlan, remaining_m: float, clearance: ClearanceMap
    ) -> RecoveryCommand | None:
        """The command that overrides `plan` this cycle, or None to follow the plan."""
        t = t_ns * 1e-9
        if self.blocked:
            return RecoveryCommand(0.0, 0.0, "route_blocked")
        if self._behaviour is None:
            reason = self._trouble(t, plan, remaining_m)
            if reason is None:
                return None
            if not self._begin(t_ns, pose, remaining_m, reason):
                return RecoveryCommand(0.0, 0.0, "route_blocked")
            self._next(t_ns, pose, clearance)
        return self._step(t_ns, pose, clearance, remaining_m)

    def _trouble(self, t: float, plan: LocalPlan, remaining_m: float) -> str | None:
        """Why a recovery should start now, or None while the robot makes progress."""
        c = self.config
        if plan.status == "arrived" or self._best is None or remaining_m < self._best[0] - c.progress_m:
            self._best = (remaining_m, t)
            if remaining_m < self._trouble_remaining - c.same_place_radius:
                self._trouble_at, self._tries = None, 0  # well past the trouble: it is forgotten
        if plan.status != "blocked":
            self._blocked_since = None
        elif self._blocked_since is None:
            self._blocked_since = t
        if t - self._best[1] > c.progress_timeout_s:
            return f"distance to go {remaining_m:.2f} m, no {c.progress_m} m of progress for {c.progress_timeout_s} s"
        if self._blocked_since is not None and t - self._blocked_since > c.blocked_timeout_s:
            return f"no admissible trajectory for {c.blocked_timeout_s} s"
        return None

    def _begin(self, t_ns: int, pose: Pose, remaining_m: float, reason: str) -> bool:
        """Count the attempt at this place; False (and route blocked) once they are used up."""
        c = self.config
        xy = np.array(pose[:2], dtype=float)
        if self._trouble_at is None or np.hypot(*(xy - self._trouble_at)) > c.same_place_radius:
            self._trouble_at, self._trouble_remaining, self._tries = xy, remaining_m, 0
        self._tries += 1
        if self._tries > c.attempts:
            self.blocked, self.blocked_at = True, xy
            self._log(t_ns, "route_blocked", f"{c.attempts} recoveries at ({xy[0]:.2f}, {xy[1]:.2f}) did not help")
            return False
        self._log(t_ns, "recovery", f"attempt {self._tries} of {c.attempts}: {reason}")
        self._queue = ["back_up", "spin", "replan"]
        return True

    def _next(self, t_ns: int, pose: Pose, clearance: ClearanceMap) -> None:
        """Start the next behaviour of the sequence; a back-up into something is skipped."""
        c = self.config
        self._behaviour = self._queue.pop(0) if self._queue else None
        self._started, self._start_pose = t_ns * 1e-9, np.array(pose, dtype=float)
        self._turned, self._last_yaw = 0.0, pose[2]
        if self._behaviour == "back_up":
            back = np.array([math.cos(pose[2]), math.sin(pose[2])]) * -np.linspace(0.0, c.backup_distance, 7)[:, None]
            room = float(clearance.at(np.asarray(pose[:2]) + back).min())
            if room < c.robot_radius + c.margin:
                self._log(t_ns, "back_up_skipped", f"clearance behind {room:.2f} m")
                self._next(t_ns, pose, clearance)
                return
            self._log(t_ns, "back_up", f"{c.backup_distance} m at {c.backup_speed} m/s")
        elif self._behaviour == "spin":
            self._log(
                t_ns, "spin", f"{math.degrees(c.spin_angle):.0f} deg {'left' if self._spin_sign > 0 else 'right'}"
            )

    @property
    def _spin_sign(self) -> float:
        # Alternate directions, so a second attempt looks the other way.
        return 1.0 if self._tries % 2 else -1.0

    def _step(self, t_ns: int, pose: Pose, clearance: ClearanceMap, remaining_m: float) -> RecoveryCommand:
        c = self.config
        t = t_ns * 1e-9
        if self._behaviour == "back_up":
            moved = float(np.hypot(*(np.asarray(pose[:2]) - self._start_pose[:2])))
            if moved < c.backup_distance and t - self._started <= c.behaviour_timeout_s:
                return RecoveryCommand(-c.backup_speed, 0.0, "back_up")
            self._next(t_ns, pose, clearance)
        if self._behaviour == "spin":
            self._turned += (pose[2] - self._last_yaw + math.pi) % (2 * math.pi) - math.pi
            self._last_yaw = pose[2]
            if abs(self._turned) < c.spin_angle and t - self._started <= c.behaviour_timeout_s:
                return RecoveryCommand(0.0, self._spin_sign * c.spin_rate, "spin")
            self._next(t_ns, pose, clearance)
        # The sequence ends with the replan: progress is measured afresh from here.
        self._log(t_ns, "replan", f"distance to go {remaining_m:.2f} m")
        self._behaviour = None
        self._best, self._blocked_since = (remaining_m, t), None
        return RecoveryCommand(0.0, 0.0, "replan")

    def _log(self, t_ns: int, name: str, detail: str) -> None:
        self.events.append(RecoveryEvent(t_ns, name, detail))
