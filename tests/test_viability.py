"""Giving way beyond the planner's horizon: havens from a cart that fills a corridor (models.viability)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.local_planner import DwaConfig, DwaPlanner
from models.tracking import MovingObstacles
from models.viability import survival_map
from tests.worlds import CORRIDOR_WIDTH, corridor_with_doorway, give_way, local_clearance

CART_RADIUS = 0.4
ROBOT_RADIUS = DwaConfig().robot_radius


def test_a_cart_coming_down_a_corridor_leaves_havens_only_off_its_way() -> None:
    occupied, spec = corridor_with_doorway()
    cart = MovingObstacles(np.array([[8.5, CORRIDOR_WIDTH / 2]]), np.array([[-0.8, 0.0]]), np.array([CART_RADIUS]))
    viable = survival_map(local_clearance(occupied, spec, np.array([4.0, 1.1])), cart, ROBOT_RADIUS, 1.5)
    until, haven = viable.at(np.array([[5.5, 2.8], [5.5, 1.1], [1.0, 1.1], [7.5, 1.1]]))
    assert haven[0] == pytest.approx(1.5), "the room beyond the doorway is out of the cart's way"
    assert 1.5 < haven[1] < 5.0, "in front of the doorway, the robot reaches it in time"
    assert haven[2] == np.inf and until[2] == pytest.approx(viable.horizon_s), "3 m down the corridor: no way out"
    assert until[3] < 1.5, "where the cart will be in 1.5 s"


@pytest.mark.parametrize("cart_speed", [0.5, 0.8])
def test_giving_way_to_a_cart_filling_a_corridor_the_robot_turns_into_the_doorway(cart_speed: float) -> None:
    """The robot waits in the corridor, 1 m before the doorway and facing it; a cart comes along the centre line from
    4.5 m beyond it. Backing away from a faster cart only delays it; within its 1.5 s rollouts the planner cannot
    tell the two apart, the havens beyond them can."""
    occupied, spec = corridor_with_doorway()
    middle = CORRIDOR_WIDTH / 2
    cart = (np.array([8.5, middle]), np.array([-cart_speed, 0.0]), CART_RADIUS)
    run = give_way(DwaPlanner(), occupied, spec, (4.0, middle, 0.0), cart, 10.0)
    assert run.gap > 0.2 and run.pose[1] > CORRIDOR_WIDTH, f"gap {run.gap:.2f} m, robot at {run.pose.round(2)}"
    blind = give_way(DwaPlanner(replace(DwaConfig(), viability=None)), occupied, spec, (4.0, middle, 0.0), cart, 10.0)
    assert blind.pose[1] < CORRIDOR_WIDTH, "without havens it stays in the corridor"
