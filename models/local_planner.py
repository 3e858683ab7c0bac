"""The classical local planner of the navigation stack: a dynamic window over (v, w) commands.

`local` calls a :class:`LocalPlanner` at >= 10 Hz with everything in the robot's `odom` frame: the pose and
velocity from odometry, the route ahead from `global` (subgoals every few metres) and the ESDF of the rolling
local costmap, and the moving obstacles the tracker (:mod:`models.tracking`) follows. The planner returns a
velocity command, the trajectory it expects, a few of the candidates it weighed (for display) and a status that
the recoveries (:mod:`models.recovery`) watch.

:class:`DwaPlanner` rolls every sampled command out at once with numpy, rejects the rollouts that come closer
to an obstacle than the robot's radius plus a margin, and scores the rest on clearance, progress along a guide
path, heading and smoothness. The guide path is A* on the local grid from the robot to a route point a few
metres ahead, so the robot walks around obstacles that the route does not know about instead of being trapped
behind them. Moving obstacles are not in the ESDF as predictions: each rollout is checked against their
predicted positions at the same instants, and against where they stand now (they may stop or turn back), over a
longer horizon in which the robot is assumed to stop where its rollout ends (standing in a walking person's way
is a collision: people here do not avoid the robot).
Rollouts that come closer than the margin are rejected; when none is left, :meth:`DwaPlanner.evade` gives way,
backing up included, whether or not there is a route, and keeps the margin whenever some way does. Rollouts are
driven at the speed the safety layer will leave of each command (it slows the robot near people): a way out that
needs full speed is none. Past the rollouts' end, a survival map (:mod:`models.viability`) says whether the robot
can still reach a haven, a place out of every track's way for good, before the tracks arrive: rollouts that end
where none is in reach are given up, and giving way prefers the soonest haven. The learned planner will implement
the same base class.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from models.costmap import LocalCostmap
from models.planning import ClearanceMap, GridPlanner, resample
from models.tracking import NO_OBSTACLES, MovingObstacles
from models.viability import DEFAULT_VIABILITY, SurvivalMap, ViabilityConfig, survival_map
from schemas.messages import CameraInfo, CompressedImage, DepthImage
from schemas.robot import DEFAULT_ROBOT, MOTION_LIMITS, MotionLimits

Pose = tuple[float, float, float]
Velocity = tuple[float, float]


@dataclass(frozen=True)
class CameraView:
    """One camera at one instant: its picture, its depth and its intrinsics."""

    picture: CompressedImage
    depth: DepthImage
    info: CameraInfo

    def metres(self) -> np.ndarray:
        """float32 [height, width] depth along the optical axis, NaN where invalid."""
        return np.frombuffer(self.depth.data, dtype="<f4").reshape(self.depth.height, self.depth.width)


SpeedScale = tuple[float, float]  # forward, backward
FULL_SPEED: SpeedScale = (1.0, 1.0)


@dataclass(frozen=True)
class LocalPlannerConfig:
    """What every local planner shares; speeds in m/s, angles in rad, times in s."""

    robot_radius: float = DEFAULT_ROBOT.radius
    limits: MotionLimits = MOTION_LIMITS
    margin: float = 0.05  # hard: no trajectory may come closer to an obstacle than radius + margin
    goal_tolerance: float = 0.3  # stop and report "arrived" this close to the final goal
    goal_decel: float = 0.5  # m/s^2: speed is capped to stop at the final goal at this deceleration
    horizon_s: float = 1.5
    dt: float = 0.05  # rollout step: at 1 m/s a 5 cm step cannot jump over a thin wall of the 5 cm costmap


@dataclass(frozen=True)
class DwaConfig(LocalPlannerConfig):
    """Sampling, guide path and cost weights of :class:`DwaPlanner`."""

    speed_samples: int = 8  # forward speeds 0 .. max_speed: backing up is a recovery, not a plan
    yaw_rate_samples: int = 21  # -max_yaw_rate .. max_yaw_rate
    preferred_clearance: float = 0.6  # beyond the radius: no clearance cost past this
    lookahead: float = 3.0  # m along the route to the point the guide path leads to
    guide_inflation: float = 0.05  # beyond the radius: the guide path keeps this far from obstacles
    guide_resolution: float = 0.1  # A* cell size
    guide_replan_calls: int = 10  # replan the guide path at least this often (1 s at 10 Hz)
    guide_off_path: float = 0.5  # ... and when the robot or the target is this far from it
    heading_lookahead: float = 0.5  # m along the guide beyond a rollout's end that its heading should face
    # Moving obstacles: gaps are edge to edge, over `obstacle_horizon_s` (the robot stops at its rollout's end).
    obstacle_margin: float = 0.2  # hard, as `margin` is for static obstacles
    # ... and more, the further ahead the prediction: a track's velocity is an estimate, late after someone turns
    # and off while a cart's centroid slides over its faces.
    obstacle_margin_growth: float = 0.1  # m per second ahead
    obstacle_preferred_gap: float = 0.8  # no cost beyond this
    obstacle_horizon_s: float = 3.0
    evade_speed_samples: int = 9  # max_reverse_speed backwards .. max_speed, when giving way
    candidates_shown: int = 24
    weight_progress: float = 1.0
    weight_path_distance: float = 0.6
    weight_heading: float = 0.4
    weight_clearance: float = 0.4
    weight_smoothness: float = 0.1
    weight_obstacle: float = 1.0
    weight_evade_contact: float = 10.0  # per metre inside the margin when giving way cannot keep it (evade)
    # Past its rollout, can the robot still keep out of the obstacles' way (a doorway before the cart arrives)?
    viability: ViabilityConfig | None = DEFAULT_VIABILITY  # None: judge rollouts by their own horizon only
    weight_haven: float = 0.5  # per second until the robot can stand out of the obstacles' way for good
    weight_survival: float = 2.0  # per second short of the viability horizon, when no haven is in reach


@dataclass(frozen=True)
class LocalPlan:
    """One planning cycle's answer, in `odom`."""

    v: float
    w: float
    trajectory: np.ndarray  # (K, 3) x, y, yaw: the chosen rollout
    candidates: np.ndarray  # (S, K, 2) a subsample of the rollouts weighed, the chosen one among them, for display
    status: str  # "ok" | "arrived" | "blocked" (no admissible trajectory) | "yield" (giving way to a moving obstacle)
    min_clearance: float  # smallest ESDF value along the chosen trajectory
    remaining_m: float  # distance still to go: along the guide path, then along the route
    guide: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # (N, 2) the path the plan follows
    candidate_costs: np.ndarray = field(default_factory=lambda: np.empty(0))  # (S,) inf where rejected
    chosen: int = -1  # index of the chosen rollout among the candidates; -1 when none was
    handover: str = ""  # why a learned planner handed this cycle to its classical fallback; "" when it did not


@dataclass(frozen=True)
class _ObstacleCheck:
    """How each of S rollouts fares against the moving obstacles' predictions, gaps edge to edge in metres."""

    intrusion: np.ndarray  # (S,) into the preferred gap, 0 .. 1, averaged over the horizon
    safe: np.ndarray  # (S,) keeps the margin under both predictions at every instant
    walking_gap: np.ndarray  # (S,) smallest gap if they walk on at their velocity, less the margin's growth
    standing_gap: np.ndarray  # (S,) smallest gap if they stop where they are now
    safe_moving: np.ndarray  # (S,) keeps the margin while driving the rollout (not standing at its end after)
    survival_s: np.ndarray  # (S,) how long the robot can keep clear after its rollout (see models.viability)
    haven_s: np.ndarray  # (S,) how soon after it the robot can be out of their way for good; inf: not in time


class LocalPlanner(abc.ABC):
    """A local planner: a velocity command from pose, velocity, the route ahead, the local ESDF and moving obstacles."""

    reads_cameras = False  # True: `look` wants every instant's pictures and depth

    def __init__(self, config: LocalPlannerConfig = LocalPlannerConfig()) -> None:
        self.config = config

    @abc.abstractmethod
    def plan(
        self,
        pose: Pose,
        velocity: Velocity,
        route: np.ndarray,
        final: bool,
        clearance: ClearanceMap,
        obstacles: MovingObstacles = NO_OBSTACLES,
        speed_scale: SpeedScale = FULL_SPEED,
    ) -> LocalPlan:
        """Plan from `pose` (x, y, yaw) and `velocity` (v, w) along `route` (P, 2); `final`: it ends at the goal.

        `speed_scale` (forward, backward): the fraction of each commanded speed the robot will get (the safety
        layer slows it near people), so that rollouts follow the robot, not the command."""

    @abc.abstractmethod
    def evade(
        self,
        pose: Pose,
        velocity: Velocity,
        clearance: ClearanceMap,
        obstacles: MovingObstacles,
        remaining_m: float,
        speed_scale: SpeedScale = FULL_SPEED,
    ) -> LocalPlan:
        """Give way to `obstacles`, with or without a route: status "yield" ("blocked" when nothing is admissible)."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget whatever was cached between calls (after a recovery or a new route)."""

    def stalled(self) -> None:  # noqa: B027
        """A recovery has just ended: the robot made no progress on this planner's plans."""

    def observe(self, t_ns: int, pose: Pose, velocity: Velocity, costmap: LocalCostmap) -> None:  # noqa: B027
        """See the costmap as it stands after each set of depth images; planners that learn from history keep it."""

    def look(self, t_ns: int, cameras: list[CameraView]) -> None:  # noqa: B027
        """See every camera's picture and depth of one instant, in CAMERAS order (only if `reads_cameras`)."""

    def arrived(self, pose: Pose, route: np.ndarray, final: bool) -> bool:
        """Within the goal tolerance of the route's end, when that end is the goal."""
        return final and float(np.hypot(*(np.asarray(route[-1]) - pose[:2]))) < self.config.goal_tolerance

    def stop(self, pose: Pose, status: str, clearance: ClearanceMap, remaining_m: float) -> LocalPlan:
        """A standstill plan with the given status."""
        here = np.array([pose], dtype=float)
        return LocalPlan(
            0.0,
            0.0,
            here,
            np.empty((0, 1, 2)),
            status,
            float(clearance.at(here[0, :2])),
            remaining_m,
        )


def rollout(
    pose: Pose, velocity: Velocity, commands: np.ndarray, limits: MotionLimits, dt: float, steps: int
) -> np.ndarray:
    """Poses (S, K, 3) of a unicycle ramping from `velocity` to each of S (v, w) commands at the acceleration limits."""
    t = dt * np.arange(1, steps + 1)
    dv, dw = limits.max_accel * t, limits.max_yaw_accel * t
    v = velocity[0] + np.clip(commands[:, :1] - velocity[0], -dv, dv)
    w = velocity[1] + np.clip(commands[:, 1:] - velocity[1], -dw, dw)
    yaw = pose[2] + np.cumsum(w * dt, axis=1)
    x = pose[0] + np.cumsum(v * np.cos(yaw) * dt, axis=1)
    y = pose[1] + np.cumsum(v * np.sin(yaw) * dt, axis=1)
    return np.stack([x, y, yaw], axis=-1)


def _scaled(commands: np.ndarray, speed_scale: SpeedScale) -> np.ndarray:
    """The (v, w) the robot will drive for each command, its speed scaled forwards or backwards."""
    forward, backward = speed_scale
    v = commands[:, 0] * np.where(commands[:, 0] >= 0.0, forward, backward)
    return np.column_stack([v, commands[:, 1]])


def _arc(path: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(path, axis=0).T))])


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


class DwaPlanner(LocalPlanner):
    """Dynamic-window planner: constant (v, w) rollouts scored along an A* guide path on the local grid."""

    def __init__(self, config: DwaConfig = DwaConfig()) -> None:
        super().__init__(config)
        self.config: DwaConfig = config
        v = np.linspace(0.0, config.limits.max_speed, config.speed_samples)
        w = np.linspace(-config.limits.max_yaw_rate, config.limits.max_yaw_rate, config.yaw_rate_samples)
        self._commands = np.stack(np.meshgrid(v, w, indexing="ij"), axis=-1).reshape(-1, 2)
        back = np.linspace(-config.limits.max_reverse_speed, config.limits.max_speed, config.evade_speed_samples)
        self._evasions = np.stack(np.meshgrid(np.union1d(back, 0.0), w, indexing="ij"), axis=-1).reshape(-1, 2)
        self._steps = round(config.horizon_s / config.dt)
        self._hold_steps = max(round((config.obstacle_horizon_s - config.horizon_s) / config.dt), 0)
        self._guide = np.empty((0, 2))
        self._guide_arc = np.empty(0)
        self._guide_target = np.full(2, np.inf)
        self._guide_age = 0
        self._survival_inputs: tuple[ClearanceMap, MovingObstacles, float] | None = None
        self._survival: SurvivalMap | None = None

    def reset(self) -> None:
        self._guide = np.empty((0, 2))

    def plan(
        self,
        pose: Pose,
        velocity: Velocity,
        route: np.ndarray,
        final: bool,
        clearance: ClearanceMap,
        obstacles: MovingObstacles = NO_OBSTACLES,
        speed_scale: SpeedScale = FULL_SPEED,
    ) -> LocalPlan:
        c = self.config
        xy = np.asarray(pose[:2], dtype=float)
        route = np.asarray(route, dtype=float).reshape(-1, 2)
        dense_route = resample(np.vstack([xy, route]) if len(route) == 1 else route, 0.1)
        target, beyond = self._target(xy, dense_route, clearance)
        self._update_guide(xy, target, clearance)
        guide, arc = self._guide, self._guide_arc
        s0, _ = self._project(xy[None], guide, arc, 0.0)
        remaining = float(arc[-1] - s0[0] + np.hypot(*(guide[-1] - target)) + beyond)
        if self.arrived(pose, route, final):
            return self.stop(pose, "arrived", clearance, remaining)

        commands = self._commands
        if final:
            # Cap the speed to stop at the goal; the rollouts still brake at the acceleration limit.
            cap = math.sqrt(2 * c.goal_decel * max(remaining - c.goal_tolerance / 2, 0.0))
            commands = np.unique(np.column_stack([np.minimum(commands[:, 0], max(cap, 0.1)), commands[:, 1]]), axis=0)
        driven = _scaled(commands, speed_scale)
        paths = rollout(pose, velocity, driven, c.limits, c.dt, self._steps)
        min_clear, admissible = self._static_check(xy, paths, clearance)
        check = self._obstacle_check(xy, paths, obstacles, clearance)
        intrusion, safe = check.intrusion, check.safe
        if not (admissible & safe).any():
            if not safe.all():
                return self.evade(pose, velocity, clearance, obstacles, remaining, speed_scale)
            return self.stop(pose, "blocked", clearance, remaining)
        admissible &= safe
        if not (admissible & self._lasting(check)).any():  # every way on ends where a cart will catch the robot
            return self.evade(pose, velocity, clearance, obstacles, remaining, speed_scale)
        admissible &= self._lasting(check)

        ends = paths[:, -1]
        s_end, off_path = self._project(ends[:, :2], guide, arc, s0[0])
        reach = c.limits.max_speed * c.horizon_s
        progress = (s_end - s0[0]) / reach
        ahead = np.minimum(s_end + c.heading_lookahead, arc[-1])
        aim = np.column_stack([np.interp(ahead, arc, guide[:, 0]), np.interp(ahead, arc, guide[:, 1])])
        facing = np.arctan2(aim[:, 1] - ends[:, 1], aim[:, 0] - ends[:, 0])
        # At the guide's end there is nothing left to face: keep the heading term out.
        near_end = np.hypot(*(aim - ends[:, :2]).T) < 0.1
        heading = np.where(near_end, 0.0, np.abs(_wrap(facing - ends[:, 2])) / np.pi)
        cost = (
            -c.weight_progress * progress
            + c.weight_path_distance * off_path
            + c.weight_heading * heading
            + c.weight_clearance * self._closeness(min_clear)
            + c.weight_smoothness * self._change(driven, velocity)
            + c.weight_obstacle * intrusion
        )
        return self._choose(paths, commands, cost, admissible, min_clear, "ok", remaining, guide)

    def evade(
        self,
        pose: Pose,
        velocity: Velocity,
        clearance: ClearanceMap,
        obstacles: MovingObstacles,
        remaining_m: float,
        speed_scale: SpeedScale = FULL_SPEED,
    ) -> LocalPlan:
        """The command, backwards included, that keeps farthest out of the obstacles' predicted way."""
        c = self.config
        xy = np.asarray(pose[:2], dtype=float)
        driven = _scaled(self._evasions, speed_scale)
        paths = rollout(pose, velocity, driven, c.limits, c.dt, self._steps)
        min_clear, admissible = self._static_check(xy, paths, clearance)
        if not admissible.any():
            return self.stop(pose, "blocked", clearance, remaining_m)
        check = self._obstacle_check(xy, paths, obstacles, clearance)
        cost = (
            c.weight_obstacle * check.intrusion
            + 0.1 * c.weight_clearance * self._closeness(min_clear)
            + 0.1 * c.weight_smoothness * self._change(driven, velocity)
        )
        # A way that keeps the margin and then lets the robot stay clear beats one that is clearer on average;
        # staying clear later beats standing clear at the rollout's end (in a corridor, where the cart will come).
        lasting = self._lasting(check)
        tiers = (check.safe & lasting, check.safe_moving & lasting, check.safe) if c.viability else (check.safe,)
        for keeps in tiers:
            if (admissible & keeps).any():
                admissible &= keeps
                break
        else:  # none: come least close
            closest = np.minimum(check.walking_gap, check.standing_gap)
            cost += c.weight_evade_contact * np.clip(c.obstacle_margin - closest, 0.0, None)
        if c.viability is not None:
            if (admissible & lasting).any():  # the sooner out of the way for good, the better
                cost += c.weight_haven * np.where(lasting, check.haven_s, 0.0)
            else:  # then stay clear the longest
                cost += c.weight_survival * np.clip(c.viability.horizon_s - check.survival_s, 0.0, None)
        return self._choose(paths, self._evasions, cost, admissible, min_clear, "yield", remaining_m, self._guide)

    def vet(
        self,
        pose: Pose,
        velocity: Velocity,
        commands: np.ndarray,
        clearance: ClearanceMap,
        obstacles: MovingObstacles = NO_OBSTACLES,
        speed_scale: SpeedScale = FULL_SPEED,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rollouts (S, K, 3) of another planner's (S, 2) commands; whether each passes the checks this planner
        puts its own through: the static margin, both predictions of the moving obstacles, and a haven in reach;
        and each one's smallest gap, edge to edge, to any obstacle, static or under either prediction (S,)."""
        c = self.config
        xy = np.asarray(pose[:2], dtype=float)
        paths = rollout(pose, velocity, _scaled(np.asarray(commands, float), speed_scale), c.limits, c.dt, self._steps)
        min_clear, admissible = self._static_check(xy, paths, clearance)
        check = self._obstacle_check(xy, paths, obstacles, clearance)
        gap = np.minimum(min_clear - c.robot_radius, np.minimum(check.walking_gap, check.standing_gap))
        return paths, admissible & check.safe & self._lasting(check), gap

    def _choose(
        self,
        paths: np.ndarray,
        commands: np.ndarray,
        cost: np.ndarray,
        admissible: np.ndarray,
        min_clear: np.ndarray,
        status: str,
        remaining: float,
        guide: np.ndarray,
    ) -> LocalPlan:
        """The admissible rollout of least cost, with a subsample of the rollouts weighed (rejected ones too) and
        the chosen one, for display."""
        costs = np.where(admissible, cost, np.inf)
        best = int(np.argmin(costs))
        sample = np.linspace(0, len(paths) - 1, min(len(paths), self.config.candidates_shown)).astype(int)
        shown = np.union1d(sample, [best])
        return LocalPlan(
            float(commands[best, 0]),
            float(commands[best, 1]),
            paths[best],
            paths[shown, :, :2],
            status,
            float(min_clear[best]),
            remaining,
            guide,
            costs[shown],
            int(np.searchsorted(shown, best)),
        )

    def _static_check(
        self, xy: np.ndarray, paths: np.ndarray, clearance: ClearanceMap
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each rollout's smallest ESDF value, and whether it keeps radius + margin from the static obstacles."""
        c = self.config
        min_clear = clearance.at(paths[..., :2]).min(axis=1)
        here = float(clearance.at(xy))
        # Already inside the margin (pushed, or the map changed): allow whatever does not get closer still.
        return min_clear, min_clear >= min(c.robot_radius + c.margin, here - 1e-3)

    def _obstacle_check(
        self, xy: np.ndarray, paths: np.ndarray, obstacles: MovingObstacles, clearance: ClearanceMap
    ) -> _ObstacleCheck:
        """How each rollout fares against the moving obstacles' two predictions (see :class:`_ObstacleCheck`).

        Each obstacle is predicted twice: walking on at its velocity, and stopped where it is now, because people
        stop and turn back without warning; so the robot never plans into the spot where someone stands now, and
        following someone it keeps the distance it needs to stop. Beyond its own horizon a rollout holds its last
        pose. Already inside the margin, a rollout is safe when it gets no closer than the robot is now.
        """
        c = self.config
        if not len(obstacles):
            far, ones = np.full(len(paths), np.inf), np.ones(len(paths), dtype=bool)
            return _ObstacleCheck(np.zeros(len(paths)), ones, far, far, ones, far, np.zeros(len(paths)))
        held = np.concatenate([paths[..., :2], np.repeat(paths[:, -1:, :2], self._hold_steps, axis=1)], axis=1)
        times = c.dt * np.arange(1, held.shape[1] + 1)
        walking = obstacles.at(times)  # (N, T, 2)
        stopped = np.broadcast_to(obstacles.position[:, None, :], walking.shape)
        predicted, radius = np.concatenate([walking, stopped]), np.tile(obstacles.radius, 2)
        gaps = np.linalg.norm(held[:, None] - predicted[None], axis=-1) - radius[None, :, None] - c.robot_radius
        n = len(obstacles)
        walking_gaps = gaps[:, :n] - c.obstacle_margin_growth * times
        walking_gap = walking_gaps.min(axis=(1, 2))
        standing_gap = gaps[:, n:].min(axis=(1, 2))
        now = float((np.hypot(*(obstacles.position - xy).T) - obstacles.radius).min()) - c.robot_radius
        limit = min(c.obstacle_margin, now - 1e-3)
        k = paths.shape[1]
        moving_gap = np.minimum(walking_gaps[..., :k].min(axis=(1, 2)), gaps[:, n:, :k].min(axis=(1, 2)))
        span = c.obstacle_preferred_gap - c.obstacle_margin
        nearest = gaps.min(axis=1)  # (S, T): to the nearest obstacle at each instant
        intrusion = np.clip((c.obstacle_preferred_gap - nearest) / span, 0.0, None).mean(axis=1)
        if c.viability is None:
            survival, haven = np.full(len(paths), np.inf), np.zeros(len(paths))
        else:
            survival, haven = self._survival_map(clearance, obstacles, k * c.dt).at(paths[:, -1, :2])
        return _ObstacleCheck(
            intrusion,
            np.minimum(walking_gap, standing_gap) >= limit,
            walking_gap,
            standing_gap,
            moving_gap >= limit,
            survival,
            haven,
        )

    def _survival_map(self, clearance: ClearanceMap, obstacles: MovingObstacles, start_s: float) -> SurvivalMap:
        """The survival map of this cycle: computed once when `plan` hands over to `evade`."""
        inputs = self._survival_inputs
        if inputs is None or inputs[0] is not clearance or inputs[1] is not obstacles or inputs[2] != start_s:
            c = self.config
            assert c.viability is not None
            self._survival = survival_map(clearance, obstacles, c.robot_radius, start_s, c.viability)
            self._survival_inputs = (clearance, obstacles, start_s)
        return self._survival

    def _lasting(self, check: _ObstacleCheck) -> np.ndarray:
        """Rollouts after which the robot can reach a haven in time."""
        return np.isfinite(check.haven_s)

    def _closeness(self, min_clear: np.ndarray) -> np.ndarray:
        """0 at the preferred clearance or beyond, 1 at radius + margin."""
        c = self.config
        hard, preferred = c.robot_radius + c.margin, c.robot_radius + c.preferred_clearance
        return np.clip((preferred - min_clear) / (preferred - hard), 0.0, 1.0)

    def _change(self, commands: np.ndarray, velocity: Velocity) -> np.ndarray:
        limits = self.config.limits
        return ((commands[:, 0] - velocity[0]) / limits.max_speed) ** 2 + (
            (commands[:, 1] - velocity[1]) / limits.max_yaw_rate
        ) ** 2

    def _target(self, xy: np.ndarray, dense_route: np.ndarray, clearance: ClearanceMap) -> tuple[np.ndarray, float]:
        """The route point `lookahead` ahead of the robot, kept inside the local grid, and the route beyond it (m)."""
        c = self.config
        arc = _arc(dense_route)
        nearest = int(np.argmin(np.hypot(*(dense_route - xy).T)))
        spec = clearance.spec
        lo = np.asarray(spec.origin) + c.robot_radius
        hi = np.asarray(spec.origin) + np.array(spec.shape[::-1]) * spec.resolution - c.robot_radius
        inside = np.all((dense_route >= lo) & (dense_route <= hi), axis=1)
        # The target is the last point before the route first leaves the grid or passes the lookahead.
        later = np.arange(len(dense_route)) >= nearest
        stop = later & (~inside | (arc > arc[nearest] + c.lookahead))
        last = (int(np.argmax(stop)) - 1) if stop.any() else len(dense_route) - 1
        last = max(last, nearest)
        return dense_route[last], float(arc[-1] - arc[last])

    def _update_guide(self, xy: np.ndarray, target: np.ndarray, clearance: ClearanceMap) -> None:
        """Replan the A* guide path when it is old, lost, or no longer clear; a straight line when A* finds none."""
        c = self.config
        self._guide_age += 1
        if len(self._guide) and self._guide_age < c.guide_replan_calls:
            off = float(np.hypot(*(self._guide - xy).T).min())
            moved = float(np.hypot(*(self._guide_target - target)))
            clear = float(clearance.at(self._guide).min()) >= c.robot_radius + c.margin
            if off < c.guide_off_path and moved < c.guide_off_path and clear:
                return
        planner = GridPlanner(
            clearance,
            c.robot_radius + c.guide_inflation,
            preferred=c.robot_radius + c.preferred_clearance,
            resolution=c.guide_resolution,
        )
        path = planner.plan(xy, self._reachable(planner, xy, target))
        self._guide = resample(np.vstack([xy, target]) if path is None else path, 0.1)
        if len(self._guide) == 1:
            self._guide = np.vstack([self._guide, self._guide])
        self._guide_arc = _arc(self._guide)
        self._guide_target = target
        self._guide_age = 0

    @staticmethod
    def _reachable(planner: GridPlanner, xy: np.ndarray, target: np.ndarray) -> np.ndarray:
        """The target, or where the robot can get nearest to it when obstacles the route does not know cut it off."""
        start = planner.snap(xy)
        if start is None:
            return target
        labels, _ = ndimage.label(planner.passable, structure=np.ones((3, 3)))
        cells = np.argwhere(labels == labels[start])
        goal = planner.spec.world_to_cell(target)
        nearest = cells[np.argmin(((cells - goal) ** 2).sum(axis=1))]
        return target if tuple(nearest) == tuple(goal) else planner.spec.cell_to_world(nearest)

    @staticmethod
    def _project(
        points: np.ndarray, guide: np.ndarray, arc: np.ndarray, s_from: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Arc length of each point's nearest guide point at or past `s_from` - 0.5 m, and the distance to it."""
        window = arc >= s_from - 0.5
        distance = np.hypot(*(points[:, None, :] - guide[None, window]).transpose(2, 0, 1))
        nearest = np.argmin(distance, axis=1)
        return arc[window][nearest], distance[np.arange(len(points)), nearest]
