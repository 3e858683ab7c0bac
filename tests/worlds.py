"""Hand-made worlds for the planner and expert tests, and the exact clearance they are checked against."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from models.local_planner import LocalPlan, LocalPlanner
from models.planning import ClearanceMap, occupancy_grid, resample
from models.recovery import RecoveryCommand, RecoveryManager
from models.tracking import MovingObstacles
from schemas.robot import MotionLimits
from schemas.world import Box, GridSpec, Room, Wall, World
from sim.textures import wall_material


def wall(x0: float, y0: float, x1: float, y1: float) -> Wall:
    """A wall from (x0, y0) to (x1, y1), at least 0.2 m thick."""
    half = (max(abs(x1 - x0) / 2, 0.1), max(abs(y1 - y0) / 2, 0.1), 1.25)
    return Wall(f"wall_{x0}_{y0}_{x1}_{y1}", Box(((x0 + x1) / 2, (y0 + y1) / 2, 1.25), half), "plain")


def box_world(
    size: tuple[float, float], walls: list[Wall], rooms: list[Room], spawn: tuple[float, float, float]
) -> World:
    """A single-floor world: an outer shell of the given size plus inner walls."""
    sx, sy = size
    shell = [wall(0, 0, sx, 0), wall(0, sy, sx, sy), wall(0, 0, 0, sy), wall(sx, 0, sx, sy)]
    res = 0.05
    grid = GridSpec(res, (-0.5, -0.5), (math.ceil((sy + 1) / res), math.ceil((sx + 1) / res)))
    return World(
        "office", 0, "hand-made", (0, 0, sx, sy), 2.5, tuple(rooms), (), tuple(shell + walls), (), (), grid, spawn
    )


def two_rooms() -> World:
    """Two 6 x 6 m rooms joined by a 1.2 m door, with a wall stub to walk around in the first."""
    walls = [wall(6, 0, 6, 2.4), wall(6, 3.6, 6, 6), wall(3, 2, 3, 6)]
    rooms = [
        Room("west", "West", "lab", "room", (0.1, 0.1, 5.9, 5.9)),
        Room("east", "East", "office", "room", (6.1, 0.1, 11.9, 5.9)),
    ]
    return box_world((12, 6), walls, rooms, (1.0, 5.0, 0.0))


def obstacle_distance(world: World, xy: np.ndarray) -> np.ndarray:
    """Exact distance from points (N, 2) to the nearest static obstacle footprint."""
    boxes = np.array([b.footprint for b in world.static_obstacles()])
    dx = np.maximum(np.maximum(boxes[:, 0] - xy[:, :1], xy[:, :1] - boxes[:, 2]), 0.0)
    dy = np.maximum(np.maximum(boxes[:, 1] - xy[:, 1:], xy[:, 1:] - boxes[:, 3]), 0.0)
    return np.hypot(dx, dy).min(axis=1)


def local_clearance(occupied: np.ndarray, spec: GridSpec, centre: np.ndarray, size: float = 8.0) -> ClearanceMap:
    """ESDF of the size x size window of a grid around `centre`: a stand-in for the rolling local costmap.

    Cells of the window outside the grid count as occupied.
    """
    n = round(size / spec.resolution)
    r0, c0 = spec.world_to_cell(np.asarray(centre, dtype=float)) - n // 2
    window = np.ones((n, n), dtype=bool)
    rows, cols = occupied.shape
    src_r, src_c = slice(max(r0, 0), min(r0 + n, rows)), slice(max(c0, 0), min(c0 + n, cols))
    window[src_r.start - r0 : src_r.stop - r0, src_c.start - c0 : src_c.stop - c0] = occupied[src_r, src_c]
    origin = (spec.origin[0] + c0 * spec.resolution, spec.origin[1] + r0 * spec.resolution)
    return ClearanceMap.from_occupancy(window, GridSpec(spec.resolution, origin, (n, n)))


@dataclass
class Drive:
    """What a closed-loop run did: poses (N, 3) and velocities (N, 2) every sub-step, the plans and overrides."""

    poses: np.ndarray
    velocities: np.ndarray
    plans: list[LocalPlan]
    overrides: list[RecoveryCommand]
    commands: np.ndarray  # (M, 2) v, w sent at each planning cycle


def drive(
    world: World,
    planner: LocalPlanner,
    route: np.ndarray,
    start: tuple[float, float, float],
    seconds: float,
    recovery: RecoveryManager | None = None,
    velocity: tuple[float, float] = (0.0, 0.0),
    hz: float = 10.0,
    substeps: int = 5,
) -> Drive:
    """Closed loop on an ideal unicycle, planning at `hz` on the local ESDF of the true grid (map = odom).

    Velocities ramp to each command at the acceleration limits. Stops on arrival or a blocked route.
    """
    limits = planner.config.limits
    occupied = occupancy_grid(world)
    pose, vel = np.array(start, dtype=float), np.array(velocity, dtype=float)
    poses, velocities, plans, overrides, commands = [pose.copy()], [vel.copy()], [], [], []
    dt = 1.0 / hz / substeps
    for k in range(round(seconds * hz)):
        clearance = local_clearance(occupied, world.grid, pose[:2])
        plan = planner.plan(tuple(pose), tuple(vel), route, True, clearance)
        plans.append(plan)
        command = (plan.v, plan.w)
        override = (
            recovery.update(round(k / hz * 1e9), tuple(pose), plan, plan.remaining_m, clearance) if recovery else None
        )
        if override is not None:
            overrides.append(override)
            command = (override.v, override.w)
            if override.behaviour == "replan":
                planner.reset()
        commands.append(command)
        if plan.status == "arrived" or (recovery is not None and recovery.blocked):
            break
        for _ in range(substeps):
            _unicycle_step(pose, vel, command, limits, dt)
            poses.append(pose.copy())
            velocities.append(vel.copy())
    return Drive(np.array(poses), np.array(velocities), plans, overrides, np.array(commands).reshape(-1, 2))


def _unicycle_step(
    pose: np.ndarray, vel: np.ndarray, command: tuple[float, float], limits: MotionLimits, dt: float
) -> None:
    """Ramp the velocity toward the command at the acceleration limits, then move the pose, both in place."""
    vel[0] += np.clip(command[0] - vel[0], -limits.max_accel * dt, limits.max_accel * dt)
    vel[1] += np.clip(command[1] - vel[1], -limits.max_yaw_accel * dt, limits.max_yaw_accel * dt)
    pose[2] += vel[1] * dt
    pose[:2] += vel[0] * dt * np.array([math.cos(pose[2]), math.sin(pose[2])])


CORRIDOR_WIDTH = 2.2  # a cart on the centre line leaves no room beside it
DOORWAY = (5.0, 6.0)  # x span of the doorway in the corridor's upper wall


def corridor_with_doorway() -> tuple[np.ndarray, GridSpec]:
    """Occupancy at 5 cm of a 20 m corridor along x (y from 0 to CORRIDOR_WIDTH) with one doorway into a
    5 x 4 m room above it."""
    spec = GridSpec(0.05, (-2.0, -4.0), (240, 400))
    x, y = spec.cell_to_world(np.stack(np.indices(spec.shape), axis=-1)).transpose(2, 0, 1)
    top = CORRIDOR_WIDTH
    room = (y > top) & (y < top + 4) & (x > DOORWAY[0] - 2) & (x < DOORWAY[1] + 2)
    doorway = (y >= top) & (y <= top + 0.2) & (x > DOORWAY[0]) & (x < DOORWAY[1])
    free = ((y > 0) & (y < top)) | (room & ((y > top + 0.2) | doorway))
    return ~free, spec


@dataclass(frozen=True)
class GivingWay:
    """How a give-way run went: the smallest gap, edge to edge, and the robot's last pose."""

    gap: float
    pose: np.ndarray


def give_way(
    planner: LocalPlanner,
    occupied: np.ndarray,
    spec: GridSpec,
    start: tuple[float, float, float],
    obstacle: tuple[np.ndarray, np.ndarray, float],
    seconds: float,
    speed: float = 0.0,
    robot_radius: float = 0.25,
) -> GivingWay:
    """Closed loop of `planner.evade` (no route) against one obstacle walking at constant velocity, known exactly:
    `obstacle` is its position, velocity and radius. The planner runs at 10 Hz on the local ESDF of the true grid,
    the unicycle at 100 Hz at the acceleration limits; the robot starts at `speed` m/s."""
    limits = planner.config.limits
    pose, vel = np.array(start, dtype=float), np.array([speed, 0.0])
    position, velocity, radius = np.array(obstacle[0], dtype=float), np.asarray(obstacle[1], dtype=float), obstacle[2]
    gaps = []
    for _ in range(round(seconds * 10)):
        tracks = MovingObstacles(position[None].copy(), velocity[None], np.array([radius]))
        plan = planner.evade(tuple(pose), tuple(vel), local_clearance(occupied, spec, pose[:2]), tracks, 0.0)
        for _ in range(10):
            _unicycle_step(pose, vel, (plan.v, plan.w), limits, 0.01)
            position += velocity * 0.01
            gaps.append(float(np.hypot(*(pose[:2] - position))) - radius - robot_radius)
    return GivingWay(min(gaps), pose)


def route_through(*points: tuple[float, float], spacing: float = 2.0) -> np.ndarray:
    """A route as `global` sends it: subgoals about `spacing` apart along straight legs through the points."""
    return resample(np.array(points, dtype=float), spacing)


def simulable(world: World) -> World:
    """The world with every wall in its first room's material, one the simulator's scene (sim.mjcf) textures."""
    material = wall_material(world.rooms[0].id, 0, 0)
    return replace(world, walls=tuple(replace(w, material=material) for w in world.walls))
