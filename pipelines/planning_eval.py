"""`astra eval planning`: local planners closed-loop in a generated building, every planner on the same episodes.

An episode is a start and a goal `min_m`..`max_m` apart along the building's free space. `local` gets the route the
expert would drive (A* at its clearance, as the map graph's routes follow its tours) as subgoals in `odom` (global's
part, given, so that only local planning is measured) and runs as in the navigation graph: the wheel + IMU filter,
the depth costmap, the tracker, the planner under test and the recoveries, with actuation's safety governor between
it and the simulator (`pipelines.missions` wires the full graph the same way). People and carts walk in buildings
made with `dynamic`: the out-of-distribution case.

Per planner, over its episodes:
- `collision_rate`: the share of episodes with a collision while the robot moved (being walked into standing still
  is not the planner's); `collisions` counts them, and `collision_rate_upper95` is the highest rate those episodes
  leave plausible (one-sided 95 % Clopper-Pearson: none in 16 episodes still allows 17 %, none in 600 0.5 %);
  `collided_episodes` lists which (every planner drives the same episodes, so two can be compared episode by
  episode: `paired_collisions`);
- `progress`: how much of the true shortest path to the goal was covered, 0..1, averaged;
- `success_rate`: episodes ended within the goal tolerance (plus 0.2 m) without a collision;
- `mean_speed`: path driven over the episode's time (m/s);
- `score`: progress counted only in episodes without a collision, averaged (a collision scores 0);
- `latency_p50_ms`, `latency_p99_ms`: the planner's wall time per cycle, on this machine;
- `handover_rate`: the share of cycles a learned planner handed to (or, alone, would have handed to) the classical;
  `handover_rates` splits it by reason;
- `retry_rate`: the share of cycles a learned planner followed (or handed over) its guided retry's samples, where none
  of its first ones passed the checks (models.astra_local.serving, `retry_guidance_m`);
- `hold_rate`: the share of cycles a learned planner alone turned in place, every rollout running into something.

Cameras render at 160 x 120 here, for speed; the costmap casts as many rays as the robot's own cameras give it.
Episodes run in parallel processes, one per core by default.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import beta, binomtest
from tqdm import tqdm

from models.astra_local.serving import HANDOVER_REASONS, AstraPlanner, AstraPlannerConfig, astra_planner
from models.astra_local.variants import DEFAULT_PLANNER, PLANNER_VARIANTS
from models.costmap import CostmapConfig, matched_costmap
from models.local_planner import DwaPlanner, LocalPlanner
from models.navigation import se2
from models.navigation.local_navigator import LocalNavigator
from models.planning import ClearanceMap, GridPlanner, occupancy_grid, path_length
from models.safety import SafetyGovernor
from schemas.messages import Path as PathMsg
from schemas.robot import DEFAULT_ROBOT, RobotConfig
from schemas.topics import BY_OUTPUT, ODOM_FRAME, TICK_S
from schemas.world import World
from sim.expert import ExpertConfig
from sim.simulator import MOVING_MPS, SIGHTED, Simulator

EVAL_ROBOT = replace(DEFAULT_ROBOT, camera_width=160, camera_height=120)
SUCCESS_SLACK_M = 0.2


@dataclass(frozen=True)
class PlanningConfig:
    episodes: int = 6
    min_m: float = 6.0  # true shortest path from start to goal
    max_m: float = 12.0
    time_limit_s: float = 45.0
    subgoal_spacing_m: float = 1.0
    start_clearance_m: float = 0.6  # starts and goals this far from walls and furniture
    seed: int = 0


@dataclass(frozen=True)
class PlanningEpisode:
    start: tuple[float, float, float]
    goal: tuple[float, float]
    route: np.ndarray  # (P, 2) in the world, start to goal
    shortest_m: float


@dataclass
class EpisodeResult:
    planner: str
    episode: int
    collided: bool
    success: bool
    progress: float
    time_s: float
    path_m: float
    plan_ms: list[float]
    cycles: int
    handovers: dict[str, int]  # by reason (models.astra_local.serving.HANDOVER_REASONS)
    retries: int = 0  # cycles the guided retry's samples were taken
    holds: int = 0  # cycles alone it turned in place


def sample_episodes(world: World, config: PlanningConfig) -> list[PlanningEpisode]:
    """`config.episodes` start-goal pairs in free space, their true shortest paths `min_m`..`max_m` long, each start
    the expert's gap clear of where the people and carts stand when the episode begins: a robot placed into one is
    thrown out of it by the physics (warehouse-913 with people, session 46: into a shelf at 4 m/s)."""
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    expert = ExpertConfig()  # routes as the expert drives them: global's follow the expert's mapping tours
    planner = GridPlanner(clearance, expert.robot_radius + expert.margin)
    standing = np.array([a.waypoints[0] for a in world.agents], dtype=float).reshape(-1, 2)
    reach = np.array([a.radius for a in world.agents]) + expert.robot_radius + expert.agent_margin
    free = world.grid.cell_to_world(np.argwhere(clearance.distance >= config.start_clearance_m))
    rng = np.random.default_rng(config.seed)
    episodes: list[PlanningEpisode] = []
    for _ in range(200 * config.episodes):
        if len(episodes) == config.episodes:
            break
        start, goal = free[rng.integers(len(free), size=2)]
        if (np.hypot(*(standing - start).T) < reach).any():
            continue
        route = planner.plan(start, goal)
        if route is None or not config.min_m <= path_length(route) <= config.max_m:
            continue
        heading = math.atan2(*(route[min(5, len(route) - 1)] - start)[::-1])
        yaw = heading + rng.uniform(-math.pi / 2, math.pi / 2)
        episodes.append(
            PlanningEpisode((float(start[0]), float(start[1]), yaw), tuple(goal), route, path_length(route))
        )
    if len(episodes) < config.episodes:
        raise ValueError(
            f"the building has fewer than {config.episodes} start-goal pairs {config.min_m}-{config.max_m} m apart"
        )
    return episodes


def run_episode(
    world_dir: Path,
    episode: PlanningEpisode,
    planner: LocalPlanner,
    config: PlanningConfig,
    robot: RobotConfig = EVAL_ROBOT,
    seed: int = 0,
    observer: Callable[[Simulator, int], None] | None = None,
) -> tuple[bool, bool, float, float, float, list[float]]:
    """Drive one episode with `planner`: (collided, success, progress, time s, path m, plan ms per cycle).

    `observer(sim, t_ns)` is called after each planning cycle, to read the planner and the simulator's truth."""
    sim = Simulator(world_dir, robot, seed=seed, agent_sight=SIGHTED)
    try:
        sim.place(*episode.start)
        local = LocalNavigator(robot, planner=planner, costmap=matched_costmap(CostmapConfig(), robot))
        governor = SafetyGovernor()
        route = se2.apply(se2.inverse(episode.start), _spaced(episode.route, config.subgoal_spacing_m))
        start_ns = sim.t_ns
        local.on_subgoals(PathMsg(start_ns, ODOM_FRAME, tuple(route[:, 0]), tuple(route[:, 1]), (0.0,) * len(route)))
        plan_period, actuation_period = int(1e9 / local.params.plan_hz), int(1e9 / BY_OUTPUT["cmd_vel"].rate_hz)
        next_plan = next_actuation = start_ns
        cmd, collided, arrived, path_m = None, False, False, 0.0
        last_xy = sim.pose()[:2]
        while sim.t_ns - start_ns < config.time_limit_s * 1e9 and not arrived:
            for output_id, msg in sim.advance(cmd, TICK_S):
                if output_id == "events" and msg.kind == "collision":
                    collided |= msg.value > MOVING_MPS
                else:
                    for out_id, out in local.on_sensor(output_id, msg):
                        if out_id == "moving_obstacles":
                            governor.set_people(out)
            cmd = None
            now = sim.t_ns
            x, y, _ = sim.pose()
            path_m += math.hypot(x - last_xy[0], y - last_xy[1])
            last_xy = (x, y)
            if now >= next_plan:
                next_plan += plan_period
                for out_id, out in local.plan(now):
                    if out_id == "local_cmd":
                        governor.on_command(out, now)
                    arrived |= out_id == "nav_events" and out.kind == "goal_reached"
                if observer is not None:
                    observer(sim, now)
            if now >= next_actuation:
                next_actuation += actuation_period
                cmd = governor.step(now)
        seconds = (sim.t_ns - start_ns) * 1e-9
        final = np.asarray(sim.pose()[:2])
    finally:
        sim.close()
    left = _remaining_m(world_dir, final, np.asarray(episode.goal))
    progress = float(np.clip(1.0 - left / episode.shortest_m, 0.0, 1.0))
    near = math.hypot(*(final - episode.goal)) <= planner.config.goal_tolerance + SUCCESS_SLACK_M
    return collided, near and not collided, progress, seconds, path_m, [s * 1e3 for s in local.plan_seconds]


def _spaced(route: np.ndarray, spacing: float) -> np.ndarray:
    """Route points every `spacing` metres, the goal last."""
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(route, axis=0).T))])
    s = np.append(np.arange(spacing, arc[-1], spacing), arc[-1])
    return np.column_stack([np.interp(s, arc, route[:, 0]), np.interp(s, arc, route[:, 1])])


def _remaining_m(world_dir: Path, xy: np.ndarray, goal: np.ndarray) -> float:
    world = World.load(world_dir)
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    path = GridPlanner(clearance, DEFAULT_ROBOT.radius).plan(xy, goal)
    return path_length(path) if path is not None else float(np.hypot(*(goal - xy)))


@dataclass(frozen=True)
class PlannerSpec:
    """A planner to evaluate: the classical one, or a learned checkpoint, alone or with its classical fallback."""

    checkpoint: Path | None = None  # None: the classical planner
    fallback: bool = False
    choose_safe: bool = True  # AstraPlannerConfig.choose_safe
    guidance_m: float = AstraPlannerConfig.guidance_m
    retry_guidance_m: float = AstraPlannerConfig.retry_guidance_m

    def build(self) -> LocalPlanner:
        if self.checkpoint is None:
            return DwaPlanner()
        config = AstraPlannerConfig(
            fallback=self.fallback,
            choose_safe=self.choose_safe,
            guidance_m=self.guidance_m,
            retry_guidance_m=self.retry_guidance_m,
        )
        return astra_planner(self.checkpoint, config)


def planner_specs(
    names: list[str] | None,
    weights: Path,
    choose_safe: bool = True,
    guidance_m: float = AstraPlannerConfig.guidance_m,
    retry_guidance_m: float = AstraPlannerConfig.retry_guidance_m,
) -> dict[str, PlannerSpec]:
    """The planners called `names` (default: classical, every variant trained under `weights`, and astra): the
    classical one, a variant alone, or `astra` (the default variant with the classical planner as its fallback).
    The learned ones choose their sample by `choose_safe` and are guided by up to `guidance_m` a refinement, and by
    up to `retry_guidance_m` where they sample again because none of their samples passed the checks."""
    for what, metres in (("guidance", guidance_m), ("retry guidance", retry_guidance_m)):
        if metres < 0:
            raise ValueError(f"{what} must be >= 0 m, not {metres}")
    trained = [name for name in PLANNER_VARIANTS if (weights / name / "config.json").is_file()]
    specs = {}
    for name in names or ["classical", *trained, "astra"]:
        checkpoint = weights / (DEFAULT_PLANNER if name == "astra" else name)
        if name == "classical":
            specs[name] = PlannerSpec()
        elif name not in ("astra", *PLANNER_VARIANTS):
            raise ValueError(f"unknown planner {name!r}; choose from classical, astra, {', '.join(PLANNER_VARIANTS)}")
        elif not (checkpoint / "config.json").is_file():
            raise ValueError(f"no trained {checkpoint.name} under {weights}: run `astra train local` first")
        else:
            specs[name] = PlannerSpec(checkpoint, name == "astra", choose_safe, guidance_m, retry_guidance_m)
    return specs


def _job(args: tuple[str, PlannerSpec, int, PlanningEpisode, Path, PlanningConfig]) -> EpisodeResult:
    import torch

    torch.set_num_threads(1)  # one episode per core
    name, spec, index, episode, world_dir, config = args
    planner = spec.build()
    collided, success, progress, seconds, path_m, plan_ms = run_episode(world_dir, episode, planner, config, seed=index)
    cycles = planner.cycles if isinstance(planner, AstraPlanner) else len(plan_ms)
    learned = isinstance(planner, AstraPlanner)
    handovers, retries, holds = (dict(planner.handovers), planner.retries, planner.holds) if learned else ({}, 0, 0)
    return EpisodeResult(
        name, index, collided, success, progress, seconds, path_m, plan_ms, cycles, handovers, retries, holds
    )


def evaluate_planners(
    world_dir: Path,
    planners: dict[str, PlannerSpec],
    config: PlanningConfig = PlanningConfig(),
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every planner on the same episodes of the building at `world_dir`: the `astra eval planning` JSON."""
    world = World.load(world_dir)
    episodes = sample_episodes(world, config)
    jobs = [(name, spec, i, ep, Path(world_dir), config) for name, spec in planners.items()
            for i, ep in enumerate(episodes)]  # fmt: skip
    results: list[EpisodeResult] = []
    context = multiprocessing.get_context("fork")
    with (
        ProcessPoolExecutor(workers or os.cpu_count(), mp_context=context) as pool,
        tqdm(total=len(jobs), unit="episode", desc="eval planning", file=sys.stderr, disable=not progress) as bar,
    ):
        for result in pool.map(_job, jobs):
            results.append(result)
            bar.update()
    return {
        "site": world.site,
        "dynamic": bool(world.agents),
        "episodes": len(episodes),
        "planners": {name: summarize([r for r in results if r.planner == name]) for name in planners},
    }


def collision_rate_upper95(collisions: int, episodes: int) -> float:
    """The one-sided 95 % Clopper-Pearson upper bound on the collision rate, `collisions` seen in `episodes`."""
    if collisions >= episodes:
        return 1.0
    return round(float(beta.ppf(0.95, collisions + 1, episodes - collisions)), 4)


def paired_collisions(a: Sequence[bool], b: Sequence[bool]) -> dict[str, Any]:
    """Two planners' collisions on the same episodes: those only `a` collided in, those only `b` did, and the exact
    two-sided McNemar p-value of so uneven a split (the episodes both or neither collided in say nothing of which
    is safer)."""
    if len(a) != len(b):
        raise ValueError(f"paired episodes differ in number: {len(a)} and {len(b)}")
    only_a = sum(bool(x) and not y for x, y in zip(a, b, strict=True))
    only_b = sum(bool(y) and not x for x, y in zip(a, b, strict=True))
    p_value = binomtest(only_a, only_a + only_b).pvalue if only_a + only_b else 1.0
    return {"episodes": len(a), "only_first": only_a, "only_second": only_b, "p_value": round(float(p_value), 4)}


def summarize(results: list[EpisodeResult]) -> dict[str, Any]:
    ms = np.concatenate([r.plan_ms for r in results]) if results else np.zeros(0)
    cycles = sum(r.cycles for r in results)
    collisions = int(sum(r.collided for r in results))  # collided may be a numpy bool: JSON takes only int
    return {
        "collision_rate": round(float(np.mean([r.collided for r in results])), 3),
        "collisions": collisions,
        "collision_rate_upper95": collision_rate_upper95(collisions, len(results)),
        "collided_episodes": [r.episode for r in results if r.collided],
        "progress": round(float(np.mean([r.progress for r in results])), 3),
        "success_rate": round(float(np.mean([r.success for r in results])), 3),
        "mean_speed": round(sum(r.path_m for r in results) / max(sum(r.time_s for r in results), 1e-9), 3),
        "score": round(float(np.mean([r.progress * (not r.collided) for r in results])), 3),
        "latency_p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else 0.0,
        "latency_p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else 0.0,
        "handover_rate": round(sum(sum(r.handovers.values()) for r in results) / max(cycles, 1), 3),
        "handover_rates": {
            reason: round(sum(r.handovers.get(reason, 0) for r in results) / max(cycles, 1), 3)
            for reason in HANDOVER_REASONS
        },
        "retry_rate": round(sum(r.retries for r in results) / max(cycles, 1), 3),
        "hold_rate": round(sum(r.holds for r in results) / max(cycles, 1), 3),
    }
