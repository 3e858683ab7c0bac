"""Hand-made worlds for the planner and expert tests, and the exact clearance they are checked against."""

from __future__ import annotations

import math

import numpy as np

from schemas.world import Box, GridSpec, Room, Wall, World


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
