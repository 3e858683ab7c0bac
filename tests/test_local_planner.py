"""The DWA local planner: closed loops on synthetic grids, its statuses, and a drive through the simulated office."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from models.local_planner import DwaConfig, DwaPlanner, LocalPlan
from models.planning import ClearanceMap, GridPlanner, occupancy_grid
from models.safety import SafetyGovernor
from schemas.messages import Twist
from schemas.robot import MOTION_LIMITS, RobotConfig
from schemas.world import World
from sim.expert import ExpertDriver
from sim.simulator import Simulator
from tests.worlds import box_world, drive, local_clearance, obstacle_distance, route_through, two_rooms, wall

CONFIG = DwaConfig()


def global_route(world: World, start: tuple[float, float], goal: tuple[float, float]) -> np.ndarray:
    """The route `global` would send: A* on the whole known map, as subgoals about 2 m apart."""
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    path = GridPlanner(clearance, CONFIG.robot_radius + 0.15).plan(np.array(start), np.array(goal))
    assert path is not None
    return route_through(*map(tuple, path))


def corridor() -> tuple[World, np.ndarray]:
    """An L-shaped corridor 1.4 m wide, followed along the global route."""
    world = box_world((10, 8), [wall(0, 1.4, 8.6, 8)], [], (1.0, 0.7, 0.0))
    return world, global_route(world, (1.0, 0.7), (9.3, 7.0))


def doorway() -> tuple[World, np.ndarray]:
    world = two_rooms()
    return world, global_route(world, world.spawn[:2], (9.0, 1.5))


def u_trap() -> tuple[World, np.ndarray]:
    """A U open towards the robot across a straight route that does not know it: DWA alone drives into it."""
    world = box_world((12, 8), [wall(6, 2.5, 6, 5.5), wall(4, 2.5, 6, 2.5), wall(4, 5.5, 6, 5.5)], [], (2, 4, 0))
    return world, route_through((2, 4), (10, 4))


def obstacle_in_path() -> tuple[World, np.ndarray]:
    world = box_world((12, 2.4), [wall(5.7, 0.9, 6.3, 1.5)], [], (1.0, 1.2, 0.0))
    return world, route_through((1, 1.2), (11, 1.2))


def narrow_gap() -> tuple[World, np.ndarray]:
    """A 0.7 m gap for a 0.5 m robot, off the straight route from start to goal."""
    world = box_world((10, 6), [wall(5, 0, 5, 2.65), wall(5, 3.35, 5, 6)], [], (2.0, 4.5, 0.0))
    return world, route_through((2, 4.5), (8, 1.5))


def closed_box() -> tuple[World, np.ndarray]:
    """A closed box on the straight route: free inside, but the robot can only go round it."""
    box = [wall(5, 2.8, 7.4, 2.8), wall(5, 5.2, 7.4, 5.2), wall(5, 2.8, 5, 5.2), wall(7.4, 2.8, 7.4, 5.2)]
    world = box_world((12, 8), box, [], (1.0, 4.0, 0.0))
    return world, route_through((1, 4), (11, 4))


@pytest.mark.parametrize("scene", [corridor, doorway, u_trap, obstacle_in_path, narrow_gap, closed_box])
def test_reaches_the_goal_without_touching_anything_within_the_limits(scene) -> None:
    world, route = scene()
    run = drive(world, DwaPlanner(), route, world.spawn, seconds=40.0)
    assert run.plans[-1].status == "arrived"
    assert np.hypot(*(run.poses[-1, :2] - route[-1])) < CONFIG.goal_tolerance + 0.05  # it stops from creeping speed
    assert obstacle_distance(world, run.poses[:, :2]).min() > CONFIG.robot_radius
    v, w = run.commands.T
    assert v.max() <= MOTION_LIMITS.max_speed and v.min() >= -MOTION_LIMITS.max_reverse_speed
    assert np.abs(w).max() <= MOTION_LIMITS.max_yaw_rate
    # The margin may be lost a little (the rollout model and the ideal unicycle differ), never the radius.
    assert min(p.min_clearance for p in run.plans) > CONFIG.robot_radius


def test_plan_returns_the_chosen_rollout_among_the_candidates_with_their_costs() -> None:
    world, route = obstacle_in_path()
    clearance = local_clearance(occupancy_grid(world), world.grid, np.array(world.spawn[:2]))
    plan = DwaPlanner().plan(world.spawn, (0.5, 0.0), route, True, clearance)
    steps = round(CONFIG.horizon_s / CONFIG.dt)
    assert plan.status == "ok" and plan.trajectory.shape == (steps, 3)
    assert plan.candidates.shape[1:] == (steps, 2) and 1 < len(plan.candidates) <= CONFIG.candidates_shown + 1
    assert plan.candidate_costs.shape == (len(plan.candidates),)
    assert plan.candidates[plan.chosen] == pytest.approx(plan.trajectory[:, :2])
    assert plan.candidate_costs[plan.chosen] == plan.candidate_costs.min()
    # Rejected rollouts (infinite cost) come too close to the obstacle; the weighed ones keep the margin.
    weighed, rejected = (
        plan.candidates[np.isfinite(plan.candidate_costs)],
        plan.candidates[np.isinf(plan.candidate_costs)],
    )
    assert len(rejected) and clearance.at(weighed).min() >= CONFIG.robot_radius + CONFIG.margin
    assert clearance.at(rejected).min(axis=1).max() < CONFIG.robot_radius + CONFIG.margin
    assert plan.v > 0.0 and plan.trajectory[-1, 0] > world.spawn[0]  # it heads along the route
    assert plan.remaining_m == pytest.approx(10.0, abs=0.3)


def test_reports_blocked_when_it_cannot_stop_before_a_wall() -> None:
    """At full speed 0.45 m from a wall, braking at the acceleration limit needs 0.5 m: nothing is admissible."""
    world = box_world((6, 6), [], [], (0.0, 0.0, 0.0))
    pose = (6.0 - 0.1 - CONFIG.robot_radius - 0.45, 3.0, 0.0)
    clearance = local_clearance(occupancy_grid(world), world.grid, np.array(pose[:2]))
    plan = DwaPlanner().plan(pose, (MOTION_LIMITS.max_speed, 0.0), route_through((1, 3), (5, 3)), False, clearance)
    assert (plan.status, plan.v, plan.w) == ("blocked", 0.0, 0.0)
    slower = DwaPlanner().plan(pose, (0.5, 0.0), route_through((1, 3), (5, 3)), False, clearance)
    assert slower.status == "ok"


def test_arrives_and_stops_within_the_goal_tolerance() -> None:
    world = box_world((6, 6), [], [], (3.0, 3.0, 0.0))
    clearance = local_clearance(occupancy_grid(world), world.grid, np.array([3.0, 3.0]))
    route = route_through((1, 3), (3.2, 3.0))
    plan: LocalPlan = DwaPlanner().plan((3.0, 3.0, 0.0), (0.1, 0.0), route, True, clearance)
    assert (plan.status, plan.v, plan.w) == ("arrived", 0.0, 0.0)
    # The same point is only a waypoint when the route goes on.
    assert DwaPlanner().plan((3.0, 3.0, 0.0), (0.1, 0.0), route, False, clearance).status == "ok"


def test_drives_from_room_to_room_in_the_simulated_office(office_world: Path) -> None:
    """Through the actuation safety layer on MuJoCo, with the true grid cropped to 8 m standing in for the costmap."""
    world = World.load(office_world)
    goal = ExpertDriver(world).goals["r3"]  # a room 12 m of route away, through two doors
    route = global_route(world, world.spawn[:2], goal)
    occupied = occupancy_grid(world)
    sim = Simulator(office_world, RobotConfig(cameras=()))
    planner, governor = DwaPlanner(), SafetyGovernor()
    plan = None
    try:
        for _ in range(400):
            clearance = local_clearance(occupied, world.grid, np.array(sim.pose()[:2]))
            plan = planner.plan(sim.pose(), sim.velocity(), route, True, clearance)
            if plan.status == "arrived":
                break
            governor.on_command(Twist(sim.t_ns, (plan.v, 0.0, 0.0), (0.0, 0.0, plan.w)), sim.t_ns)
            for _ in range(5):
                sim.advance(governor.step(sim.t_ns), 0.02)
        final, collisions = sim.pose(), sim.collisions
    finally:
        sim.close()
    assert plan is not None and plan.status == "arrived"
    assert math.hypot(final[0] - goal[0], final[1] - goal[1]) < CONFIG.goal_tolerance + 0.05
    assert collisions == 0
