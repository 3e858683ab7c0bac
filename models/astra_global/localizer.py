"""Astra-Global over a built map: its learned coarse stage, then its own fine stage or the geometric one (hybrid).

    coarse  the model names the map landmarks the query's pictures show; the co-visibility filter ranks keyframes
    astra   the model's fine answer against the best candidate: the pose relative to that keyframe
    hybrid  the candidates handed to the classical localizer in place of its retrieval: SIFT matches and rig PnP
            (models.localization), so the learned stage picks where to look and geometry says where exactly

A query with no parseable coarse answer, or one naming landmarks no keyframe sees, gets no fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pycolmap
from scipy.spatial.transform import Rotation

from models.astra_global.maps import LandmarkMap, MapKeyframe
from models.astra_global.model import AstraGlobal
from models.astra_global.prompts import describe_landmark
from models.localization import Localizer

HYBRID_CANDIDATES = 12  # keyframes handed to the geometric stage, as many as its own retrieval brings


def landmark_map(
    localizer: Localizer, landmarks: pa.Table, node_landmarks: pa.Table, pictures: Sequence[Sequence[np.ndarray]]
) -> LandmarkMap:
    """The map as the model reads it, keyframe for keyframe as `localizer` holds them: each keyframe's planar base
    pose, the landmarks its nodes see (map tables `landmarks`, `node_landmarks`) and its pictures (`pictures[k]`,
    one per rig camera)."""
    rows = landmarks.to_pylist()
    position = {row["landmark_id"]: i for i, row in enumerate(rows)}
    seen_by_node: dict[str, set[int]] = {}
    for node, landmark in zip(
        node_landmarks["node_id"].to_pylist(), node_landmarks["landmark_id"].to_pylist(), strict=True
    ):
        seen_by_node.setdefault(node, set()).add(position[landmark])
    keyframes = []
    for nodes, pose, images in zip(localizer.keyframe_nodes, localizer.keyframe_poses, pictures, strict=True):
        seen = set().union(*(seen_by_node.get(localizer.node_ids[n], set()) for n in nodes if n >= 0))
        yaw = Rotation.from_quat(pose.rotation.quat).as_euler("zyx")[0]
        keyframes.append(MapKeyframe((*pose.translation[:2], yaw), tuple(sorted(seen)), images))
    descriptions = [describe_landmark(r["category"], r["color"], r["material"], r["text"]) for r in rows]
    return LandmarkMap(descriptions, keyframes)


@dataclass(frozen=True)
class AstraFix:
    """What one query got: the landmarks named, the candidate keyframes, and the pose (None where none)."""

    landmarks: tuple[int, ...]
    candidates: tuple[int, ...]
    map_from_base: pycolmap.Rigid3d | None


class AstraLocalizer:
    """Astra-Global's localization in one map; `localizer` (the same map's classical localizer) serves the hybrid
    fine stage and the keyframes' heights."""

    def __init__(self, model: AstraGlobal, landmarks: LandmarkMap, localizer: Localizer) -> None:
        self.model, self.map, self.localizer = model, landmarks, localizer

    def coarse(self, images: Mapping[str, np.ndarray]) -> tuple[tuple[int, ...], np.ndarray]:
        """The landmarks the model names and the keyframes the co-visibility filter ranks from them, best first."""
        [answer] = self.model.answer([self.map.coarse_query(self._pictures(images))])
        named = answer.landmarks if answer is not None else ()
        return named, self.map.covisible(named)

    def localize(self, images: Mapping[str, np.ndarray]) -> AstraFix:
        """Coarse, then the model's fine answer against the best candidate."""
        named, candidates = self.coarse(images)
        if not len(candidates):
            return AstraFix(named, (), None)
        best = int(candidates[0])
        [answer] = self.model.answer([self.map.fine_query(self._pictures(images), best)])
        pose = None
        if answer is not None and answer.pose is not None:
            x, y, yaw = self.map.absolute_pose(best, answer.pose)
            z = self.localizer.keyframe_poses[best].translation[2]
            pose = pycolmap.Rigid3d(pycolmap.Rotation3d(Rotation.from_euler("z", yaw).as_quat()), np.array([x, y, z]))
        return AstraFix(named, tuple(int(k) for k in candidates), pose)

    def localize_hybrid(self, images: Mapping[str, np.ndarray]) -> AstraFix:
        """Coarse, then SIFT matching and rig PnP on the candidates' places."""
        named, candidates = self.coarse(images)
        if not len(candidates):
            return AstraFix(named, (), None)
        fix = self.localizer.localize(images, candidates=candidates[:HYBRID_CANDIDATES])
        return AstraFix(named, tuple(int(k) for k in candidates), fix.map_from_base if fix.success else None)

    def _pictures(self, images: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [images[camera.name] for camera in self.localizer.rig]
