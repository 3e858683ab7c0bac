"""The expert driver: path following, agent avoidance, replanning off the command path, and room tours in MuJoCo."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Executor, Future
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.planning import distance_to_polyline
from schemas.messages import DynamicObstacles
from schemas.robot import RobotConfig
from schemas.world import WORLD_KINDS, Agent, Room, World
from sim.expert import ExpertConfig, ExpertDriver, predict_agents, rollout
from sim.perturbation import Perturbation, PerturbationConfig, PerturbationSchedule
from sim.simulator import Simulator
from sim.world import generate_world, write_world
from tests.worlds import box_world, obstacle_distance, two_rooms

CONFIG = ExpertConfig()
RADIUS = CONFIG.robot_radius
Agents = Callable[[float], DynamicObstacles]


def _drive(
    world: World, expert: ExpertDriver, seconds: float, agents: Agents | None = None, dt: float = 0.05
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Closed loop on an ideal unicycle; returns the poses (N, 3) and the commands."""
    pose = np.array(world.spawn, dtype=float)
    poses, commands = [pose.copy()], []
    for k in range(round(seconds / dt)):
        t = k * dt
        cmd = expert.command(round(t * 1e9), tuple(pose), agents(t) if agents else None)
        v, w = cmd.linear[0], cmd.angular[2]
        pose[2] += w * dt
        pose[:2] += v * dt * np.array([math.cos(pose[2]), math.sin(pose[2])])
        poses.append(pose.copy())
        commands.append((v, w))
    return np.array(poses), commands


def test_controller_converges_to_the_goal() -> None:
    world = box_world((10, 8), [], [Room("hall", "Hall", "lobby", "room", (0.1, 0.1, 9.9, 7.9))], (1.0, 1.0, math.pi))
    expert = ExpertDriver(world, seed=3)
    poses, commands = _drive(world, expert, 25.0)
    goal = np.array(expert.goals["hall"])
    assert np.hypot(*(poses[-1, :2] - goal)) < ExpertConfig().goal_tolerance
    assert expert.visited_rooms == ["hall"]
    v, w = np.array(commands).T
    config = ExpertConfig()
    assert v.max() <= config.cruise_speed + 1e-9 and np.abs(w).max() <= config.limits.max_yaw_rate + 1e-9
    assert abs(v[-1]) < 1e-9 and abs(w[-1]) < 1e-9  # parked once the only room is visited


def test_rollouts_respect_acceleration_limits() -> None:
    config = ExpertConfig()
    paths = rollout((0.0, 0.0, 0.0), (0.7, 0.0), np.array([[0.0, 0.0]]), config)
    # Braking from 0.7 m/s at 1 m/s^2 covers about 0.245 m.
    assert paths[0, -1, 0] == pytest.approx(0.245, abs=0.04)


def test_agents_are_predicted_along_their_loops() -> None:
    pacer = Agent("p0", "person", ((0.0, 0.0), (2.0, 0.0)), 1.0, 0.25)
    seen = DynamicObstacles(0, ("p0", "stranger"), (1.5, 5.0), (0.0, 5.0), (-1.0, 0.5), (0.0, 0.0), (0.25, 0.25))
    future = predict_agents(seen, np.array([0.5, 1.0, 2.0]), {"p0": pacer})
    # p0 walks back towards the start (its velocity says so), turns there and comes back.
    np.testing.assert_allclose(future[:, 0], [(1.0, 0.0), (0.5, 0.0), (0.5, 0.0)], atol=1e-9)
    np.testing.assert_allclose(future[:, 1], [(5.25, 5.0), (5.5, 5.0), (6.0, 5.0)])


def test_avoids_a_person_walking_head_on() -> None:
    corridor = box_world(
        (16, 2.4), [], [Room("end", "End", "exit", "corridor", (14.0, 0.1, 15.9, 2.3))], (1.0, 1.2, 0.0)
    )
    radius, speed = 0.3, 1.0

    def person(t: float) -> DynamicObstacles:
        return DynamicObstacles(round(t * 1e9), ("p0",), (15.0 - speed * t,), (1.2,), (-speed,), (0.0,), (radius,))

    poses, _ = _drive(corridor, ExpertDriver(corridor), 30.0, person)
    t = 0.05 * np.arange(len(poses))
    gap = np.hypot(poses[:, 0] - (15.0 - speed * t), poses[:, 1] - 1.2) - RADIUS - radius
    assert gap.min() >= CONFIG.agent_margin  # the corridor is wide enough to keep the wanted gap
    # Stepping aside may take it closer to the wall than planning would, never under static_margin; half a grid
    # cell is the slack of the grid it measures walls on.
    wall_gap = obstacle_distance(corridor, poses[:, :2]) - RADIUS
    assert wall_gap.min() >= CONFIG.static_margin - corridor.grid.resolution / 2
    assert poses[-1, 0] > 13.5  # and it still got to the end of the corridor


class _HeldFuture(Future):
    def result(self, timeout: float | None = None) -> Any:
        assert self.done(), "command() waited for a replan"
        return super().result(timeout)


class _HeldPool(Executor):
    """Runs the planning jobs submitted to it only when the test says so: a replan as slow as the test wants."""

    def __init__(self) -> None:
        self.held: list[tuple[Future, Callable[[], Any]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future = _HeldFuture()
        self.held.append((future, partial(fn, *args, **kwargs)))
        return future

    def run_held(self) -> None:
        for future, job in self.held:
            future.set_result(job())
        self.held.clear()


def test_replans_in_the_pool_while_following_the_old_path() -> None:
    world, pool = two_rooms(), _HeldPool()
    expert = ExpertDriver(world, planner_pool=pool)
    pose = np.array(world.spawn, dtype=float)
    calls = 0

    def command() -> tuple[float, float]:
        nonlocal calls
        cmd = expert.command(round(calls * 0.05 * 1e9), tuple(pose))
        calls += 1
        v, w = cmd.linear[0], cmd.angular[2]
        pose[2] += w * 0.05
        pose[:2] += v * 0.05 * np.array([math.cos(pose[2]), math.sin(pose[2])])
        return v, w

    # The first tour is planned in the pool too; until it is ready the robot stands.
    assert command() == (0.0, 0.0) and len(pool.held) == 1 and not len(expert.path)
    pool.run_held()
    for _ in range(60):
        command()
    old = expert.path
    assert len(old) and not pool.held
    pose[:2] = (1.0, 2.0)  # pushed a metre off its path, onto free floor
    assert distance_to_polyline(pose[:2], old) > CONFIG.off_path
    command()  # finds itself off the path ...
    asked_at = pose[:2].copy()
    command()  # ... and asks for a new one
    assert len(pool.held) == 1
    before = distance_to_polyline(pose[:2], old)
    moves = [command() for _ in range(20)]
    # While the replan is pending, every call returns at once and the robot drives back towards its old path.
    np.testing.assert_array_equal(expert.path, old)
    assert any(v != 0.0 for v, _ in moves) and distance_to_polyline(pose[:2], old) < before
    pool.run_held()
    command()
    np.testing.assert_allclose(expert.path[0], asked_at)  # the new path starts where the robot asked for it


def _simulated_tour(
    kind: str,
    out_dir: Path,
    dynamic: bool,
    seconds: float = 300.0,
    dt: float = 0.05,
    perturbation: PerturbationConfig | None = None,
) -> tuple[World, ExpertDriver, int, float]:
    """Drive the expert in MuJoCo at 20 Hz until it has visited every room, or for `seconds` of sim time.

    Returns the world, the expert, the collision count and the smallest gap between the robot's shell and a wall.
    """
    world = generate_world(kind, seed=0, dynamic=dynamic)
    write_world(world, out_dir)
    # Driving needs no pictures: without cameras the simulator never renders.
    sim = Simulator(out_dir, RobotConfig(cameras=()), seed=0, agent_sight=None)  # blind agents: the hard case
    expert = ExpertDriver(world, perturbation=perturbation)
    poses = []
    try:
        for _ in range(round(seconds / dt)):
            cmd = expert.command(sim.t_ns, sim.pose(), sim.obstacles() if world.agents else None)
            sim.advance(cmd, dt)
            poses.append(sim.pose()[:2])
            if len(expert.visited_rooms) == len(world.rooms):
                break
        collisions = sim.collisions
    finally:
        sim.close()
    return world, expert, collisions, float(obstacle_distance(world, np.array(poses)).min()) - RADIUS


@pytest.mark.parametrize("kind", WORLD_KINDS)
def test_expert_tours_every_room_of_each_kind_without_collision(kind: str, tmp_path: Path) -> None:
    world, expert, collisions, gap = _simulated_tour(kind, tmp_path, dynamic=False)
    assert sorted(expert.visited_rooms) == sorted(room.id for room in world.rooms)
    assert collisions == 0
    # Paths keep `margin` beyond the robot's radius; half a grid cell is the slack of the grid they are planned on.
    assert gap >= CONFIG.margin - world.grid.resolution / 2


@pytest.mark.parametrize("kind", WORLD_KINDS)
def test_expert_tours_every_room_among_people_and_carts_without_collision(kind: str, tmp_path: Path) -> None:
    world, expert, collisions, gap = _simulated_tour(kind, tmp_path, dynamic=True)
    assert sorted(expert.visited_rooms) == sorted(room.id for room in world.rooms)
    assert collisions == 0
    # Stepping aside for people and carts may take the robot closer to walls, never under static_margin.
    assert gap >= CONFIG.static_margin - world.grid.resolution / 2


def test_perturbations_are_drawn_in_their_ranges_one_after_another_and_repeat_by_seed() -> None:
    config = PerturbationConfig()
    schedule = PerturbationSchedule(config, seed=4)
    active = [schedule.at(t) for t in np.arange(0.0, 120.0, 0.05)]
    drawn = schedule.drawn
    assert len(drawn) >= 120.0 / (config.gap_s[1] + config.duration_s[1])
    ends = [p.start_s + p.duration_s for p in drawn]
    gaps = np.diff([0.0, *[p.start_s for p in drawn]]) - np.array([0.0, *[p.duration_s for p in drawn[:-1]]])
    assert np.all((gaps >= config.gap_s[0]) & (gaps <= config.gap_s[1]))
    assert all(config.duration_s[0] <= p.duration_s <= config.duration_s[1] for p in drawn)
    turns = [abs(p.value) for p in drawn if p.kind == "turn"]
    slows = [p.value for p in drawn if p.kind == "slow"]
    assert turns and slows and all(config.yaw_rate[0] <= t <= config.yaw_rate[1] for t in turns)
    assert all(config.slow_factor[0] <= f <= config.slow_factor[1] for f in slows)
    # Active exactly over its span, and listed once.
    times = np.arange(0.0, 120.0, 0.05)
    for p, end in zip(drawn, ends, strict=True):
        inside = (times >= p.start_s) & (times < end)
        assert all(active[i] is p for i in np.flatnonzero(inside))
    assert sum(a is not None for a in active) == sum(
        ((times >= p.start_s) & (times < p.start_s + p.duration_s)).sum() for p in drawn
    )
    again = PerturbationSchedule(config, seed=4)
    for t in times:
        again.at(t)
    assert again.drawn == drawn
    assert Perturbation(0.0, 1.0, "turn", 0.5).apply(0.4, 0.1) == (0.4, 0.5)
    assert Perturbation(0.0, 1.0, "slow", 0.25).apply(0.4, 0.1) == (0.1, 0.1)


def test_a_perturbed_expert_leaves_its_path_and_comes_back() -> None:
    rooms = [
        Room("a", "A", "lobby", "room", (0.1, 0.1, 3.0, 4.9)),
        Room("b", "B", "lobby", "room", (15.0, 0.1, 17.9, 4.9)),
    ]
    world = box_world((18, 5), [], rooms, (1.5, 2.5, 0.0))  # one 13 m drive down a hall
    expert = ExpertDriver(world, seed=2, perturbation=PerturbationConfig(gap_s=(3.0, 4.0), slow_share=0.0))
    pose, dt, seconds = np.array(world.spawn, dtype=float), 0.05, 40.0
    poses, off = [], []  # off: how far the robot is from the path the expert follows
    for k in range(round(seconds / dt)):
        cmd = expert.command(round(k * dt * 1e9), tuple(pose))
        off.append(distance_to_polyline(pose[:2], expert.path) if len(expert.path) else 0.0)
        pose[2] += cmd.angular[2] * dt
        pose[:2] += cmd.linear[0] * dt * np.array([math.cos(pose[2]), math.sin(pose[2])])
        poses.append(pose.copy())
    off, t = np.array(off), np.arange(len(off)) * dt
    drawn = [p for p in expert.perturbations.drawn if p.start_s + p.duration_s + 3.0 < seconds]
    assert len(drawn) >= 6
    pushed = [off[(t >= p.start_s) & (t <= p.start_s + p.duration_s + 1.0)].max() for p in drawn]
    back = [off[(t >= p.start_s + p.duration_s + 2.5) & (t <= p.start_s + p.duration_s + 3.0)].max() for p in drawn]
    assert np.median(pushed) > 0.15
    assert np.median(back) < 0.5 * np.median(pushed)
    assert expert.visited_rooms == ["a", "b"]
    gap = obstacle_distance(world, np.array(poses)[:, :2]).min() - RADIUS
    assert gap >= CONFIG.static_margin - world.grid.resolution / 2


def test_a_perturbed_expert_tours_every_room_without_collision(tmp_path: Path) -> None:
    perturbation = PerturbationConfig()
    world, expert, collisions, gap = _simulated_tour("office", tmp_path, dynamic=True, perturbation=perturbation)
    assert len(expert.perturbations.drawn) >= 5
    assert sorted(expert.visited_rooms) == sorted(room.id for room in world.rooms)
    assert collisions == 0
    assert gap >= CONFIG.static_margin - world.grid.resolution / 2


def test_imagined_drive_from_a_robot_facing_a_wall_turns_away_toward_the_goal_and_repeats() -> None:
    """The DAgger label: the expert placed afresh where a learner left the robot, close to a wall and facing it."""
    world = box_world((10, 8), [], [Room("hall", "Hall", "lobby", "room", (0.1, 0.1, 9.9, 7.9))], (1.0, 1.0, math.pi))
    goal = (7.0, 4.0)
    expert = ExpertDriver(world, goals={"goal": goal})
    pose = (0.55, 4.0, math.pi)  # 0.35 m from the west wall's face, facing it, goal behind
    times = 0.25 * np.arange(9)
    future = expert.imagine(0, pose, (0.2, 0.0), None, times)
    assert future.shape == (9, 3) and np.allclose(future[0], pose)
    clearance = obstacle_distance(world, future[:, :2])
    assert clearance.min() >= RADIUS  # it brakes before touching the wall
    assert clearance.min() >= obstacle_distance(world, np.array([pose[:2]]))[0] - 0.05
    heading_to_goal = math.atan2(goal[1] - future[-1, 1], goal[0] - future[-1, 0])
    assert abs((future[-1, 2] - heading_to_goal + math.pi) % (2 * math.pi) - math.pi) < math.pi / 2  # turned round
    assert np.allclose(expert.imagine(0, pose, (0.2, 0.0), None, times), future)  # each label starts afresh
    near_goal = expert.imagine(0, (6.0, 4.0, 0.0), (0.0, 0.0), None, times)
    assert near_goal[-1, 0] > 6.3  # and drives on toward it
