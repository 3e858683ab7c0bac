"""Recoveries: the progress monitor, the back-up / spin / replan sequence, and a route declared blocked."""

from __future__ import annotations

import numpy as np

from models.local_planner import DwaPlanner, LocalPlan
from models.planning import ClearanceMap, GridPlanner, occupancy_grid
from models.recovery import RecoveryConfig, RecoveryManager
from schemas.robot import DEFAULT_ROBOT
from tests.worlds import box_world, drive, local_clearance, obstacle_distance, route_through, wall

CONFIG = RecoveryConfig()
SECOND = 1_000_000_000


def _plan(status: str) -> LocalPlan:
    return LocalPlan(0.0, 0.0, np.zeros((1, 3)), np.empty((0, 1, 2)), status, 1.0, 5.0)


def _open_room() -> ClearanceMap:
    world = box_world((8, 8), [], [], (4.0, 4.0, 0.0))
    return local_clearance(occupancy_grid(world), world.grid, np.array([4.0, 4.0]))


def test_progress_keeps_recoveries_away() -> None:
    manager, clearance = RecoveryManager(), _open_room()
    for k in range(200):  # 20 s at 10 Hz, the distance to go falling by 10 cm a second
        assert manager.update(k * SECOND // 10, (4.0, 4.0, 0.0), _plan("ok"), 5.0 - 0.01 * k, clearance) is None
    assert manager.events == []


def test_a_blocked_planner_starts_back_up_spin_and_replan() -> None:
    """The robot stands still while the sequence runs, so the back-up runs into its timeout."""
    manager, clearance = RecoveryManager(), _open_room()
    behaviours = []
    for k in range(120):
        command = manager.update(k * SECOND // 10, (4.0, 4.0, 0.0), _plan("blocked"), 5.0, clearance)
        behaviours.append(None if command is None else command.behaviour)
    first = behaviours.index("back_up")
    # Recovery starts once "blocked" has lasted blocked_timeout_s, then backs up for behaviour_timeout_s.
    assert first == round(CONFIG.blocked_timeout_s * 10) + 1
    backing = round(CONFIG.behaviour_timeout_s * 10)
    assert set(behaviours[first : first + backing - 1]) == {"back_up"}
    assert "spin" in behaviours[first + backing - 1 : first + backing + 2]
    assert [e.name for e in manager.events][:4] == ["recovery", "back_up", "spin", "replan"]


def test_no_back_up_into_a_wall_behind() -> None:
    world = box_world((8, 8), [], [], (0.0, 0.0, 0.0))
    pose = (0.1 + DEFAULT_ROBOT.radius + 0.1, 4.0, 0.0)  # 10 cm of room behind, facing away from the wall
    clearance = local_clearance(occupancy_grid(world), world.grid, np.array(pose[:2]))
    manager = RecoveryManager()
    commands = [manager.update(k * SECOND // 10, pose, _plan("blocked"), 5.0, clearance) for k in range(20)]
    started = [c for c in commands if c is not None]
    assert started[0].behaviour == "spin" and started[0].v == 0.0
    assert [e.name for e in manager.events] == ["recovery", "back_up_skipped", "spin"]


def test_dead_end_is_reported_blocked_and_the_new_route_arrives() -> None:
    """A wall the global map does not know closes the lower of two corridors; the route runs through it.

    Recoveries start at the wall, repeat there, and the route is declared blocked. Routed again with the wall
    known (as `global` would after closing the edge), the robot goes round through the upper corridor.
    """
    divider = wall(2, 2.5, 10, 2.5)
    world = box_world((12, 5), [divider, wall(7, 0, 7, 2.5)], [], (1.0, 1.25, 0.0))
    goal = np.array([11.0, 1.25])
    manager = RecoveryManager()
    stuck = drive(world, DwaPlanner(), route_through((1, 1.25), goal), world.spawn, 60.0, recovery=manager)
    names = [e.name for e in manager.events]
    assert names == ["recovery", "back_up", "spin", "replan"] * CONFIG.attempts + ["route_blocked"]
    assert manager.blocked and 5.0 < manager.blocked_at[0] < 7.0 - 0.1 - DEFAULT_ROBOT.radius
    assert {o.behaviour for o in stuck.overrides} == {"back_up", "spin", "replan", "route_blocked"}
    assert stuck.velocities[:, 0].min() < 0.0  # it did back up

    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    detour = GridPlanner(clearance, DEFAULT_ROBOT.radius + 0.15).plan(stuck.poses[-1, :2], goal)
    manager.reset()
    around = drive(
        world,
        DwaPlanner(),
        route_through(*map(tuple, detour)),
        tuple(stuck.poses[-1]),
        60.0,
        manager,
        tuple(stuck.velocities[-1]),
    )
    assert around.plans[-1].status == "arrived" and not manager.blocked
    poses = np.vstack([stuck.poses, around.poses])
    assert obstacle_distance(world, poses[:, :2]).min() > DEFAULT_ROBOT.radius
