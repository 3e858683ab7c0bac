"""Astra-Global over a built map, behind the classical localizer's interface (`localize` -> LocalizationFix):

    coarse  the model names the map landmarks the query's pictures show; the co-visibility filter ranks keyframes
    astra   the model's fine answer against the best candidate: the pose relative to that keyframe
    hybrid  the classical localizer (retrieval, SIFT matches, rig PnP: models.localization) inside the region around
            the best candidates, so the learned stage picks where to look and geometry says where exactly; where the
            region gives no fix, one less sure than `hybrid_trust` or one scoring below `hybrid_trust_score`, the
            classical localizer over the whole map too, and the fix whose place scores better wins, as places do
            inside one search (the fix says `fallback` where it is the whole map's)

The hybrid needs nothing of the map beyond what the classical localizer reads; the astra fine stage also needs the
keyframes' pictures. A query with no parseable coarse answer, or one naming landmarks no keyframe sees, gets no fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pycolmap
from scipy.spatial.transform import Rotation

from models.astra_global.maps import LandmarkMap, MapKeyframe
from models.astra_global.model import AstraGlobal
from models.astra_global.prompts import describe_landmark
from models.localization import LocalizationFix, Localizer, failed_fix

FINE_STAGES = ("astra", "hybrid")


@dataclass(frozen=True)
class AstraLocalizerConfig:
    fine: str = "hybrid"  # one of FINE_STAGES
    # The hybrid's region: keyframes this close to the best co-visible ones. The classical stage retrieves and
    # matches inside it, so look-alike places elsewhere never compete.
    hybrid_candidates: int = 5
    hybrid_radius_m: float = 10.0
    # A learned region that holds no fix is the model's miss (it names a third of the landmarks a query shows), not
    # proof that the robot is nowhere: the hybrid then searches as the classical localizer does, and says so.
    hybrid_fallback: bool = True
    # A region fix this sure stands. Below it, a look-alike place inside the region may have won where the true place
    # lies outside it (warehouse aisles), so the whole map is searched too.
    hybrid_trust: float = 0.5
    # ... and it explains its view (LocalizationFix.score: evidence less what the pose leaves unseen). A look-alike
    # aisle alone in the region wins it surely, yet leaves the posters and cartons of its view unmatched: in
    # warehouse-700, 5 of the 6 wrong region fixes sure enough to stand scored below 0, and 6 of the 70 right ones,
    # which the whole map's search then confirms (README, session 21).
    hybrid_trust_score: float = 0.0
    # What an astra fine answer claims: its pose bins are 0.25 m and 5°, and held out it is rarely that close.
    sigma_m: float = 0.5
    sigma_deg: float = 10.0
    confidence: float = 0.5  # the model gives no calibrated confidence; this lets navigation take its fixes
    prior_radius_m: float = 3.0  # with a prior, candidates and answers farther than this (or 3 sigmas) are ruled out

    def __post_init__(self) -> None:
        if self.fine not in FINE_STAGES:
            raise ValueError(f"unknown fine stage {self.fine!r}; choose one of {', '.join(FINE_STAGES)}")


def landmark_map(
    localizer: Localizer,
    landmarks: pa.Table,
    node_landmarks: pa.Table,
    pictures: Sequence[Sequence[np.ndarray]] | None = None,
) -> LandmarkMap:
    """The map as the model reads it, keyframe for keyframe as `localizer` holds them: each keyframe's planar base
    pose, the landmarks its nodes see (map tables `landmarks`, `node_landmarks`) and, for the astra fine stage, its
    pictures (`pictures[k]`, one per rig camera)."""
    rows = landmarks.to_pylist()
    position = {row["landmark_id"]: i for i, row in enumerate(rows)}
    seen_by_node: dict[str, set[int]] = {}
    for node, landmark in zip(
        node_landmarks["node_id"].to_pylist(), node_landmarks["landmark_id"].to_pylist(), strict=True
    ):
        seen_by_node.setdefault(node, set()).add(position[landmark])
    keyframes = []
    for k, (nodes, pose) in enumerate(zip(localizer.keyframe_nodes, localizer.keyframe_poses, strict=True)):
        seen = set().union(*(seen_by_node.get(localizer.node_ids[n], set()) for n in nodes if n >= 0))
        yaw = Rotation.from_quat(pose.rotation.quat).as_euler("zyx")[0]
        images = pictures[k] if pictures is not None else ()
        keyframes.append(MapKeyframe((*pose.translation[:2], yaw), tuple(sorted(seen)), images))
    descriptions = [describe_landmark(r["category"], r["color"], r["material"], r["text"]) for r in rows]
    return LandmarkMap(
        descriptions,
        keyframes,
        [r["room"] for r in rows],
        [r["category"] for r in rows],
        [r["text"] for r in rows],
    )


class AstraLocalizer:
    """Astra-Global's localization in one map. `localizer` is the same map's classical localizer: it serves the
    hybrid fine stage, and its keyframes are the ones `landmarks` lists."""

    def __init__(
        self,
        model: AstraGlobal,
        landmarks: LandmarkMap,
        localizer: Localizer,
        config: AstraLocalizerConfig = AstraLocalizerConfig(),
    ) -> None:
        if config.fine == "astra" and not all(k.images for k in landmarks.keyframes):
            raise ValueError("the astra fine stage needs every keyframe's pictures")
        self.model, self.map, self.localizer, self.config = model, landmarks, localizer, config

    def coarse(self, images: Mapping[str, np.ndarray]) -> np.ndarray:
        """The keyframes the co-visibility filter ranks from the landmarks the model names, best first."""
        [answer] = self.model.answer([self.map.coarse_query(self._pictures(images))])
        return self.map.covisible(answer.landmarks if answer is not None else ())

    def localize(
        self,
        images: Mapping[str, np.ndarray],
        prior: pycolmap.Rigid3d | None = None,
        prior_sigma_m: float | None = None,
    ) -> LocalizationFix:
        """As Localizer.localize: the coarse stage, then the configured fine stage. The fix's `candidates` are the
        nodes of the coarse stage's keyframes, best first (astra), or of those retrieval ranked in its region
        (hybrid), or in the whole map where the hybrid fell back."""
        # The hybrid's features are extracted while the model answers.
        query = self.localizer.describe_query(images, extract_now=True) if self.config.fine == "hybrid" else None
        candidates = self.coarse(images)
        reach = max(self.config.prior_radius_m, 3 * (prior_sigma_m or 0.0))
        if prior is not None:
            near = np.linalg.norm(self.localizer.keyframe_positions[candidates, :2] - prior.translation[:2], axis=1)
            candidates = candidates[near <= reach]
        nodes = tuple(
            self.localizer.node_ids[n] for k in candidates for n in self.localizer.keyframe_nodes[k] if n >= 0
        )
        if self.config.fine == "hybrid":
            fix = None
            if len(candidates):
                fix = self.localizer.localize(query, prior, prior_sigma_m, candidates=self._region(candidates))
                if not self.config.hybrid_fallback or self._trusted(fix):
                    return fix
            if self.config.hybrid_fallback:
                return better_fix(fix, self.localizer.localize(query, prior, prior_sigma_m))
        if not len(candidates):
            return failed_fix(
                nodes, "the model named no landmark a keyframe" + " near the prior" * bool(prior) + " sees"
            )
        best = int(candidates[0])
        [answer] = self.model.answer([self.map.fine_query(self._pictures(images), best)])
        if answer is None or answer.pose is None:
            return failed_fix(nodes, "the model's fine answer gave no pose")
        x, y, yaw = self.map.absolute_pose(best, answer.pose)
        if prior is not None and np.hypot(x - prior.translation[0], y - prior.translation[1]) > reach:
            return failed_fix(nodes, "the model's pose is not near the prior")
        z = self.localizer.keyframe_poses[best].translation[2]
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(Rotation.from_euler("z", yaw).as_quat()), np.array([x, y, z]))
        sigma_rad = np.radians(self.config.sigma_deg)
        covariance = np.diag([self.config.sigma_m**2] * 3 + [sigma_rad**2] * 3)
        return LocalizationFix(True, pose, covariance, self.config.confidence, 0, nodes)

    def _trusted(self, fix: LocalizationFix) -> bool:
        """Whether a region fix stands without the whole map's search."""
        sure = fix.confidence >= self.config.hybrid_trust
        return fix.success and sure and fix.score >= self.config.hybrid_trust_score

    def _region(self, candidates: np.ndarray) -> np.ndarray:
        """The keyframes within hybrid_radius_m of the best `hybrid_candidates` co-visible ones."""
        positions = self.localizer.keyframe_positions[:, :2]
        best = positions[candidates[: self.config.hybrid_candidates]]
        distance = np.linalg.norm(positions[:, None] - best[None], axis=2).min(axis=1)
        return np.flatnonzero(distance <= self.config.hybrid_radius_m)

    def _pictures(self, images: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [images[camera.name] for camera in self.localizer.rig]


def better_fix(region: LocalizationFix | None, whole: LocalizationFix) -> LocalizationFix:
    """The hybrid's answer where the learned region's fix (None: no region) was checked against the whole map's:
    the fix whose place scores better (LocalizationFix.score), as places compete inside one search. Confidence
    would not do: it is low for a place that explains its view better than a look-alike with more inliers."""
    if region is None or not region.success or (whole.success and whole.score > region.score):
        return dataclasses.replace(whole, fallback=True)
    return region
