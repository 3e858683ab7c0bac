"""Trajectories of base_link and the choice of keyframes along them.

A keyframe is one instant at which every camera of the rig took a picture; mapping uses the pictures
of keyframes only. Keyframes are picked where the robot has moved or turned enough since the last one,
so one that drives fast adds enough pictures and one that stands still adds one every few seconds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pycolmap
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class Trajectory:
    """Poses of base_link in some world frame (odom or map) over time, sorted by time."""

    t_ns: np.ndarray  # (N,) int64
    positions: np.ndarray  # (N, 3) metres
    quaternions: np.ndarray  # (N, 4) x, y, z, w

    def __len__(self) -> int:
        return len(self.t_ns)

    def at(self, t_ns: np.ndarray) -> Trajectory:
        """Poses at the given times: positions linear, rotations slerped; times outside are clamped.

        Only the samples around each query are touched, so one query costs the same on a long trajectory as on a
        short one (evaluating a 3,000-keyframe map asks thousands of single instants)."""
        t_ns = np.asarray(t_ns, dtype=np.int64)
        if len(self) == 1:
            return Trajectory(t_ns, np.repeat(self.positions, len(t_ns), 0), np.repeat(self.quaternions, len(t_ns), 0))
        query = np.clip(t_ns, self.t_ns[0], self.t_ns[-1])
        after = np.clip(np.searchsorted(self.t_ns, query, side="right"), 1, len(self) - 1)
        before = after - 1
        span = (self.t_ns[after] - self.t_ns[before]).astype(float)
        weight = np.divide((query - self.t_ns[before]).astype(float), span, out=np.zeros(len(query)), where=span > 0)
        positions = self.positions[before] + weight[:, None] * (self.positions[after] - self.positions[before])
        start = Rotation.from_quat(self.quaternions[before])
        turn = (start.inv() * Rotation.from_quat(self.quaternions[after])).as_rotvec()
        quaternions = (start * Rotation.from_rotvec(turn * weight[:, None])).as_quat()
        return Trajectory(t_ns, positions, quaternions)

    def poses(self) -> list[pycolmap.Rigid3d]:
        """world_from_base of every sample."""
        return [
            pycolmap.Rigid3d(pycolmap.Rotation3d(q), p) for q, p in zip(self.quaternions, self.positions, strict=True)
        ]


@dataclass(frozen=True)
class KeyframeConfig:
    """When a camera frame becomes a keyframe: enough travel or turn since the last keyframe, or enough time."""

    min_distance: float = 0.5  # m
    min_rotation_deg: float = 15.0
    max_interval_s: float = 5.0


def rig_frame_times(image_t_ns: dict[str, np.ndarray]) -> np.ndarray:
    """Instants at which every camera has an image: the rig's cameras are triggered together."""
    return functools.reduce(np.intersect1d, (np.asarray(t, dtype=np.int64) for t in image_t_ns.values()))


def select_keyframes(
    frame_t_ns: np.ndarray, odometry: Trajectory, config: KeyframeConfig = KeyframeConfig()
) -> np.ndarray:
    """Indices into the sorted `frame_t_ns` of the keyframes, the first frame always one of them."""
    if not len(frame_t_ns):
        return np.empty(0, dtype=int)
    poses = odometry.at(frame_t_ns)
    # Plain floats: a tour has a frame every 0.1 s, and numpy or scipy per frame cost 30 us where these cost 2.
    positions = poses.positions.tolist()
    quaternions = (poses.quaternions / np.linalg.norm(poses.quaternions, axis=1, keepdims=True)).tolist()
    times = np.asarray(frame_t_ns, dtype=np.int64).tolist()
    min_rotation = math.radians(config.min_rotation_deg)
    max_interval_ns = round(config.max_interval_s * 1e9)
    chosen = [0]
    for i in range(1, len(times)):
        last = chosen[-1]
        # The angle of the turn between two unit quaternions: 2 acos |q1 . q2|.
        cosine = min(1.0, abs(sum(a * b for a, b in zip(quaternions[last], quaternions[i], strict=True))))
        if (
            math.dist(positions[i], positions[last]) >= config.min_distance
            or 2 * math.acos(cosine) >= min_rotation
            or times[i] - times[last] >= max_interval_ns
        ):
            chosen.append(i)
    return np.array(chosen)
