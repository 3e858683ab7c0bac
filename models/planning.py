"""Classical grid planning: the occupancy grid of a world, ESDF, A*, path smoothing and tour ordering.

Everything works in the `map` frame with the cell convention of :class:`schemas.world.GridSpec`. The expert driver
plans on it with ground truth; the navigation stack's local planner will fall back on it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from schemas.world import GridSpec, World

_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _cells(grid: GridSpec, rect: tuple[float, float, float, float]) -> tuple[slice, slice]:
    """Grid slices of the cells a rectangle overlaps (cells it merely touches are left out)."""
    ox, oy = grid.origin
    c0, c1 = math.floor((rect[0] - ox) / grid.resolution + 1e-6), math.ceil((rect[2] - ox) / grid.resolution - 1e-6)
    r0, r1 = math.floor((rect[1] - oy) / grid.resolution + 1e-6), math.ceil((rect[3] - oy) / grid.resolution - 1e-6)
    return slice(max(r0, 0), max(r1, 0)), slice(max(c0, 0), max(c1, 0))


def occupancy_grid(world: World) -> np.ndarray:
    """Bool (rows, cols) grid over world.grid; True where walls, colliding landmarks or the outside are."""
    grid = np.ones(world.grid.shape, dtype=bool)
    grid[_cells(world.grid, world.bounds)] = False
    for box in world.static_obstacles():
        grid[_cells(world.grid, box.footprint)] = True
    return grid


@dataclass(frozen=True)
class ClearanceMap:
    """An unsigned ESDF: metres from each cell centre to the nearest obstacle, 0 inside obstacles."""

    spec: GridSpec
    distance: np.ndarray

    @classmethod
    def from_occupancy(cls, occupied: np.ndarray, spec: GridSpec) -> ClearanceMap:
        """ESDF of a boolean occupancy grid; everything outside the grid counts as obstacle."""
        padded = np.pad(np.asarray(occupied, dtype=bool), 1, constant_values=True)
        metres = ndimage.distance_transform_edt(~padded)[1:-1, 1:-1] * spec.resolution
        # EDT measures centre to centre; the obstacle surface is about half a cell closer.
        return cls(spec, np.where(occupied, 0.0, np.maximum(metres - spec.resolution / 2, 0.0)))

    @cached_property
    def _padded(self) -> np.ndarray:
        return np.pad(self.distance, 1)

    def at(self, xy: np.ndarray) -> np.ndarray:
        """Clearance at world points (..., 2), bilinear between cell centres, falling to 0 outside the grid."""
        xy = np.asarray(xy, dtype=float)
        rows, cols = self.distance.shape
        # Continuous (col, row) coordinates in the padded grid, whose border ring is obstacle.
        fc = (xy[..., 0] - self.spec.origin[0]) / self.spec.resolution + 0.5
        fr = (xy[..., 1] - self.spec.origin[1]) / self.spec.resolution + 0.5
        fc, fr = np.clip(fc, 0.0, cols + 1.0), np.clip(fr, 0.0, rows + 1.0)
        c0 = np.minimum(np.floor(fc).astype(int), cols)
        r0 = np.minimum(np.floor(fr).astype(int), rows)
        wc, wr = fc - c0, fr - r0
        d = self._padded
        top = d[r0, c0] * (1 - wc) + d[r0, c0 + 1] * wc
        bottom = d[r0 + 1, c0] * (1 - wc) + d[r0 + 1, c0 + 1] * wc
        return top * (1 - wr) + bottom * wr

    def segment_clearance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Smallest clearance along the straight segment a -> b."""
        n = max(2, int(np.ceil(np.hypot(*(b - a)) / (self.spec.resolution / 2))) + 1)
        return float(self.at(np.linspace(a, b, n)).min())


def astar(passable: np.ndarray, cost: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> np.ndarray | None:
    """8-connected A* between (row, col) cells; returns the (N, 2) cell path, or None if unreachable.

    A step costs its length times the mean cost of the two cells; costs must be >= 1 for the
    octile heuristic to stay admissible.
    """
    padded = np.pad(np.asarray(passable, dtype=bool), 1, constant_values=False)
    rows, cols = padded.shape
    free = padded.ravel().tolist()
    cell_cost = np.pad(np.asarray(cost, dtype=float), 1, constant_values=np.inf).ravel().tolist()
    src = (start[0] + 1) * cols + start[1] + 1
    dst = (goal[0] + 1) * cols + goal[1] + 1
    if not (free[src] and free[dst]):
        return None
    steps = [(dr * cols + dc, math.hypot(dr, dc)) for dr, dc in _NEIGHBOURS]
    goal_r, goal_c = divmod(dst, cols)
    diag = math.sqrt(2) - 2
    g = [math.inf] * (rows * cols)
    parent = [-1] * (rows * cols)
    closed = bytearray(rows * cols)
    g[src] = 0.0
    heap = [(0.0, src)]
    while heap:
        _, cur = heapq.heappop(heap)
        if cur == dst:
            break
        if closed[cur]:
            continue
        closed[cur] = 1
        g_cur, c_cur = g[cur], cell_cost[cur]
        for offset, length in steps:
            nb = cur + offset
            if closed[nb] or not free[nb]:
                continue
            g_nb = g_cur + length * 0.5 * (c_cur + cell_cost[nb])
            if g_nb < g[nb]:
                g[nb] = g_nb
                parent[nb] = cur
                r, c = divmod(nb, cols)
                dr, dc = abs(r - goal_r), abs(c - goal_c)
                heapq.heappush(heap, (g_nb + dr + dc + diag * min(dr, dc), nb))
    else:
        return None
    cells = [dst]
    while cells[-1] != src:
        cells.append(parent[cells[-1]])
    flat = np.array(cells[::-1])
    return np.stack([flat // cols - 1, flat % cols - 1], axis=1)


def resample(path: np.ndarray, spacing: float) -> np.ndarray:
    """Points every `spacing` metres along a polyline, endpoints kept."""
    seg = np.hypot(*np.diff(path, axis=0).T)
    keep = np.concatenate([[True], seg > 1e-9])
    path = path[keep]
    s = np.concatenate([[0.0], np.cumsum(seg[seg > 1e-9])])
    if s[-1] == 0.0:
        return path[:1].copy()
    samples = np.linspace(0.0, s[-1], max(2, int(np.ceil(s[-1] / spacing)) + 1))
    return np.stack([np.interp(samples, s, path[:, 0]), np.interp(samples, s, path[:, 1])], axis=1)


def path_length(path: np.ndarray) -> float:
    """Length of a polyline in metres."""
    return float(np.hypot(*np.diff(path, axis=0).T).sum())


def shortcut(path: np.ndarray, clearance: ClearanceMap, min_clearance: float) -> np.ndarray:
    """Line-of-sight shortcutting that never lowers clearance below min(min_clearance, the original's).

    Bounding the shortcut by the original clearance keeps a path that A* centred in a door centred.
    """
    original = clearance.at(path)
    keep = [0]
    i = 0
    while i < len(path) - 1:
        j = i + 1
        floor = min(original[i], original[j])
        while j + 1 < len(path):
            floor_next = min(floor, original[j + 1])
            if clearance.segment_clearance(path[i], path[j + 1]) < min(min_clearance, floor_next) - 1e-9:
                break
            floor, j = floor_next, j + 1
        keep.append(j)
        i = j
    return path[keep]


def smooth(
    path: np.ndarray, clearance: ClearanceMap, min_clearance: float, spacing: float = 0.1, sigma: float = 2.0
) -> np.ndarray:
    """Gaussian smoothing of a resampled path; points that would lose clearance keep their place."""
    dense = resample(path, spacing)
    if len(dense) < 3:
        return dense
    blurred = ndimage.gaussian_filter1d(dense, sigma, axis=0, mode="nearest")
    blurred[[0, -1]] = dense[[0, -1]]
    safe = clearance.at(blurred) >= np.minimum(min_clearance, clearance.at(dense))
    return np.where(safe[:, None], blurred, dense)


class GridPlanner:
    """A* and geodesic distances on an inflated grid whose cost rises near obstacles.

    Cells with clearance below `inflation` are impassable; between `inflation` and `preferred`
    the cost grows quadratically, so paths keep to the middle of corridors and doors.
    """

    def __init__(
        self,
        clearance: ClearanceMap,
        inflation: float,
        preferred: float = 1.0,
        clearance_weight: float = 4.0,
        resolution: float = 0.1,
        avoid: np.ndarray | None = None,
        avoid_weight: float = 10.0,
    ):
        """`avoid` marks fine-grid cells that are passable but expensive, e.g. where people walk."""
        self.clearance = clearance
        self.inflation = inflation
        self.preferred = max(preferred, inflation + clearance.spec.resolution)
        fine = clearance.spec
        factor = max(1, round(resolution / fine.resolution))
        # Min-pooling keeps the coarse grid conservative: a coarse cell is as close to walls as its worst part.
        self.coarse = _pool(clearance.distance, factor, 0.0, np.min)
        self.spec = GridSpec(fine.resolution * factor, fine.origin, self.coarse.shape)
        self.passable = self.coarse >= inflation
        closeness = np.clip((self.preferred - self.coarse) / (self.preferred - inflation), 0.0, 1.0)
        self.cost = 1.0 + clearance_weight * closeness**2
        self.avoid = np.zeros(self.coarse.shape, dtype=bool) if avoid is None else _pool(avoid, factor, 0.0, np.max) > 0
        self.cost += avoid_weight * self.avoid
        _, nearest = ndimage.distance_transform_edt(~self.passable, return_indices=True)
        self._nearest_passable = nearest
        self._graph: sparse.csr_matrix | None = None

    def snap(self, xy: np.ndarray) -> tuple[int, int] | None:
        """The passable planning cell nearest to a world point, or None off the grid / with no free cell."""
        rc = self.spec.world_to_cell(np.asarray(xy, dtype=float))
        if not (0 <= rc[0] < self.spec.shape[0] and 0 <= rc[1] < self.spec.shape[1]) or not self.passable.any():
            return None
        return int(self._nearest_passable[0][rc[0], rc[1]]), int(self._nearest_passable[1][rc[0], rc[1]])

    def plan(self, start_xy: np.ndarray, goal_xy: np.ndarray, spacing: float = 0.1) -> np.ndarray | None:
        """Smoothed world-frame path (N, 2) from start to goal, or None if the goal is unreachable.

        A start or goal inside the inflation zone is joined by a straight line to its nearest free cell.
        """
        start_xy, goal_xy = np.asarray(start_xy, dtype=float), np.asarray(goal_xy, dtype=float)
        start, goal = self.snap(start_xy), self.snap(goal_xy)
        if start is None or goal is None:
            return None
        cells = astar(self.passable, self.cost, start, goal)
        if cells is None:
            return None
        points = self.spec.cell_to_world(cells)
        if self.clearance.at(goal_xy) >= self.inflation:
            points[-1] = goal_xy
        points = np.vstack([start_xy, points]) if np.hypot(*(points[0] - start_xy)) > 1e-6 else points
        desired = (self.inflation + self.preferred) / 2
        return smooth(shortcut(points, self.clearance, desired), self.clearance, self.inflation, spacing)

    def distances(self, points: np.ndarray) -> np.ndarray:
        """(N, N) path costs between world points (inf where unreachable), by Dijkstra on the same costs."""
        cells = [self.snap(p) for p in points]
        valid = [i for i, c in enumerate(cells) if c is not None]
        out = np.full((len(points), len(points)), np.inf)
        if not valid:
            return out
        index = np.array([cells[i][0] * self.spec.shape[1] + cells[i][1] for i in valid])
        costs = csgraph.dijkstra(self._cost_graph(), directed=False, indices=index)[:, index]
        out[np.ix_(valid, valid)] = costs * self.spec.resolution
        return out

    def _cost_graph(self) -> sparse.csr_matrix:
        if self._graph is None:
            rows, cols = self.spec.shape
            ids = np.arange(rows * cols).reshape(rows, cols)
            src, dst, weight = [], [], []
            # Half of the 8 directions suffices for an undirected graph.
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                a = (slice(0, rows - dr), slice(max(0, -dc), cols - max(0, dc)))
                b = (slice(dr, rows), slice(max(0, dc), cols - max(0, -dc)))
                both = self.passable[a] & self.passable[b]
                src.append(ids[a][both])
                dst.append(ids[b][both])
                weight.append(math.hypot(dr, dc) * 0.5 * (self.cost[a][both] + self.cost[b][both]))
            n = rows * cols
            self._graph = sparse.csr_matrix(
                (np.concatenate(weight), (np.concatenate(src), np.concatenate(dst))), shape=(n, n)
            )
        return self._graph


def _pool(grid: np.ndarray, factor: int, fill: float, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """Reduce factor x factor blocks of a grid, padding the ragged edge with `fill`."""
    rows, cols = -(-np.array(grid.shape) // factor)
    blocks = np.full((rows * factor, cols * factor), fill, dtype=float)
    blocks[: grid.shape[0], : grid.shape[1]] = grid
    return reduce(blocks.reshape(rows, factor, cols, factor), axis=(1, 3))


def distance_to_polyline(xy: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance from points (..., 2) to the nearest segment of a polyline (N, 2)."""
    out = np.full(xy.shape[:-1], np.inf)
    for a, b in itertools.pairwise(polyline):
        ab = b - a
        u = np.clip(((xy - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        out = np.minimum(out, np.hypot(*np.moveaxis(xy - a - u[..., None] * ab, -1, 0)))
    return out


def plan_path(
    grid: np.ndarray,
    spec: GridSpec,
    start_xy: np.ndarray,
    goal_xy: np.ndarray,
    inflation: float = 0.4,
    resolution: float = 0.1,
) -> np.ndarray | None:
    """One-shot planning on an occupancy grid: a smoothed path (N, 2) keeping `inflation` clearance, or None."""
    clearance = ClearanceMap.from_occupancy(grid, spec)
    return GridPlanner(clearance, inflation, resolution=resolution).plan(start_xy, goal_xy)


def order_tour(costs: np.ndarray) -> list[int]:
    """Visiting order of nodes 1..N-1 starting from node 0: greedy nearest neighbour, then 2-opt.

    Unreachable nodes (inf cost from node 0) are left out.
    """
    todo = {i for i in range(1, len(costs)) if np.isfinite(costs[0, i])}
    order, cur = [], 0
    while todo:
        cur = min(todo, key=lambda j: costs[cur, j])
        order.append(cur)
        todo.remove(cur)

    def length(seq: list[int]) -> float:
        nodes = [0, *seq]
        return float(sum(costs[a, b] for a, b in itertools.pairwise(nodes)))

    improved = True
    while improved:
        improved = False
        for i in range(len(order) - 1):
            for j in range(i + 1, len(order)):
                candidate = order[:i] + order[i : j + 1][::-1] + order[j + 1 :]
                if length(candidate) < length(order) - 1e-9:
                    order, improved = candidate, True
    return order
