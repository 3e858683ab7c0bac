"""Site-scale mapping in time linear in keyframes: submaps reconstructed alone, joined by a pose graph.

One reconstruction of a whole site (models.mapping.sfm.build_map) costs more per keyframe the more it holds: local
bundle adjustment pulls in every image that sees its points, and global refinements grow with the tracks that
revisits make. Here each episode's keyframes are cut into stretches of `SubmapConfig.keyframes` that share `overlap`
keyframes with the next; each stretch is reconstructed alone, held to the episode's odometry (metric and level), so
its cost is bounded and stretches build in parallel. Then a pose graph in the plane (x, y and yaw per submap, on top
of where the episode's recorded map -> odom puts it) joins them:

- neighbours within an episode by the keyframes they share, tightly;
- neighbours within an episode by odometry between their ends, loosely (it drifts), so the chain never breaks;
- an episode's first submap to its recorded map -> odom, loosely (the first episode's is fixed: it is the map);
- submaps that pass the same place by loop closures: a keyframe of one localized in the other (models.localization,
  with the graph's estimate as prior, so its aliasing defences hold). Every `loop_every`-th keyframe is tried against
  at most `loop_submaps` other submaps that pass within `loop_radius_m`, and a submap stops looking for new partners
  once it has `loop_partners`, so queries grow linearly too.

The graph is solved with a robust loss, loop closures are looked for again from the new estimate, and it is solved
again. Each keyframe is then taken from one submap, its owner: of two that share it, the one it lies deeper in.

New tours join an existing map the same way (`astra map update`): the map is a `MapAnchor`, fixed, that their
keyframes are also localized in, and every new episode's first submap starts loosely at its recorded map -> odom.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pycolmap
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix
from scipy.spatial.transform import Rotation

from models.localization import DescribedQuery, Localizer, LocalizerConfig
from models.mapping.sfm import DATABASE_FILE, Keyframe, MappedKeyframe, RigCamera, SfmConfig, build_map
from schemas.map import conform_table

POINT_ID_BITS = 32  # a submap's point ids are below 2**32 (COLMAP's are 64-bit but counted from 1)


@dataclass(frozen=True)
class SubmapConfig:
    """How keyframes are cut into submaps and how the pose graph weighs what joins them."""

    keyframes: int = 100  # per submap
    overlap: int = 10  # keyframes a submap shares with the next of its episode
    loop_every: int = 4  # one keyframe in this many is tried as a loop-closure query
    loop_radius_m: float = 3.0  # other submaps with a registered keyframe this near are tried
    loop_submaps: int = 2  # at most this many other submaps per query, nearest first
    loop_pair_closures: int = 4  # two submaps joined by this many loop closures are not searched between again
    # A submap joined to this many others by loop closures queries no new ones (it can still be found by them): a tour
    # that passes the same rooms again and again would otherwise search nearly every pair of its submaps.
    loop_partners: int = 4
    min_loop_confidence: float = 0.3  # models.localization's confidence a loop closure needs
    rounds: int = 2  # loop-closure searches, each followed by a solve
    shared_sigma_m: float = 0.03  # one keyframe as two neighbours reconstructed it
    shared_sigma_deg: float = 0.3
    loop_sigma_m: float = 0.05
    loop_sigma_deg: float = 0.5
    odometry_sigma_m: float = 0.05  # odometry between neighbours' ends: this, plus per metre driven ...
    odometry_drift: float = 0.05  # ... this many m
    odometry_drift_deg: float = 1.0  # ... and this many degrees
    start_sigma_m: float = 1.0  # an episode's first submap about its recorded map -> odom
    start_sigma_deg: float = 5.0
    robust_scale: float = 3.0  # residuals (in sigmas) beyond which the loss grows linearly: wrong loop closures


def submap_parts(
    episode_id: str,
    rig: Sequence[RigCamera],
    keyframes: Sequence[Keyframe],
    descriptors: np.ndarray,
    config: SubmapConfig,
) -> list[SubmapPart]:
    """An episode's keyframes (in time order) cut into submaps."""
    return [
        SubmapPart(episode_id, start, tuple(rig), tuple(keyframes[start:stop]), descriptors[start:stop])
        for start, stop in submap_spans(len(keyframes), config)
        if stop > start
    ]


def submap_spans(count: int, config: SubmapConfig) -> list[tuple[int, int]]:
    """[start, stop) of each submap of an episode's `count` keyframes: `keyframes` long, each sharing `overlap` with the
    next; a last one shorter than half that joins the one before."""
    step = config.keyframes - config.overlap
    spans = [(s, min(s + config.keyframes, count)) for s in range(0, max(count - config.overlap, 1), step)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < config.keyframes // 2:
        spans[-2:] = [(spans[-2][0], count)]
    return spans


@dataclass(frozen=True)
class SubmapPart:
    """The keyframes of one submap, to be reconstructed: `first` is the index of the first in its episode."""

    episode_id: str
    first: int
    rig: tuple[RigCamera, ...]
    keyframes: tuple[Keyframe, ...]
    descriptors: np.ndarray  # (keyframes, cameras, dim) global descriptors, cameras in rig order


@dataclass(frozen=True)
class Submap:
    """One submap reconstructed, in its episode's odom frame (its part's keyframes without their pictures)."""

    part: SubmapPart
    mapped: tuple[MappedKeyframe, ...]
    node_features: pa.Table  # schemas.map node_features, its own point ids
    observations: dict[str, np.ndarray]  # image name -> ids of the 3D points it observes
    point_ids: np.ndarray  # (P,) int64
    points: np.ndarray  # (P, 3) float64
    colors: np.ndarray  # (P, 3) uint8
    counts: dict[str, int]
    seconds: dict[str, float]
    # SIFT keypoints (N, 2) and descriptors (N, 128) of the loop-closure queries' images, by image name, as the
    # reconstruction extracted them: a query need not be extracted again, nor its pictures kept.
    query_features: dict[str, tuple[np.ndarray, np.ndarray]]


def build_submap(part: SubmapPart, work_dir: Path, sfm: SfmConfig, config: SubmapConfig) -> Submap:
    """Reconstruct one submap in a folder of `work_dir` (removed afterwards)."""
    work = Path(work_dir) / f"submap-{part.episode_id}-{part.first}"
    sfm_map = build_map(part.keyframes, part.rig, work, sfm)
    queries = [k for i, k in enumerate(part.keyframes) if (part.first + i) % config.loop_every == 0]
    query_features = _image_features(work / DATABASE_FILE, [k.image_name(c.name) for k in queries for c in part.rig])
    shutil.rmtree(work, ignore_errors=True)
    reconstruction = sfm_map.reconstruction
    observations = {
        image.name: np.array([p.point3D_id for p in image.get_observation_points2D()], np.int64)
        for image in reconstruction.images.values()
        if image.has_pose
    }
    point_ids = np.array(sorted(reconstruction.points3D), np.int64)
    chosen = [reconstruction.point3D(i) for i in point_ids]
    points = np.array([p.xyz for p in chosen]).reshape(-1, 3)
    colors = np.array([p.color for p in chosen], np.uint8).reshape(-1, 3)
    return Submap(
        replace(part, keyframes=tuple(replace(k, images={}) for k in part.keyframes)),
        tuple(sfm_map.keyframes),
        sfm_map.node_features(),
        observations,
        point_ids,
        points,
        colors,
        sfm_map.counts,
        sfm_map.seconds,
        query_features,
    )


def _image_features(database: Path, names: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    wanted = set(names)
    with pycolmap.Database.open(database) as db:
        return {
            image.name: (
                db.read_keypoints(image.image_id)[:, :2].astype(np.float32),
                db.read_descriptors(image.image_id).data,
            )
            for image in db.read_all_images()
            if image.name in wanted
        }


# --- planar poses: (x, y, yaw) ---------------------------------------------------------------------


def planar(pose: pycolmap.Rigid3d) -> np.ndarray:
    """(x, y, yaw) of a pose."""
    yaw = Rotation.from_quat(pose.rotation.quat).as_euler("zyx")[0]
    return np.array([pose.translation[0], pose.translation[1], yaw])


def correction(c: np.ndarray) -> pycolmap.Rigid3d:
    """A planar correction (x, y, yaw) as a rigid motion about the z axis."""
    rotation = pycolmap.Rotation3d(Rotation.from_euler("z", c[2]).as_quat())
    return pycolmap.Rigid3d(rotation, np.array([c[0], c[1], 0.0]))


def _corrected(c: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Planar poses (N, 3) moved by the correction c, as `correction(c) * pose` moves them."""
    return _moved_rows(np.broadcast_to(c, poses.shape), poses)


def _moved_rows(c: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Each planar pose (N, 3) moved by its own correction (N, 3)."""
    cos, sin = np.cos(c[:, 2]), np.sin(c[:, 2])
    x = cos * poses[:, 0] - sin * poses[:, 1] + c[:, 0]
    y = sin * poses[:, 0] + cos * poses[:, 1] + c[:, 1]
    return np.column_stack([x, y, poses[:, 2] + c[:, 2]])


@dataclass
class PoseGraph:
    """Corrections of every submap but the first `fixed` (held at zero), and pose pairs: the same base pose as two
    submaps put it."""

    submaps: int
    fixed: int = 1  # 0 where an anchor (index -1) holds the map instead of the first submap
    first: list[int] = field(default_factory=list)  # submap of each pair
    second: list[int] = field(default_factory=list)  # -1: the pose is fixed in the map (a prior)
    poses1: list[np.ndarray] = field(default_factory=list)
    poses2: list[np.ndarray] = field(default_factory=list)
    sigmas: list[tuple[float, float]] = field(default_factory=list)  # m, rad

    def add(self, i: int, pose_i: np.ndarray, j: int, pose_j: np.ndarray, sigma_m: float, sigma_deg: float) -> None:
        self.first.append(i)
        self.second.append(j)
        self.poses1.append(pose_i)
        self.poses2.append(pose_j)
        self.sigmas.append((sigma_m, math.radians(sigma_deg)))

    def solve(self, start: np.ndarray, robust_scale: float) -> np.ndarray:
        """Corrections (submaps, 3) that best fit the pairs, those of the first `fixed` held at zero."""
        if self.submaps == self.fixed or not self.first:
            return np.zeros((self.submaps, 3))
        first, second = np.array(self.first), np.array(self.second)
        poses1, poses2 = np.array(self.poses1), np.array(self.poses2)
        sigmas = np.array(self.sigmas)
        scale = np.column_stack([sigmas[:, 0], sigmas[:, 0], sigmas[:, 1]])

        def residuals(x: np.ndarray) -> np.ndarray:
            c = np.vstack([np.zeros((self.fixed, 3)), x.reshape(-1, 3), np.zeros(3)])  # row -1: no correction
            difference = _moved_rows(c[first], poses1) - _moved_rows(c[second], poses2)
            difference[:, 2] = (difference[:, 2] + np.pi) % (2 * np.pi) - np.pi
            return (difference / scale).ravel()

        # Each pair's three residuals depend on the corrections of its two submaps only.
        sparsity = lil_matrix((3 * len(first), 3 * (self.submaps - self.fixed)), dtype=np.int8)
        for row, submaps in enumerate(zip(first, second, strict=True)):
            for submap in submaps:
                if submap >= self.fixed:
                    column = 3 * (submap - self.fixed)
                    sparsity[3 * row : 3 * row + 3, column : column + 3] = 1
        solution = least_squares(
            residuals, start[self.fixed :].ravel(), loss="soft_l1", f_scale=robust_scale, jac_sparsity=sparsity
        )
        return np.vstack([np.zeros((self.fixed, 3)), solution.x.reshape(-1, 3)])


# --- joining them ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapAnchor:
    """An existing map that new submaps join without moving it: a localizer over it (in `map`), where its registered
    keyframes stand (x, y), to tell which queries pass near it, and the first free block of its point ids."""

    localizer: Localizer
    positions: np.ndarray  # (N, 2)
    point_block: int  # point ids of new submaps start at this << 32


@dataclass(frozen=True)
class JoinedMap:
    """The site's keyframes in `map` (per episode, in the order given) and what the map tables need of the submaps."""

    mapped: tuple[MappedKeyframe, ...]
    node_features: pa.Table
    observations: dict[str, np.ndarray]
    points: np.ndarray  # (P, 3) in map
    colors: np.ndarray  # (P, 3) uint8
    corrections: np.ndarray  # (submaps, 3)
    counts: dict[str, int]
    seconds: dict[str, float]


def join_submaps(
    submaps: Sequence[Submap],
    map_from_odom: dict[str, pycolmap.Rigid3d],
    episode_order: Sequence[str],
    rig: Sequence[RigCamera],
    config: SubmapConfig,
    localizer: LocalizerConfig,
    anchor: MapAnchor | None = None,
) -> JoinedMap:
    """Join the submaps of a site's episodes into one map.

    `map_from_odom` is each episode's as recorded; the first of `episode_order` is the map's own frame, unless an
    `anchor` (an existing map) holds it.
    """
    started = time.perf_counter()
    order = {e: i for i, e in enumerate(episode_order)}
    submaps = sorted(submaps, key=lambda s: (order[s.part.episode_id], s.part.first))
    initial = [map_from_odom[s.part.episode_id] for s in submaps]
    # Each registered keyframe's planar pose in the initial map frame, per submap.
    poses = [
        {k: planar(a * m.map_from_base) for k, m in enumerate(s.mapped) if m.registered}
        for s, a in zip(submaps, initial, strict=True)
    ]
    graph = PoseGraph(len(submaps), fixed=0 if anchor else 1)
    for i, s in enumerate(submaps):
        starts_episode = i == 0 or s.part.episode_id != submaps[i - 1].part.episode_id
        if starts_episode and i >= graph.fixed:
            graph.add(i, np.zeros(3), -1, np.zeros(3), config.start_sigma_m, config.start_sigma_deg)
        if i + 1 < len(submaps) and submaps[i + 1].part.episode_id == s.part.episode_id:
            _join_neighbours(graph, i, s, poses[i], submaps[i + 1], poses[i + 1], initial[i], config)
    corrections = graph.solve(np.zeros((len(submaps), 3)), config.robust_scale)

    search = LoopSearch()
    for _ in range(config.rounds):
        found = _loop_closures(submaps, initial, poses, corrections, search, rig, config, localizer, anchor)
        for i, pose_i, j, pose_j in found:
            graph.add(i, pose_i, j, pose_j, config.loop_sigma_m, config.loop_sigma_deg)
        corrections = graph.solve(corrections, config.robust_scale)

    joined = _owned(submaps, initial, corrections, rig, anchor.point_block if anchor else 0)
    return replace(
        joined,
        counts={**joined.counts, "loop_queries": search.queries, "loop_closures": sum(search.closed.values())},
        seconds={"join": time.perf_counter() - started},
    )


def _join_neighbours(
    graph: PoseGraph,
    i: int,
    submap: Submap,
    poses: dict[int, np.ndarray],
    following: Submap,
    following_poses: dict[int, np.ndarray],
    map_from_odom: pycolmap.Rigid3d,
    config: SubmapConfig,
) -> None:
    """Pairs for two neighbouring submaps of an episode: their shared keyframes, and odometry between their ends."""
    offset = following.part.first - submap.part.first
    for k in range(offset, len(submap.mapped)):
        if k in poses and k - offset in following_poses:
            graph.add(i, poses[k], i + 1, following_poses[k - offset], config.shared_sigma_m, config.shared_sigma_deg)
    if not poses or not following_poses:
        return
    last, first = max(poses), min(following_poses)
    keyframes = submap.part.keyframes
    odom_last, odom_first = keyframes[last].odom_from_base, following.part.keyframes[first].odom_from_base
    # Where `first` is by odometry from `last`, in the submap of `last`.
    map_from_last = map_from_odom * submap.mapped[last].map_from_base
    predicted = planar(map_from_last * odom_last.inverse() * odom_first)
    driven = float(np.linalg.norm(odom_first.translation - odom_last.translation))
    graph.add(
        i,
        predicted,
        i + 1,
        following_poses[first],
        config.odometry_sigma_m + config.odometry_drift * driven,
        config.odometry_drift_deg * max(driven, 1.0),
    )


@dataclass
class LoopSearch:
    """What the loop-closure rounds share: localizers built, queries tried, closures found per pair of submaps."""

    localizers: dict[int, Localizer] = field(default_factory=dict)
    tried: set[tuple[int, int, int]] = field(default_factory=set)  # (submap, keyframe, target submap)
    closed: Counter[tuple[int, int]] = field(default_factory=Counter)
    partners: defaultdict[int, set[int]] = field(default_factory=lambda: defaultdict(set))  # by loop closures
    queries: int = 0

    def close(self, i: int, j: int) -> None:
        self.closed[min(i, j), max(i, j)] += 1
        self.partners[i].add(j)
        self.partners[j].add(i)

    def is_open(self, j: int, i: int, config: SubmapConfig) -> bool:
        """Whether submap j still queries submap i (-1: the anchor map, always queried until closed)."""
        if self.closed[min(i, j), max(i, j)] >= config.loop_pair_closures:
            return False
        return i < 0 or i in self.partners[j] or len(self.partners[j] - {-1}) < config.loop_partners


def _loop_closures(
    submaps: Sequence[Submap],
    initial: Sequence[pycolmap.Rigid3d],
    poses: Sequence[dict[int, np.ndarray]],
    corrections: np.ndarray,
    search: LoopSearch,
    rig: Sequence[RigCamera],
    config: SubmapConfig,
    localizer_config: LocalizerConfig,
    anchor: MapAnchor | None,
) -> list[tuple[int, np.ndarray, int, np.ndarray]]:
    """Query keyframes localized in other submaps near them, and in the anchor map: the pose pairs found (index -1 is
    the anchor). Pairs of submaps that have `loop_pair_closures` are passed over, and so are new partners of a submap
    that has `loop_partners`, so that the queries go where the graph still needs them."""
    estimates = [
        _corrected(c, np.array(list(p.values())).reshape(-1, 3)) for c, p in zip(corrections, poses, strict=True)
    ]
    found = []
    for j, submap in enumerate(submaps):
        for k, keyframe in enumerate(submap.part.keyframes):
            names = [keyframe.image_name(c.name) for c in rig]
            if k not in poses[j] or names[0] not in submap.query_features:
                continue
            where = correction(corrections[j]) * initial[j] * submap.mapped[k].map_from_base
            near = sorted(
                (float(np.min(np.linalg.norm(e[:, :2] - where.translation[:2], axis=1))), i)
                for i, e in enumerate(estimates)
                if len(e) and not _neighbours(submaps, i, j)
            )
            if anchor is not None and _within(anchor.positions, where.translation[:2], config.loop_radius_m):
                near.insert(0, (0.0, -1))
            open_pairs = [
                i
                for d, i in near
                if d <= config.loop_radius_m and (j, k, i) not in search.tried and search.is_open(j, i, config)
            ]
            query = None
            for i in open_pairs[: config.loop_submaps + (anchor is not None)]:
                search.tried.add((j, k, i))
                if i < 0:
                    target, target_from_map = anchor.localizer, pycolmap.Rigid3d()
                else:
                    if i not in search.localizers:
                        search.localizers[i] = _localizer(submaps[i], rig, localizer_config)
                    # Submap i's localizer works in its own frame: the episode's odom frame.
                    target = search.localizers[i]
                    target_from_map = initial[i].inverse() * correction(corrections[i]).inverse()
                if query is None:
                    features = {c.name: submap.query_features[n] for c, n in zip(rig, names, strict=True)}
                    query = DescribedQuery.described(target, submap.part.descriptors[k], features)
                fix = target.localize(query, prior=target_from_map * where)
                search.queries += 1
                if fix.success and fix.confidence >= config.min_loop_confidence:
                    in_map = fix.map_from_base if i < 0 else initial[i] * fix.map_from_base
                    found.append((i, planar(in_map), j, poses[j][k]))
                    search.close(i, j)
    return found


def _within(positions: np.ndarray, xy: np.ndarray, radius: float) -> bool:
    return bool(len(positions)) and float(np.min(np.linalg.norm(positions - xy, axis=1))) <= radius


def _neighbours(submaps: Sequence[Submap], i: int, j: int) -> bool:
    """Whether two submaps are one, or neighbours of one episode (they share keyframes)."""
    return abs(i - j) <= 1 and submaps[i].part.episode_id == submaps[j].part.episode_id


def _localizer(submap: Submap, rig: Sequence[RigCamera], config: LocalizerConfig) -> Localizer:
    """A localizer over one submap's registered keyframes, in its own (odom) frame."""
    rows = [
        (keyframe, camera.name, m.map_from_cameras[camera.name], submap.part.descriptors[k, c])
        for k, (keyframe, m) in enumerate(zip(submap.part.keyframes, submap.mapped, strict=True))
        if m.registered
        for c, camera in enumerate(rig)
    ]
    nodes = pa.table(
        {
            "node_id": [keyframe.image_name(camera) for keyframe, camera, _, _ in rows],
            "episode_id": [submap.part.episode_id] * len(rows),
            "t_ns": pa.array([keyframe.t_ns for keyframe, _, _, _ in rows], pa.int64()),
            "camera": [camera for _, camera, _, _ in rows],
            "registered": [True] * len(rows),
            **{f"position_{a}": [float(r[2].translation[i]) for r in rows] for i, a in enumerate("xyz")},
            **{f"orientation_{a}": [float(r[2].rotation.quat[i]) for r in rows] for i, a in enumerate("xyzw")},
            "descriptor": pa.array([r[3].tolist() for r in rows], pa.list_(pa.float32())),
        }
    )
    return Localizer(nodes, submap.node_features, rig, config)


def _owned(
    submaps: Sequence[Submap],
    initial: Sequence[pycolmap.Rigid3d],
    corrections: np.ndarray,
    rig: Sequence[RigCamera],
    point_block: int,
) -> JoinedMap:
    """Each keyframe as its owner submap put it, moved into the map, with the owners' features and points (submap i's
    point ids offset by (point_block + i) << 32)."""
    moves = [correction(c) * a for c, a in zip(corrections, initial, strict=True)]
    by_episode: dict[str, list[int]] = {}
    for i, submap in enumerate(submaps):
        by_episode.setdefault(submap.part.episode_id, []).append(i)
    mapped: list[MappedKeyframe] = []
    owned: list[list[int]] = [[] for _ in submaps]  # per submap, the keyframes it owns
    for members in by_episode.values():
        spans = {i: (submaps[i].part.first, submaps[i].part.first + len(submaps[i].mapped)) for i in members}
        for g in range(max(stop for _, stop in spans.values())):
            holders = sorted(
                (i for i in members if spans[i][0] <= g < spans[i][1]),
                key=lambda i: -min(g - spans[i][0], spans[i][1] - 1 - g),
            )
            registered = [i for i in holders if submaps[i].mapped[g - spans[i][0]].registered]
            owner = (registered or holders)[0]
            k = g - spans[owner][0]
            owned[owner].append(k)
            mapped.append(_moved(submaps[owner].mapped[k], moves[owner]))

    tables, observations, points, colors = [], {}, [], []
    for i, (submap, keyframes, move) in enumerate(zip(submaps, owned, moves, strict=True)):
        names = [
            submap.part.keyframes[k].image_name(c.name) for k in keyframes if submap.mapped[k].registered for c in rig
        ]
        offset = (point_block + i) << POINT_ID_BITS
        seen = [submap.observations[n] for n in names if n in submap.observations]
        observations |= {n: submap.observations[n] + offset for n in names if n in submap.observations}
        table = submap.node_features.filter(pc.is_in(submap.node_features["node_id"], pa.array(names, pa.string())))
        xyz = _applied(move, np.column_stack([table[f"point_{a}"].to_numpy() for a in "xyz"]).reshape(-1, 3))
        table = table.set_column(
            table.schema.get_field_index("point3D_id"), "point3D_id", pc.add(table["point3D_id"], offset)
        )
        for axis, a in enumerate("xyz"):
            table = table.set_column(
                table.schema.get_field_index(f"point_{a}"), f"point_{a}", pa.array(xyz[:, axis], pa.float32())
            )
        tables.append(table)
        kept = np.isin(submap.point_ids, np.concatenate([np.empty(0, np.int64), *seen]))
        points.append(_applied(move, submap.points[kept]))
        colors.append(submap.colors[kept])
    counts = {
        "submaps": len(submaps),
        "keyframes": len(mapped),
        "registered": sum(m.registered for m in mapped),
        "placed_by_odometry": sum(m.placed_by_odometry for m in mapped),
        **{key: sum(s.counts[key] for s in submaps) for key in ("image_pairs", "verified_pairs")},
    }
    return JoinedMap(
        tuple(mapped),
        conform_table("node_features", pa.concat_tables(tables)),
        observations,
        np.concatenate(points).reshape(-1, 3),
        np.concatenate(colors).reshape(-1, 3),
        corrections,
        counts,
        {},
    )


def _moved(keyframe: MappedKeyframe, new_from_old: pycolmap.Rigid3d) -> MappedKeyframe:
    if not keyframe.registered:
        return keyframe
    cameras = {c: new_from_old * pose for c, pose in keyframe.map_from_cameras.items()}
    return replace(keyframe, map_from_base=new_from_old * keyframe.map_from_base, map_from_cameras=cameras)


def _applied(move: pycolmap.Rigid3d, points: np.ndarray) -> np.ndarray:
    return points @ move.rotation.matrix().T + move.translation


def write_reconstruction(
    joined: JoinedMap,
    keyframes: Sequence[Keyframe],
    rig: Sequence[RigCamera],
    path: Path,
    base: pycolmap.Reconstruction | None = None,
) -> None:
    """The joined map as a COLMAP reconstruction, added to `base` (an existing map's) where given: the registered
    images' poses and the points with their colours.

    Tracks are left out: the observations a localizer needs are in `node_features`, and the submaps' tracks of one
    place are not joined. The rig's cameras are added anew, so that no image depends on how `base` numbered its own.
    """
    reconstruction = pycolmap.Reconstruction() if base is None else base
    camera_ids = {}
    for camera in rig:
        colmap_camera = camera.colmap_camera()
        colmap_camera.camera_id = camera_ids[camera.name] = max(reconstruction.cameras, default=0) + 1
        reconstruction.add_camera_with_trivial_rig(colmap_camera)
    image_id = max(reconstruction.images, default=0)
    for keyframe, mapped in zip(keyframes, joined.mapped, strict=True):
        if not mapped.registered:
            continue
        for camera in rig:
            image_id += 1
            name = keyframe.image_name(camera.name)
            image = pycolmap.Image(name=name, camera_id=camera_ids[camera.name], image_id=image_id)
            reconstruction.add_image_with_trivial_frame(image, mapped.map_from_cameras[camera.name].inverse())
    empty = pycolmap.Track()
    for xyz, color in zip(joined.points, joined.colors, strict=True):
        reconstruction.add_point3D(xyz, empty, color)
    path.mkdir(parents=True, exist_ok=True)
    reconstruction.write(path)
