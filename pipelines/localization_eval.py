"""`astra eval localization`: global localization from camera pictures alone, every variant on the same queries.

The protocol on one building: generate it, record an expert mapping tour and build its map
(`pipelines.missions.prepare_building`, shared with the mission protocol), record a query tour on another route
(expert seed + QUERY_SEED_OFFSET), and pick query instants along it at least QUERY_SPACING_M apart. No variant gets
a prior: the robot's start is unknown. Fixes are judged in the building's frame after aligning the map with its
truth (`datasets.map_eval.world_from_map`).

The query tour goes where the mapping tour never went, or never faced (28-64 % of the instants of 300 s tours on
held-out buildings), and no map-based localizer can place a view its map lacks. So the queries are split by the
map's coverage (`MapCoverage`: a mapping keyframe within COVERAGE_M facing within COVERAGE_DEG, by the truth):
recalls are judged on covered queries, as the Astra paper's queries lie in its mapped area, and on uncovered ones
only a wrong answer counts (`outside_wrong`), since a confident fix in an unmapped place misleads navigation.

Variants (`VARIANTS`, each a plugin over the built map):
- `vpr`: retrieval alone, the best keyframe's pose turned by its camera alignment (the paper's MixVPR row);
- `classical`: the navigation stack's localizer: retrieval, then SIFT matching and rig PnP on the best places;
- `astra_sft`, `astra_grpo`: Astra-Global end to end (models.astra_global.localizer), after SFT and after GRPO;
- `hybrid`: Astra-Global's coarse stage (SFT + GRPO), then the classical stage's matching and PnP on its candidates,
  falling back to the whole map where they give no fix (`fallback_rate` says how often).

Figures per variant: recall within (0.25 m, 2°), (0.5 m, 5°), (1 m, 5°) and (5 m, 10°), coarse recall within
10 m whatever the heading, latency p50 / p99, and `outside_wrong`.
"""

from __future__ import annotations

import abc
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap

from datasets.lake import Lake
from datasets.map_eval import world_from_map
from datasets.map_store import TopoMap
from datasets.navigation import keyframe_pictures, planar_world_from_map
from datasets.site_log import read_pictures, read_rig, read_trajectory, rig_frames
from models.astra_global.goals import find_goals
from models.astra_global.localizer import AstraLocalizer, AstraLocalizerConfig, landmark_map
from models.astra_global.maps import leads_to_room
from models.astra_global.model import COMMITTED_CHECKPOINTS, AstraGlobal
from models.localization import Localizer, LocalizerConfig
from models.mapping.evaluation import pose_error
from models.mapping.keyframes import KeyframeConfig, select_keyframes
from schemas.messages import decode_jpeg
from schemas.topics import GROUND_TRUTH_TOPIC
from schemas.world import World
from sim.missions import sample_missions

QUERY_SEED_OFFSET = 1  # the query tour's expert seed, past the mapping tour's
QUERY_SPACING_M = 0.5  # 300 s query tours then give over 100 covered instants in every kind
RECALLS = {
    "recall_0.25m_2deg": (0.25, 2.0),
    "recall_0.5m_5deg": (0.5, 5.0),
    "recall_1m_5deg": (1.0, 5.0),
    "recall_5m_10deg": (5.0, 10.0),
}
COARSE_M = 10.0
COVERAGE_M, COVERAGE_DEG = 1.0, 45.0  # a query is covered where a map keyframe stood this near, facing this near
OUTSIDE_QUERIES = 50
WRONG_BEYOND = (1.0, 5.0)  # an answer off by more than this is wrong (the bar)


@dataclass(frozen=True)
class Query:
    """The rig's pictures at one instant of a query tour, and the truth of base_link in the building."""

    episode_id: str
    t_ns: int
    images: Mapping[str, np.ndarray]  # camera -> RGB (H, W, 3) uint8
    world_from_base: pycolmap.Rigid3d


@dataclass(frozen=True)
class VariantAnswer:
    """map_from_base (None: no answer), where the variant's coarse stage put the robot if it has its own, and whether
    it fell back past that stage (None: it has no fallback)."""

    pose: pycolmap.Rigid3d | None
    coarse: pycolmap.Rigid3d | None = None
    fallback: bool | None = None


class LocalizationVariant(abc.ABC):
    """A way to localize the rig in a built map from its pictures alone; subclasses register in VARIANTS."""

    @abc.abstractmethod
    def localize(self, images: Mapping[str, np.ndarray]) -> VariantAnswer:
        """Where the rig is, from one picture per camera."""


class EvaluatedMap:
    """A built map and what the variants need of it, each made once: the classical localizer, the keyframes'
    pictures (read from the map's lake) and Astra-Global over it per checkpoint."""

    def __init__(self, topo: TopoMap, lake: Lake, checkpoints: Mapping[str, Path] | None = None) -> None:
        self.topo, self.lake = topo, lake
        self.checkpoints = {**COMMITTED_CHECKPOINTS, **(checkpoints or {})}
        map_episode = sorted(set(topo.nodes["episode_id"].to_pylist()))[0]
        self.rig = read_rig(lake, map_episode)
        config = LocalizerConfig.for_map(topo.manifest.build)
        self.localizer = Localizer(topo.nodes, topo.node_features, self.rig, config)
        self._models: dict[str, AstraGlobal] = {}
        self._astra: dict[tuple[str, str], AstraLocalizer] = {}

    @functools.cached_property
    def keyframe_pictures(self) -> list[list[np.ndarray]]:
        return keyframe_pictures(self.lake, self.localizer)

    def astra(self, checkpoint: str, fine: str) -> AstraLocalizer:
        """Astra-Global from the named checkpoint (COMMITTED_CHECKPOINTS) over this map, with that fine stage."""
        if (checkpoint, fine) not in self._astra:
            if checkpoint not in self._models:
                self._models[checkpoint] = AstraGlobal.from_pretrained(self.checkpoints[checkpoint])
            pictures = self.keyframe_pictures if fine == "astra" else None
            landmarks = landmark_map(self.localizer, self.topo.landmarks, self.topo.node_landmarks, pictures)
            config = AstraLocalizerConfig(fine=fine)
            self._astra[checkpoint, fine] = AstraLocalizer(self._models[checkpoint], landmarks, self.localizer, config)
        return self._astra[checkpoint, fine]

    @functools.cached_property
    def keyframe_of_node(self) -> dict[str, int]:
        return {
            self.localizer.node_ids[n]: k for k, row in enumerate(self.localizer.keyframe_nodes) for n in row if n >= 0
        }


class ClassicalVariant(LocalizationVariant):
    def __init__(self, evaluated: EvaluatedMap) -> None:
        self.localizer = evaluated.localizer

    def localize(self, images: Mapping[str, np.ndarray]) -> VariantAnswer:
        fix = self.localizer.localize(images)
        return VariantAnswer(fix.map_from_base if fix.success else None)


class RetrievalVariant(LocalizationVariant):
    def __init__(self, evaluated: EvaluatedMap) -> None:
        self.localizer = evaluated.localizer

    def localize(self, images: Mapping[str, np.ndarray]) -> VariantAnswer:
        return VariantAnswer(self.localizer.retrieved_pose(images))


class AstraVariant(LocalizationVariant):
    """Astra-Global's coarse stage and the co-visibility filter, then a fine stage; its coarse answer is the best
    candidate keyframe's pose."""

    checkpoint, fine = "grpo", "astra"

    def __init__(self, evaluated: EvaluatedMap) -> None:
        self.evaluated = evaluated
        self.astra = evaluated.astra(self.checkpoint, self.fine)

    def localize(self, images: Mapping[str, np.ndarray]) -> VariantAnswer:
        fix = self.astra.localize(images)
        best = self.evaluated.keyframe_of_node[fix.candidates[0]] if fix.candidates else None
        coarse = self.evaluated.localizer.keyframe_poses[best] if best is not None else None
        fallback = fix.fallback if self.astra.config.fine == "hybrid" else None
        return VariantAnswer(fix.map_from_base if fix.success else None, coarse, fallback)


class AstraSftVariant(AstraVariant):
    checkpoint = "sft"


class HybridVariant(AstraVariant):
    """Astra-Global's coarse stage (SFT + GRPO), then the classical stage's matching and PnP on its candidates."""

    fine = "hybrid"


CHECKPOINT_OF_VARIANT = {"astra_sft": "sft", "astra_grpo": "grpo"}  # the variants that are one checkpoint each
VARIANT_OF_CHECKPOINT = {checkpoint: name for name, checkpoint in CHECKPOINT_OF_VARIANT.items()}
GOAL_INSTRUCTIONS = 40
VARIANTS: dict[str, Callable[[EvaluatedMap], LocalizationVariant]] = {
    "vpr": RetrievalVariant,
    "classical": ClassicalVariant,
    "astra_sft": AstraSftVariant,
    "astra_grpo": AstraVariant,
    "hybrid": HybridVariant,
}


def spaced_instants(lake: Lake, episode_id: str, spacing_m: float = QUERY_SPACING_M) -> np.ndarray:
    """The rig's frame instants along a tour at least `spacing_m` apart."""
    frames = rig_frames(lake, episode_id, read_rig(lake, episode_id))
    truth = read_trajectory(lake, episode_id, GROUND_TRUTH_TOPIC)
    return frames[select_keyframes(frames, truth, KeyframeConfig(spacing_m, 360.0, max_interval_s=3600.0))]


def queries_at(lake: Lake, episode_id: str, instants: np.ndarray, count: int) -> list[Query]:
    """Up to `count` of a tour's `instants`, evenly over them, with the rig's pictures and the truth."""
    if not len(instants) or count < 1:
        return []
    rig = read_rig(lake, episode_id)
    chosen = instants[np.unique(np.linspace(0, len(instants) - 1, min(count, len(instants))).round().astype(int))]
    pictures = read_pictures(lake, episode_id, rig, chosen.tolist())
    poses = read_trajectory(lake, episode_id, GROUND_TRUTH_TOPIC).at(chosen).poses()
    return [
        Query(episode_id, int(t), {c.name: decode_jpeg(pictures[c.name, int(t)]) for c in rig}, pose)
        for t, pose in zip(chosen, poses, strict=True)
    ]


def query_instants(lake: Lake, episode_id: str, count: int, spacing_m: float = QUERY_SPACING_M) -> list[Query]:
    """Up to `count` instants of a tour at least `spacing_m` apart, evenly over the tour, with the rig's pictures."""
    return queries_at(lake, episode_id, spaced_instants(lake, episode_id, spacing_m), count)


@dataclass(frozen=True)
class MapCoverage:
    """Where the mapping tour stood and faced at the map's keyframes (registered or not): (N, 3) x, y, yaw in the
    building, from the truth.

    A place is covered where a keyframe stood within `radius_m` facing within `heading_deg`: no map-based localizer
    can place a view the map never saw, so recall is judged on covered queries, and outside them only wrong answers
    count (a confident fix in an unmapped place is the harm there).
    """

    keyframes: np.ndarray
    radius_m: float = COVERAGE_M
    heading_deg: float = COVERAGE_DEG

    @classmethod
    def of_map(cls, topo: TopoMap, lake: Lake) -> MapCoverage:
        """The coverage of a built map, with the truth from the lake it was built from."""
        instants = sorted(set(zip(topo.nodes["episode_id"].to_pylist(), topo.nodes["t_ns"].to_pylist(), strict=True)))
        poses = []
        for episode_id in sorted({e for e, _ in instants}):
            times = np.array([t for e, t in instants if e == episode_id], np.int64)
            poses += read_trajectory(lake, episode_id, GROUND_TRUTH_TOPIC).at(times).poses()
        return cls(_planar(poses))

    def covers(self, poses: Sequence[pycolmap.Rigid3d]) -> np.ndarray:
        """Per world_from_base pose: is it covered?"""
        if not len(poses) or not len(self.keyframes):
            return np.zeros(len(poses), bool)
        query = _planar(poses)
        distance = np.linalg.norm(query[:, None, :2] - self.keyframes[None, :, :2], axis=2)
        turn = np.abs((query[:, None, 2] - self.keyframes[None, :, 2] + np.pi) % (2 * np.pi) - np.pi)
        return ((distance <= self.radius_m) & (turn <= np.radians(self.heading_deg))).any(axis=1)


def _planar(poses: Sequence[pycolmap.Rigid3d]) -> np.ndarray:
    """(N, 3) x, y, yaw."""
    rotations = np.array([p.rotation.matrix() for p in poses]).reshape(-1, 3, 3)
    positions = np.array([p.translation for p in poses]).reshape(-1, 3)
    return np.column_stack([positions[:, :2], np.arctan2(rotations[:, 1, 0], rotations[:, 0, 0])])


@dataclass(frozen=True)
class ProtocolQueries:
    """A query tour's instants split by the map's coverage, and the covered share of all of them."""

    covered: list[Query]
    outside: list[Query]
    coverage: float


def protocol_queries(
    query_lake: Lake, episode_id: str, topo: TopoMap, map_lake: Lake, count: int, outside: int = OUTSIDE_QUERIES
) -> ProtocolQueries:
    """Up to `count` covered instants of the query tour and up to `outside` uncovered ones (MapCoverage)."""
    instants = spaced_instants(query_lake, episode_id)
    truth = read_trajectory(query_lake, episode_id, GROUND_TRUTH_TOPIC).at(instants).poses()
    covered = MapCoverage.of_map(topo, map_lake).covers(truth)
    return ProtocolQueries(
        queries_at(query_lake, episode_id, instants[covered], count),
        queries_at(query_lake, episode_id, instants[~covered], outside),
        round(float(covered.mean()), 3) if len(covered) else 0.0,
    )


def evaluate_variant(
    variant: LocalizationVariant,
    queries: Sequence[Query],
    world_from_map_: pycolmap.Rigid3d,
    outside: Sequence[Query] = (),
) -> dict[str, Any]:
    """The recalls, coarse recall and latency of one variant on the (covered) queries; with `outside` queries, the share
    of them it answers wrongly (beyond 1 m/5°: a fix where it should have said nothing, or said it right). Coarse recall
    judges the variant's coarse stage where it reports one (Astra-Global's best candidate keyframe), else its answer.
    A variant with a fallback reports how often it fell back."""
    errors, coarse, seconds, fallbacks = [], [], [], []

    def error(map_from_base: pycolmap.Rigid3d | None, truth: pycolmap.Rigid3d) -> tuple[float, float]:
        return (np.inf, np.inf) if map_from_base is None else pose_error(world_from_map_ * map_from_base, truth)

    for query in queries:
        started = time.perf_counter()
        answer = variant.localize(query.images)
        seconds.append(time.perf_counter() - started)
        errors.append(error(answer.pose, query.world_from_base))
        coarse.append(error(answer.coarse, query.world_from_base)[0] if answer.coarse is not None else errors[-1][0])
        fallbacks.append(answer.fallback)
    errors = np.array(errors, float).reshape(-1, 2)
    milliseconds = 1000 * np.array(seconds)
    figures: dict[str, Any] = {
        name: round(float(np.mean((errors[:, 0] <= metres) & (errors[:, 1] <= degrees))), 3)
        for name, (metres, degrees) in RECALLS.items()
    }
    figures["coarse_10m"] = round(float(np.mean(np.array(coarse) <= COARSE_M)), 3)
    figures["answered"] = round(float(np.mean(np.isfinite(errors[:, 0]))), 3)
    figures["latency_p50_ms"] = round(float(np.percentile(milliseconds, 50)), 1)
    figures["latency_p99_ms"] = round(float(np.percentile(milliseconds, 99)), 1)
    if any(f is not None for f in fallbacks):
        figures["fallback_rate"] = round(float(np.mean([bool(f) for f in fallbacks])), 3)
    if outside:
        wrong = [
            np.isfinite(metres) and not (metres <= WRONG_BEYOND[0] and degrees <= WRONG_BEYOND[1])
            for metres, degrees in (error(variant.localize(q.images).pose, q.world_from_base) for q in outside)
        ]
        figures["outside_wrong"] = round(float(np.mean(wrong)), 3)
    return figures


def evaluate_localization(
    topo: TopoMap,
    map_lake: Lake,
    queries: Sequence[Query],
    variants: Sequence[str] = tuple(VARIANTS),
    checkpoints: Mapping[str, Path] | None = None,
    world: World | None = None,
    goals: int = GOAL_INSTRUCTIONS,
    outside: Sequence[Query] = (),
) -> dict[str, Any]:
    """Every variant on the same queries: {"queries": N, "variants": {name: figures}}; with `outside` queries (where
    the map does not reach, MapCoverage), "outside_queries" and each variant's "outside_wrong"; with the `world`,
    "goal_accuracy" of `goals` instructions (evaluate_goals). `checkpoints` replaces Astra-Global's committed ones by
    name ("sft", "grpo")."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown localization variants {unknown}; choose from {', '.join(VARIANTS)}")
    evaluated = EvaluatedMap(topo, map_lake, checkpoints)
    alignment = world_from_map(topo, map_lake)
    result: dict[str, Any] = {"queries": len(queries)}
    if outside:
        result["outside_queries"] = len(outside)
    result["variants"] = {
        name: evaluate_variant(VARIANTS[name](evaluated), queries, alignment, outside) for name in variants
    }
    if world is not None and goals:
        learned = [checkpoint for name, checkpoint in CHECKPOINT_OF_VARIANT.items() if name in variants]
        result["goal_accuracy"] = evaluate_goals(evaluated, world, goals, learned)
    return result


def evaluate_goals(evaluated: EvaluatedMap, world: World, count: int, checkpoints: Sequence[str]) -> dict[str, Any]:
    """Text goals resolved on the map: `count` instructions of the mission benchmark (sim.missions, among the rooms
    the map covers), each right where the goal it resolves to lies in the room the instruction names. `classical` is
    the navigation stack's resolver (text embeddings); each Astra-Global checkpoint names a place of the map, and its
    first landmark counts (models.astra_global.goals, models.astra_global.maps.leads_to_room)."""
    from models.goals import GoalResolver
    from models.text_encoder import TextEncoder
    from pipelines.missions import mapped_rooms

    topo = evaluated.topo
    rooms = mapped_rooms(world, topo, planar_world_from_map(topo, evaluated.lake.path))
    missions = sample_missions(world, count, world.seed, rooms=rooms)
    resolver = GoalResolver(topo.nodes, topo.landmarks, topo.node_landmarks, TextEncoder.from_pretrained())
    goals = [resolver.resolve(m.instruction).goal for m in missions]
    right = {"classical": [g is not None and g.room == m.goal_room for g, m in zip(goals, missions, strict=True)]}
    rows = topo.landmarks.to_pylist()
    for checkpoint in checkpoints:
        astra = evaluated.astra(checkpoint, "hybrid")
        found = [find_goals(astra.model, astra.map, m.instruction) for m in missions]
        firsts = [rows[goals[0]] if goals else None for goals in found]
        right[VARIANT_OF_CHECKPOINT[checkpoint]] = [
            first is not None and leads_to_room(first["room"], first["text"], m.goal_room)
            for first, m in zip(firsts, missions, strict=True)
        ]
    return {"instructions": len(missions)} | {name: round(float(np.mean(hits)), 3) for name, hits in right.items()}


def record_query_tour(
    world_dir: Path, work_dir: Path, seed: int, seconds: float, progress: bool = True
) -> tuple[Lake, str]:
    """A query tour of the building on another route than the mapping tour's, ingested into its own lake under
    `work_dir` (both skipped where they exist): the lake and the tour's episode id."""
    from datasets.tours import record_tour
    from pipelines.ingest import ingest
    from schemas.topics import DEPTH_OUTPUTS

    tour, lake = work_dir / "logs" / "query-tour.mcap", work_dir / "query_lake"
    if not tour.is_file():
        tour.parent.mkdir(parents=True, exist_ok=True)
        partial = tour.with_name(f".{tour.name}.part")
        record_tour(world_dir, partial, seconds, seed=seed + QUERY_SEED_OFFSET, leave_out=DEPTH_OUTPUTS)
        partial.rename(tour)
    if not (lake / "episodes").is_dir():
        ingest([tour], lake, progress=progress)
    source = Lake(lake)
    [episode_id] = source.sql("SELECT episode_id FROM episodes")["episode_id"].to_list()
    return source, episode_id
