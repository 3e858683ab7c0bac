"""Global localization: where the robot is in a map, from one picture per camera, with or without a prior.

Coarse to fine, as hloc does it:

1. Retrieval. The rig's global descriptors against every registered keyframe of the map, the query's
   cameras lined up with the keyframe's in each cyclic order their headings allow (a robot turned by one
   camera's spacing sees with its left camera what the map's front one saw). With a prior, only
   keyframes near it compete.
2. Places. Around the best keyframes, apart from each other: look-alike places far apart stay apart, and each
   brings the same number of the map's keyframes nearest it.
3. Matching. The query's SIFT features against those of each place's nodes (schemas.map node_features),
   with Lowe's ratio test against the nearest feature of *another* 3D point, so that a point seen from
   several nodes does not count as its own rival.
4. Pose. Per place, all cameras' 2D-3D matches jointly in COLMAP's generalized absolute pose (LO-RANSAC
   and refinement) on the rig. The place whose pose best explains every camera wins: its evidence is the sum
   over cameras of log(1 + inliers). A camera looking down a warehouse aisle finds hundreds of inliers on the
   racks of any aisle, and the hundredth match on a repeated texture says little that the first did not; the
   other cameras, seeing what tells the aisles apart, then decide. What the pose leaves unexplained counts
   against it: each camera adds the log of the share it matched of the place's map points that the pose puts in
   its view, weighted by `view_share_weight`. A look-alike aisle matches the repeated racks and misses the posters
   and cartons that its own view holds; the true place, mapped from a keyframe further off, matches fewer points
   but a larger share of those it should see.

Aliasing is the main enemy (textures repeat every 2 m, warehouse aisles look alike), so the confidence
is honest about it: it grows with the winner's inliers and shrinks to nothing as a place far from the
winner explains the query with `max_rival_ratio` of its inliers or more (so a winner on its score that a look-alike
beats on inliers gets none).

Frames: `map_from_base` is the pose of base_link in `map`; COLMAP's rig is base_link, so its
`rig_from_world` is the inverse. The covariance is of (x, y, z, rx, ry, rz): position and a small
rotation vector applied on the left, both in `map`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pycolmap

from models.descriptors import DESCRIPTORS
from models.mapping.sfm import DEFAULT_FEATURES, FEATURES, RigCamera, SiftSettings, recorded_sfm_config
from schemas.map import SIFT_DIM

_UNKNOWN_COVARIANCE = np.diag([1e6] * 3 + [1e2] * 3)  # what a failed fix says: anywhere, any way round
_POSE_DOF = 6
_MIN_POSE_MATCHES = 4  # a generalized absolute pose needs three, and one more to check it


@dataclass(frozen=True)
class LocalizerConfig:
    """Retrieval, matching, RANSAC and confidence settings."""

    descriptor: str = "tiny_image"  # the map's global descriptor: its manifest's build["descriptor"]
    max_features: int = 1024  # SIFT features per query image
    sift: SiftSettings = FEATURES[DEFAULT_FEATURES]  # as the map's features were: its manifest's build["sfm"]["sift"]
    retrieval_k: int = 12  # keyframes retrieved
    place_radius_m: float = 3.0  # places are this far apart at least, and hold keyframes this close
    place_keyframes: int = 4  # map keyframes nearest each place's centre whose points it is matched against
    max_places: int = 5  # places tried, best retrieved first
    match_ratio: float = 0.8  # Lowe's ratio test
    ransac_max_error_px: float = 4.0
    ransac_confidence: float = 0.999
    ransac_min_trials: int = 50  # COLMAP's 1000 cost a second per place on this CPU, for nothing at our inlier ratios
    ransac_max_trials: int = 2000
    min_inliers: int = 20  # fewer inliers is no fix
    inlier_scale: int = 40  # inliers beyond `min_inliers` that make a fix about two-thirds sure
    visible_depth_m: tuple[float, float] = (0.1, 20.0)  # map points this far ahead of a camera are ones it should see
    # How much the share of its view that a pose explains counts beside evidence (_PlaceFix.score): 0 ignores it.
    view_share_weight: float = 2.0
    ambiguity_distance_m: float = 1.0  # poses farther apart than this are different answers
    max_rival_ratio: float = 0.75  # a different answer with this share of the best one's inliers leaves no confidence
    # The map's own error, which the fit cannot see: the mapping benchmark's ATE is a few centimetres.
    map_sigma_m: float = 0.05
    map_sigma_deg: float = 0.5
    prior_radius_m: float = 3.0  # with a prior, keyframes farther than this (or three sigmas) are not candidates
    random_seed: int = 0

    @classmethod
    def for_map(cls, build: Mapping[str, Any]) -> LocalizerConfig:
        """The default settings, with the query features and descriptor that the map of manifest `build` was made
        with: a query described another way matches none of its points."""
        sift = recorded_sfm_config(build.get("sfm", {})).sift
        return cls(descriptor=build.get("descriptor", cls.descriptor), sift=sift)


@dataclass(frozen=True)
class LocalizationFix:
    """One localization: the pose of base_link in `map` and how sure it is; `reason` says why when it failed."""

    success: bool
    map_from_base: pycolmap.Rigid3d | None
    covariance: np.ndarray  # 6x6, (x, y, z, rx, ry, rz) in `map`
    confidence: float  # [0, 1]
    inliers: int
    candidates: tuple[str, ...]  # node ids of the retrieved keyframes
    reason: str = ""
    fallback: bool = False  # a coarse stage in front found nothing, so the whole map or prior reach was searched
    # The winning place's score (_PlaceFix.score): fixes from different searches of one map compare on it.
    score: float = -np.inf


class DescribedQuery:
    """A query's pictures and what the localizer reads of them, computed on first use and kept: the rig's global
    descriptors, and its SIFT keypoints, unit descriptors and camera of each."""

    def __init__(self, localizer: Localizer, images: Mapping[str, np.ndarray], extract_now: bool = False) -> None:
        self.localizer = localizer
        self.cameras = [i for i, c in enumerate(localizer.rig) if c.name in images]
        self.pictures = [np.ascontiguousarray(images[localizer.rig[i].name]) for i in self.cameras]
        self._extracting = None
        if extract_now and self.cameras:
            pool = ThreadPoolExecutor(1)
            self._extracting = pool.submit(localizer._features, self.pictures, self.cameras)
            pool.shutdown(wait=False)  # the extraction runs on; the thread ends with it

    @classmethod
    def described(
        cls,
        localizer: Localizer,
        global_descriptors: np.ndarray,
        features: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ) -> DescribedQuery:
        """A query described already, with no pictures: a map's own keyframe, whose global descriptors (rig cameras,
        dim) and SIFT keypoints (N, 2) and descriptors (N, 128) by camera its map building computed."""
        query = cls(localizer, {})
        query.cameras = [i for i, c in enumerate(localizer.rig) if c.name in features]
        query.global_descriptors = global_descriptors[query.cameras]
        keypoints = [features[localizer.rig[i].name][0] for i in query.cameras]
        descriptors = [features[localizer.rig[i].name][1] for i in query.cameras]
        camera_of = [np.full(len(xy), i, np.int64) for xy, i in zip(keypoints, query.cameras, strict=True)]
        query.features = (
            np.concatenate([np.empty((0, 2)), *keypoints]),
            _unit_rows(np.concatenate([np.empty((0, SIFT_DIM)), *descriptors])),
            np.concatenate([np.empty(0, np.int64), *camera_of]),
        )
        return query

    @cached_property
    def global_descriptors(self) -> np.ndarray:
        return self.localizer.describe.describe(self.pictures)

    @cached_property
    def features(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._extracting is not None:
            return self._extracting.result()
        return self.localizer._features(self.pictures, self.cameras)


class RigLocalizer(Protocol):
    """What navigation localizes with: Localizer, or another coarse stage in front of it (models.astra_global)."""

    def localize(
        self,
        images: Mapping[str, np.ndarray],
        prior: pycolmap.Rigid3d | None = None,
        prior_sigma_m: float | None = None,
    ) -> LocalizationFix: ...


@dataclass(frozen=True)
class _PlaceFix:
    rig_from_world: pycolmap.Rigid3d
    camera_inliers: np.ndarray  # per rig camera
    camera_visible: np.ndarray  # per rig camera: the place's map points that the pose puts in its view
    covariance: np.ndarray

    @property
    def inliers(self) -> int:
        return int(self.camera_inliers.sum())

    @property
    def evidence(self) -> float:
        """How well the pose explains every camera: matches in one camera count with diminishing returns."""
        return float(np.log1p(self.camera_inliers).sum())

    @property
    def view_share(self) -> float:
        """What the pose leaves unexplained, as the sum over cameras of the log share of the place's map points in
        the camera's view that it matched (0 at best). A look-alike aisle matches the racks every aisle repeats, and
        misses the posters and cartons its view should also hold."""
        return float(np.log((1 + self.camera_inliers) / (1 + self.camera_visible)).sum())

    def score(self, view_share_weight: float) -> float:
        return self.evidence + view_share_weight * self.view_share


class Localizer:
    """A map's registered nodes and their features, ready to localize the rig `rig` in it.

    `nodes` and `node_features` are the map tables of those names (schemas.map); `rig` names the cameras
    as the nodes' `camera` column does.
    """

    def __init__(
        self,
        nodes: pa.Table,
        node_features: pa.Table,
        rig: Sequence[RigCamera],
        config: LocalizerConfig = LocalizerConfig(),
    ) -> None:
        self.rig, self.config = tuple(rig), config
        self.describe = DESCRIPTORS[config.descriptor]()
        options = pycolmap.FeatureExtractionOptions(use_gpu=False, num_threads=1)
        options.sift.max_num_features = config.max_features
        config.sift.apply(options.sift)
        # One extractor per camera, so that the pictures are described in parallel.
        self.extractors = [pycolmap.FeatureExtractor.create(options, device=pycolmap.Device.cpu) for _ in self.rig]
        self.cameras = [c.colmap_camera() for c in self.rig]
        self.cams_from_rig = [c.base_from_camera.inverse() for c in self.rig]
        camera_index = {c.name: i for i, c in enumerate(self.rig)}
        # The rig's cameras in order of heading, so that a cyclic shift turns the rig by one camera spacing.
        axes = np.array([c.base_from_camera.rotation * np.array([0.0, 0.0, 1.0]) for c in self.rig])
        self.heading_order = np.argsort(np.arctan2(axes[:, 1], axes[:, 0]))

        registered = nodes.filter(nodes["registered"]).to_pydict()
        keyframe_of: dict[tuple[str, int], int] = {}
        keyframe_nodes: list[list[int]] = []  # per keyframe: node index per rig camera, -1 where missing
        self.node_ids = registered["node_id"]
        for node, (episode, t_ns, camera) in enumerate(
            zip(registered["episode_id"], registered["t_ns"], registered["camera"], strict=True)
        ):
            keyframe = keyframe_of.setdefault((episode, t_ns), len(keyframe_of))
            if keyframe == len(keyframe_nodes):
                keyframe_nodes.append([-1] * len(self.rig))
            keyframe_nodes[keyframe][camera_index[camera]] = node
        self.keyframe_nodes = np.array(keyframe_nodes, np.int64).reshape(-1, len(self.rig))
        self.keyframe_instants: list[tuple[str, int]] = list(keyframe_of)  # (episode_id, t_ns) of each keyframe
        self.node_descriptors = np.array(registered["descriptor"], np.float32).reshape(len(self.node_ids), -1)
        positions = np.column_stack([registered[f"position_{a}"] for a in "xyz"]).reshape(-1, 3)
        orientations = np.column_stack([registered[f"orientation_{a}"] for a in "xyzw"]).reshape(-1, 4)
        # base_link of each keyframe, from any of its nodes and that camera's mount.
        self.keyframe_poses: list[pycolmap.Rigid3d] = []
        for row in self.keyframe_nodes:
            camera = int(np.flatnonzero(row >= 0)[0])
            map_from_camera = pycolmap.Rigid3d(pycolmap.Rotation3d(orientations[row[camera]]), positions[row[camera]])
            self.keyframe_poses.append(map_from_camera * self.rig[camera].base_from_camera.inverse())
        self.keyframe_positions = np.array([p.translation for p in self.keyframe_poses]).reshape(-1, 3)

        node_index = {n: i for i, n in enumerate(self.node_ids)}
        feature_nodes = np.array([node_index.get(n, -1) for n in node_features["node_id"].to_pylist()], np.int64)
        keep = np.flatnonzero(feature_nodes >= 0)
        order = keep[np.argsort(feature_nodes[keep], kind="stable")]
        self.feature_starts = np.searchsorted(feature_nodes[order], np.arange(len(self.node_ids) + 1))
        # Each 3D point is matched by the mean of its observations' descriptors: a fifth of the work of matching
        # every observation, and a point seen from several nodes is not its own rival in the ratio test.
        point_ids, self.feature_point = np.unique(node_features["point3D_id"].to_numpy()[order], return_inverse=True)
        by_point = np.argsort(self.feature_point, kind="stable")
        first = np.searchsorted(self.feature_point[by_point], np.arange(len(point_ids)))
        descriptors = _unit_rows(_descriptor_rows(node_features["descriptor"])[order])
        self.point_descriptors = _unit_rows(np.add.reduceat(descriptors[by_point], first, axis=0))
        positions = np.column_stack([node_features[f"point_{a}"].to_numpy() for a in "xyz"])[order]
        self.points = positions[by_point[first]].astype(np.float64)

    def describe_query(self, images: Mapping[str, np.ndarray], extract_now: bool = False) -> DescribedQuery:
        """The query's pictures, to be described once however many searches of it `localize` makes. With
        `extract_now`, SIFT extraction starts at once in the background, so that another stage (Astra-Global's
        model) can work meanwhile on the other core."""
        return DescribedQuery(self, images, extract_now)

    def localize(
        self,
        images: Mapping[str, np.ndarray] | DescribedQuery,
        prior: pycolmap.Rigid3d | None = None,
        prior_sigma_m: float | None = None,
        candidates: Sequence[int] | None = None,
    ) -> LocalizationFix:
        """Localize the rig from RGB (H, W, 3) uint8 pictures by camera name, or from a query `describe_query` made
        (a second search of it reuses its descriptors and features).

        `prior` (map_from_base, from odometry and the last fix) narrows the search to keyframes within
        `prior_radius_m`, or three `prior_sigma_m` where more, of it, and the answer to poses within three
        `prior_sigma_m` (`prior_radius_m` where no sigma is given). Without one, the whole map competes.
        `candidates` (indices into `keyframe_poses`) are the only keyframes that may compete, as a prior's
        neighbourhood is: another coarse stage, such as Astra-Global's, chose where to look, and retrieval ranks
        them.
        """
        query = images if isinstance(images, DescribedQuery) else self.describe_query(images)
        if not query.cameras:
            return failed_fix((), f"no picture from any of the rig's cameras {[c.name for c in self.rig]}")
        allowed = np.ones(len(self.keyframe_nodes), bool)
        radius = max(self.config.prior_radius_m, 3 * (prior_sigma_m or 0.0))
        if prior is not None:
            allowed = np.linalg.norm(self.keyframe_positions[:, :2] - prior.translation[:2], axis=1) <= radius
        if candidates is not None:
            chosen = np.zeros(len(allowed), bool)
            chosen[np.asarray(candidates, np.int64)] = True
            allowed &= chosen
        retrieved = self._retrieve(query.global_descriptors, query.cameras, allowed)
        candidates = tuple(self.node_ids[n] for k in retrieved for n in self.keyframe_nodes[k] if n >= 0)
        if not len(retrieved):
            return failed_fix(candidates, "no registered map keyframe within reach of the prior")

        keypoints, descriptors, camera_of = query.features
        places = self._places(retrieved, allowed)
        points = [self._place_points(place) for place in places]
        # One product for all places at once.
        similarity = descriptors @ self.point_descriptors[np.concatenate(points)].T
        bounds = np.cumsum([0, *map(len, points)])
        fixes = [
            self._refit(fix, keypoints, descriptors, camera_of, allowed)
            for place_points, start, stop in zip(points, bounds[:-1], bounds[1:], strict=True)
            if (fix := self._localize_at(place_points, similarity[:, start:stop], keypoints, camera_of)) is not None
            and fix.inliers >= self.config.min_inliers
        ]
        if prior is not None:  # a pose the prior rules out is a look-alike, however well it fits
            reach = radius if prior_sigma_m is None else 3 * prior_sigma_m
            fixes = [
                f
                for f in fixes
                if np.linalg.norm(f.rig_from_world.inverse().translation[:2] - prior.translation[:2]) <= reach
            ]
        if not fixes:
            return failed_fix(
                candidates, "no place gave a pose from the matched features" + " near the prior" * (prior is not None)
            )
        fixes.sort(key=lambda f: -f.score(self.config.view_share_weight))
        best = fixes[0]
        if best.inliers < self.config.min_inliers:
            return failed_fix(candidates, f"{best.inliers} inliers, fewer than {self.config.min_inliers}", best.inliers)
        map_from_base = best.rig_from_world.inverse()
        rivals = [
            f.inliers
            for f in fixes[1:]
            if np.linalg.norm(f.rig_from_world.inverse().translation - map_from_base.translation)
            > self.config.ambiguity_distance_m
        ]
        support = 1.0 - np.exp(-(best.inliers - self.config.min_inliers) / self.config.inlier_scale)
        distinct = max(1.0 - max(rivals, default=0) / best.inliers / self.config.max_rival_ratio, 0.0)
        return LocalizationFix(
            True,
            map_from_base,
            best.covariance,
            float(support * distinct),
            best.inliers,
            candidates,
            score=best.score(self.config.view_share_weight),
        )

    def retrieved_pose(self, images: Mapping[str, np.ndarray]) -> pycolmap.Rigid3d | None:
        """What retrieval alone says (the VPR baseline): the best keyframe's pose, turned by the camera alignment
        that matched it, so that the query's camera faces where the keyframe's matched camera faced."""
        cameras = [i for i, c in enumerate(self.rig) if c.name in images]
        if not cameras or not len(self.keyframe_nodes):
            return None
        query = self.describe.describe([np.ascontiguousarray(images[self.rig[i].name]) for i in cameras])
        similarity = self._similarity(query, cameras)
        keyframe = int(np.argmax(similarity.max(axis=1)))
        order = list(self.heading_order)
        query_camera = order[0]
        map_camera = order[int(np.argmax(similarity[keyframe]))]  # where the query's first camera lines up
        turn = self.rig[map_camera].base_from_camera * self.rig[query_camera].base_from_camera.inverse()
        return self.keyframe_poses[keyframe] * pycolmap.Rigid3d(turn.rotation, np.zeros(3))

    def _retrieve(self, query: np.ndarray, cameras: list[int], allowed: np.ndarray) -> np.ndarray:
        """Indices of the best `retrieval_k` allowed keyframes, best first, by the rig's summed similarity at the
        best cyclic alignment of cameras."""
        score = np.where(allowed, self._similarity(query, cameras).max(axis=1), -np.inf)
        count = min(self.config.retrieval_k, int(allowed.sum()))
        return np.argsort(-score, kind="stable")[:count]

    def _similarity(self, query: np.ndarray, cameras: list[int]) -> np.ndarray:
        """(keyframes, shifts): the rig's summed similarity to each keyframe with the query's cameras shifted by
        each cyclic step of the heading order."""
        similarity = np.zeros((len(self.keyframe_nodes), len(self.rig)))
        order = list(self.heading_order)
        for shift in range(len(self.rig)):
            total = np.zeros(len(self.keyframe_nodes))
            for row, camera in zip(query, cameras, strict=True):
                position = order.index(camera)
                map_camera = order[(position + shift) % len(order)]
                nodes = self.keyframe_nodes[:, map_camera]
                total += np.where(nodes >= 0, self.node_descriptors[nodes] @ row, 0.0)
            similarity[:, shift] = total
        return similarity

    def _places(self, retrieved: np.ndarray, allowed: np.ndarray) -> list[np.ndarray]:
        """Places around the best retrieved keyframes that lie apart, best first; each lists the `place_keyframes`
        allowed keyframes nearest its centre. Every place brings as much of the map, so that the inliers of
        look-alike places compare fairly: a place that brought more keyframes would win on points alone."""
        radius = self.config.place_radius_m
        centres: list[int] = []
        for keyframe in retrieved:
            position = self.keyframe_positions[keyframe, :2]
            if all(np.linalg.norm(self.keyframe_positions[c, :2] - position) > radius for c in centres):
                centres.append(int(keyframe))
        places = []
        candidates = np.flatnonzero(allowed)
        for centre in centres[: self.config.max_places]:
            distance = np.linalg.norm(
                self.keyframe_positions[candidates, :2] - self.keyframe_positions[centre, :2], axis=1
            )
            near = candidates[distance <= radius][np.argsort(distance[distance <= radius], kind="stable")]
            places.append(near[: self.config.place_keyframes])
        return places

    def _refit(
        self, fix: _PlaceFix, keypoints: np.ndarray, descriptors: np.ndarray, camera_of: np.ndarray, allowed: np.ndarray
    ) -> _PlaceFix:
        """The place's answer again, against the `place_keyframes` map keyframes nearest the pose it gives: look-alike
        answers then compare on equal shares of the map, where the aisle that retrieval brought more keyframes of
        would win on points alone. Where that finds no pose, the first answer stands."""
        candidates = np.flatnonzero(allowed)
        position = fix.rig_from_world.inverse().translation[:2]
        distance = np.linalg.norm(self.keyframe_positions[candidates, :2] - position, axis=1)
        points = self._place_points(candidates[np.argsort(distance, kind="stable")[: self.config.place_keyframes]])
        similarity = descriptors @ self.point_descriptors[points].T
        return self._localize_at(points, similarity, keypoints, camera_of) or fix

    def _features(self, pictures: list[np.ndarray], cameras: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The query's SIFT keypoints (N, 2) in COLMAP pixels, unit descriptors (N, 128) and rig camera of each."""

        def extract(camera: int, picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # The grey conversion COLMAP gave the map's images.
            found, described = self.extractors[camera].extract(pycolmap.Bitmap.from_array(picture).clone_as_grey())
            xy = np.array([(k.x, k.y) for k in found], np.float64).reshape(-1, 2)
            return xy, described.data.reshape(-1, SIFT_DIM)

        with ThreadPoolExecutor(len(cameras)) as pool:
            keypoints, descriptors = zip(*pool.map(extract, cameras, pictures), strict=True)
        camera_of = [np.full(len(xy), camera, np.int64) for xy, camera in zip(keypoints, cameras, strict=True)]
        return (
            np.concatenate(keypoints),
            _unit_rows(np.concatenate(descriptors)),
            np.concatenate(camera_of),
        )

    def _place_points(self, place: np.ndarray) -> np.ndarray:
        """Indices of the 3D points a place's nodes observe."""
        nodes = self.keyframe_nodes[place].ravel()
        return np.unique(
            np.concatenate(
                [self.feature_point[self.feature_starts[n] : self.feature_starts[n + 1]] for n in nodes[nodes >= 0]]
            )
        )

    def _localize_at(
        self, points: np.ndarray, similarity: np.ndarray, keypoints: np.ndarray, camera_of: np.ndarray
    ) -> _PlaceFix | None:
        """The rig's pose from the query's matches to one place's 3D `points`, whose similarities to the query's
        features are `similarity` (Q, len(points)); None where there is none."""
        if not len(points):
            return None
        query, point = _ratio_matches(similarity, self.config.match_ratio)
        if len(query) < _MIN_POSE_MATCHES:
            return None
        points2d, points3d = keypoints[query], self.points[points[point]]
        answer = pycolmap.estimate_and_refine_generalized_absolute_pose(
            points2d,
            points3d,
            camera_of[query].tolist(),
            self.cams_from_rig,
            self.cameras,
            estimation_options=pycolmap.RANSACOptions(
                max_error=self.config.ransac_max_error_px,
                confidence=self.config.ransac_confidence,
                min_num_trials=self.config.ransac_min_trials,
                max_num_trials=self.config.ransac_max_trials,
                random_seed=self.config.random_seed,
            ),
            return_covariance=True,
        )
        if answer is None:
            return None
        inliers = np.asarray(answer["inlier_mask"], bool)
        rig_from_world = answer["rig_from_world"]
        residuals = self._reprojection_errors(
            rig_from_world, points2d[inliers], points3d[inliers], camera_of[query][inliers]
        )
        pixel_variance = float(residuals @ residuals) / max(2 * inliers.sum() - _POSE_DOF, 1)
        covariance = _map_covariance(rig_from_world, np.asarray(answer["covariance"])) * pixel_variance
        covariance += np.diag([self.config.map_sigma_m**2] * 3 + [np.radians(self.config.map_sigma_deg) ** 2] * 3)
        camera_inliers = np.bincount(camera_of[query][inliers], minlength=len(self.rig))
        return _PlaceFix(rig_from_world, camera_inliers, self._visible(rig_from_world, self.points[points]), covariance)

    def _visible(self, rig_from_world: pycolmap.Rigid3d, points3d: np.ndarray) -> np.ndarray:
        """How many of `points3d` (N, 3) each rig camera would see from `rig_from_world`: ahead of it within
        `visible_depth_m`, and inside its picture. Occlusion is not modelled: a place's points were all seen from
        near it."""
        near, far = self.config.visible_depth_m
        homogeneous = np.column_stack([points3d, np.ones(len(points3d))])
        visible = np.zeros(len(self.rig), np.int64)
        for camera, (camera_model, cam_from_rig) in enumerate(zip(self.cameras, self.cams_from_rig, strict=True)):
            in_camera = ((cam_from_rig * rig_from_world).matrix() @ homogeneous.T).T
            in_camera = in_camera[(in_camera[:, 2] > near) & (in_camera[:, 2] < far)]
            xy = camera_model.img_from_cam(in_camera)
            inside = (
                (xy[:, 0] >= 0) & (xy[:, 0] < camera_model.width) & (xy[:, 1] >= 0) & (xy[:, 1] < camera_model.height)
            )
            visible[camera] = int(inside.sum())
        return visible

    def _reprojection_errors(
        self, rig_from_world: pycolmap.Rigid3d, points2d: np.ndarray, points3d: np.ndarray, cameras: np.ndarray
    ) -> np.ndarray:
        """Reprojection errors (px), x and y of every point one after the other."""
        errors = []
        for camera in np.unique(cameras):
            chosen = cameras == camera
            cam_from_world = self.cams_from_rig[camera] * rig_from_world
            in_camera = (cam_from_world.matrix() @ np.column_stack([points3d[chosen], np.ones(chosen.sum())]).T).T
            errors.append((self.cameras[camera].img_from_cam(in_camera) - points2d[chosen]).ravel())
        return np.concatenate(errors)


def _descriptor_rows(column: pa.ChunkedArray) -> np.ndarray:
    """node_features descriptors (fixed-size binary) as (N, 128) uint8, without a copy per row."""
    array = column.combine_chunks()
    data = np.frombuffer(array.buffers()[1], np.uint8, count=(array.offset + len(array)) * SIFT_DIM)
    return data.reshape(-1, SIFT_DIM)[array.offset :]


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _ratio_matches(similarity: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (query feature, point) of the matches that pass Lowe's ratio test, from the (Q, P) similarities of the
    query's features to the points' (unit descriptors: distance^2 = 2 - 2 similarity)."""
    rows = np.arange(len(similarity))
    best = similarity.argmax(axis=1)
    nearest = similarity[rows, best]
    if similarity.shape[1] > 1:
        runner_up = similarity.copy()
        runner_up[rows, best] = -np.inf
        second = runner_up.max(axis=1)
    else:
        second = np.full(len(rows), -1.0)  # no rival: as far as unit vectors get
    distance = np.sqrt(np.maximum(2.0 - 2.0 * np.stack([nearest, second]), 0.0))
    passed = np.flatnonzero(distance[0] < ratio * distance[1])
    return passed, best[passed]


def _map_covariance(rig_from_world: pycolmap.Rigid3d, colmap_covariance: np.ndarray) -> np.ndarray:
    """COLMAP's covariance of rig_from_world per unit pixel variance, as that of map_from_base (x, y, z, rx, ry, rz).

    COLMAP's tangent is (rotation, translation) of rig_from_world, the rotation as Ceres' quaternion update
    exp(d) * q, whose d is half the rotation vector. Inverting the pose maps (w, dt) to position
    -R^T [t]x w - R^T dt and rotation -R^T w.
    """
    rotation, translation = rig_from_world.rotation.matrix(), rig_from_world.translation
    cross = np.array(
        [
            [0.0, -translation[2], translation[1]],
            [translation[2], 0.0, -translation[0]],
            [-translation[1], translation[0], 0.0],
        ]
    )
    jacobian = np.block([[-rotation.T @ cross, -rotation.T], [-rotation.T, np.zeros((3, 3))]])
    jacobian[:, :3] *= 2.0  # from Ceres' half-angle quaternion tangent to a rotation vector
    return jacobian @ colmap_covariance @ jacobian.T


def failed_fix(candidates: tuple[str, ...], reason: str, inliers: int = 0) -> LocalizationFix:
    """A fix that found nothing: anywhere, any way round, with why."""
    return LocalizationFix(False, None, _UNKNOWN_COVARIANCE.copy(), 0.0, inliers, candidates, reason)
