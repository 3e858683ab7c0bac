"""How long the robot can stay out of the moving obstacles' way, from each place on the local grid.

A local planner weighs rollouts of 1.5 s. Giving way to a cart that fills a corridor takes longer than that: the
robot must reach a doorway or a side room before the cart arrives, and a rollout that backs away along the
corridor looks as good as one that turns into the doorway until it is too late. :func:`survival_map` looks
further: on a coarse copy of the local grid it steps back in time from `horizon_s`, and marks for each cell the
last instant up to which the robot, starting there at `start_s`, can keep clear of the walls and of every
obstacle's two predictions (walking on at its velocity, and stopped where it is now), and the first instant at
which it can stand in a haven: out of every obstacle's way for good. Backing away along a corridor from a faster
cart keeps clear for any finite horizon, and then the cart arrives; a doorway is a haven. The robot is modelled as
moving one cell per step in any direction (0.4 m/s), how fast it gives way once it has turned: the rollout up to
`start_s` is what models its heading and accelerations.

Each backward step is one grey dilation or erosion (a max or min filter over the cell's neighbours, the cell
itself included for standing still), so the whole map costs a few milliseconds on the 8 m grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.planning import ClearanceMap
from models.tracking import MovingObstacles
from schemas.world import GridSpec


@dataclass(frozen=True)
class ViabilityConfig:
    horizon_s: float = 5.0  # how far ahead the robot's moves are followed
    # At the horizon the robot must stand out of each obstacle's way for this long as it walks on: backing away
    # along a corridor from a faster cart lasts any finite horizon, and then the cart arrives.
    terminal_s: float = 10.0
    step_s: float = 0.25
    resolution: float = 0.1  # m: one cell per step is 0.4 m/s, diagonals 0.57 m/s
    wall_margin: float = 0.0  # beyond the robot's radius, to the walls
    obstacle_margin: float = 0.2  # beyond both radii, to the obstacles' predictions


DEFAULT_VIABILITY = ViabilityConfig()


@dataclass(frozen=True)
class SurvivalMap:
    """For each cell of a coarse grid, what the robot starting there at `start_s` can do (times in s from now):

    - `until_s`: the time up to which it keeps clear (`start_s` - step where the cell is not clear then,
      `horizon_s` where it lasts);
    - `haven_s`: the earliest time it can stand in a haven, a cell out of every obstacle's way for good (clear of
      where each stands now and of its walk on for `terminal_s`), keeping clear until then; inf where it cannot
      by `horizon_s`.
    """

    spec: GridSpec
    until_s: np.ndarray  # (rows, cols)
    haven_s: np.ndarray  # (rows, cols)
    start_s: float
    horizon_s: float

    def at(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`until_s` and `haven_s` at world points (..., 2); outside the grid, the robot is taken not to survive."""
        rc = self.spec.world_to_cell(xy)
        rows, cols = self.spec.shape
        inside = (rc[..., 0] >= 0) & (rc[..., 0] < rows) & (rc[..., 1] >= 0) & (rc[..., 1] < cols)
        r, c = np.clip(rc[..., 0], 0, rows - 1), np.clip(rc[..., 1], 0, cols - 1)
        return np.where(inside, self.until_s[r, c], self.start_s), np.where(inside, self.haven_s[r, c], np.inf)


def survival_map(
    clearance: ClearanceMap,
    obstacles: MovingObstacles,
    robot_radius: float,
    start_s: float,
    config: ViabilityConfig = DEFAULT_VIABILITY,
) -> SurvivalMap:
    """The :class:`SurvivalMap` of the robot starting anywhere on `clearance`'s grid at `start_s` (see the module)."""
    spec = clearance.spec
    factor = max(round(config.resolution / spec.resolution), 1)
    rows, cols = spec.shape[0] // factor, spec.shape[1] // factor
    # Each coarse cell is as clear as its least clear fine cell.
    blocks = clearance.distance[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor)
    walls_clear = blocks.min(axis=(1, 3)) >= robot_radius + config.wall_margin
    coarse = GridSpec(spec.resolution * factor, spec.origin, (rows, cols))
    xs = coarse.origin[0] + (np.arange(cols) + 0.5) * coarse.resolution  # cell centres along x, then y
    ys = coarse.origin[1] + (np.arange(rows) + 0.5) * coarse.resolution

    steps = np.arange(start_s, config.horizon_s + 1e-9, config.step_s)
    reach = robot_radius + obstacles.radius + config.obstacle_margin  # (N,)
    # Clear of where each obstacle stands now: the same at every step.
    off_spots = walls_clear.copy()
    for (px, py), r in zip(obstacles.position, reach, strict=True):
        off_spots &= (xs[None, :] - px) ** 2 + (ys[:, None] - py) ** 2 >= r**2

    def clear_at(t: float, walked_s: float = 0.0) -> np.ndarray:
        """Clear of the walls, of where each obstacle stands now, and of its walk from t to t + walked_s."""
        clear = off_spots.copy()
        starts, walks = obstacles.at(np.array([t]))[:, 0], obstacles.velocity * walked_s
        for (sx, sy), (wx, wy), r in zip(starts, walks, reach, strict=True):
            dx, dy = xs[None, :] - sx, ys[:, None] - sy
            # Nearest point of the walk (a segment; a point when walked_s is 0), separably over rows and columns.
            along = np.clip((dx * wx + dy * wy) / max(wx * wx + wy * wy, 1e-12), 0.0, 1.0)
            clear &= (dx - along * wx) ** 2 + (dy - along * wy) ** 2 >= r**2
        return clear

    until = np.full(walls_clear.shape, steps[-1])
    haven = np.full(walls_clear.shape, np.inf)
    for t in steps[::-1]:
        clear, safe_for_good = clear_at(t), clear_at(t, config.terminal_s)
        if t < steps[-1]:  # one step on to any neighbour, or standing still
            until = ndimage.maximum_filter(until, size=3, mode="nearest")
            haven = ndimage.minimum_filter(haven, size=3, mode="nearest")
        until = np.where(clear, until, t - config.step_s)
        haven = np.where(safe_for_good, t, np.where(clear, haven, np.inf))
    return SurvivalMap(coarse, until, haven, float(steps[0]), float(steps[-1]))
