"""Giving way beyond the planner's horizon: havens from a cart that fills a corridor (models.viability)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from models.local_planner import DwaConfig, DwaPlanner
from models.planning import ClearanceMap
from models.tracking import MovingObstacles
from models.viability import survival_map
from schemas.world import GridSpec

RESOLUTION = 0.05
CART_RADIUS = 0.4
ROBOT_RADIUS = DwaConfig().robot_radius
DOOR = (5.0, 6.0)  # x span of the doorway in the corridor's upper wall
WIDTH = 2.2  # the corridor, y from 0 to WIDTH: a cart on its centre line leaves no room beside it


def _building() -> tuple[np.ndarray, GridSpec]:
    """A 20 m corridor along x with one doorway into a 5 x 4 m room above it; 12 x 20 m at 5 cm."""
    spec = GridSpec(RESOLUTION, (-2.0, -4.0), (240, 400))
    rows, cols = np.indices(spec.shape)
    x, y = spec.origin[0] + (cols + 0.5) * RESOLUTION, spec.origin[1] + (rows + 0.5) * RESOLUTION
    room = (y > WIDTH) & (y < WIDTH + 4) & (x > DOOR[0] - 2) & (x < DOOR[1] + 2)
    doorway = (y >= WIDTH) & (y <= WIDTH + 0.2) & (x > DOOR[0]) & (x < DOOR[1])
    free = ((y > 0) & (y < WIDTH)) | (room & ((y > WIDTH + 0.2) | doorway))
    return ~free, spec


def _window(occupied: np.ndarray, spec: GridSpec, xy: np.ndarray) -> ClearanceMap:
    """The robot's 8 x 8 m local grid around `xy`: what its costmap would hold."""
    row, col = spec.world_to_cell(xy) - 80
    window = np.ones((160, 160), dtype=bool)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + 160, occupied.shape[0]), min(col + 160, occupied.shape[1])
    window[r0 - row : r1 - row, c0 - col : c1 - col] = occupied[r0:r1, c0:c1]
    origin = (spec.origin[0] + col * RESOLUTION, spec.origin[1] + row * RESOLUTION)
    return ClearanceMap.from_occupancy(window, GridSpec(RESOLUTION, origin, (160, 160)))


def test_a_cart_coming_down_a_corridor_leaves_havens_only_off_its_way() -> None:
    occupied, spec = _building()
    cart = MovingObstacles(np.array([[8.5, WIDTH / 2]]), np.array([[-0.8, 0.0]]), np.array([CART_RADIUS]))
    viable = survival_map(_window(occupied, spec, np.array([4.0, 1.1])), cart, ROBOT_RADIUS, 1.5)
    until, haven = viable.at(np.array([[5.5, 2.8], [5.5, 1.1], [1.0, 1.1], [7.5, 1.1]]))
    assert haven[0] == pytest.approx(1.5), "the room beyond the doorway is out of the cart's way"
    assert 1.5 < haven[1] < 5.0, "in front of the doorway, the robot reaches it in time"
    assert haven[2] == np.inf and until[2] == pytest.approx(viable.horizon_s), "3 m down the corridor: no way out"
    assert until[3] < 1.5, "where the cart will be in 1.5 s"


def _give_way(config: DwaConfig, cart_speed: float, seconds: float = 10.0) -> tuple[float, np.ndarray]:
    """The robot waits in the corridor, 1 m before the doorway and facing it; a cart comes along the centre line
    from 4.5 m beyond it. Perfect perception, the planner at 10 Hz, the unicycle at 100 Hz. The smallest gap
    (edge to edge) and the robot's last pose."""
    occupied, spec = _building()
    planner, limits = DwaPlanner(config), config.limits
    pose, velocity = np.array([4.0, WIDTH / 2, 0.0]), np.zeros(2)
    cart, cart_velocity = np.array([8.5, WIDTH / 2]), np.array([-cart_speed, 0.0])
    gaps = []
    for _ in range(round(seconds * 10)):
        obstacles = MovingObstacles(cart[None].copy(), cart_velocity[None], np.array([CART_RADIUS]))
        plan = planner.evade(tuple(pose), tuple(velocity), _window(occupied, spec, pose[:2]), obstacles, 0.0)
        for _ in range(10):
            step = 0.01 * np.array([limits.max_accel, limits.max_yaw_accel])
            velocity += np.clip(np.array([plan.v, plan.w]) - velocity, -step, step)
            pose[2] += velocity[1] * 0.01
            pose[:2] += velocity[0] * 0.01 * np.array([math.cos(pose[2]), math.sin(pose[2])])
            cart += cart_velocity * 0.01
            gaps.append(float(np.hypot(*(pose[:2] - cart))) - CART_RADIUS - ROBOT_RADIUS)
    return min(gaps), pose


@pytest.mark.parametrize("cart_speed", [0.5, 0.8])
def test_giving_way_to_a_cart_filling_a_corridor_the_robot_turns_into_the_doorway(cart_speed: float) -> None:
    """Backing away from a faster cart only delays it; within its 1.5 s rollouts the planner cannot tell the two
    apart, the havens beyond them can."""
    gap, pose = _give_way(DwaConfig(), cart_speed)
    assert gap > 0.2 and pose[1] > WIDTH, f"gap {gap:.2f} m, robot at {pose.round(2)}"
    _, blind_pose = _give_way(replace(DwaConfig(), viability=None), cart_speed)
    assert blind_pose[1] < WIDTH, "without havens it stays in the corridor"
