"""The expert driver: grid planning, path following, agent avoidance, and room tours in MuJoCo."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from schemas.messages import DynamicObstacles
from schemas.robot import RobotConfig
from schemas.world import WORLD_KINDS, Agent, Box, GridSpec, Room, Wall, World
from sim.expert import ExpertConfig, ExpertDriver, predict_agents, rollout
from sim.planning import ClearanceMap, GridPlanner, astar, path_length, plan_path, resample
from sim.simulator import Simulator
from sim.world import generate_world, occupancy_grid, write_world

RADIUS = ExpertConfig().robot_radius
INFLATION = RADIUS + ExpertConfig().margin
Agents = Callable[[float], DynamicObstacles]


def _wall(x0: float, y0: float, x1: float, y1: float) -> Wall:
    half = (max(abs(x1 - x0) / 2, 0.1), max(abs(y1 - y0) / 2, 0.1), 1.25)
    return Wall(f"wall_{x0}_{y0}_{x1}_{y1}", Box(((x0 + x1) / 2, (y0 + y1) / 2, 1.25), half), "plain")


def _box_world(
    size: tuple[float, float], walls: list[Wall], rooms: list[Room], spawn: tuple[float, float, float]
) -> World:
    """A hand-made single-floor world: an outer shell of the given size plus inner walls."""
    sx, sy = size
    shell = [_wall(0, 0, sx, 0), _wall(0, sy, sx, sy), _wall(0, 0, 0, sy), _wall(sx, 0, sx, sy)]
    res = 0.05
    grid = GridSpec(res, (-0.5, -0.5), (math.ceil((sy + 1) / res), math.ceil((sx + 1) / res)))
    return World(
        "office", 0, "hand-made", (0, 0, sx, sy), 2.5, tuple(rooms), (), tuple(shell + walls), (), (), grid, spawn
    )


def _clearance(world: World, xy: np.ndarray) -> np.ndarray:
    """Exact distance from points (N, 2) to the nearest static obstacle footprint."""
    boxes = np.array([b.footprint for b in world.static_obstacles()])
    dx = np.maximum(np.maximum(boxes[:, 0] - xy[:, :1], xy[:, :1] - boxes[:, 2]), 0.0)
    dy = np.maximum(np.maximum(boxes[:, 1] - xy[:, 1:], xy[:, 1:] - boxes[:, 3]), 0.0)
    return np.hypot(dx, dy).min(axis=1)


def _two_rooms() -> World:
    """Two 6 x 6 m rooms joined by a 1.2 m door, with a wall stub to walk around in the first."""
    walls = [_wall(6, 0, 6, 2.4), _wall(6, 3.6, 6, 6), _wall(3, 2, 3, 6)]
    rooms = [
        Room("west", "West", "lab", "room", (0.1, 0.1, 5.9, 5.9)),
        Room("east", "East", "office", "room", (6.1, 0.1, 11.9, 5.9)),
    ]
    return _box_world((12, 6), walls, rooms, (1.0, 5.0, 0.0))


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


def test_astar_path_keeps_inflation_clearance() -> None:
    world = _two_rooms()
    path = plan_path(occupancy_grid(world), world.grid, (1.0, 5.0), (11.0, 1.0), inflation=INFLATION)
    assert path is not None
    np.testing.assert_allclose(path[[0, -1]], [(1.0, 5.0), (11.0, 1.0)])
    dense = resample(path, 0.02)
    # Grid discretization (half a cell) is the only slack against the exact geometry.
    assert _clearance(world, dense).min() >= INFLATION - world.grid.resolution / 2
    assert np.abs(dense[:, 0] - 6.0).min() < 0.05  # it went through the door, not the walls
    assert abs(dense[np.argmin(np.abs(dense[:, 0] - 6.0)), 1] - 3.0) < 0.1  # ... and through its middle


def test_astar_reports_unreachable_goal() -> None:
    walls = [_wall(6, 0, 6, 6)]
    world = _box_world((12, 6), walls, [], (1.0, 1.0, 0.0))
    assert plan_path(occupancy_grid(world), world.grid, (1.0, 1.0), (11.0, 1.0)) is None
    passable = np.ones((5, 5), dtype=bool)
    passable[:, 2] = False
    assert astar(passable, np.ones((5, 5)), (0, 0), (4, 4)) is None
    np.testing.assert_array_equal(
        astar(passable, np.ones((5, 5)), (0, 0), (4, 0)), [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0]]
    )


def test_smoothing_shortens_the_path_and_keeps_it_clear() -> None:
    world = _two_rooms()
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    planner = GridPlanner(clearance, INFLATION)
    start, goal = planner.snap(np.array([1.0, 5.0])), planner.snap(np.array([11.0, 1.0]))
    raw = planner.spec.cell_to_world(astar(planner.passable, planner.cost, start, goal))
    smooth = planner.plan(np.array([1.0, 5.0]), np.array([11.0, 1.0]))
    assert path_length(smooth) < 0.95 * path_length(raw)
    assert _clearance(world, resample(smooth, 0.02)).min() >= INFLATION - world.grid.resolution / 2
    turns = np.abs(np.diff(np.unwrap(np.arctan2(*np.diff(smooth, axis=0).T[::-1]))))
    assert turns.max() < 0.5  # no sharp corners left at 0.1 m spacing


def test_controller_converges_to_the_goal() -> None:
    world = _box_world((10, 8), [], [Room("hall", "Hall", "lobby", "room", (0.1, 0.1, 9.9, 7.9))], (1.0, 1.0, math.pi))
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
    corridor = _box_world(
        (16, 2.4), [], [Room("end", "End", "exit", "corridor", (14.0, 0.1, 15.9, 2.3))], (1.0, 1.2, 0.0)
    )
    radius, speed = 0.3, 1.0

    def person(t: float) -> DynamicObstacles:
        return DynamicObstacles(round(t * 1e9), ("p0",), (15.0 - speed * t,), (1.2,), (-speed,), (0.0,), (radius,))

    poses, _ = _drive(corridor, ExpertDriver(corridor), 30.0, person)
    t = 0.05 * np.arange(len(poses))
    gap = np.hypot(poses[:, 0] - (15.0 - speed * t), poses[:, 1] - 1.2) - RADIUS - radius
    assert gap.min() > 0.0
    assert _clearance(corridor, poses[:, :2]).min() > RADIUS
    assert poses[-1, 0] > 13.5  # and it still got to the end of the corridor


def _simulated_tour(
    kind: str, out_dir: Path, dynamic: bool, seconds: float = 120.0, dt: float = 0.05
) -> tuple[ExpertDriver, int, float]:
    """Drive the expert in MuJoCo at 20 Hz; returns it, the collision count and the smallest wall gap."""
    world = generate_world(kind, seed=0, dynamic=dynamic)
    write_world(world, out_dir)
    # Driving needs no pictures: without cameras the simulator never renders.
    sim = Simulator(out_dir, RobotConfig(cameras=()), seed=0)
    expert = ExpertDriver(world)
    poses = []
    try:
        for _ in range(round(seconds / dt)):
            cmd = expert.command(sim.t_ns, sim.pose(), sim.obstacles() if world.agents else None)
            sim.advance(cmd, dt)
            poses.append(sim.pose()[:2])
        collisions = sim.collisions
    finally:
        sim.close()
    return expert, collisions, float(_clearance(world, np.array(poses)).min()) - RADIUS


@pytest.mark.parametrize("kind", WORLD_KINDS)
def test_expert_tours_each_kind_without_collision(kind: str, tmp_path: Path) -> None:
    expert, collisions, gap = _simulated_tour(kind, tmp_path, dynamic=False)
    assert collisions == 0
    assert gap > 0.05
    assert len(expert.visited_rooms) >= 5


@pytest.mark.parametrize("kind", WORLD_KINDS)
def test_expert_tours_among_people_and_carts_without_collision(kind: str, tmp_path: Path) -> None:
    expert, collisions, gap = _simulated_tour(kind, tmp_path, dynamic=True)
    assert collisions == 0
    assert gap > 0.0
    assert len(expert.visited_rooms) >= 4
