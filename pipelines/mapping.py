"""`astra map build`: the episodes of one site in the lake into its map (schemas.map), as one Apache Beam pipeline.

    ReadSiteEpisodes     site -> its episode ids, earliest first
    SelectKeyframes      episode -> EpisodeKeyframes: keyframes with their JPEGs, rig and global descriptors
    SplitSubmaps         episode -> its keyframes cut into overlapping stretches (models.mapping.submaps)
    BuildSubmaps         stretch -> its own pycolmap reconstruction, held to odometry; stretches spread over workers
    JoinSubmaps          all submaps of the site -> one map by a pose graph over their overlaps, odometry and loop
                         closures, and `node_features` (a global step, linear in keyframes)
    BuildGraph           reconstruction -> the tables `nodes` and `edges` (models.mapping.graph)
    ExtractLandmarks     nodes -> `landmarks` and `node_landmarks` (a plugin of models.landmarks, by name: EXTRACTORS;
                         the learned detector by default, which reads the nodes' pictures again from the lake)
    WriteMap             everything -> the map on disk, encrypted where a key is given

The map frame is `map`: each episode's submaps start where the map -> odom it recorded on /tf when it began puts
them, and the earliest episode's first submap stays there.

Pictures are decoded only inside SelectKeyframes, where descriptors are computed, so what crosses the
shuffles is JPEG bytes; after the submaps, no pictures travel on (loop-closure queries carry the SIFT features
their submap extracted), and an extractor that needs pictures reads its nodes' pictures from the lake.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pycolmap
from scipy.spatial.transform import Rotation

from datasets.lake import Lake
from datasets.map_store import TopoMap, read_manifest, read_map, write_map
from datasets.site_log import (
    image_topic,
    read_map_from_odom,
    read_pictures,
    read_rig,
    read_trajectory,
    recorded_world,
    rig_frames,
    site_episodes,
)
from models.descriptors import DESCRIPTORS
from models.landmark_extraction import DetectedLandmarkExtractor, ExtractionConfig
from models.landmarks import LandmarkExtractor, LandmarkObservations, NodeGeometry, NodeView, merge_landmarks
from models.localization import Localizer, LocalizerConfig
from models.mapping.evaluation import keyframe_poses
from models.mapping.graph import GraphConfig, GraphNodes, build_edges
from models.mapping.keyframes import KeyframeConfig, select_keyframes
from models.mapping.sfm import (
    Keyframe,
    MappedKeyframe,
    RigCamera,
    SfmConfig,
    align_rigid,
    odometry_seams,
    recorded_sfm_config,
)
from models.mapping.submaps import (
    POINT_ID_BITS,
    MapAnchor,
    Submap,
    SubmapConfig,
    SubmapPart,
    build_submap,
    join_submaps,
    submap_parts,
    write_reconstruction,
)
from pipelines.progress import marker_progress
from pipelines.runner import check_runner, run_pipeline
from schemas.map import conform_table
from schemas.messages import decode_jpeg
from schemas.robot import DEFAULT_ROBOT
from schemas.topics import GROUND_TRUTH_TOPIC, ODOMETRY_TOPIC
from sim.annotations import AnnotatedLandmarkExtractor
from sim.world import write_world

DESCRIPTOR = "vpr"
GLOBAL_STAGES = ("JoinSubmaps", "BuildGraph", "ExtractLandmarks", "WriteMap")
DEFAULT_KEYFRAMES, DEFAULT_SFM, DEFAULT_GRAPH = KeyframeConfig(), SfmConfig(), GraphConfig()
DEFAULT_SUBMAPS = SubmapConfig()
EXTRACTORS: dict[str, type[LandmarkExtractor]] = {
    "detector": DetectedLandmarkExtractor,
    "annotated": AnnotatedLandmarkExtractor,  # privileged: needs the simulator's world; for evaluation
}
EXTRACTOR = "detector"
# A landmark an update finds this near one of the map's, alike, is that one: the detector's own grouping radius.
LANDMARK_MERGE_RADIUS_M = ExtractionConfig.merge_radius_m
NODE_COLUMNS = ("node_id", "episode_id", "t_ns", "camera", "image_topic", "registered", "placed_by_odometry")
_DESCRIBED_TOGETHER = 32  # keyframes whose pictures go to the global descriptor in one call
_MIN_ALIGNED = 3  # registered keyframes an episode needs before its odometry is aligned to the map


# --- pure steps ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeKeyframes:
    """One episode's keyframes, the rig that took them, and a global descriptor per keyframe and camera."""

    episode_id: str
    start_ns: int
    rig: tuple[RigCamera, ...]
    keyframes: tuple[Keyframe, ...]
    descriptors: np.ndarray  # (keyframes, cameras, dim) float32, cameras in rig order
    map_from_odom: pycolmap.Rigid3d  # as /tf recorded it when the episode began


@dataclass(frozen=True)
class SiteReconstruction:
    """The reconstruction written to `sfm_dir`, the SIFT features of its points by node (the map table
    `node_features`), and every keyframe (without pictures, in the pipeline) with where it was mapped."""

    sfm_dir: str
    node_features: pa.Table
    episodes: tuple[EpisodeKeyframes, ...]
    mapped: tuple[MappedKeyframe, ...]  # in the order of the episodes' keyframes
    observations: dict[str, np.ndarray]  # image name -> ids of the 3D points it observes
    seconds: dict[str, float]  # each SfM stage summed over the submaps, and joining them
    counts: dict[str, int]  # models.mapping.submaps.JoinedMap.counts
    # The map these episodes were joined to (`astra map update`), which they extend: read where it is needed, since a
    # site's map can be larger than what a pipeline passes between its steps.
    base: MapSource | None = None
    by_submap: tuple[dict[str, Any], ...] = ()  # each submap's size, SfM seconds by stage and counts: where time went

    @property
    def rig(self) -> tuple[RigCamera, ...]:
        return self.episodes[0].rig


@dataclass(frozen=True)
class MapGraph:
    """The map tables `nodes` and `edges`, and the nodes as landmark extractors see them."""

    nodes: pa.Table
    edges: pa.Table
    views: tuple[NodeView, ...]


def episode_keyframes(
    episode_id: str, lake: Lake, config: KeyframeConfig, descriptor: str = DESCRIPTOR
) -> EpisodeKeyframes:
    """Select an episode's keyframes from wheel odometry and read only their pictures."""
    rig = read_rig(lake, episode_id)
    frames = rig_frames(lake, episode_id, rig)
    odometry = read_trajectory(lake, episode_id, ODOMETRY_TOPIC)
    chosen = frames[select_keyframes(frames, odometry, config)]
    jpeg = read_pictures(lake, episode_id, rig, chosen.tolist())
    poses = odometry.at(chosen).poses()
    keyframes = tuple(
        Keyframe(episode_id, int(t), pose, {c.name: jpeg[c.name, t] for c in rig})
        for t, pose in zip(chosen.tolist(), poses, strict=True)
    )
    describe = DESCRIPTORS[descriptor]()
    # Many keyframes per call, so that the model sees full batches; a chunk at a time, so that few are decoded at once.
    chunks = [keyframes[s : s + _DESCRIBED_TOGETHER] for s in range(0, len(keyframes), _DESCRIBED_TOGETHER)]
    vectors = [describe.describe([decode_jpeg(k.images[c.name]) for k in chunk for c in rig]) for chunk in chunks]
    descriptors = np.concatenate([np.empty((0, describe.dim)), *vectors]).astype(np.float32)
    descriptors = descriptors.reshape(len(keyframes), len(rig), describe.dim)
    start = lake.table("episodes").filter(pl.col("episode_id") == episode_id).select("start_ns").collect().item()
    return EpisodeKeyframes(episode_id, start, rig, keyframes, descriptors, read_map_from_odom(lake, episode_id))


def join(
    episodes: Sequence[EpisodeKeyframes],
    submaps: Sequence[Submap],
    work_dir: str,
    config: SubmapConfig,
    descriptor: str = DESCRIPTOR,
    onto: MapSource | None = None,
) -> SiteReconstruction:
    """The site's submaps joined into one map in `map`, its reconstruction written to `work_dir/sfm`; joined `onto`
    an existing map, which stays fixed, where given."""
    episodes = sorted(episodes, key=lambda e: (e.start_ns, e.episode_id))
    if not submaps:
        raise ValueError("the site's episodes have no keyframes with pictures from every camera")
    rig = episodes[0].rig
    if any(
        [(c.name, c.width, c.height, c.k) for c in e.rig] != [(c.name, c.width, c.height, c.k) for c in rig]
        for e in episodes
    ):
        raise ValueError("the site's episodes were recorded with different cameras")
    localizer = LocalizerConfig(descriptor=descriptor)
    base = None if onto is None else onto.read()
    joined = join_submaps(
        submaps,
        {e.episode_id: e.map_from_odom for e in episodes},
        [e.episode_id for e in episodes],
        rig,
        config,
        localizer,
        anchor=None if base is None else map_anchor(base, rig, localizer),
    )
    keyframes = [k for e in episodes for k in e.keyframes]
    sfm_dir = Path(work_dir) / "sfm"
    write_reconstruction(joined, keyframes, rig, sfm_dir, None if base is None else base.reconstruction())
    seconds = dict(sum((Counter(submap.seconds) for submap in submaps), Counter()))
    by_submap = tuple(
        {
            "episode_id": s.part.episode_id,
            "first": s.part.first,
            "keyframes": len(s.part.keyframes),
            "image_pairs": s.counts["image_pairs"],
            "points3D": s.counts["points3D"],
            **{stage: round(t, 3) for stage, t in s.seconds.items()},
        }
        for s in submaps
    )
    return SiteReconstruction(
        str(sfm_dir),
        joined.node_features,
        tuple(episodes),
        joined.mapped,
        joined.observations,
        {**seconds, **joined.seconds},
        joined.counts,
        onto,
        by_submap,
    )


def reconstruct(
    episodes: Sequence[EpisodeKeyframes],
    work_dir: str,
    sfm: SfmConfig,
    config: SubmapConfig = DEFAULT_SUBMAPS,
    descriptor: str = DESCRIPTOR,
    onto: MapSource | None = None,
) -> SiteReconstruction:
    """The site's submaps built one after another and joined, in this process: the pipeline's steps without Beam."""
    parts = [p for e in episodes for p in submap_parts(e.episode_id, e.rig, e.keyframes, e.descriptors, config)]
    submaps = [build_submap(part, Path(work_dir), sfm, config) for part in parts]
    return join(episodes, submaps, work_dir, config, descriptor, onto)


@dataclass(frozen=True)
class MapSource:
    """Where a pipeline step reads an existing map: its folder and key (steps read it themselves, so that only this
    crosses to workers)."""

    map_dir: str
    key: bytes | None

    def read(self) -> TopoMap:
        return read_map(self.map_dir, self.key)


def map_anchor(topo: TopoMap, rig: Sequence[RigCamera], config: LocalizerConfig) -> MapAnchor:
    """An existing map as the fixed anchor new submaps are joined to."""
    _, poses = keyframe_poses(topo.nodes, rig[0])
    positions = np.array([pose.translation[:2] for pose in poses]).reshape(-1, 2)
    point_ids = topo.node_features["point3D_id"]
    used = pc.max(point_ids).as_py() if len(point_ids) else None
    block = 0 if used is None else (used >> POINT_ID_BITS) + 1
    return MapAnchor(Localizer(topo.nodes, topo.node_features, rig, config), positions, block)


def map_from_odom(episode: EpisodeKeyframes, mapped: Sequence[MappedKeyframe]) -> pycolmap.Rigid3d:
    """The rigid transform from an episode's odom frame to the map, fitted to its registered keyframes.

    With fewer than three registered keyframes it is the map -> odom the episode recorded.
    """
    pairs = [
        (k.odom_from_base.translation, m.map_from_base.translation)
        for k, m in zip(episode.keyframes, mapped, strict=True)
        if m.registered
    ]
    if len(pairs) < _MIN_ALIGNED:
        return episode.map_from_odom
    odom, in_map = (np.array(p) for p in zip(*pairs, strict=True))
    return align_rigid(odom, in_map)


def map_graph(site: SiteReconstruction, config: GraphConfig) -> MapGraph:
    """Nodes (one per keyframe and camera) with their poses in `map`, and the edges between them.

    Keyframes the reconstruction did not register are placed by their episode's odometry, aligned to
    the map; they are kept so that routes can follow the path the robot drove. Joined onto an existing map
    (`site.base`), the graph is that map's, kept as it is, with the new nodes and the edges that reach them; views
    are of the new nodes only, since only they are searched for landmarks.
    """
    rows: list[dict[str, Any]] = []
    mapped = iter(site.mapped)
    for episode in site.episodes:
        outcomes = [next(mapped) for _ in episode.keyframes]
        odom_to_map = map_from_odom(episode, outcomes)
        for keyframe, outcome, descriptors in zip(episode.keyframes, outcomes, episode.descriptors, strict=True):
            map_from_base = outcome.map_from_base if outcome.registered else odom_to_map * keyframe.odom_from_base
            rows += [
                {
                    "node_id": keyframe.image_name(camera.name),
                    "episode_id": keyframe.episode_id,
                    "t_ns": keyframe.t_ns,
                    "camera": camera.name,
                    "image_topic": image_topic(camera.name),
                    "registered": outcome.registered,
                    "placed_by_odometry": outcome.placed_by_odometry,
                    "descriptor": descriptor,
                    "pose": map_from_base * camera.base_from_camera,
                    "base": map_from_base,
                }
                for camera, descriptor in zip(site.rig, descriptors, strict=True)
            ]

    def column(name: str) -> list[Any]:
        return [row[name] for row in rows]

    positions = np.array([p.translation for p in column("pose")]).reshape(-1, 3)
    quaternions = np.array([p.rotation.quat for p in column("pose")]).reshape(-1, 4)
    added = conform_table(
        "nodes",
        pa.table(
            {
                **{name: column(name) for name in NODE_COLUMNS},
                **{f"position_{a}": positions[:, i] for i, a in enumerate("xyz")},
                **{f"orientation_{a}": quaternions[:, i] for i, a in enumerate("xyzw")},
                "descriptor": pa.array(column("descriptor"), pa.list_(pa.float32())),
            }
        ),
    )
    base = np.array([p.translation for p in column("base")]).reshape(-1, 3)
    empty = np.empty(0, np.int64)
    graph_nodes = GraphNodes(
        node_ids=column("node_id"),
        episode_ids=column("episode_id"),
        t_ns=np.array(column("t_ns"), np.int64),
        cameras=column("camera"),
        base_positions=base,
        registered=np.array(column("registered"), bool),
        point_ids=[site.observations.get(n, empty) for n in column("node_id")],
    )
    if site.base is None:
        nodes, edges = added, build_edges(graph_nodes, config)
    else:
        extended = site.base.read()
        edges = build_edges(_concatenated(_graph_nodes(extended, site.rig), graph_nodes), config)
        new = pa.array(column("node_id"), pa.string())
        reaching = pc.or_(pc.is_in(edges["source"], new), pc.is_in(edges["target"], new))
        nodes = pa.concat_tables([extended.nodes, added])
        edges = pa.concat_tables([extended.edges, edges.filter(reaching)])
    yaws = [Rotation.from_quat(p.rotation.quat).as_euler("zyx")[0] for p in column("base")]
    geometry = node_geometry(site, column("node_id"), column("camera"), column("pose"))
    views = tuple(
        NodeView(n, c, (float(b[0]), float(b[1]), float(yaw)), geometry=g)
        for n, c, b, yaw, g in zip(column("node_id"), column("camera"), base, yaws, geometry, strict=True)
    )
    return MapGraph(nodes, edges, views)


def _graph_nodes(topo: TopoMap, rig: Sequence[RigCamera]) -> GraphNodes:
    """A map's nodes as edges are built from: base_link from each camera's pose, points from `node_features`."""
    frame = pl.from_arrow(topo.nodes)
    camera_from_base = {c.name: c.base_from_camera.inverse() for c in rig}
    base = [
        (pycolmap.Rigid3d(pycolmap.Rotation3d(q), p) * camera_from_base[camera]).translation
        for p, q, camera in zip(
            frame.select("position_x", "position_y", "position_z").to_numpy(),
            frame.select("orientation_x", "orientation_y", "orientation_z", "orientation_w").to_numpy(),
            frame["camera"],
            strict=True,
        )
    ]
    features = pl.from_arrow(topo.node_features.select(["node_id", "point3D_id"]))
    seen = {
        key[0]: rows["point3D_id"].to_numpy() for key, rows in features.partition_by("node_id", as_dict=True).items()
    }
    empty = np.empty(0, np.int64)
    return GraphNodes(
        node_ids=frame["node_id"].to_list(),
        episode_ids=frame["episode_id"].to_list(),
        t_ns=frame["t_ns"].to_numpy().astype(np.int64),
        cameras=frame["camera"].to_list(),
        base_positions=np.array(base).reshape(-1, 3),
        registered=frame["registered"].to_numpy().astype(bool),
        point_ids=[seen.get(n, empty) for n in frame["node_id"]],
    )


def _concatenated(first: GraphNodes, second: GraphNodes) -> GraphNodes:
    return GraphNodes(
        node_ids=[*first.node_ids, *second.node_ids],
        episode_ids=[*first.episode_ids, *second.episode_ids],
        t_ns=np.concatenate([first.t_ns, second.t_ns]),
        cameras=[*first.cameras, *second.cameras],
        base_positions=np.concatenate([first.base_positions, second.base_positions]),
        registered=np.concatenate([first.registered, second.registered]),
        point_ids=[*first.point_ids, *second.point_ids],
    )


def node_geometry(
    site: SiteReconstruction, node_ids: Sequence[str], cameras: Sequence[str], poses: Sequence[pycolmap.Rigid3d]
) -> list[NodeGeometry]:
    """Each node's camera (pose in map, intrinsics) and the keypoints of its picture that observe a 3D point."""
    columns = ["node_id", "x", "y", "point3D_id", "point_x", "point_y", "point_z"]
    features = pl.from_arrow(site.node_features.select(columns))
    by_node = {key[0]: rows for key, rows in features.partition_by("node_id", as_dict=True).items()}
    empty = features.clear()
    k = {c.name: np.reshape(c.k, (3, 3)) for c in site.rig}
    geometry = []
    for node_id, camera, pose in zip(node_ids, cameras, poses, strict=True):
        seen = by_node.get(node_id, empty)
        geometry.append(
            NodeGeometry(
                map_from_camera=np.vstack([pose.matrix(), [0.0, 0.0, 0.0, 1.0]]),
                k=k[camera],
                keypoints=seen.select("x", "y").to_numpy().astype(np.float64),
                points=seen.select("point_x", "point_y", "point_z").to_numpy().astype(np.float64),
                point_ids=seen["point3D_id"].to_numpy(),
            )
        )
    return geometry


def extract_landmarks(
    graph: MapGraph, extractor: str, world_dir: str | None, site: SiteReconstruction, lake: Lake
) -> LandmarkObservations:
    """The landmarks the nodes see, by the named extractor, given what it needs: a privileged one the world (rendering
    at the resolution of the site's rig) and the nodes' true poses, one that needs pictures the nodes' pictures."""
    started = time.perf_counter()
    kind = EXTRACTORS[extractor]
    views = list(graph.views)
    if kind.needs_world:
        config = replace(DEFAULT_ROBOT, camera_width=site.rig[0].width, camera_height=site.rig[0].height)
        chosen = kind(world_dir, config=config)
        views = with_true_poses(graph, lake)
    else:
        chosen = kind()
    if kind.needs_pictures:
        views = with_pictures(views, graph, site.rig, lake)
    found = chosen.extract(views)
    return replace(found, report={**found.report, "stage_seconds": round(time.perf_counter() - started, 3)})


def with_pictures(views: Sequence[NodeView], graph: MapGraph, rig: Sequence[RigCamera], lake: Lake) -> list[NodeView]:
    """The views (of the graph's nodes) with their node's picture as recorded (JPEG, decoded when used)."""
    taken = _taken(graph, views)
    jpeg = {}
    for episode_id in sorted({e for e, _ in taken}):
        times = sorted({t for e, t in taken if e == episode_id})
        pictures = read_pictures(lake, episode_id, rig, times)
        jpeg |= {(episode_id, camera, t): data for (camera, t), data in pictures.items()}
    return [
        replace(view, jpeg=jpeg[episode_id, view.camera, t_ns])
        for view, (episode_id, t_ns) in zip(views, taken, strict=True)
    ]


def _taken(graph: MapGraph, views: Sequence[NodeView]) -> list[tuple[str, int]]:
    """(episode_id, t_ns) of each view's node."""
    nodes = graph.nodes.select(["node_id", "episode_id", "t_ns"]).to_pylist()
    when = {row["node_id"]: (row["episode_id"], row["t_ns"]) for row in nodes}
    return [when[view.node_id] for view in views]


def with_true_poses(graph: MapGraph, lake: Lake) -> list[NodeView]:
    """The graph's views with the simulator's truth of their base pose, for the episodes whose log records it."""
    taken = _taken(graph, graph.views)
    truth = {}
    for episode_id in {e for e, _ in taken}:
        with contextlib.suppress(ValueError):  # a real robot's log has no ground truth
            truth[episode_id] = read_trajectory(lake, episode_id, GROUND_TRUTH_TOPIC)
    views = []
    for view, (episode_id, t_ns) in zip(graph.views, taken, strict=True):
        if episode_id in truth:
            pose = truth[episode_id].at(np.array([t_ns]))
            yaw = Rotation.from_quat(pose.quaternions[0]).as_euler("zyx")[0]
            view = replace(view, world_pose=(float(pose.positions[0, 0]), float(pose.positions[0, 1]), float(yaw)))
        views.append(view)
    return views


# --- the pipeline ----------------------------------------------------------------------------------


def _staged(element: Any, stage: str, progress_dir: str, step: Callable[..., Any], *args: Any) -> Any:
    """`step(element, *args)`, leaving a marker for the progress bar when done."""
    result = step(element, *args)
    Path(progress_dir, stage).touch()
    return result


def _select_keyframes(
    episode_id: str, progress_dir: str, lake: Lake, config: KeyframeConfig, descriptor: str
) -> EpisodeKeyframes:
    stage = f"SelectKeyframes-{episode_id}"
    return _staged(episode_id, stage, progress_dir, episode_keyframes, lake, config, descriptor)


def _write_json(value: Any, path: str) -> None:
    Path(path).write_text(json.dumps(value))


class ReadSiteEpisodes(beam.PTransform):
    """The site's episode ids, listed when the pipeline is built."""

    def __init__(self, episode_ids: Sequence[str]) -> None:
        super().__init__()
        self.episode_ids = list(episode_ids)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[str]:
        return pbegin | beam.Create(self.episode_ids)


class SelectKeyframes(beam.PTransform):
    """Episode id -> EpisodeKeyframes, one episode per element so that episodes spread over workers."""

    def __init__(self, lake: Lake, config: KeyframeConfig, progress_dir: Path, descriptor: str = DESCRIPTOR) -> None:
        super().__init__()
        self.lake, self.config, self.progress_dir, self.descriptor = lake, config, str(progress_dir), descriptor

    def expand(self, episodes: beam.PCollection[str]) -> beam.PCollection[EpisodeKeyframes]:
        return episodes | beam.Map(_select_keyframes, self.progress_dir, self.lake, self.config, self.descriptor)


def _split(
    episode: EpisodeKeyframes, progress_dir: str, config: SubmapConfig
) -> Iterator[SubmapPart | EpisodeKeyframes]:
    parts = submap_parts(episode.episode_id, episode.rig, episode.keyframes, episode.descriptors, config)
    Path(progress_dir, f"total+{len(parts)}-{episode.episode_id}").touch()  # the bar learns how many there are
    yield from parts
    # Joining needs the keyframes' poses, not their pictures, which the submaps have read.
    yield replace(episode, keyframes=tuple(replace(k, images={}) for k in episode.keyframes))


def _build_submap(
    piece: SubmapPart | EpisodeKeyframes, progress_dir: str, work_dir: str, sfm: SfmConfig, config: SubmapConfig
) -> Submap | EpisodeKeyframes:
    if isinstance(piece, EpisodeKeyframes):
        return piece
    stage = f"BuildSubmap-{piece.episode_id}-{piece.first}"
    return _staged(piece, stage, progress_dir, build_submap, work_dir, sfm, config)


# The site's episodes and submaps travel as one collection, each step's main input, to one GroupByKey that gathers
# them for the join: Beam's Dask runner computes a collection again for each consumer and for each side input (the
# keyframes' pictures read and described twice; a side input of one element read as two), and it does not keep
# a ParDo's tagged outputs apart.


class SplitSubmaps(beam.PTransform):
    """EpisodeKeyframes -> its SubmapParts and itself without pictures, reshuffled so that parts spread over workers."""

    def __init__(self, config: SubmapConfig, progress_dir: Path) -> None:
        super().__init__()
        self.config, self.progress_dir = config, str(progress_dir)

    def expand(self, episodes: beam.PCollection[EpisodeKeyframes]) -> beam.PCollection[SubmapPart | EpisodeKeyframes]:
        return episodes | beam.FlatMap(_split, self.progress_dir, self.config) | beam.Reshuffle()


class BuildSubmaps(beam.PTransform):
    """SubmapPart -> Submap, each alone; the episodes pass through."""

    def __init__(self, work_dir: Path, sfm: SfmConfig, config: SubmapConfig, progress_dir: Path) -> None:
        super().__init__()
        self.work_dir, self.sfm, self.config, self.progress_dir = str(work_dir), sfm, config, str(progress_dir)

    def expand(
        self, pieces: beam.PCollection[SubmapPart | EpisodeKeyframes]
    ) -> beam.PCollection[Submap | EpisodeKeyframes]:
        return pieces | beam.Map(_build_submap, self.progress_dir, self.work_dir, self.sfm, self.config)


class JoinSubmaps(beam.PTransform):
    """The site's EpisodeKeyframes and Submaps -> one SiteReconstruction (joined `onto` a map, where given)."""

    def __init__(
        self, work_dir: Path, config: SubmapConfig, descriptor: str, onto: MapSource | None, progress_dir: Path
    ) -> None:
        super().__init__()
        self.work_dir, self.config, self.progress_dir = str(work_dir), config, str(progress_dir)
        self.descriptor, self.onto = descriptor, onto

    def expand(self, pieces: beam.PCollection[Submap | EpisodeKeyframes]) -> beam.PCollection[SiteReconstruction]:
        return (
            pieces
            | beam.WithKeys(None)
            | beam.GroupByKey()
            | beam.Map(_join, self.progress_dir, self.work_dir, self.config, self.descriptor, self.onto)
        )


def _join(
    gathered: tuple[None, Iterable[Submap | EpisodeKeyframes]],
    progress_dir: str,
    work_dir: str,
    config: SubmapConfig,
    descriptor: str,
    onto: MapSource | None,
) -> SiteReconstruction:
    pieces = list(gathered[1])
    episodes = [p for p in pieces if isinstance(p, EpisodeKeyframes)]
    submaps = [p for p in pieces if isinstance(p, Submap)]
    return _staged(episodes, "JoinSubmaps", progress_dir, join, submaps, work_dir, config, descriptor, onto)


class BuildGraph(beam.PTransform):
    """SiteReconstruction -> (SiteReconstruction, MapGraph)."""

    def __init__(self, config: GraphConfig, progress_dir: Path) -> None:
        super().__init__()
        self.config, self.progress_dir = config, str(progress_dir)

    def expand(
        self, sites: beam.PCollection[SiteReconstruction]
    ) -> beam.PCollection[tuple[SiteReconstruction, MapGraph]]:
        return sites | beam.Map(_staged, "BuildGraph", self.progress_dir, _with_graph, self.config)


def _with_graph(site: SiteReconstruction, config: GraphConfig) -> tuple[SiteReconstruction, MapGraph]:
    return site, map_graph(site, config)


class ExtractLandmarks(beam.PTransform):
    """(SiteReconstruction, MapGraph) -> (SiteReconstruction, MapGraph, LandmarkObservations)."""

    def __init__(self, extractor: str, world_dir: Path | None, lake: Lake, progress_dir: Path) -> None:
        super().__init__()
        self.extractor, self.progress_dir = extractor, str(progress_dir)
        self.world_dir = None if world_dir is None else str(world_dir)
        self.lake = lake

    def expand(
        self, graphs: beam.PCollection[tuple[SiteReconstruction, MapGraph]]
    ) -> beam.PCollection[tuple[SiteReconstruction, MapGraph, LandmarkObservations]]:
        return graphs | beam.Map(
            _staged, "ExtractLandmarks", self.progress_dir, _with_landmarks, self.extractor, self.world_dir, self.lake
        )


def _with_landmarks(
    graphed: tuple[SiteReconstruction, MapGraph], extractor: str, world_dir: str | None, lake: Lake
) -> tuple[SiteReconstruction, MapGraph, LandmarkObservations]:
    site, graph = graphed
    return site, graph, extract_landmarks(graph, extractor, world_dir, site, lake)


def write_site_map(
    site: SiteReconstruction,
    graph: MapGraph,
    landmarks: LandmarkObservations,
    out: str,
    key: bytes | None,
    build_info: dict[str, Any],
) -> dict[str, Any]:
    """Write the map (a new version of `site.base`, which is kept, where the site extends one); return the counts
    MapSummary reports, of the episodes added."""
    node_features = site.node_features
    keyframes = [k for e in site.episodes for k in e.keyframes]
    seams = odometry_seams(keyframes, site.mapped, recorded_sfm_config(build_info.get("sfm", {})))
    # Where the map disagrees with odometry between neighbouring keyframes: the first keyframe of each pair.
    found_seams = [{"episode_id": keyframes[k].episode_id, "t_ns": keyframes[k].t_ns} for k in seams]
    previous = None
    if site.base is not None:
        base = site.base.read()
        previous = base.manifest.build.get("map_version", 1)
        kept = LandmarkObservations(base.landmarks, base.node_landmarks)
        landmarks = merge_landmarks(kept, landmarks, LANDMARK_MERGE_RADIUS_M, f"v{build_info['map_version']}")
        node_features = pa.concat_tables([base.node_features, node_features])
        found_seams = base.manifest.build.get("odometry_seams", []) + found_seams
    tables = {
        "nodes": graph.nodes,
        "edges": graph.edges,
        "landmarks": landmarks.landmarks,
        "node_landmarks": landmarks.node_landmarks,
        "node_features": node_features,
    }
    info = {
        **build_info,
        "sfm_seconds": {k: round(v, 3) for k, v in site.seconds.items()},
        "sfm_counts": site.counts,
        "sfm_submaps": list(site.by_submap),
        "landmark_extraction": landmarks.report,
        "odometry_seams": found_seams,
    }
    write_map(out, tables, site.sfm_dir, info, key, keep_previous_as=previous)
    return {
        "keyframes": len(site.mapped),
        "registered": sum(m.registered for m in site.mapped),
        "placed_by_odometry": sum(m.placed_by_odometry for m in site.mapped),
        "odometry_seams": len(seams),
        "submaps": {k: site.counts[k] for k in ("submaps", "loop_queries", "loop_closures")},
        "nodes": graph.nodes.num_rows,
        "edges": dict(sorted(Counter(graph.edges["kind"].to_pylist()).items())),
        "landmarks": landmarks.landmarks.num_rows,
        "landmark_extraction": landmarks.report,
    }


class WriteMap(beam.PTransform):
    """(SiteReconstruction, MapGraph, LandmarkObservations) -> the map on disk; its counts go to `summary_path`."""

    def __init__(
        self, out: Path, key: bytes | None, build_info: dict[str, Any], summary_path: Path, progress_dir: Path
    ) -> None:
        super().__init__()
        self.out, self.key, self.build_info, self.summary_path = str(out), key, build_info, str(summary_path)
        self.progress_dir = str(progress_dir)

    def expand(
        self, mapped: beam.PCollection[tuple[SiteReconstruction, MapGraph, LandmarkObservations]]
    ) -> beam.PCollection[None]:
        return (
            mapped
            | beam.Map(_write_staged, self.progress_dir, self.out, self.key, self.build_info)
            | beam.Map(_write_json, self.summary_path)
        )


def _write_staged(
    mapped: tuple[SiteReconstruction, MapGraph, LandmarkObservations],
    progress_dir: str,
    out: str,
    key: bytes | None,
    build_info: dict[str, Any],
) -> dict[str, Any]:
    site, graph, landmarks = mapped
    return _staged(site, "WriteMap", progress_dir, write_site_map, graph, landmarks, out, key, build_info)


# --- running it ------------------------------------------------------------------------------------


@dataclass
class MapSummary:
    """What one `build_site_map` or `update_site_map` made: keyframes and episodes are those it added, nodes, edges
    and landmarks those of the whole map."""

    site: str
    out: str
    map_version: int  # 1 for a build; each update adds one (schemas.map: versions/)
    episodes: int
    keyframes: int
    registered: int
    placed_by_odometry: int  # of the registered keyframes, those posed from wheel odometry (schemas.map nodes)
    odometry_seams: int  # neighbouring keyframes the map puts apart other than odometry does (sfm.odometry_seams)
    submaps: dict[str, int]  # submaps, loop-closure queries, and loop closures the pose graph was given
    nodes: int
    edges: dict[str, int]  # by kind
    landmarks: int
    landmark_extraction: dict[str, Any]  # the extractor's report: for the detector, detections placed on a ray
    encrypted: bool
    lake_version: int | None  # the version of the lake the map was built from, also in its manifest
    seconds: float

    @property
    def registration_rate(self) -> float:
        return self.registered / max(self.keyframes, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "registration_rate": round(self.registration_rate, 4),
            "seconds": round(self.seconds, 3),
        }


def build_site_map(
    lake: Path,
    site: str,
    out: Path,
    key: bytes | None = None,
    extractor: str = EXTRACTOR,
    world_dir: Path | None = None,
    progress: bool = True,
    descriptor: str = DESCRIPTOR,
    keyframe_config: KeyframeConfig = DEFAULT_KEYFRAMES,
    sfm_config: SfmConfig = DEFAULT_SFM,
    graph_config: GraphConfig = DEFAULT_GRAPH,
    submap_config: SubmapConfig = DEFAULT_SUBMAPS,
    runner: str = "direct",
    dask_address: str | None = None,
    workers: int | None = None,
) -> MapSummary:
    """Build the map of `site` from its episodes in the lake and write it to `out`, encrypted under `key` if given;
    a map already there is replaced, with the versions it kept.

    The learned landmark extractor (the default) needs nothing but the recording. The annotated one needs the
    building: `world_dir`, or else the `world.json` the recorder attached to the episodes. Raises ValueError where
    the site has no usable episodes.
    """
    started = time.perf_counter()
    check_runner(runner, dask_address, workers)
    if extractor not in EXTRACTORS:
        raise ValueError(f"unknown landmark extractor {extractor!r}; choose one of {', '.join(EXTRACTORS)}")
    if descriptor not in DESCRIPTORS:
        raise ValueError(f"unknown global descriptor {descriptor!r}; choose one of {', '.join(DESCRIPTORS)}")
    source = Lake(lake)  # one version of the lake, read throughout and named in the manifest
    episode_ids = site_episodes(source, site)
    if not episode_ids:
        raise ValueError(f"the lake at {source.path} has no episodes of site {site!r}")
    build_info = {
        "site": site,
        "lake": str(source.path),  # where `astra eval map` finds the ground truth by default
        "lake_version": source.version,
        "episodes": episode_ids,
        "extractor": extractor,
        "descriptor": descriptor,
        "keyframes": asdict(keyframe_config),
        "sfm": asdict(sfm_config),
        "submaps": asdict(submap_config),
        "graph": asdict(graph_config),
        "map_version": 1,
        "history": [_version_entry(1, "build", source, episode_ids)],
    }
    counts = _run(
        source,
        episode_ids,
        Path(out).resolve(),
        key,
        build_info,
        world_dir,
        None,
        progress,
        runner,
        dask_address,
        workers,
    )
    return MapSummary(
        site=site,
        out=str(Path(out).resolve()),
        map_version=1,
        episodes=len(episode_ids),
        encrypted=key is not None,
        lake_version=source.version,
        seconds=time.perf_counter() - started,
        **counts,
    )


def update_site_map(
    map_dir: Path,
    lake: Path,
    site: str,
    key: bytes | None = None,
    world_dir: Path | None = None,
    progress: bool = True,
    runner: str = "direct",
    dask_address: str | None = None,
    workers: int | None = None,
) -> MapSummary | None:
    """Add the site's episodes in the lake that the map at `map_dir` does not hold yet, without rebuilding it: their
    submaps are joined to the map, which stays fixed (loop closures into it), and the new nodes, edges and landmarks
    are added. The result is the map's next version; the one it replaces is kept in `versions/<n>/`. Settings are the
    map's own (its manifest). None where the map holds every episode of the site already.
    """
    started = time.perf_counter()
    check_runner(runner, dask_address, workers)
    map_dir = Path(map_dir).resolve()
    manifest = read_manifest(map_dir, key)
    held = manifest.build.get("episodes", [])
    if manifest.build.get("site", site) != site:
        raise ValueError(f"the map at {map_dir} is of site {manifest.build['site']!r}, not {site!r}")
    source = Lake(lake)
    added = [e for e in site_episodes(source, site) if e not in held]
    if not added:
        return None
    version = manifest.build.get("map_version", 1) + 1
    history = manifest.build.get("history") or [
        _version_entry(version - 1, "build", Lake(manifest.build["lake"], manifest.build.get("lake_version")), held)
    ]
    build_info = {
        **{k: v for k, v in manifest.build.items() if k not in _PER_VERSION},
        "lake": str(source.path),
        "lake_version": source.version,
        "episodes": held + added,
        "map_version": version,
        "history": [*history, _version_entry(version, "update", source, held + added)],
    }
    counts = _run(
        source,
        added,
        map_dir,
        key,
        build_info,
        world_dir,
        MapSource(str(map_dir), key),
        progress,
        runner,
        dask_address,
        workers,
    )
    return MapSummary(
        site=site,
        out=str(map_dir),
        map_version=version,
        episodes=len(added),
        encrypted=key is not None,
        lake_version=source.version,
        seconds=time.perf_counter() - started,
        **counts,
    )


# What one run found.
_PER_VERSION = ("sfm_seconds", "sfm_counts", "sfm_submaps", "landmark_extraction", "odometry_seams")


def _version_entry(version: int, made: str, lake: Lake, episodes: Sequence[str]) -> dict[str, Any]:
    """A manifest's `history` entry: which episodes a version of the map holds, from which version of which lake."""
    return {
        "map_version": version,
        "made": made,
        "lake": str(lake.path),
        "lake_version": lake.version,
        "episodes": list(episodes),
    }


def _run(
    source: Lake,
    episode_ids: Sequence[str],
    out: Path,
    key: bytes | None,
    build_info: dict[str, Any],
    world_dir: Path | None,
    onto: MapSource | None,
    progress: bool,
    runner: str,
    dask_address: str | None,
    workers: int | None,
) -> dict[str, Any]:
    """Map `episode_ids` (onto an existing map, if given) by the settings in `build_info`, and write the map to `out`;
    the counts of MapSummary."""
    json.dumps(build_info)  # fail before the work, not after it, on settings the manifest cannot hold
    extractor, descriptor = build_info["extractor"], build_info["descriptor"]
    keyframe_config = KeyframeConfig(**build_info["keyframes"])
    sfm_config = recorded_sfm_config(build_info["sfm"])
    submap_config = SubmapConfig(**build_info.get("submaps", {}))
    graph_config = GraphConfig(**build_info["graph"])
    with tempfile.TemporaryDirectory(prefix="astra-map-") as tmp:
        work = Path(tmp)
        progress_dir, summary_path = work / "progress", work / "summary.json"
        progress_dir.mkdir()
        if EXTRACTORS[extractor].needs_world and world_dir is None:
            world_dir = work / "world"
            write_world(recorded_world(source, episode_ids), world_dir)

        def build(pipeline: beam.Pipeline) -> None:
            keyframes = (
                pipeline
                | "ReadSiteEpisodes" >> ReadSiteEpisodes(episode_ids)
                | "SelectKeyframes" >> SelectKeyframes(source, keyframe_config, progress_dir, descriptor)
            )
            _ = (
                keyframes
                | "SplitSubmaps" >> SplitSubmaps(submap_config, progress_dir)
                | "BuildSubmaps" >> BuildSubmaps(work, sfm_config, submap_config, progress_dir)
                | "JoinSubmaps" >> JoinSubmaps(work, submap_config, descriptor, onto, progress_dir)
                | "BuildGraph" >> BuildGraph(graph_config, progress_dir)
                | "ExtractLandmarks" >> ExtractLandmarks(extractor, world_dir, source, progress_dir)
                | "WriteMap" >> WriteMap(out, key, build_info, summary_path, progress_dir)
            )

        title = "map build" if onto is None else "map update"
        with marker_progress(progress_dir, len(episode_ids) + len(GLOBAL_STAGES), title, progress):
            run_pipeline(build, runner, dask_address, workers)
        return json.loads(summary_path.read_text())
