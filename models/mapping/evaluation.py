"""How good a map is against ground truth: registration rate, trajectory error, rotation error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pycolmap

from models.mapping.keyframes import Trajectory
from models.mapping.sfm import SfmMap, align_rigid


@dataclass(frozen=True)
class MapErrors:
    """Registration and pose errors of a map's keyframes."""

    keyframes: int
    registered: int
    ate_rmse: float  # m, base_link positions after the best rigid alignment
    rotation_median_deg: float

    @property
    def registration_rate(self) -> float:
        """Share of keyframes registered."""
        return self.registered / max(self.keyframes, 1)


def trajectory_errors(estimated: Sequence[pycolmap.Rigid3d], truth: Sequence[pycolmap.Rigid3d]) -> tuple[float, float]:
    """ATE RMSE (m) and median rotation error (deg) of world_from_base poses after a rigid alignment."""
    estimated_xyz = np.array([p.translation for p in estimated])
    truth_xyz = np.array([p.translation for p in truth])
    truth_from_estimated = align_rigid(estimated_xyz, truth_xyz)
    ate = float(np.sqrt(np.mean(np.sum((truth_from_estimated * estimated_xyz - truth_xyz) ** 2, axis=1))))
    angles = [(truth_from_estimated * e).rotation.angle_to(t.rotation) for e, t in zip(estimated, truth, strict=True)]
    return ate, float(np.degrees(np.median(angles)))


def map_errors(sfm_map: SfmMap, ground_truth: dict[str, Trajectory]) -> MapErrors:
    """Errors of the registered keyframes' base_link poses against each episode's ground truth (map frame)."""
    registered = [k for k in sfm_map.keyframes if k.registered]
    truth = [ground_truth[k.episode_id].at(np.array([k.t_ns])).poses()[0] for k in registered]
    ate, rotation = trajectory_errors([k.map_from_base for k in registered], truth) if registered else (np.inf, np.inf)
    return MapErrors(len(sfm_map.keyframes), len(registered), ate, rotation)
