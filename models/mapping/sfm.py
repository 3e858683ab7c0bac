"""Structure from motion over keyframes of the three-camera rig, held to wheel odometry.

pycolmap does the work: SIFT extraction, matching of chosen image pairs, incremental mapping with the
rig's calibration fixed (sim intrinsics and mounts are exact). Wheel odometry steps in where vision
alone is fooled, which in our buildings is often: wall, floor and ceiling textures tile every 2 m, so
a view one tile further along looks the same.

- Pairing: keyframes near in time or in odometry position (a few per keyframe from other visits to a
  place), and only their cameras that look roughly the same way; matching is the dearest stage on a CPU.
- Verification: pairs a short drive apart keep the matches that fit the relative pose odometry
  predicts (it drifts little over a few metres) and triangulate at a plausible depth; other pairs,
  loop closures and pairs across episodes, get COLMAP's RANSAC.
- Mapping: seeded with a few metres of keyframes at their odometry poses, and kept from registering
  frames at look-alike places (`_Mapper`).
- Alignment: scaled to the distance odometry drove, then moved rigidly onto the first episode's
  odometry, so the map is that episode's odom frame: metric, z up.

Across episodes odometry positions are compared, for pairing only, as if every odom frame were the
same: that holds where every episode starts at the same dock (the simulator's spawn), up to each
episode's drift, which `match_radius` has to cover. Relative poses from odometry are used within an
episode only.

Conventions: `x_from_y` maps coordinates in frame y to frame x, so `map_from_camera` is the pose of
the camera in the map; COLMAP's `cam_from_world` is its inverse.
"""

from __future__ import annotations

import bisect
import itertools
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pycolmap
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from schemas.map import SIFT_DIM, conform_table
from schemas.robot import RobotConfig, camera_mount

_OPTICAL_AXIS = np.array([0.0, 0.0, 1.0])
# Bundle-adjust everything whenever the registered frames have grown by this factor since the last time.
_GLOBAL_REFINEMENT_GROWTH = 1.4
_MAX_IMAGES_DIRECT_SOLVER = 20_000
_MIN_RESIDUALS_FOR_THREADS = 1_000
_MIN_INLIERS = pycolmap.TwoViewGeometryOptions().min_num_inliers


@dataclass(frozen=True)
class RigCamera:
    """One camera of the robot: pinhole intrinsics as in sensor_msgs/CameraInfo and its mount on base_link."""

    name: str
    width: int
    height: int
    k: tuple[float, ...]  # row-major 3x3; pixel centres at integer coordinates (ROS)
    base_from_camera: pycolmap.Rigid3d  # the optical frame (z forward, x right, y down)

    def colmap_camera(self) -> pycolmap.Camera:
        """The same camera in COLMAP's PINHOLE model."""
        fx, _, cx, _, fy, cy = self.k[:6]
        # COLMAP puts pixel centres at half-integer coordinates, ROS at integers.
        return pycolmap.Camera(
            model="PINHOLE",
            width=self.width,
            height=self.height,
            params=[fx, fy, cx + 0.5, cy + 0.5],
            has_prior_focal_length=True,
        )


def rig_cameras(config: RobotConfig) -> tuple[RigCamera, ...]:
    """The robot's cameras as its configuration describes them, in `config.cameras` order.

    Pinhole at `config.focal_px` with the optical axis through the image centre (as the simulator's
    camera_info), mounted where schemas.robot.camera_mount puts them.
    """
    cx, cy = (config.camera_width - 1) / 2, (config.camera_height - 1) / 2
    k = (config.focal_px, 0.0, cx, 0.0, config.focal_px, cy, 0.0, 0.0, 1.0)
    rig = []
    for name in config.cameras:
        translation, rotation = camera_mount(config, name)
        mount = pycolmap.Rigid3d(pycolmap.Rotation3d(rotation.as_quat()), np.array(translation))
        rig.append(RigCamera(name, config.camera_width, config.camera_height, k, mount))
    return tuple(rig)


@dataclass(frozen=True)
class Keyframe:
    """The rig's pictures at one instant of an episode, with the wheel odometry pose there."""

    episode_id: str
    t_ns: int
    odom_from_base: pycolmap.Rigid3d  # in this episode's odom frame
    images: dict[str, bytes]  # camera name -> JPEG

    def image_name(self, camera: str) -> str:
        """The image's name in the reconstruction: one folder per camera, time-ordered within an episode."""
        return f"{camera}/{self.episode_id}_{self.t_ns:020d}.jpg"


DATABASE_FILE = "database.db"  # in build_map's work folder, until the folder is removed


@dataclass(frozen=True)
class SiftSettings:
    """How COLMAP's SIFT describes pictures: a map's and the queries localized against it must agree."""

    # Without orientations (the cameras do not roll) tours built 6-9 % faster and as accurately, but the two sides of
    # a washed-out stretch (tests/test_sfm.py) joined at 4.2 deg median rotation error against 1.3.
    upright: bool = False
    first_octave: int = -1  # -1 doubles the picture first, which finds most keypoints on 320x240 pictures
    octave_resolution: int = 3
    peak_threshold: float = 0.02 / 3
    max_orientations: int = 2

    def apply(self, sift: pycolmap.SiftExtractionOptions) -> None:
        """Set these on COLMAP's extraction options."""
        sift.upright = self.upright
        sift.first_octave = self.first_octave
        sift.octave_resolution = self.octave_resolution
        sift.peak_threshold = self.peak_threshold
        sift.max_num_orientations = self.max_orientations


# `fast`: on the pictures as recorded, with more scales per octave and a lower threshold to find keypoints the doubled
# picture would. The 265 s office tour built in 157 s against 305 s, at ATE 0.026 against 0.015 m, but a navigation
# test's robot then relocalized once where it must twice (session 36): not the default.
FEATURES = {
    "accurate": SiftSettings(),  # COLMAP's defaults
    "fast": SiftSettings(first_octave=0, octave_resolution=5, peak_threshold=0.001),
}
DEFAULT_FEATURES = "accurate"


@dataclass(frozen=True)
class SfmConfig:
    """Feature, pairing, verification, mapping and alignment settings."""

    max_features: int = 2000
    sift: SiftSettings = FEATURES[DEFAULT_FEATURES]
    sequential_overlap: int = 3  # each keyframe is matched with this many next ones of its episode
    # Spatial pairs within 1 m and 45 deg, half as many, built the office as well but lost a stretch of the hospital
    # (seed 31, 300 s: registered 0.84, ATE 0.23 m).
    match_radius: float = 2.0  # m between odometry positions of base_link for spatial pairs
    max_revisit_pairs: int = 6  # spatial pairs per keyframe with other visits to its place
    max_view_angle_deg: float = 60.0  # cameras whose optical axes differ more are not matched
    odometry_trust_distance: float = 5.0  # m of driving over which odometry verifies a pair
    max_epipolar_error: float = 3.0  # px
    max_depth: float = 40.0  # m; matched points farther away than any wall are look-alikes
    seed_distance: float = 2.0  # m of driving either side of the keyframe mapping starts from
    # Where registration stalls, this many consecutive keyframes at most are put where odometry says together, so that
    # they triangulate among themselves past frames that matched their neighbours poorly (an exposure jump at a door).
    reseed_keyframes: int = 6
    consistency_window: int = 5  # registered keyframes either side that a registration is checked against
    max_odometry_deviation: float = 0.3  # m between mapped and odometry relative positions, plus ...
    odometry_drift: float = 0.05  # ... this much per metre driven between the two keyframes
    num_threads: int = -1
    seed: int = 0


def recorded_sfm_config(recorded: Mapping[str, Any]) -> SfmConfig:
    """The settings a map's manifest records (its build["sfm"]). Maps made before `sift` (session 36) were described
    with COLMAP's defaults, or without orientations where they record `upright`."""
    settings = dict(recorded)
    sift = settings.pop("sift", {"upright": settings.pop("upright", False)})
    return SfmConfig(**settings, sift=SiftSettings(**sift))


@dataclass(frozen=True)
class MappedKeyframe:
    """Where the mapping put one keyframe; poses are None / empty when it was not registered."""

    episode_id: str
    t_ns: int
    map_from_base: pycolmap.Rigid3d | None
    map_from_cameras: dict[str, pycolmap.Rigid3d]
    placed_by_odometry: bool = False  # registered, but the mapper put it at odometry's pose before refining it

    @property
    def registered(self) -> bool:
        return self.map_from_base is not None


@dataclass
class SfmMap:
    """The aligned reconstruction, every keyframe's outcome, counts, and the seconds each stage took.

    `counts`: keyframes, registered keyframes, of those the ones the mapper put at odometry's pose before
    refining them (`placed_by_odometry`), matched image pairs, verified image pairs, 3D points.
    """

    reconstruction: pycolmap.Reconstruction
    keyframes: list[MappedKeyframe]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    # Registered image name -> SIFT descriptors (N, 128) uint8 of its keypoints that observe a 3D point, in order.
    # COLMAP's reconstruction keeps keypoints but not descriptors, which a localizer needs.
    point_descriptors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def registration_rate(self) -> float:
        """Share of keyframes registered in the map."""
        return sum(k.registered for k in self.keyframes) / max(len(self.keyframes), 1)

    def write(self, path: Path) -> None:
        """Write the reconstruction in COLMAP's binary format."""
        path.mkdir(parents=True, exist_ok=True)
        self.reconstruction.write(path)

    def node_features(self) -> pa.Table:
        """The map table `node_features` (schemas.map), images named as their nodes, points where they are now.

        Call it after the last move of the reconstruction, since it copies the points' positions.
        """
        node_ids, keypoints, point_ids, descriptors = [], [], [], []
        for name, image_descriptors in self.point_descriptors.items():
            observed = self.reconstruction.find_image_with_name(name).get_observation_points2D()
            node_ids += [name] * len(observed)
            keypoints += [p.xy for p in observed]
            point_ids += [p.point3D_id for p in observed]
            descriptors.append(image_descriptors)
        keypoints = np.array(keypoints, np.float32).reshape(-1, 2)
        # Each point once: a Point3D fetched from pycolmap is a copy, track and all.
        unique_ids, of_point = np.unique(np.array(point_ids, np.int64), return_inverse=True)
        unique_points = np.array([self.reconstruction.point3D(i).xyz for i in unique_ids], np.float32)
        points = unique_points.reshape(-1, 3)[of_point.reshape(-1)]
        table = pa.table(
            {
                "node_id": pa.array(node_ids, pa.string()),
                "x": keypoints[:, 0],
                "y": keypoints[:, 1],
                "point3D_id": pa.array(point_ids, pa.int64()),
                **{f"point_{a}": points[:, i] for i, a in enumerate("xyz")},
                "descriptor": _fixed_binary(np.concatenate([np.empty((0, SIFT_DIM), np.uint8), *descriptors])),
            }
        )
        return conform_table("node_features", table)


def build_map(
    keyframes: Sequence[Keyframe], rig: Sequence[RigCamera], work_dir: Path, config: SfmConfig = SfmConfig()
) -> SfmMap:
    """Reconstruct keyframes of one or more episodes into one map in the first episode's odom frame.

    Keyframes come in time order within each episode; `rig[0]` is the rig's reference camera.
    `work_dir` receives the images and the COLMAP database; it is emptied first.
    """
    shutil.rmtree(work_dir, ignore_errors=True)
    image_dir, database = work_dir / "images", work_dir / DATABASE_FILE
    image_dir.mkdir(parents=True)
    pycolmap.set_random_seed(config.seed)
    odometry = _Odometry(keyframes, rig, config)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    _write_images(keyframes, rig, image_dir)
    _extract_features(database, image_dir, keyframes, rig, config)
    seconds["features"] = time.perf_counter() - start

    start = time.perf_counter()
    pairs = _match(database, work_dir / "pairs.txt", keyframes, rig, odometry, config)
    with pycolmap.Database.open(database) as db:
        verified = db.num_verified_image_pairs()
    seconds["matching"] = time.perf_counter() - start

    start = time.perf_counter()
    mapper = _Mapper(database, rig, odometry, config)
    reconstruction = mapper.run()
    _align_to_odometry(reconstruction, keyframes, rig)
    mapped = _mapped(keyframes, rig, reconstruction, mapper.placed)
    seconds["mapping"] = time.perf_counter() - start

    counts = {
        "keyframes": len(keyframes),
        "registered": sum(m.registered for m in mapped),
        "placed_by_odometry": sum(m.placed_by_odometry for m in mapped),
        "image_pairs": pairs,
        "verified_pairs": verified,
        "points3D": reconstruction.num_points3D(),
    }
    return SfmMap(reconstruction, mapped, counts, seconds, _point_descriptors(database, reconstruction))


def _point_descriptors(database: Path, reconstruction: pycolmap.Reconstruction) -> dict[str, np.ndarray]:
    """SfmMap.point_descriptors: from the database, where COLMAP keeps them in its keypoints' (points2D) order."""
    with pycolmap.Database.open(database) as db:
        return {
            image.name: db.read_descriptors(image.image_id).data[
                np.array(image.get_observation_point2D_idxs(), np.int64)
            ]
            for image in reconstruction.images.values()
            if image.has_pose
        }


def _fixed_binary(rows: np.ndarray) -> pa.Array:
    """A (N, D) uint8 array as N fixed-size binary values of D bytes."""
    rows = np.ascontiguousarray(rows, np.uint8)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(rows.shape[1]), len(rows), [None, pa.py_buffer(rows.tobytes())]
    )


def image_pairs(keyframes: Sequence[Keyframe], rig: Sequence[RigCamera], config: SfmConfig) -> np.ndarray:
    """Pairs (keyframe, camera, keyframe, camera) of indices worth matching, (P, 4).

    Keyframes near in time, or near in odometry position on the same visit, or on another visit (a return to the
    place, or another episode) among each one's `max_revisit_pairs` nearest such; of those, only cameras that look
    alike. The cap keeps the pairs linear in the keyframes: a robot that passes one place n times would otherwise
    pair every visit with every other.
    """
    positions = np.array([k.odom_from_base.translation for k in keyframes])
    near = cKDTree(positions[:, :2]).query_pairs(config.match_radius, output_type="ndarray").reshape(-1, 2)
    episodes = np.array([k.episode_id for k in keyframes])
    travelled = _travelled(keyframes)
    same_visit = (episodes[near[:, 0]] == episodes[near[:, 1]]) & (
        np.abs(travelled[near[:, 0]] - travelled[near[:, 1]]) <= 2 * config.match_radius
    )
    revisits = near[~same_visit]
    index = np.arange(len(keyframes))
    soon = [
        np.column_stack([index[:-step], index[step:]])[episodes[:-step] == episodes[step:]]
        for step in range(1, min(config.sequential_overlap, len(keyframes) - 1) + 1)
    ]
    candidates = np.unique(np.concatenate([near[same_visit], _nearest(revisits, positions, config), *soon]), axis=0)
    axes = np.array(
        [[(k.odom_from_base * c.base_from_camera).rotation * _OPTICAL_AXIS for c in rig] for k in keyframes]
    )
    alike = np.einsum("pad,pbd->pab", axes[candidates[:, 0]], axes[candidates[:, 1]])
    pair, camera1, camera2 = np.nonzero(alike >= np.cos(np.radians(config.max_view_angle_deg)))
    return np.column_stack([candidates[pair, 0], camera1, candidates[pair, 1], camera2])


def _nearest(pairs: np.ndarray, positions: np.ndarray, config: SfmConfig) -> np.ndarray:
    """The pairs (P, 2) that are among the `max_revisit_pairs` shortest of either of their keyframes."""
    directed = np.concatenate([pairs, pairs[:, ::-1]])
    length = np.linalg.norm(positions[directed[:, 0]] - positions[directed[:, 1]], axis=1)
    order = np.lexsort((length, directed[:, 0]))  # by keyframe, then shortest first
    keyframe = directed[order, 0]
    first = np.searchsorted(keyframe, keyframe)  # where each keyframe's run starts
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - first
    kept = directed[rank < config.max_revisit_pairs]
    return np.unique(np.sort(kept, axis=1), axis=0).reshape(-1, 2)


def _travelled(keyframes: Sequence[Keyframe]) -> np.ndarray:
    """Odometry path length from each keyframe's episode start to it, m (keyframes in time order per episode)."""
    positions = np.array([k.odom_from_base.translation for k in keyframes]).reshape(-1, 3)
    steps = np.linalg.norm(np.diff(positions, axis=0, prepend=positions[:1]), axis=1)
    episodes = [k.episode_id for k in keyframes]
    steps[[i for i in range(1, len(keyframes)) if episodes[i] != episodes[i - 1]]] = 0.0
    return np.cumsum(steps)


class _Odometry:
    """Wheel odometry as a judge of image pairs and registrations: within an episode, over short drives."""

    def __init__(self, keyframes: Sequence[Keyframe], rig: Sequence[RigCamera], config: SfmConfig) -> None:
        self.keyframes, self.rig, self.config = keyframes, rig, config
        self.of_name = {k.image_name(c.name): (i, j) for i, k in enumerate(keyframes) for j, c in enumerate(rig)}
        self.travelled = _travelled(keyframes)

    def cam2_from_cam1(self, name1: str, name2: str) -> pycolmap.Rigid3d | None:
        """The relative pose of two images where odometry knows it well, else None."""
        (k1, c1), (k2, c2) = self.of_name[name1], self.of_name[name2]
        if (
            self.keyframes[k1].episode_id != self.keyframes[k2].episode_id
            or abs(self.travelled[k2] - self.travelled[k1]) > self.config.odometry_trust_distance
        ):
            return None
        odom_from_cam1 = self.keyframes[k1].odom_from_base * self.rig[c1].base_from_camera
        odom_from_cam2 = self.keyframes[k2].odom_from_base * self.rig[c2].base_from_camera
        return odom_from_cam2.inverse() * odom_from_cam1

    def seed(
        self, reference_images: dict[int, pycolmap.Image], correspondences: pycolmap.CorrespondenceGraph
    ) -> list[int]:
        """Keyframes to start mapping from: a short drive around the keyframe with the most correspondences."""
        counts = np.zeros(len(self.keyframes))
        for image in reference_images.values():
            for data_id in image.frame.image_ids:
                counts[self.of_name[image.name][0]] += correspondences.num_correspondences_for_image(data_id.id)
        centre = int(np.argmax(counts))
        episode = self.keyframes[centre].episode_id
        return [
            k
            for k in range(len(self.keyframes))
            if self.keyframes[k].episode_id == episode
            and abs(self.travelled[k] - self.travelled[centre]) <= self.config.seed_distance
        ]

    def predict(self, keyframe: int, map_from_base: dict[int, pycolmap.Rigid3d]) -> pycolmap.Rigid3d:
        """map_from_base of a keyframe by odometry from the nearest (in driving) registered one of its episode."""
        episode = self.keyframes[keyframe].episode_id
        nearest = min(
            (k for k in map_from_base if k != keyframe and self.keyframes[k].episode_id == episode),
            key=lambda k: abs(self.travelled[k] - self.travelled[keyframe]),
        )
        return (
            map_from_base[nearest]
            * self.keyframes[nearest].odom_from_base.inverse()
            * self.keyframes[keyframe].odom_from_base
        )

    def next_to(self, map_from_base: dict[int, pycolmap.Rigid3d]) -> set[int]:
        """Keyframes not in `map_from_base` whose neighbour in time, in their episode, is."""
        return {
            k
            for k in range(len(self.keyframes))
            if k not in map_from_base
            and any(
                n in map_from_base and self.keyframes[n].episode_id == self.keyframes[k].episode_id
                for n in (k - 1, k + 1)
            )
        }

    def run_from(self, keyframe: int, map_from_base: dict[int, pycolmap.Rigid3d], length: int) -> list[int]:
        """`keyframe`, next to a registered one of its episode, and the keyframes after it going away from that one:
        `length` at most, none registered, all of its episode."""
        episode = self.keyframes[keyframe].episode_id
        step = 1 if keyframe - 1 in map_from_base else -1
        run = []
        for k in range(keyframe, keyframe + step * length, step):
            if not 0 <= k < len(self.keyframes) or k in map_from_base or self.keyframes[k].episode_id != episode:
                break
            run.append(k)
        return run

    def can_judge(self, keyframe: int, map_from_base: dict[int, pycolmap.Rigid3d]) -> bool:
        """Whether a keyframe registered now could be checked against odometry: a registered keyframe of its
        episode lies within `odometry_trust_distance` of driving, or none of its episode is registered yet."""
        episode = self.keyframes[keyframe].episode_id
        gaps = [
            abs(self.travelled[k] - self.travelled[keyframe])
            for k in map_from_base
            if self.keyframes[k].episode_id == episode
        ]
        return not gaps or min(gaps) <= self.config.odometry_trust_distance

    def contradicts(self, keyframe: int, map_from_base: dict[int, pycolmap.Rigid3d]) -> bool:
        """Whether a registered keyframe sits, relative to most of its nearest registered neighbours in time, where
        odometry says it does not. `map_from_base` holds the poses of all registered keyframes by index."""
        episode = self.keyframes[keyframe].episode_id
        others = [
            k
            for k in sorted(map_from_base)
            if k != keyframe
            and self.keyframes[k].episode_id == episode
            and abs(self.travelled[k] - self.travelled[keyframe]) <= self.config.odometry_trust_distance
        ]
        cut, window = bisect.bisect(others, keyframe), self.config.consistency_window
        pose, odom_pose = map_from_base[keyframe].inverse(), self.keyframes[keyframe].odom_from_base.inverse()
        wrong = [
            np.linalg.norm(
                (pose * map_from_base[k]).translation - (odom_pose * self.keyframes[k].odom_from_base).translation
            )
            > self.config.max_odometry_deviation
            + self.config.odometry_drift * abs(self.travelled[k] - self.travelled[keyframe])
            for k in others[max(cut - window, 0) : cut + window]
        ]
        return sum(wrong) > len(wrong) / 2


def _write_images(keyframes: Sequence[Keyframe], rig: Sequence[RigCamera], image_dir: Path) -> None:
    for camera in rig:
        (image_dir / camera.name).mkdir()
        for keyframe in keyframes:
            (image_dir / keyframe.image_name(camera.name)).write_bytes(keyframe.images[camera.name])


def _extract_features(
    database: Path, image_dir: Path, keyframes: Sequence[Keyframe], rig: Sequence[RigCamera], config: SfmConfig
) -> None:
    extraction = pycolmap.FeatureExtractionOptions(num_threads=config.num_threads, use_gpu=False)
    extraction.sift.max_num_features = config.max_features
    config.sift.apply(extraction.sift)
    pycolmap.extract_features(
        database,
        image_dir,
        image_names=[k.image_name(c.name) for k in keyframes for c in rig],
        camera_mode=pycolmap.CameraMode.PER_FOLDER,
        reader_options=pycolmap.ImageReaderOptions(camera_model="PINHOLE"),
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )
    # Images sharing a file name across the camera folders form one frame of the rig.
    reference = rig[0].base_from_camera
    rig_config = pycolmap.RigConfig(
        cameras=[
            pycolmap.RigConfigCamera(
                ref_sensor=i == 0,
                image_prefix=f"{camera.name}/",
                cam_from_rig=None if i == 0 else camera.base_from_camera.inverse() * reference,
                camera=camera.colmap_camera(),
            )
            for i, camera in enumerate(rig)
        ]
    )
    with pycolmap.Database.open(database) as db:
        pycolmap.apply_rig_config([rig_config], db)


def _match(
    database: Path,
    pairs_file: Path,
    keyframes: Sequence[Keyframe],
    rig: Sequence[RigCamera],
    odometry: _Odometry,
    config: SfmConfig,
) -> int:
    """Match the image pairs worth it and verify them; returns how many pairs were matched."""
    names = [[k.image_name(c.name) for c in rig] for k in keyframes]
    pairs = [(names[k1][c1], names[k2][c2]) for k1, c1, k2, c2 in image_pairs(keyframes, rig, config)]
    pairs_file.write_text("".join(f"{a} {b}\n" for a, b in pairs))
    pycolmap.match_image_pairs(
        database,
        matching_options=pycolmap.FeatureMatchingOptions(
            num_threads=config.num_threads, use_gpu=False, skip_geometric_verification=True
        ),
        pairing_options=pycolmap.ImportedPairingOptions(match_list_path=pairs_file),
        device=pycolmap.Device.cpu,
    )
    # Pairs a short drive apart get the relative pose odometry predicts, and verification keeps the matches it
    # explains; the other pairs get RANSAC.
    with pycolmap.Database.open(database) as db:
        image_ids = {image.name: image.image_id for image in db.read_all_images()}
        known = {}
        for pair in pairs:
            name1, name2 = sorted(pair, key=image_ids.__getitem__)  # COLMAP's order of a pair
            if (cam2_from_cam1 := odometry.cam2_from_cam1(name1, name2)) is not None:
                known[image_ids[name1], image_ids[name2]] = cam2_from_cam1
        for (id1, id2), cam2_from_cam1 in known.items():
            db.delete_two_view_geometry(id1, id2)
            db.write_two_view_geometry(
                id1,
                id2,
                pycolmap.TwoViewGeometry(
                    config=pycolmap.TwoViewGeometryConfiguration.CALIBRATED, cam2_from_cam1=cam2_from_cam1
                ),
            )
    pycolmap.geometric_verification(
        database,
        pycolmap.GeometricVerifierOptions(num_threads=config.num_threads, use_existing_relative_pose=True),
        two_view_geometry_options=verification_options(config),
    )
    with pycolmap.Database.open(database) as db:
        rays = {}
        for image in db.read_all_images():
            xy = db.read_camera(image.camera_id).cam_from_img(db.read_keypoints(image.image_id)[:, :2])
            rays[image.image_id] = np.column_stack([xy, np.ones(len(xy))])
        _drop_implausible_depths(db, known, rays, config.max_depth)
    return len(pairs)


def verification_options(config: SfmConfig) -> pycolmap.TwoViewGeometryOptions:
    """Two-view verification with our epipolar threshold and seed.

    RANSAC keeps the two-view estimator's own trial counts: `RANSACOptions()`'s generic ones (at least 1,000 trials,
    where 100 do here) made the pairs without an odometry pose verify 7 times slower, no fewer of them accepted.
    """
    options = pycolmap.TwoViewGeometryOptions()
    options.ransac.max_error, options.ransac.random_seed = config.max_epipolar_error, config.seed
    return options


def _drop_implausible_depths(
    db: pycolmap.Database,
    known: Mapping[tuple[int, int], pycolmap.Rigid3d],
    rays: Mapping[int, np.ndarray],
    max_depth: float,
) -> None:
    """Keep only the matches of pairs of known relative pose that triangulate in front of both cameras, in reach.

    The epipolar check cannot see a match slide along its epipolar line. Driving one texture tile along a wall
    shows the wall unchanged, and those matches fit the true motion with points at infinity.
    """
    pairs = list(known)
    if not pairs:
        return
    geometries = [db.read_two_view_geometry(id1, id2) for id1, id2 in pairs]
    matches = [geometry.inlier_matches for geometry in geometries]
    counts = [len(m) for m in matches]
    # All pairs' matches at once: a pycolmap call per match cost 0.9 s per 110-keyframe submap.
    rotations = np.repeat(np.array([known[p].rotation.matrix() for p in pairs]).reshape(-1, 3, 3), counts, axis=0)
    translations = np.repeat(np.array([known[p].translation for p in pairs]).reshape(-1, 3), counts, axis=0)
    rays1 = np.concatenate(
        [rays[id1][m[:, 0]] for (id1, _), m in zip(pairs, matches, strict=True)] or [np.empty((0, 3))]
    )
    rays2 = np.concatenate(
        [rays[id2][m[:, 1]] for (_, id2), m in zip(pairs, matches, strict=True)] or [np.empty((0, 3))]
    )
    points = mid_points(rotations, translations, rays1, rays2)
    depth1 = points[:, 2]
    depth2 = np.einsum("nj,nj->n", rotations[:, 2], points) + translations[:, 2]
    plausible = (depth1 > 0) & (depth1 < max_depth) & (depth2 > 0) & (depth2 < max_depth)  # False where NaN
    for (id1, id2), geometry, pair_matches, keep in zip(
        pairs, geometries, matches, np.split(plausible, np.cumsum(counts)[:-1]), strict=True
    ):
        if keep.all():
            continue
        geometry.inlier_matches = pair_matches[keep] if keep.sum() >= _MIN_INLIERS else pair_matches[:0]
        db.update_two_view_geometry(id1, id2, geometry)


def mid_points(
    cam2_from_cam1_rotations: np.ndarray, cam2_from_cam1_translations: np.ndarray, rays1: np.ndarray, rays2: np.ndarray
) -> np.ndarray:
    """Per row, the midpoint of the shortest segment between ray 1 from camera 1 and ray 2 from camera 2, in camera 1
    (N, 3); NaN where the rays are parallel or would meet behind either camera.

    Rotations (N, 3, 3) and translations (N, 3) take camera 1 to camera 2; rays (N, 3) are in their own camera.
    """
    directions2 = np.einsum("nji,nj->ni", cam2_from_cam1_rotations, rays2)  # ray 2 in camera 1
    centres2 = -np.einsum("nji,nj->ni", cam2_from_cam1_rotations, cam2_from_cam1_translations)
    a, b, c = (
        np.einsum("ni,ni->n", u, v) for u, v in ((rays1, rays1), (rays1, directions2), (directions2, directions2))
    )
    d, e = np.einsum("ni,ni->n", rays1, centres2), np.einsum("ni,ni->n", directions2, centres2)
    denominator = a * c - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        length1, length2 = (c * d - b * e) / denominator, (b * d - a * e) / denominator
        meet = (denominator > 1e-12 * a * c) & (length1 > 0) & (length2 > 0)
        points = 0.5 * (length1[:, None] * rays1 + centres2 + length2[:, None] * directions2)
    return np.where(meet[:, None], points, np.nan)


class _Mapper:
    """COLMAP's incremental mapping for one model, seeded by odometry and kept in line with it.

    The seed is a few metres of one episode's keyframes at their odometry poses: metric, level, and too long a
    baseline for look-alike places to fool. Then frames are registered as pycolmap's IncrementalPipeline does,
    with three changes. A registration that odometry contradicts, relative to the frame's registered neighbours
    in time, is a look-alike place (aisles look alike, and a frame may fit a place metres away as well as its own):
    the frame is put where odometry says instead, and tracks then continue only through the matches that fit there.
    Odometry speaks only for short drives, so a frame none of whose registered neighbours in time lies within that
    drive waits: registered across the tour, it would be a loop closure or a look-alike place that nothing could
    tell apart, and put by odometry driven that far, it turned the map after it by degrees (the warehouse-504 tour
    with carts: 1.8 m ATE, now 0.02 m). And where registration stalls with frames next to registered ones in time
    still out, such a frame is put where odometry says too. Either way a frame stays only if it then observes
    enough triangulated points.
    """

    def __init__(self, database: Path, rig: Sequence[RigCamera], odometry: _Odometry, config: SfmConfig) -> None:
        self.odometry = odometry
        self.options = pycolmap.IncrementalPipelineOptions(
            ba_refine_sensor_from_rig=False,
            ba_refine_focal_length=False,
            ba_refine_principal_point=False,
            ba_refine_extra_params=False,
            num_threads=config.num_threads,
            random_seed=config.seed,
            # COLMAP adjusts problems under 50,000 residuals on one thread: every local adjustment here.
            ba_min_num_residuals_for_cpu_multi_threading=_MIN_RESIDUALS_FOR_THREADS,
            # One local adjustment per registration, not two: mapping 9 % faster, ATE unchanged (office 265 s,
            # hospital seed 31); global refinements still follow.
            ba_local_max_refinements=1,
        )
        self.mapper_options, self.triangulation = self.options.get_mapper(), self.options.get_triangulation()
        self.global_adjustment = self.options.get_global_bundle_adjustment()
        # A three-camera rig passes COLMAP's 1000 images for a direct solver at 334 keyframes; the iterative solver
        # it then picks took twice as long on a 400-keyframe tour, with steps that failed.
        self.global_adjustment.ceres.max_num_images_direct_sparse_cpu_solver = _MAX_IMAGES_DIRECT_SOLVER
        with pycolmap.Database.open(database) as db:
            self.cache = pycolmap.DatabaseCache.create(
                db, pycolmap.DatabaseCacheOptions(min_num_matches=self.options.min_num_matches, load_all_images=True)
            )
        self.reconstruction = pycolmap.Reconstruction()
        self.reconstruction.load(self.cache)
        self.base_from_reference = rig[0].base_from_camera
        self.reference_images = {
            odometry.of_name[image.name][0]: image
            for image in self.reconstruction.images.values()
            if image.is_ref_in_frame()
        }
        self.placed: set[int] = set()  # keyframes put where odometry says, at some point
        self.tried: set[int] = set()  # keyframes put there because registration stalled

    def run(self) -> pycolmap.Reconstruction:
        """Map all the frames that can be; returns the reconstruction in the seed episode's odom frame."""
        for keyframe in self.odometry.seed(self.reference_images, self.cache.correspondence_graph):
            frame = self.reconstruction.frame(self.reference_images[keyframe].frame_id)
            frame.rig_from_world = self._rig_from_world(self.odometry.keyframes[keyframe].odom_from_base)
            self.reconstruction.register_frame(frame.frame_id)
        self.mapper = pycolmap.IncrementalMapper(self.cache)
        self.mapper.begin_reconstruction(self.reconstruction)
        for keyframe in self._map_from_base():
            self._triangulate(keyframe)
        self._refine_globally()
        refined_at, stalled = self.reconstruction.num_reg_frames(), False
        while True:
            if self._register_next() or self._place_next():
                stalled = False
                if self.reconstruction.num_reg_frames() >= _GLOBAL_REFINEMENT_GROWTH * refined_at:
                    self._refine_globally()
                    refined_at = self.reconstruction.num_reg_frames()
            elif stalled:
                break
            else:
                # Better structure may let frames register that failed so far.
                self._refine_globally()
                stalled = True
        # COLMAP never filters frames that were registered before mapping began: the seed. And refinement can pull
        # a keyframe off odometry after it was kept (an odometry glitch, a look-alike's tracks): it is dropped rather
        # than left as a seam.
        map_from_base = self._map_from_base()
        for keyframe in map_from_base:
            if not self._observes_enough(keyframe) or self.odometry.contradicts(keyframe, map_from_base):
                self.mapper.observation_manager.deregister_frame(self.reference_images[keyframe].frame_id)
                self.placed.discard(keyframe)
        self.mapper.end_reconstruction(False)
        return self.reconstruction

    def _register_next(self) -> bool:
        map_from_base = self._map_from_base()
        for image_id in self.mapper.find_next_images(self.mapper_options, False):
            keyframe = self.odometry.of_name[self.reconstruction.image(image_id).name][0]
            if not self.odometry.can_judge(keyframe, map_from_base):
                # A jump across the tour: a loop closure or a look-alike place. It waits until the keyframes
                # next to it in time are in, so that odometry can tell which.
                continue
            if not self.mapper.register_next_image(self.mapper_options, image_id):
                continue
            map_from_base = self._map_from_base()
            if self.odometry.contradicts(keyframe, map_from_base):
                self.mapper.observation_manager.deregister_frame(self.reference_images[keyframe].frame_id)
                self._place(keyframe, map_from_base)
            if self._keep(keyframe):
                return True
            map_from_base = self._map_from_base()
        return False

    def _place_next(self) -> bool:
        for keyframe in sorted(self.odometry.next_to(self._map_from_base()) - self.tried):
            self.tried.add(keyframe)
            if self._place_run(keyframe):
                return True
        return False

    def _place_run(self, first: int) -> bool:
        """Put `first` where odometry says and keep it if it observes enough points. If it does not (it matched its
        neighbours poorly, or not at all: a picture washed out at a door), put the next keyframes away from the
        registered ones there too, one at a time, until two of the run observe enough points, triangulated among
        themselves; keep those, and drop the rest of the run."""
        run: list[int] = []
        for keyframe in self.odometry.run_from(first, self._map_from_base(), self.odometry.config.reseed_keyframes):
            self._place(keyframe, self._map_from_base())
            run.append(keyframe)
            for placed in run:
                self._triangulate(placed)
            observing = [placed for placed in run if self._observes_enough(placed)]
            if observing == [first] or len(observing) >= 2:
                break
        else:
            observing = []
        for placed in set(run) - set(observing):
            self.mapper.observation_manager.deregister_frame(self.reference_images[placed].frame_id)
            self.placed.discard(placed)
        return bool(observing) and self._keep(observing[-1])

    def _place(self, keyframe: int, map_from_base: dict[int, pycolmap.Rigid3d]) -> None:
        self.placed.add(keyframe)
        frame_id = self.reference_images[keyframe].frame_id
        self.reconstruction.frame(frame_id).rig_from_world = self._rig_from_world(
            self.odometry.predict(keyframe, map_from_base)
        )
        self.mapper.observation_manager.register_frame(frame_id)

    def _keep(self, keyframe: int) -> bool:
        """Triangulate a newly registered frame, refine around it, and keep it if it observes enough points."""
        image = self.reference_images[keyframe]
        self._triangulate(keyframe)
        self.mapper.iterative_local_refinement(
            self.options.ba_local_max_refinements,
            self.options.ba_local_max_refinement_change,
            self.mapper_options,
            self.options.get_local_bundle_adjustment(),
            self.triangulation,
            image.image_id,
        )
        if self._observes_enough(keyframe) and not self.odometry.contradicts(keyframe, self._map_from_base()):
            return True
        self.mapper.observation_manager.deregister_frame(image.frame_id)
        self.placed.discard(keyframe)
        return False

    def _observes_enough(self, keyframe: int) -> bool:
        frame = self.reference_images[keyframe].frame
        observed = sum(self.reconstruction.image(d.id).num_points3D for d in frame.image_ids)
        return observed >= self.mapper_options.abs_pose_min_num_inliers

    def _triangulate(self, keyframe: int) -> None:
        for data_id in self.reference_images[keyframe].frame.image_ids:
            self.mapper.triangulate_image(self.triangulation, data_id.id)

    def _refine_globally(self) -> None:
        self.mapper.iterative_global_refinement(
            self.options.ba_global_max_refinements,
            self.options.ba_global_max_refinement_change,
            self.mapper_options,
            self.global_adjustment,
            self.triangulation,
            normalize_reconstruction=False,
        )
        self.mapper.filter_frames(self.mapper_options)

    def _map_from_base(self) -> dict[int, pycolmap.Rigid3d]:
        """Poses of the registered keyframes by index."""
        return {
            k: image.cam_from_world().inverse() * self.base_from_reference.inverse()
            for k, image in self.reference_images.items()
            if image.has_pose
        }

    def _rig_from_world(self, map_from_base: pycolmap.Rigid3d) -> pycolmap.Rigid3d:
        return (map_from_base * self.base_from_reference).inverse()


def _align_to_odometry(
    reconstruction: pycolmap.Reconstruction, keyframes: Sequence[Keyframe], rig: Sequence[RigCamera]
) -> None:
    """Scale the map to the distance odometry drove, then move it rigidly onto the first episode's odometry.

    Distance is what wheel odometry measures best (its heading drifts); the map's own scale, from the odometry
    seed and the rig's baselines, creeps by about a percent over a tour.
    """
    mapped = _mapped(keyframes, rig, reconstruction)
    steps = np.array(
        [
            (
                np.linalg.norm(m2.map_from_base.translation - m1.map_from_base.translation),
                np.linalg.norm(k2.odom_from_base.translation - k1.odom_from_base.translation),
            )
            for (k1, m1), (k2, m2) in itertools.pairwise(zip(keyframes, mapped, strict=True))
            if m1.registered and m2.registered and k1.episode_id == k2.episode_id
        ]
    ).reshape(-1, 2)
    first = [(k, m) for k, m in zip(keyframes, mapped, strict=True) if k.episode_id == keyframes[0].episode_id]
    pairs = [
        (m.map_from_cameras[c.name].translation, (k.odom_from_base * c.base_from_camera).translation)
        for k, m in first
        if m.registered
        for c in rig
    ]
    if len(pairs) < 3 or not steps[:, 0].sum():
        return
    scale = steps[:, 1].sum() / steps[:, 0].sum()
    model, odom = (np.array(p) for p in zip(*pairs, strict=True))
    map_from_model = align_rigid(scale * model, odom)
    reconstruction.transform(pycolmap.Sim3d(scale, map_from_model.rotation, map_from_model.translation))


def odometry_seams(
    keyframes: Sequence[Keyframe], mapped: Sequence[MappedKeyframe], config: SfmConfig = SfmConfig()
) -> list[int]:
    """Indices k where keyframes k and k + 1, of one episode and both registered, lie apart in the map other than
    odometry says: by more than `max_odometry_deviation` plus `odometry_drift` per metre driven between them.

    Odometry barely drifts between neighbours, so a seam is two parts of the map joined wrong (a look-alike place
    pulled one of them over), found without any ground truth: what a robot's own log can tell about its map.
    """
    seams = []
    for k, ((k1, m1), (k2, m2)) in enumerate(itertools.pairwise(zip(keyframes, mapped, strict=True))):
        if not (m1.registered and m2.registered) or k1.episode_id != k2.episode_id:
            continue
        # Each in the first keyframe's own frame, as _Odometry.contradicts compares them: headings drift apart.
        driven = (k1.odom_from_base.inverse() * k2.odom_from_base).translation
        moved = (m1.map_from_base.inverse() * m2.map_from_base).translation
        deviation = np.linalg.norm(moved - driven)
        if deviation > config.max_odometry_deviation + config.odometry_drift * np.linalg.norm(driven):
            seams.append(k)
    return seams


def align_rigid(source: np.ndarray, target: np.ndarray) -> pycolmap.Rigid3d:
    """The rotation and translation (no scale) taking points (N, 3) `source` closest to `target`: Umeyama/Kabsch.

    pycolmap.estimate_rigid3d refuses coplanar points, and a ground robot's positions all are.
    """
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    rotation, _ = Rotation.align_vectors(target - target_mean, source - source_mean)
    return pycolmap.Rigid3d(pycolmap.Rotation3d(rotation.as_quat()), target_mean - rotation.apply(source_mean))


def _mapped(
    keyframes: Sequence[Keyframe],
    rig: Sequence[RigCamera],
    reconstruction: pycolmap.Reconstruction,
    placed: set[int] = frozenset(),
) -> list[MappedKeyframe]:
    mapped = []
    for index, keyframe in enumerate(keyframes):
        image = reconstruction.find_image_with_name(keyframe.image_name(rig[0].name))
        if image is None or not image.has_pose:
            mapped.append(MappedKeyframe(keyframe.episode_id, keyframe.t_ns, None, {}))
            continue
        map_from_base = image.cam_from_world().inverse() * rig[0].base_from_camera.inverse()
        cameras = {c.name: map_from_base * c.base_from_camera for c in rig}
        mapped.append(MappedKeyframe(keyframe.episode_id, keyframe.t_ns, map_from_base, cameras, index in placed))
    return mapped
