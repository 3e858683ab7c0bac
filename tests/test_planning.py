"""Classical grid planning: the occupancy grid of generated worlds, A*, smoothing and clearance."""

from __future__ import annotations

import numpy as np

from models.planning import ClearanceMap, GridPlanner, astar, occupancy_grid, path_length, plan_path, resample
from schemas.world import WORLD_KINDS, World
from sim.expert import ExpertConfig
from sim.world import generate_world
from tests.worlds import box_world, obstacle_distance, two_rooms, wall

INFLATION = ExpertConfig().robot_radius + ExpertConfig().margin


def _cell(world: World, xy: tuple[float, float]) -> tuple[int, int]:
    row, col = world.grid.world_to_cell(np.asarray(xy))
    return int(row), int(col)


def test_occupancy_grid_marks_walls_and_frees_room_centres() -> None:
    for world in (generate_world(kind, seed) for kind in WORLD_KINDS for seed in range(8)):
        grid = occupancy_grid(world)
        assert grid.shape == world.grid.shape and grid.dtype == bool and world.grid.resolution == 0.05
        assert grid[0, 0] and grid[-1, -1]  # outside the building
        assert all(grid[_cell(world, w.box.center[:2])] for w in world.walls)
        assert all(grid[_cell(world, lm.box.center[:2])] for lm in world.landmarks if lm.collides)
        assert not any(grid[_cell(world, r.center)] for r in world.rooms)
        assert not any(grid[_cell(world, d.center)] for d in world.doors)


def test_astar_path_keeps_inflation_clearance() -> None:
    world = two_rooms()
    path = plan_path(occupancy_grid(world), world.grid, (1.0, 5.0), (11.0, 1.0), inflation=INFLATION)
    assert path is not None
    np.testing.assert_allclose(path[[0, -1]], [(1.0, 5.0), (11.0, 1.0)])
    dense = resample(path, 0.02)
    # Grid discretization (half a cell) is the only slack against the exact geometry.
    assert obstacle_distance(world, dense).min() >= INFLATION - world.grid.resolution / 2
    assert np.abs(dense[:, 0] - 6.0).min() < 0.05  # it went through the door, not the walls
    assert abs(dense[np.argmin(np.abs(dense[:, 0] - 6.0)), 1] - 3.0) < 0.1  # ... and through its middle


def test_astar_reports_unreachable_goal() -> None:
    world = box_world((12, 6), [wall(6, 0, 6, 6)], [], (1.0, 1.0, 0.0))
    assert plan_path(occupancy_grid(world), world.grid, (1.0, 1.0), (11.0, 1.0)) is None
    passable = np.ones((5, 5), dtype=bool)
    passable[:, 2] = False
    assert astar(passable, np.ones((5, 5)), (0, 0), (4, 4)) is None
    np.testing.assert_array_equal(
        astar(passable, np.ones((5, 5)), (0, 0), (4, 0)), [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0]]
    )


def test_smoothing_shortens_the_path_and_keeps_it_clear() -> None:
    world = two_rooms()
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    planner = GridPlanner(clearance, INFLATION)
    start, goal = planner.snap(np.array([1.0, 5.0])), planner.snap(np.array([11.0, 1.0]))
    raw = planner.spec.cell_to_world(astar(planner.passable, planner.cost, start, goal))
    smooth = planner.plan(np.array([1.0, 5.0]), np.array([11.0, 1.0]))
    assert path_length(smooth) < 0.95 * path_length(raw)
    assert obstacle_distance(world, resample(smooth, 0.02)).min() >= INFLATION - world.grid.resolution / 2
    turns = np.abs(np.diff(np.unwrap(np.arctan2(*np.diff(smooth, axis=0).T[::-1]))))
    assert turns.max() < 0.5  # no sharp corners left at 0.1 m spacing
