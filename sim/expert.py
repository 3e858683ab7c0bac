"""The privileged expert driver, the tele-operator the Astra papers record demonstrations from.

It knows the ground-truth map and where every person and cart is. It tours the rooms of a world:
A* on the inflated occupancy grid (:mod:`models.planning`), pure pursuit along the smoothed path, and
a small dynamic-window search that keeps clear of moving agents. Agents are predicted along the
loops the world says they walk; agents the world does not know keep their velocity.

Planning a path takes tens of milliseconds, ordering a tour more. By default the driver plans inside
`command()`, which keeps in-process tours deterministic. Given an executor (`planner_pool`), it plans
there instead and keeps following its current path until the new one is ready, so a driver on a
fixed command rate (the dora node) never sends a late command because of a replan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
from scipy import ndimage

from models.planning import ClearanceMap, GridPlanner, distance_to_polyline, occupancy_grid, order_tour
from schemas.messages import DynamicObstacles, Twist
from schemas.robot import DEFAULT_ROBOT, MOTION_LIMITS, MotionLimits
from schemas.world import Agent, World
from sim.perturbation import PerturbationConfig, PerturbationSchedule


@dataclass(frozen=True)
class ExpertConfig:
    """Limits and tuning of the expert; speeds in m/s, angles in rad, times in s."""

    robot_radius: float = DEFAULT_ROBOT.radius
    limits: MotionLimits = MOTION_LIMITS
    margin: float = 0.15  # static inflation beyond the radius
    cruise_speed: float = 0.7
    lookahead: float = 0.6
    lateral_accel: float = 0.5  # bounds speed on curves
    goal_decel: float = 0.5
    slow_clearance: float = 0.5  # clearance beyond the radius below which the robot slows down
    rotate_enter: float = 0.9  # heading error that makes the robot turn in place ...
    rotate_exit: float = 0.25  # ... until it is this small
    goal_tolerance: float = 0.3
    off_path: float = 0.8  # replan when this far from the path
    plan_resolution: float = 0.1
    agent_margin: float = 0.2  # wanted gap to people and carts beyond both radii
    pacing_period: float = 6.0  # s; agents that walk a loop faster than this block it for planning
    agent_spread: float = 0.15  # m/s: how fast an agent's predicted position grows uncertain
    static_margin: float = 0.05  # smallest gap to walls the avoidance may choose ...
    static_slack: float = 0.02  # ... unless already closer: then it may lose this much more, down to this gap
    horizon: float = 3.0  # how far ahead agents are predicted
    static_horizon: float = 1.0  # walls stand still, so a rollout only has to be able to stop in time
    rollout_dt: float = 0.1
    blocked_timeout: float = 4.0  # replan around agents after this long without progress
    goal_timeout: float = 45.0  # give a room up after this long


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def rollout(
    pose: tuple[float, float, float], velocity: tuple[float, float], commands: np.ndarray, config: ExpertConfig
) -> np.ndarray:
    """Positions (K, T, 2) of a unicycle holding each of K (v, w) commands, with acceleration limits."""
    steps = round(config.horizon / config.rollout_dt)
    t = config.rollout_dt * np.arange(1, steps + 1)
    dv, dw = config.limits.max_accel * t, config.limits.max_yaw_accel * t
    v = velocity[0] + np.clip(commands[:, :1] - velocity[0], -dv, dv)
    w = velocity[1] + np.clip(commands[:, 1:] - velocity[1], -dw, dw)
    yaw = pose[2] + np.cumsum(w * config.rollout_dt, axis=1)
    x = pose[0] + np.cumsum(v * np.cos(yaw) * config.rollout_dt, axis=1)
    y = pose[1] + np.cumsum(v * np.sin(yaw) * config.rollout_dt, axis=1)
    return np.stack([x, y], axis=-1)


def predict_agents(obstacles: DynamicObstacles, t: np.ndarray, loops: dict[str, Agent] | None = None) -> np.ndarray:
    """Agent positions (T, A, 2) at future times t: along their known loops, else at constant velocity."""
    xy = np.array([obstacles.x, obstacles.y]).T
    velocity = np.array([obstacles.vx, obstacles.vy]).T
    future = xy[None] + t[:, None, None] * velocity[None]
    for i, agent_id in enumerate(obstacles.ids):
        if loops and agent_id in loops:
            future[:, i] = _along_loop(loops[agent_id], xy[i], velocity[i], t)
    return future


def _along_loop(agent: Agent, xy: np.ndarray, velocity: np.ndarray, t: np.ndarray) -> np.ndarray:
    points = np.asarray(agent.waypoints + agent.waypoints[:1], dtype=float)
    seg = np.diff(points, axis=0)
    length = np.hypot(*seg.T)
    arc = np.concatenate([[0.0], np.cumsum(length)])
    u = np.clip(((xy - points[:-1]) * seg).sum(axis=1) / np.maximum(length**2, 1e-12), 0.0, 1.0)
    dist = np.round(np.hypot(*(points[:-1] + u[:, None] * seg - xy).T), 3)
    heading = (seg * velocity).sum(axis=1) / np.maximum(length, 1e-12)
    # A back-and-forth loop passes each point twice; the velocity tells which pass the agent is on.
    k = np.lexsort((-heading, dist))[0]
    s = (arc[k] + u[k] * length[k] + agent.speed * t) % arc[-1]
    return np.stack([np.interp(s, arc, points[:, 0]), np.interp(s, arc, points[:, 1])], axis=-1)


def _predicted(obstacles: DynamicObstacles | None, seconds: float, loops: dict[str, Agent]) -> DynamicObstacles | None:
    """The agents `seconds` on, as the expert predicts them."""
    if obstacles is None or not obstacles.ids or seconds == 0:
        return obstacles
    xy = predict_agents(obstacles, np.array([seconds]), loops)[0]
    t_ns = obstacles.t_ns + round(seconds * 1e9)
    return replace(obstacles, t_ns=t_ns, x=tuple(xy[:, 0].tolist()), y=tuple(xy[:, 1].tolist()))


class ExpertDriver:
    """Tours every reachable room of a world, in a loop, and returns one velocity command per call."""

    def __init__(
        self,
        world: World,
        config: ExpertConfig = ExpertConfig(),
        seed: int = 0,
        planner_pool: Executor | None = None,
        perturbation: PerturbationConfig | None = None,
        goals: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        """`planner_pool`: where replans run, off the command path; None plans synchronously in `command()`.
        `perturbation`: bend the nominal commands now and then (sim.perturbation), drawn from `seed`.
        `goals`: drive to these points instead of a point in each room (a route's goal, to label a learner's drive)."""
        self.world = world
        self.config = config
        self.perturbations = None if perturbation is None else PerturbationSchedule(perturbation, seed)
        self._pool = planner_pool
        self._occupied = occupancy_grid(world)
        self._clearance = ClearanceMap.from_occupancy(self._occupied, world.grid)
        self._inflation = config.robot_radius + config.margin
        self._centres = world.grid.cell_to_world(np.stack(np.indices(world.grid.shape), axis=-1))
        near_lane, self._blocked = self._lanes()
        self._planner = GridPlanner(
            ClearanceMap.from_occupancy(self._blocked, world.grid),
            self._inflation,
            resolution=config.plan_resolution,
            avoid=near_lane,
        )
        if goals is None:
            self._goals = self._room_goals(np.random.default_rng(seed))
        else:
            self._goals = {gid: np.asarray(point, dtype=float) for gid, point in goals.items()}
        self._loops = {agent.id: agent for agent in world.agents}
        self.reset()
        w = np.linspace(-config.limits.max_yaw_rate, config.limits.max_yaw_rate, 11)
        v = np.union1d(np.linspace(-config.limits.max_reverse_speed, config.cruise_speed, 8), [0.0])
        self._samples = np.stack(np.meshgrid(v, w, indexing="ij"), axis=-1).reshape(-1, 2)

    def reset(self, velocity: tuple[float, float] = (0.0, 0.0)) -> None:
        """Forget the tour so far: no rooms visited, no path, moving at `velocity` (v, w)."""
        self._pending: tuple[Future, Callable[[Any, float], None]] | None = None
        self._visited: list[str] = []
        self._queue: list[str] = []
        self._path = np.empty((0, 2))
        self._arc = np.empty(0)
        self._curvature = np.empty(0)
        self._progress = 0.0
        self._velocity = velocity
        self._turning = False
        self._replan = False
        self._last_t: float | None = None
        self._retry_at = 0.0
        self._goal_id: str | None = None
        self._goal_since = 0.0
        self._best_progress = (0.0, 0.0)  # (arc length, time it was reached)

    def imagine(
        self,
        t_ns: int,
        pose: tuple[float, float, float],
        velocity: tuple[float, float],
        obstacles: DynamicObstacles | None,
        times_s: np.ndarray,
        dt: float = 0.05,
    ) -> np.ndarray:
        """The poses (T, 3) the expert would reach `times_s` after `t_ns`, starting afresh from `pose` at
        `velocity`, on an ideal unicycle, people and carts moving as predicted: the label of a learner's state
        (DAgger). The driver's tour starts over."""
        self.reset(velocity)
        x, y, yaw = pose
        poses = [(x, y, yaw)]
        for k in range(round(float(times_s[-1]) / dt)):
            cmd = self.command(t_ns + round(k * dt * 1e9), (x, y, yaw), _predicted(obstacles, k * dt, self._loops))
            v, w = cmd.linear[0], cmd.angular[2]
            heading = yaw + 0.5 * w * dt
            x, y, yaw = x + v * math.cos(heading) * dt, y + v * math.sin(heading) * dt, yaw + w * dt
            poses.append((x, y, yaw))
        return np.asarray(poses)[np.round(np.asarray(times_s) / dt).astype(int)]

    @property
    def visited_rooms(self) -> list[str]:
        """Ids of the rooms whose goal point the robot has reached, in first-visit order."""
        return list(self._visited)

    @property
    def path(self) -> np.ndarray:
        """The current planned path (N, 2) in `map`; empty when there is none."""
        return self._path.copy()

    @property
    def goals(self) -> dict[str, tuple[float, float]]:
        """The point the expert drives to in each reachable room."""
        return {rid: (float(p[0]), float(p[1])) for rid, p in self._goals.items()}

    def command(self, t_ns: int, pose: tuple[float, float, float], obstacles: DynamicObstacles | None = None) -> Twist:
        """The velocity command for the robot at `pose` (x, y, yaw in `map`) at time `t_ns`."""
        t = t_ns * 1e-9
        dt = 0.0 if self._last_t is None else max(0.0, t - self._last_t)
        self._last_t = t
        xy = np.array(pose[:2], dtype=float)
        self._mark_visited(xy)
        self._update_plan(t, xy, obstacles)
        v, w = self._track(pose) if len(self._path) else (0.0, 0.0)
        bend = self.perturbations.at(t) if self.perturbations is not None and len(self._path) else None
        if bend is not None:
            v, w = bend.apply(v, w)
        v, w = self._avoid(pose, (v, w), obstacles)
        dv, dw = self.config.limits.max_accel * dt, self.config.limits.max_yaw_accel * dt
        v = self._velocity[0] + float(np.clip(v - self._velocity[0], -dv, dv))
        w = self._velocity[1] + float(np.clip(w - self._velocity[1], -dw, dw))
        self._velocity = (v, w)
        return Twist(t_ns=t_ns, linear=(v, 0.0, 0.0), angular=(0.0, 0.0, w))

    def _room_goals(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """A high-clearance point in each room that is reachable from the spawn, off agents' loops if possible."""
        planner = self._planner
        labels, _ = ndimage.label(planner.passable, structure=np.ones((3, 3)))
        spawn = planner.snap(np.array(self.world.spawn[:2]))
        if spawn is None:
            raise ValueError(f"spawn {self.world.spawn} of {self.world.site} is not on the grid")
        component = labels == labels[spawn]
        centres = planner.spec.cell_to_world(np.stack(np.indices(planner.spec.shape), axis=-1))
        goals = {}
        for room in self.world.rooms:
            xmin, ymin, xmax, ymax = room.bounds
            inside = component & (centres[..., 0] >= xmin) & (centres[..., 0] <= xmax)
            inside &= (centres[..., 1] >= ymin) & (centres[..., 1] <= ymax)
            if not inside.any():
                continue
            # Park out of the way of people and carts where the room allows it.
            inside &= ~planner.avoid if (inside & ~planner.avoid).any() else True
            clearance = np.where(inside, planner.coarse, -np.inf)
            # Any point near the maximum clearance will do; the seed picks one so tours differ.
            best = np.argwhere(clearance >= 0.9 * clearance.max())
            goals[room.id] = centres[tuple(best[rng.integers(len(best))])]
        return goals

    def _mark_visited(self, xy: np.ndarray) -> None:
        for rid, goal in self._goals.items():
            if np.hypot(*(goal - xy)) >= self.config.goal_tolerance:
                continue
            if rid not in self._visited:
                self._visited.append(rid)
            if rid in self._queue:
                if rid == self._queue[0]:
                    self._path = np.empty((0, 2))
                self._queue.remove(rid)

    def _order_rooms(self, xy: np.ndarray) -> list[str]:
        ids = [rid for rid, g in self._goals.items() if np.hypot(*(g - xy)) >= self.config.goal_tolerance]
        if len(ids) <= 1:
            return ids  # nothing to order; spares a Dijkstra over the whole grid
        costs = self._planner.distances(np.vstack([xy, *(self._goals[rid] for rid in ids)]))
        return [ids[i - 1] for i in order_tour(costs)]

    def _update_plan(self, t: float, xy: np.ndarray, obstacles: DynamicObstacles | None) -> None:
        c = self.config
        if self._pending is not None:
            future, apply = self._pending
            if not future.done():
                return  # keep following the current path meanwhile
            self._pending = None
            apply(future.result(), t)
        if self._queue and t - self._goal_since > c.goal_timeout:
            self._drop_goal()
        elif len(self._path) and t - self._best_progress[1] > c.blocked_timeout:
            # Blocked for a while: route around the agents as they stand now, or else keep waiting.
            goal_id = self._queue[0]
            self._plan(partial(self._detour, xy, goal_id, obstacles), partial(self._apply_detour, goal_id), t)
        if self._pending is not None or (len(self._path) and not self._replan) or t < self._retry_at:
            return
        if self._pool is None:
            self._path = np.empty((0, 2))
        queue = list(self._queue)
        self._plan(partial(self._plan_tour, xy, queue), partial(self._apply_tour, queue), t)

    def _plan(self, job: Callable[[], Any], apply: Callable[[Any, float], None], t: float) -> None:
        """Run a planning job and apply its result: now, or on the first call after the pool has run it."""
        if self._pool is None:
            apply(job(), t)
        else:
            self._pending = (self._pool.submit(job), apply)

    # The jobs read only what never changes after __init__, so they may run on another thread.

    def _plan_tour(self, xy: np.ndarray, queue: list[str]) -> tuple[list[str], np.ndarray | None]:
        """The queue without the rooms found unreachable, and a path to its first room (None: none reachable)."""
        for _ in range(2):  # a finished tour starts over from wherever the robot is
            if not queue:
                queue = self._order_rooms(xy)
            while queue:
                path = self._planner.plan(xy, self._goals[queue[0]])
                if path is not None:
                    return queue, path
                queue = queue[1:]
        return queue, None

    def _detour(self, xy: np.ndarray, goal_id: str, obstacles: DynamicObstacles | None) -> np.ndarray | None:
        return self._planner_around(obstacles).plan(xy, self._goals[goal_id])

    def _apply_tour(self, asked: list[str], result: tuple[list[str], np.ndarray | None], t: float) -> None:
        """Adopt a planned tour, less the rooms reached since it was asked for."""
        queue, path = result
        reached = set(asked) - set(self._queue)
        self._queue = [rid for rid in queue if rid not in reached]
        self._replan = False
        if path is not None and self._queue and self._queue[0] == queue[0]:
            self._set_path(path, t)
        else:
            self._path = np.empty((0, 2))
        # Nothing reachable right now: ordering a tour is too costly to retry on every call.
        self._retry_at = t + 1.0 if path is None else 0.0

    def _apply_detour(self, goal_id: str, detour: np.ndarray | None, t: float) -> None:
        if not self._queue or self._queue[0] != goal_id:
            return  # that goal was reached or given up meanwhile
        if detour is None:
            self._best_progress = (self._progress, t)
        else:
            self._set_path(detour, t)

    def _drop_goal(self) -> None:
        self._queue.pop(0)
        self._path = np.empty((0, 2))

    def _planner_around(self, obstacles: DynamicObstacles | None) -> GridPlanner:
        """A planner for a stuck robot, in which the agents as they stand now are walls."""
        occupied = self._blocked.copy()
        if obstacles is not None:
            for ax, ay, radius in zip(obstacles.x, obstacles.y, obstacles.radius, strict=True):
                occupied |= np.hypot(self._centres[..., 0] - ax, self._centres[..., 1] - ay) <= radius
        return GridPlanner(
            ClearanceMap.from_occupancy(occupied, self.world.grid),
            self._inflation,
            resolution=self.config.plan_resolution,
        )

    def _lanes(self) -> tuple[np.ndarray, np.ndarray]:
        """Grid masks: where the robot would meet an agent walking its loop, and where planning treats loops as walls.

        An agent that comes back sooner than `pacing_period` leaves no time to slip past, so its loop is a wall.
        """
        c = self.config
        near_lane = np.zeros(self.world.grid.shape, dtype=bool)
        blocked = self._occupied.copy()
        for agent in self.world.agents:
            loop = np.asarray(agent.waypoints + agent.waypoints[:1], dtype=float)
            gap = distance_to_polyline(self._centres, loop) - agent.radius
            near_lane |= gap <= c.robot_radius + c.agent_margin
            if np.hypot(*np.diff(loop, axis=0).T).sum() / agent.speed < c.pacing_period:
                blocked |= gap <= 0.0
        return near_lane, blocked

    def _set_path(self, path: np.ndarray, t: float) -> None:
        self._path = path
        seg = np.hypot(*np.diff(path, axis=0).T)
        self._arc = np.concatenate([[0.0], np.cumsum(seg)])
        heading = np.arctan2(*np.diff(path, axis=0).T[::-1])
        turn = np.abs((np.diff(heading) + np.pi) % (2 * np.pi) - np.pi) / np.maximum(seg[1:], 1e-6)
        self._curvature = np.concatenate([[0.0], turn, [0.0]])
        self._progress = 0.0
        self._best_progress = (0.0, t)
        if self._queue[0] != self._goal_id:
            self._goal_id, self._goal_since = self._queue[0], t

    def _point_at(self, s: float) -> np.ndarray:
        return np.array([np.interp(s, self._arc, self._path[:, 0]), np.interp(s, self._arc, self._path[:, 1])])

    def _track(self, pose: tuple[float, float, float]) -> tuple[float, float]:
        """Pure pursuit: (v, w) towards the lookahead point, slowed for curves, walls and the goal."""
        c = self.config
        xy = np.array(pose[:2])
        window = (self._arc >= self._progress - 0.5) & (self._arc <= self._progress + 2.0)
        idx = np.flatnonzero(window)
        dist = np.hypot(*(self._path[idx] - xy).T)
        nearest = idx[np.argmin(dist)]
        self._progress = float(self._arc[nearest])
        if self._progress > self._best_progress[0] + 0.25:
            self._best_progress = (self._progress, self._last_t)
        if dist.min() > c.off_path:
            self._replan = True
        to_goal = float(np.hypot(*(self._path[-1] - xy)))
        target = self._point_at(self._progress + c.lookahead)
        offset = target - xy
        alpha = _wrap(math.atan2(offset[1], offset[0]) - pose[2])
        self._turning = abs(alpha) > (c.rotate_exit if self._turning else c.rotate_enter)
        if self._turning:
            return 0.0, float(np.clip(2.0 * alpha, -c.limits.max_yaw_rate, c.limits.max_yaw_rate))
        kappa = 2 * math.sin(alpha) / max(float(np.hypot(*offset)), 1e-3)
        ahead = (self._arc >= self._progress) & (self._arc <= self._progress + 1.0)
        bend = max(abs(kappa), float(self._curvature[ahead].max(initial=0.0)))
        wall_room = float(self._clearance.at(xy)) - c.robot_radius
        v = min(
            c.cruise_speed,
            math.sqrt(c.lateral_accel / max(bend, 1e-6)),
            c.cruise_speed * float(np.clip(wall_room / c.slow_clearance, 0.3, 1.0)),
            max(0.1, math.sqrt(2 * c.goal_decel * to_goal)),
            c.limits.max_yaw_rate / max(abs(kappa), 1e-6),
        )
        return v, v * kappa

    def _avoid(
        self, pose: tuple[float, float, float], nominal: tuple[float, float], obstacles: DynamicObstacles | None
    ) -> tuple[float, float]:
        """The sampled command closest to `nominal` whose rollout keeps clear of walls and agents."""
        c = self.config
        here = float(self._clearance.at(np.array(pose[:2])))
        hard = c.robot_radius + c.static_slack
        floor = min(c.robot_radius + c.static_margin, max(here - c.static_slack, min(here, hard)))

        def clear_of_walls(paths: np.ndarray) -> np.ndarray:
            return self._clearance.at(paths[:, : round(c.static_horizon / c.rollout_dt)]).min(axis=1) >= floor

        if len(self._path) and not clear_of_walls(rollout(pose, self._velocity, np.array([nominal]), c))[0]:
            # Pure pursuit cuts corners. In a tight spot, turn along the path first: it leads away from walls.
            ahead = self._point_at(self._progress + 0.3) - self._point_at(self._progress)
            error = _wrap(math.atan2(ahead[1], ahead[0]) - pose[2])
            if abs(error) > c.rotate_exit:
                nominal = (0.0, float(np.clip(2.0 * error, -c.limits.max_yaw_rate, c.limits.max_yaw_rate)))
        commands = np.vstack([nominal, self._samples])
        paths = rollout(pose, self._velocity, commands, c)
        static_ok = clear_of_walls(paths)
        gap = np.full(len(commands), np.inf)
        if obstacles is not None and obstacles.ids:
            t = c.rollout_dt * np.arange(1, paths.shape[1] + 1)
            agents = np.array([obstacles.x, obstacles.y]).T
            future = predict_agents(obstacles, t, self._loops)
            radii = c.robot_radius + np.array(obstacles.radius)
            # A prediction is less certain the further ahead it looks.
            reach = radii + c.agent_spread * t[:, None]
            gap = (np.linalg.norm(paths[:, :, None, :] - future[None], axis=-1) - reach).min(axis=(1, 2))
            now = float((np.hypot(*(agents - np.array(pose[:2])).T) - radii).min())
            safe = static_ok & (gap >= min(c.agent_margin, now - 1e-3))
        else:
            safe = static_ok
        if safe[0]:
            return nominal
        if not static_ok.any():
            return 0.0, 0.0
        if not safe.any():
            # Nothing keeps the wanted gap: back off along whatever keeps the largest one.
            best = int(np.argmax(np.where(static_ok, gap, -np.inf)))
            return float(commands[best, 0]), float(commands[best, 1])
        target = self._point_at(self._progress + c.cruise_speed * c.horizon) if len(self._path) else paths[0, -1]
        progress = np.hypot(*(target - np.array(pose[:2]))) - np.hypot(*(paths[:, -1] - target).T)
        score = (
            ((commands[:, 0] - nominal[0]) / c.limits.max_speed) ** 2
            + 0.3 * ((commands[:, 1] - nominal[1]) / c.limits.max_yaw_rate) ** 2
            - 0.5 * progress / (c.cruise_speed * c.horizon)
            - 0.3 * np.minimum(gap, 1.0)
        )
        best = int(np.argmin(np.where(safe, score, np.inf)))
        return float(commands[best, 0]), float(commands[best, 1])
