"""Odometry's errors against the truth over a tour, as the Astra paper reports them.

- ATE (m): RMSE of positions after the best rigid planar alignment of the whole trajectory to the truth.
- RTE (%) and RRE (deg / 10 m): for every frame, the segment that starts there and ends where the robot has
  driven SEGMENT_M: the error of the segment's relative translation per metre driven, and of its relative heading
  per 10 m, averaged over the segments. (KITTI's segments of 100-800 m do not fit tours of a few tens of metres.)
"""

from __future__ import annotations

import numpy as np

from models.navigation import se2

SEGMENT_M = 10.0


def integrate(motions: np.ndarray, start: se2.Pose2 = (0.0, 0.0, 0.0)) -> np.ndarray:
    """[N + 1, 3] poses from `start` through N motions (dx, dy, dyaw, each in the frame of the pose before it)."""
    poses = [start]
    for motion in motions:
        poses.append(se2.compose(poses[-1], tuple(float(v) for v in motion)))
    return np.asarray(poses)


def _aligned(estimated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Estimated positions [N, 2] moved by the rotation and translation that best fit them to the truth's."""
    a, b = estimated - estimated.mean(0), truth - truth.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    rotation = (u @ np.diag([1.0, d]) @ vt).T
    return a @ rotation.T + truth.mean(0)


def odometry_drift(estimated: np.ndarray, truth: np.ndarray, segment_m: float = SEGMENT_M) -> dict[str, float]:
    """`rte_pct` (and its worst segment's, `rte_max_pct`), `rre_deg_per_10m`, `ate_m` and `segments` of poses
    [N, 3] (x, y, yaw) against the truth's.

    A tour shorter than `segment_m` has no segments: its RTE and RRE are NaN."""
    ate = float(np.sqrt(np.mean(np.sum((_aligned(estimated[:, :2], truth[:, :2]) - truth[:, :2]) ** 2, axis=1))))
    driven = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(truth[:, :2], axis=0).T))])
    translation, rotation = [], []
    for i in range(len(truth)):
        j = int(np.searchsorted(driven, driven[i] + segment_m))
        if j >= len(truth):
            break
        length = driven[j] - driven[i]
        true_step = se2.compose(se2.inverse(tuple(truth[i])), tuple(truth[j]))
        estimated_step = se2.compose(se2.inverse(tuple(estimated[i])), tuple(estimated[j]))
        error = se2.compose(se2.inverse(true_step), estimated_step)
        translation.append(np.hypot(error[0], error[1]) / length)
        rotation.append(abs(se2.wrap(error[2])) / length * 10)
    return {
        "rte_pct": float(np.mean(translation) * 100) if translation else float("nan"),
        "rte_max_pct": float(np.max(translation) * 100) if translation else float("nan"),
        "rre_deg_per_10m": float(np.degrees(np.mean(rotation))) if rotation else float("nan"),
        "ate_m": ate,
        "segments": len(translation),
    }
