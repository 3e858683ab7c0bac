"""Tracks of moving obstacles (people, carts) in `odom`, from the clusters of moving cells of the local costmap.

Each track is a constant-velocity Kalman filter over (x, y, vx, vy). Every depth frame, the tracks are predicted
to the frame's stamp and matched one-to-one to the frame's clusters (Hungarian assignment on distance, gated);
a matched track is corrected, a cluster left over starts a new track, and a track unseen for `max_missed_s` is
dropped. A track counts once it has been seen `min_hits` times: single-frame noise never reaches the planner.
Everything comes from the robot's own depth; the tracker never sees the simulator's truth.

A cluster's centre is a poor measure of how a box moves: it is the centre of the faces in view, and which part of
them is in view changes as a cart passes close by (seen diagonally, a cart's centre moved at half its speed). So,
given the clusters' cells, a track also measures its velocity by registration: the shift that lays the most of
its cells now onto its cells `registration_s` ago, the one nearest the predicted shift among equals. A rigid
body's cells all move alike, however much of it is seen.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import signal
from scipy.optimize import linear_sum_assignment

from models.costmap import CostmapConfig


@dataclass(frozen=True)
class TrackerConfig:
    accel_std: float = 1.5  # m/s^2, process noise: people turn at the corners of their walks
    measurement_std: float = 0.1  # m, cluster centres wobble as the visible side of a body changes
    initial_speed_std: float = 1.0  # m/s, a new track's velocity is unknown
    gate_m: float = 0.8  # a cluster farther than this from a track's prediction is not that track
    min_hits: int = 3  # frames before a track is trusted
    max_missed_s: float = 0.6  # a track unseen this long is dropped
    max_speed: float = 2.0  # m/s, faster estimates are noise and are clipped
    min_radius: float = 0.2  # m, the smallest body a track stands for
    registration_s: float = 0.3  # s between the cells registered: at 5 cm cells, a shift of one is 0.17 m/s
    registration_cell: float = CostmapConfig().resolution  # m, the lattice the cells are registered on
    registration_min_overlap: float = 0.5  # of the cells now that must land on cells then
    velocity_std: float = 0.15  # m/s, of a velocity measured by registration


@dataclass(frozen=True)
class MovingObstacles:
    """Moving obstacles at one instant in `odom`: discs of `radius` moving at constant velocity."""

    position: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (N, 2)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (N, 2)
    radius: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,)

    def __len__(self) -> int:
        return len(self.position)

    def at(self, times: np.ndarray) -> np.ndarray:
        """Predicted centres (N, T, 2) at `times` (T,) seconds from now."""
        return self.position[:, None, :] + self.velocity[:, None, :] * np.asarray(times, dtype=float)[None, :, None]

    def closest_approach(
        self, xy: np.ndarray, velocity: tuple[float, float] = (0.0, 0.0)
    ) -> tuple[np.ndarray, np.ndarray]:
        """Time (s, >= 0) and gap between edges (m) at the closest approach of each obstacle to a robot disc.

        The robot is at `xy` moving at `velocity` (odom, m/s); the gap is from the obstacle's edge to the robot's
        centre (subtract the robot's radius for edge to edge).
        """
        offset = self.position - np.asarray(xy, dtype=float)
        relative = self.velocity - np.asarray(velocity, dtype=float)
        speed2 = (relative**2).sum(axis=1)
        t = np.where(speed2 > 1e-9, np.maximum(-(offset * relative).sum(axis=1) / np.maximum(speed2, 1e-9), 0.0), 0.0)
        closest = offset + relative * t[:, None]
        return t, np.hypot(*closest.T) - self.radius


NO_OBSTACLES = MovingObstacles()


@dataclass
class _Track:
    id: int
    state: np.ndarray  # x, y, vx, vy
    covariance: np.ndarray  # 4 x 4
    radius: float
    hits: int
    last_seen: float
    cells: deque[tuple[float, np.ndarray]] = field(default_factory=deque)  # (t, cells (K, 2)) of recent frames


def registration_shift(
    before: np.ndarray, now: np.ndarray, predicted: np.ndarray, cell: float, max_shift: float, min_overlap: float
) -> np.ndarray | None:
    """The translation (m) that lays the most cells of `now` (K, 2) onto cells of `before`, on a lattice of `cell`;
    among shifts that lay as many, the one nearest `predicted`. None if no shift within `max_shift` lays
    `min_overlap` of them."""
    # Cell centres lie halfway between lattice lines: floor, as rounding half to even would merge neighbours.
    old, new = np.floor(before / cell).astype(int), np.floor(now / cell).astype(int)
    reach = math.ceil(max_shift / cell)
    corner = np.minimum(old.min(axis=0), new.min(axis=0))
    shape = tuple(np.maximum(old.max(axis=0), new.max(axis=0)) - corner + 1)
    then, later = np.zeros(shape), np.zeros(shape)
    then[tuple((old - corner).T)] = 1.0
    later[tuple((new - corner).T)] = 1.0
    # counts[d] = sum over cells p of later[p] * then[p - d]: a cross-correlation, by FFT.
    counts = np.rint(signal.fftconvolve(later, then[::-1, ::-1], mode="full")).astype(int)
    shifts = np.argwhere(np.ones_like(counts, dtype=bool)) - (np.array(shape) - 1)
    counts = counts.ravel()
    within = (np.abs(shifts) <= reach).all(axis=1)
    shifts, counts = shifts[within], counts[within]
    if not len(counts) or counts.max() < min_overlap * later.sum():
        return None
    best = np.flatnonzero(counts == counts.max())
    nearest = best[np.argmin(np.hypot(*(shifts[best] * cell - predicted).T))]
    return shifts[nearest] * cell


def _kalman_update(track: _Track, h: np.ndarray, measured: np.ndarray, std: float) -> None:
    """Correct a track's state with a measurement of `h @ state` of independent noise `std` per axis."""
    innovation = measured - h @ track.state
    s = h @ track.covariance @ h.T + np.eye(len(h)) * std**2
    gain = track.covariance @ h.T @ np.linalg.inv(s)
    track.state = track.state + gain @ innovation
    track.covariance = (np.eye(4) - gain @ h) @ track.covariance


class ObstacleTracker:
    """Constant-velocity Kalman tracks of the costmap's moving clusters; call :meth:`update` every depth frame."""

    _H_POSITION = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    _H_VELOCITY = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self.t: float | None = None
        self._tracks: list[_Track] = []
        self._next_id = 0

    def update(
        self, t: float, centres: np.ndarray, radii: np.ndarray, cells: Sequence[np.ndarray] | None = None
    ) -> None:
        """Take the moving clusters seen at time `t` (s): centres (M, 2) in odom and radii (M,), and, for velocities
        by registration, each cluster's cell centres (K, 2) in odom."""
        c = self.config
        centres, radii = np.asarray(centres, dtype=float).reshape(-1, 2), np.asarray(radii, dtype=float)
        dt = 0.0 if self.t is None else max(t - self.t, 0.0)
        self.t = t
        for track in self._tracks:
            self._predict(track, dt)
        matched: set[int] = set()
        if self._tracks and len(centres):
            predicted = np.array([track.state[:2] for track in self._tracks])
            distance = np.hypot(*(predicted[:, None, :] - centres[None, :, :]).transpose(2, 0, 1))
            rows, cols = linear_sum_assignment(np.where(distance <= c.gate_m, distance, 1e6))
            for row, col in zip(rows, cols, strict=True):
                if distance[row, col] <= c.gate_m:
                    self._correct(self._tracks[row], centres[col], radii[col], t)
                    if cells is not None:
                        self._register(self._tracks[row], cells[col], t)
                    matched.add(int(col))
        self._tracks = [track for track in self._tracks if t - track.last_seen <= c.max_missed_s]
        for index in sorted(set(range(len(centres))) - matched):
            covariance = np.diag([c.measurement_std**2] * 2 + [c.initial_speed_std**2] * 2)
            state = np.array([*centres[index], 0.0, 0.0])
            radius = max(float(radii[index]), c.min_radius)
            self._tracks.append(_Track(self._next_id, state, covariance, radius, 1, t))
            if cells is not None:
                self._tracks[-1].cells.append((t, cells[index]))
            self._next_id += 1

    def obstacles(self, min_speed: float = 0.0) -> MovingObstacles:
        """The confirmed tracks at the last update moving at `min_speed` or faster."""
        kept = [
            track
            for track in self._tracks
            if track.hits >= self.config.min_hits and float(np.hypot(*track.state[2:])) >= min_speed
        ]
        if not kept:
            return MovingObstacles()
        return MovingObstacles(
            np.array([track.state[:2] for track in kept]),
            np.array([track.state[2:] for track in kept]),
            np.array([track.radius for track in kept]),
        )

    def _predict(self, track: _Track, dt: float) -> None:
        transition = np.eye(4)
        transition[0, 2] = transition[1, 3] = dt
        q = self.config.accel_std**2
        # White-acceleration noise of the constant-velocity model, per axis.
        block = q * np.array([[dt**4 / 4, dt**3 / 2], [dt**3 / 2, dt**2]])
        noise = np.zeros((4, 4))
        noise[np.ix_([0, 2], [0, 2])] = noise[np.ix_([1, 3], [1, 3])] = block
        track.state = transition @ track.state
        track.covariance = transition @ track.covariance @ transition.T + noise

    def _register(self, track: _Track, cells: np.ndarray, t: float) -> None:
        """Correct the track's velocity with the shift of its cells since `registration_s` ago, and keep `cells`."""
        c = self.config
        track.cells.append((t, cells))
        while len(track.cells) > 1 and t - track.cells[1][0] >= c.registration_s:
            track.cells.popleft()
        then, before = track.cells[0]
        dt = t - then
        if dt < c.registration_s or dt > 2 * c.registration_s:
            return
        shift = registration_shift(
            before, cells, track.state[2:] * dt, c.registration_cell, c.max_speed * dt, c.registration_min_overlap
        )
        if shift is None:
            return
        _kalman_update(track, self._H_VELOCITY, shift / dt, c.velocity_std)

    def _correct(self, track: _Track, centre: np.ndarray, radius: float, t: float) -> None:
        c = self.config
        _kalman_update(track, self._H_POSITION, centre, c.measurement_std)
        speed = float(np.hypot(*track.state[2:]))
        if speed > c.max_speed:
            track.state[2:] *= c.max_speed / speed
        # A body seen from close by, or partly, looks smaller than it is: a track keeps the largest size seen.
        track.radius = max(track.radius, radius)
        track.hits += 1
        track.last_seen = t
