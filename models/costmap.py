"""The local costmap: a rolling occupancy grid and its ESDF in `odom`, built from the depth cameras.

Each depth image is back-projected on a pixel lattice (every `stride`-th pixel) into base_link, then `odom`:
- Marking: ray ends on a surface between `min_height` (above the floor) and `max_height` (the robot's shell top
  plus a margin) are obstacles. Surfaces higher up are not: the robot passes under table tops and shelves whose
  underside is above `max_height`; their legs and anything standing on the floor are marked.
- Clearing: cells along a ray up to a cell short of its end (a floor hit, an obstacle, or max_range) or, for rays
  that rise above `max_height`, up to where they leave the band, become free. In a pinhole image all pixels of one
  column share an azimuth, so each column clears one horizontal segment: the longest of its rays. A frame clears first,
  then marks, so an obstacle seen in the frame stays marked even if another ray passes over it.
- Moving obstacles: a cell seen free in `min_free_frames` frames, lately, and not hit for `quiet_s`, that is then
  hit is flagged moving (a person or cart walked in), unless it borders a static obstacle that has been there
  for `settle_s`. A cell last hit by something moving needs no quiet time: a person who turns back walks into
  the cells they have just left. A body seen first standing in view is marked static; without the settling time
  its own cells would keep the cells it walks into from ever counting as moving.
  Moving cells fade out `decay_s` after they were last hit, but only where a camera of the latest frame looks:
  the three cameras' fields of view leave strips beside the robot that none sees, and a person who stops there
  stays until the cameras see the place free (session 50). Static cells stay until a ray clears them.

The grid keeps `size_m` square centred on the robot and follows it by whole cells, keeping what was seen.
Unknown cells count as free in the ESDF: the robot starts with an unknown map and must move.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from models.planning import ClearanceMap
from schemas.messages import CameraInfo, DepthImage
from schemas.robot import DEFAULT_ROBOT, RobotConfig, camera_mount
from schemas.topics import camera_frame
from schemas.world import GridSpec

UNKNOWN, FREE, OCCUPIED = -1, 0, 100  # nav_msgs/OccupancyGrid values


@dataclass(frozen=True)
class CostmapConfig:
    size_m: float = 8.0
    resolution: float = 0.05
    min_height: float = 0.05  # m above the floor: lower ray ends are floor (depth noise included)
    height_margin: float = 0.10  # m above RobotConfig.shell_top still counted as obstacle
    stride: int = 4  # pixels between back-projected samples, in both directions
    max_range: float = 4.0  # m from the camera: depth noise grows as z^2, farther ends neither mark nor clear
    decay_s: float = 2.0  # a moving cell not hit for this long fades out
    min_free_frames: int = 3  # free observations since the last hit before a hit counts as something moving in
    moving_window_s: float = 1.0  # the free observations must be this recent
    quiet_s: float = 2.0  # and no hit for this long: a surface seen edge-on flickers between free and hit
    min_moving_cells: int = 3  # smaller clusters of moving cells are noise
    settle_s: float = 0.3  # a static cell occupied this long keeps its neighbours from counting as moving


def matched_costmap(config: CostmapConfig, robot: RobotConfig) -> CostmapConfig:
    """`config` for cameras of `robot`'s width, casting as many rays as it does at the nominal width: tours and
    evaluations render smaller pictures than the robot's cameras take."""
    return replace(config, stride=max(1, round(config.stride * robot.camera_width / DEFAULT_ROBOT.camera_width)))


def back_project(
    depth: DepthImage, info: CameraInfo, base_from_camera: tuple[np.ndarray, np.ndarray], stride: int, max_range: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray ends of every `stride`-th pixel, in base_link, as a (rows, cols, 3) lattice.

    Returns (ends, hit, valid): `hit` where the ray ends on a surface within `max_range`; rays that see farther
    (or +inf, REP-118 "too far") end at `max_range`; `valid` is False for NaN (invalid) pixels.
    """
    image = np.frombuffer(depth.data, dtype="<f4").reshape(depth.height, depth.width)
    z = image[stride // 2 :: stride, stride // 2 :: stride].astype(float)
    fx, cx, fy, cy = info.k[0], info.k[2], info.k[4], info.k[5]
    v, u = np.mgrid[stride // 2 : depth.height : stride, stride // 2 : depth.width : stride]
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones(u.shape)], axis=-1)  # optical z = 1
    length = np.linalg.norm(rays, axis=-1)
    valid = ~np.isnan(z)
    distance = np.where(valid, z * length, np.inf)
    hit = valid & (distance <= max_range)
    scale = np.where(hit, z, max_range / length)
    translation, rotation = base_from_camera
    ends = (rays * scale[..., None]) @ np.asarray(rotation).T + np.asarray(translation)
    return ends, hit, valid


def cluster_discs(clusters: Sequence[np.ndarray], resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres (M, 2) and radii (M,) of clusters of cell centres: from the mean to the farthest cell's far edge."""
    if not clusters:
        return np.zeros((0, 2)), np.zeros(0)
    centres = np.array([cells.mean(axis=0) for cells in clusters])
    radii = np.array([np.hypot(*(cells - centre).T).max() for cells, centre in zip(clusters, centres, strict=True)])
    return centres, radii + 0.5 * resolution


def _shifted(array: np.ndarray, rows: int, cols: int, fill: float) -> np.ndarray:
    """The array moved by (rows, cols) cells: out[r, c] = array[r + rows, c + cols], `fill` where that is outside."""
    out = np.full_like(array, fill)
    n_rows, n_cols = array.shape
    src_r, dst_r = slice(max(rows, 0), n_rows + min(rows, 0)), slice(max(-rows, 0), n_rows + min(-rows, 0))
    src_c, dst_c = slice(max(cols, 0), n_cols + min(cols, 0)), slice(max(-cols, 0), n_cols + min(-cols, 0))
    out[dst_r, dst_c] = array[src_r, src_c]
    return out


class LocalCostmap:
    """Rolling occupancy grid and ESDF in `odom` around the robot, from the depth cameras of `robot`."""

    def __init__(self, config: CostmapConfig = CostmapConfig(), robot: RobotConfig = DEFAULT_ROBOT) -> None:
        self.config = config
        self.max_height = robot.shell_top + config.height_margin
        self.mounts = {}
        for camera in robot.cameras:
            translation, rotation = camera_mount(robot, camera)
            self.mounts[camera_frame(camera)] = (np.asarray(translation), rotation.as_matrix())
        n = round(config.size_m / config.resolution)
        self.shape = (n, n)
        self.corner = (0, 0)  # (row, col) of cell (0, 0) on the odom lattice of `resolution` cells
        self.t = -math.inf  # s, stamp of the newest update
        self.occupied = np.zeros(self.shape, dtype=bool)
        self.moving = np.zeros(self.shape, dtype=bool)
        self.last_hit = np.full(self.shape, -math.inf)
        self.last_free = np.full(self.shape, -math.inf)
        self.occupied_since = np.full(self.shape, math.inf)
        self.free_streak = np.zeros(self.shape, dtype=np.int32)
        self.hit_moving = np.zeros(self.shape, dtype=bool)  # whether the cell's last hit was something moving
        self.in_view = np.zeros(self.shape, dtype=bool)  # cells a camera of the latest frame looks at
        self._centred = False

    @property
    def spec(self) -> GridSpec:
        """The window's grid in `odom`."""
        res = self.config.resolution
        return GridSpec(res, (self.corner[1] * res, self.corner[0] * res), self.shape)

    def update(
        self, t_ns: int, odom_from_base: tuple[float, float, float], depths: Sequence[tuple[DepthImage, CameraInfo]]
    ) -> None:
        """Take one set of depth images taken at `t_ns` with base_link at `odom_from_base` (x, y, yaw)."""
        cfg = self.config
        self.t = t_ns * 1e-9
        x, y, yaw = odom_from_base
        self._recentre(x, y)
        c, s = math.cos(yaw), math.sin(yaw)
        odom_rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        odom_translation = np.array([x, y, 0.0])
        starts, stops, marks, sectors = [], [], [], []
        for depth, info in depths:
            translation, rotation = self.mounts[depth.frame_id]
            ends, hit, valid = back_project(depth, info, (translation, rotation), cfg.stride, cfg.max_range)
            ends = ends @ odom_rotation.T + odom_translation
            origin = odom_rotation @ translation + odom_translation
            height = ends[..., 2]
            marks.append(ends[hit & (height >= cfg.min_height) & (height <= self.max_height), :2])
            # How far along each ray the clearing goes: to its end, short of an obstacle, or out of the band.
            rise = height - origin[2]
            inside = np.where(rise > 0, np.clip((self.max_height - origin[2]) / np.maximum(rise, 1e-9), 0, 1), 1.0)
            horizontal = np.linalg.norm(ends[..., :2] - origin[:2], axis=-1)
            # Stop a cell short: of the surface hit, and of max_range, where a surface may lie just beyond.
            reach = horizontal * inside - cfg.resolution
            reach = np.where(valid, reach, 0.0).max(axis=0)  # one segment per image column
            direction = (ends[0, :, :2] - origin[:2]) / np.maximum(horizontal[0], 1e-9)[:, None]
            starts.append(np.broadcast_to(origin[:2], direction.shape))
            stops.append(origin[:2] + direction * reach[:, None])
            sectors.append((origin[:2], direction[0], direction[-1]))  # image left is base_link +y
        cleared = self._cells_along(np.concatenate(starts), np.concatenate(stops))
        marked = self._cells_of(np.concatenate(marks))
        self._apply(cleared, marked)
        self.in_view = self._in_sectors(sectors)

    def occupancy(self) -> tuple[np.ndarray, GridSpec]:
        """int8 grid (nav_msgs/OccupancyGrid values: -1 unknown, 0 free, 100 occupied), row-major from the origin."""
        grid = np.full(self.shape, UNKNOWN, dtype=np.int8)
        grid[np.isfinite(self.last_hit) | np.isfinite(self.last_free)] = FREE
        grid[self._occupied_now()] = OCCUPIED
        return grid, self.spec

    def clearance(self) -> ClearanceMap:
        """The ESDF of the occupied cells, unknown counting as free; outside the window counts as obstacle."""
        return ClearanceMap.from_occupancy(self._occupied_now(), self.spec)

    def moving_obstacles(self, max_age_s: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
        """Centres (M, 2) in odom and radii (M,) of the clusters of moving cells hit within `max_age_s`.

        A radius reaches from the centre to the farthest cell's far edge. With `max_age_s` of one frame the
        clusters are where the bodies are now, without the cells they left out of view and that have yet to fade.
        """
        return cluster_discs(self.moving_clusters(max_age_s), self.config.resolution)

    def moving_clusters(self, max_age_s: float = math.inf) -> list[np.ndarray]:
        """The cell centres (K, 2) in odom of each cluster of moving cells hit within `max_age_s`."""
        labels, kept = self._moving_clusters(max_age_s)
        cells = np.argwhere(np.isin(labels, kept))
        owner = labels[cells[:, 0], cells[:, 1]]
        order = np.argsort(owner, kind="stable")
        split = np.searchsorted(owner[order], kept[1:]) if len(kept) else []
        return [self.spec.cell_to_world(part) for part in np.split(cells[order], split)] if len(kept) else []

    def distance_to_moving(self, xy: tuple[float, float]) -> float:
        """Metres from a point in odom to the nearest cell of a moving obstacle; inf when none is seen."""
        labels, kept = self._moving_clusters()
        cells = np.argwhere(np.isin(labels, kept))
        if not len(cells):
            return math.inf
        centres = self.spec.cell_to_world(cells)
        return float(np.hypot(*(centres - np.asarray(xy)).T).min())

    def _occupied_now(self) -> np.ndarray:
        if not math.isfinite(self.t):  # no depth yet: nothing seen, nothing occupied
            return self.occupied
        return self.occupied & ~(self.moving & self.in_view & (self.t - self.last_hit > self.config.decay_s))

    def _in_sectors(self, sectors: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        """The cells within `max_range` of a camera's origin and between its outermost columns' directions (left,
        right), for each camera's (origin, left, right) in odom."""
        res, (rows, cols) = self.config.resolution, self.shape
        x = (self.corner[1] + np.arange(cols) + 0.5) * res
        y = (self.corner[0] + np.arange(rows)[:, None] + 0.5) * res
        seen = np.zeros(self.shape, dtype=bool)
        for origin, left, right in sectors:
            dx, dy = x - origin[0], y - origin[1]
            right_of_left = left[0] * dy - left[1] * dx <= 0.0
            left_of_right = right[0] * dy - right[1] * dx >= 0.0
            seen |= right_of_left & left_of_right & (dx**2 + dy**2 <= self.config.max_range**2)
        return seen

    def _moving_clusters(self, max_age_s: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
        """Moving cells (not decayed, hit within `max_age_s`) labelled by cluster, and the labels of clusters of
        `min_moving_cells` or more.

        Cells up to two apart join one cluster: at a few metres the sampled rays hit every other cell of a surface.
        """
        moving = self.moving & self._occupied_now() & (self.last_hit >= self.t - max_age_s)
        near = ndimage.binary_dilation(moving, structure=np.ones((3, 3), dtype=bool))
        labels = ndimage.label(near, structure=np.ones((3, 3)))[0] * moving
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        return labels, np.flatnonzero(sizes >= self.config.min_moving_cells)

    def _recentre(self, x: float, y: float) -> None:
        res, (rows, cols) = self.config.resolution, self.shape
        corner = (math.floor(y / res) - rows // 2, math.floor(x / res) - cols // 2)
        if not self._centred:
            self.corner, self._centred = corner, True
            return
        d_rows, d_cols = corner[0] - self.corner[0], corner[1] - self.corner[1]
        if (d_rows, d_cols) == (0, 0):
            return
        self.corner = corner
        self.occupied = _shifted(self.occupied, d_rows, d_cols, False)
        self.moving = _shifted(self.moving, d_rows, d_cols, False)
        self.last_hit = _shifted(self.last_hit, d_rows, d_cols, -math.inf)
        self.last_free = _shifted(self.last_free, d_rows, d_cols, -math.inf)
        self.occupied_since = _shifted(self.occupied_since, d_rows, d_cols, math.inf)
        self.free_streak = _shifted(self.free_streak, d_rows, d_cols, 0)
        self.hit_moving = _shifted(self.hit_moving, d_rows, d_cols, False)

    def _cells_of(self, xy: np.ndarray) -> np.ndarray:
        """Bool mask of the window cells holding points (N, 2); points outside are dropped."""
        rc = self.spec.world_to_cell(xy)
        inside = (rc >= 0).all(axis=1) & (rc[:, 0] < self.shape[0]) & (rc[:, 1] < self.shape[1])
        mask = np.zeros(self.shape, dtype=bool)
        mask[rc[inside, 0], rc[inside, 1]] = True
        return mask

    def _cells_along(self, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
        """Cells crossed by segments, sampled at half-cell steps, vectorised over all segments at once."""
        step = self.config.resolution / 2
        lengths = np.hypot(*(stops - starts).T)
        counts = np.floor(lengths / step).astype(int) + 1
        segment = np.repeat(np.arange(len(starts)), counts)
        first = np.cumsum(counts) - counts
        along = (np.arange(counts.sum()) - first[segment]) * step
        direction = (stops - starts) / np.maximum(lengths, 1e-9)[:, None]
        return self._cells_of(starts[segment] + direction[segment] * along[:, None])

    def _apply(self, cleared: np.ndarray, marked: np.ndarray) -> None:
        """Clear, then mark (masks over the window), flagging the cells something walked into."""
        cfg = self.config
        # A surface crossing a cell leaves part of it free, so rays clear cells on a wall's face now and then:
        # next to a static obstacle a hit is no evidence of something moving in.
        settled = self.occupied & ~self.moving & (self.t - self.occupied_since >= cfg.settle_s)
        near_static = ndimage.binary_dilation(settled, structure=np.ones((3, 3), dtype=bool))
        free = cleared & ~marked
        self.occupied[free] = self.moving[free] = False
        self.occupied_since[free] = math.inf
        self.last_free[free] = self.t
        self.free_streak[free] += 1
        walked_in = (
            marked
            & ~near_static
            & (self.free_streak >= cfg.min_free_frames)
            & (self.t - self.last_free <= cfg.moving_window_s)
            & ((self.t - self.last_hit >= cfg.quiet_s) | self.hit_moving)
        )
        self.moving[walked_in] = True
        self.occupied_since[marked & ~self.occupied] = self.t
        self.occupied[marked] = True
        self.last_hit[marked] = self.t
        self.hit_moving[marked] = self.moving[marked]
        self.free_streak[marked] = 0
