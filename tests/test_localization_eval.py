"""The localization protocol (`astra eval localization`): every variant on the same queries, judged in the world."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pycolmap
import pytest
from scipy.spatial.transform import Rotation

from datasets.lake import Lake
from datasets.map_eval import world_from_map
from datasets.map_store import read_map
from datasets.navigation import global_navigator
from models.astra_global.localizer import AstraLocalizer, AstraLocalizerConfig, better_fix, landmark_map
from models.localization import LocalizationFix
from pipelines.localization_eval import (
    EvaluatedMap,
    LocalizationVariant,
    MapCoverage,
    Query,
    VariantAnswer,
    evaluate_localization,
    evaluate_variant,
    protocol_queries,
    query_instants,
)
from pipelines.mapping import MapSummary
from schemas.map import parse_key
from schemas.topics import CAMERAS


class _Offset(LocalizationVariant):
    """Answers each query with its truth moved by a set offset: what the figures must then say is known."""

    def __init__(self, answers: dict[int, pycolmap.Rigid3d | None]) -> None:
        self.answers = answers

    def localize(self, images: Mapping[str, np.ndarray]) -> VariantAnswer:
        return VariantAnswer(self.answers[id(images)])


def _moved(pose: pycolmap.Rigid3d, metres: float, degrees: float) -> pycolmap.Rigid3d:
    turn = pycolmap.Rotation3d(Rotation.from_euler("z", degrees, degrees=True).as_quat())
    return pycolmap.Rigid3d(pose.rotation * turn, pose.translation + np.array([metres, 0.0, 0.0]))


def test_recalls_count_the_answers_within_each_bound_and_a_missing_answer_as_wrong() -> None:
    truth = pycolmap.Rigid3d(pycolmap.Rotation3d(), [1.0, 2.0, 0.0])
    offsets = [(0.1, 1.0), (0.4, 4.0), (0.9, 3.0), (3.0, 8.0), (8.0, 90.0), None]
    queries = [Query("e", i, {"front": np.zeros((2, 2, 3), np.uint8)}, truth) for i in range(len(offsets))]
    answers = {
        id(q.images): None if offset is None else _moved(truth, *offset)
        for q, offset in zip(queries, offsets, strict=True)
    }
    figures = evaluate_variant(_Offset(answers), queries, pycolmap.Rigid3d())
    assert figures["recall_0.25m_2deg"] == round(1 / 6, 3)
    assert figures["recall_0.5m_5deg"] == round(2 / 6, 3)
    assert figures["recall_1m_5deg"] == round(3 / 6, 3)
    assert figures["recall_5m_10deg"] == round(4 / 6, 3)
    assert figures["coarse_10m"] == round(5 / 6, 3) and figures["answered"] == round(5 / 6, 3)
    assert 0 <= figures["latency_p50_ms"] <= figures["latency_p99_ms"]
    assert "outside_wrong" not in figures and "fallback_rate" not in figures


def test_outside_the_map_only_a_wrong_answer_counts() -> None:
    truth = pycolmap.Rigid3d(pycolmap.Rotation3d(), [1.0, 2.0, 0.0])
    offsets = [None, (0.5, 2.0), (3.0, 0.0), (0.1, 30.0)]  # silent, right, wrong place, wrong heading
    outside = [Query("e", i, {"front": np.zeros((2, 2, 3), np.uint8)}, truth) for i in range(len(offsets))]
    covered = [Query("e", 9, {"front": np.zeros((2, 2, 3), np.uint8)}, truth)]
    answers = {
        id(q.images): None if offset is None else _moved(truth, *offset)
        for q, offset in zip(outside + covered, [*offsets, (0.0, 0.0)], strict=True)
    }
    figures = evaluate_variant(_Offset(answers), covered, pycolmap.Rigid3d(), outside)
    assert figures["recall_0.25m_2deg"] == 1.0 and figures["outside_wrong"] == 0.5


@pytest.fixture(scope="module")
def office(office_map: tuple[Path, str, MapSummary], tour_lake: Path) -> tuple:
    out, key, _ = office_map
    return read_map(out, parse_key(key)), Lake(tour_lake)


def test_the_classical_localizer_finds_the_tours_instants_and_retrieval_alone_comes_near(office: tuple) -> None:
    topo, lake = office
    episode = sorted(set(topo.nodes["episode_id"].to_pylist()))[-1]
    queries = query_instants(lake, episode, 6)
    assert len(queries) == 6 and all(set(q.images) == set(CAMERAS) for q in queries)
    spacing = np.diff([q.t_ns for q in queries])
    assert (spacing > 0).all()
    result = evaluate_localization(topo, lake, queries, ("vpr", "classical"))
    assert result["queries"] == 6 and set(result["variants"]) == {"vpr", "classical"}
    classical, vpr = result["variants"]["classical"], result["variants"]["vpr"]
    assert classical["recall_0.25m_2deg"] >= 0.8
    assert vpr["coarse_10m"] >= 0.8 and vpr["recall_0.25m_2deg"] <= classical["recall_0.25m_2deg"]


def test_a_place_is_covered_where_a_mapping_keyframe_stood_near_facing_the_same_way() -> None:
    def pose(x: float, y: float, yaw_deg: float) -> pycolmap.Rigid3d:
        return pycolmap.Rigid3d(
            pycolmap.Rotation3d(Rotation.from_euler("z", yaw_deg, degrees=True).as_quat()), [x, y, 0]
        )

    coverage = MapCoverage(np.array([[0.0, 0.0, np.radians(170.0)], [5.0, 0.0, 0.0]]))
    places = [pose(0.6, 0.7, -160.0), pose(0.0, 0.0, 120.0), pose(1.0, 0.5, 170.0), pose(5.0, 0.9, 44.0)]
    assert coverage.covers(places).tolist() == [True, False, False, True]


def test_a_query_tour_splits_into_covered_and_outside_instants(office: tuple) -> None:
    topo, lake = office
    coverage = MapCoverage.of_map(topo, lake)
    instants = set(zip(topo.nodes["episode_id"].to_pylist(), topo.nodes["t_ns"].to_pylist(), strict=True))
    assert len(coverage.keyframes) == len(instants)
    episode = sorted(set(topo.nodes["episode_id"].to_pylist()))[-1]
    split = protocol_queries(lake, episode, topo, lake, count=5, outside=5)
    assert len(split.covered) == 5 and split.coverage > 0.9  # the tour that made the map covers itself
    assert coverage.covers([q.world_from_base for q in split.covered]).all()
    assert not coverage.covers([q.world_from_base for q in split.outside]).any()


def test_candidates_from_another_coarse_stage_are_all_that_retrieval_ranks(office: tuple) -> None:
    topo, lake = office
    episode = sorted(set(topo.nodes["episode_id"].to_pylist()))[-1]
    evaluated = EvaluatedMap(topo, lake)
    localizer, map_from_world = evaluated.localizer, world_from_map(topo, lake).inverse()

    def nodes(keyframes: np.ndarray) -> tuple[str, ...]:
        return tuple(localizer.node_ids[n] for k in keyframes for n in localizer.keyframe_nodes[k] if n >= 0)

    found = 0
    for query in query_instants(lake, episode, 4):
        truth = map_from_world * query.world_from_base
        distance = np.linalg.norm(localizer.keyframe_positions[:, :2] - truth.translation[:2], axis=1)
        near, far = np.argsort(distance)[:2], np.argsort(distance)[-2:]
        fix = localizer.localize(query.images, candidates=near)
        assert set(fix.candidates) == set(nodes(near))
        found += fix.success and np.linalg.norm(fix.map_from_base.translation - truth.translation) < 0.25
        assert set(localizer.localize(query.images, candidates=far).candidates) == set(nodes(far))
    assert found >= 3


@pytest.mark.parametrize("localization", ["hybrid", "astra"])
def test_the_global_node_localizes_through_astra_global_on_a_building_it_never_saw(
    office: tuple, localization: str
) -> None:
    """The committed Astra-Global (trained on seeds 600-609) serves the global node on the office of seed 0: its coarse
    stage names landmarks whose keyframes the hybrid's geometry turns into centimetre fixes, and its own fine stage
    into fixes as near as the pose bins and the model allow."""
    topo, lake = office
    navigator = global_navigator(topo, localization=localization)
    assert isinstance(navigator.localizer, AstraLocalizer)
    map_from_world = world_from_map(topo, lake).inverse()
    episode = sorted(set(topo.nodes["episode_id"].to_pylist()))[-1]
    errors = []
    for query in query_instants(lake, episode, 4):
        fix = navigator.localizer.localize(query.images)
        truth = (map_from_world * query.world_from_base).translation
        errors.append(np.linalg.norm(fix.map_from_base.translation - truth) if fix.success else np.inf)
    if localization == "hybrid":
        assert sum(e < 0.25 for e in errors) >= 3, errors
    else:
        assert sum(e < 10.0 for e in errors) >= 3, errors


def test_the_hybrid_falls_back_to_the_whole_map_where_its_region_holds_no_fix(office: tuple) -> None:
    """A map whose keyframes see none of the landmarks the model names leaves the hybrid no region: with the fallback it
    localizes as the classical localizer does and says so, without it there is no fix."""
    topo, lake = office
    evaluated = EvaluatedMap(topo, lake)
    blind = landmark_map(evaluated.localizer, topo.landmarks, topo.node_landmarks.slice(0, 0))
    model = evaluated.astra("grpo", "hybrid").model
    map_from_world = world_from_map(topo, lake).inverse()
    episode = sorted(set(topo.nodes["episode_id"].to_pylist()))[-1]
    [query] = query_instants(lake, episode, 1)
    truth = (map_from_world * query.world_from_base).translation
    fix = AstraLocalizer(model, blind, evaluated.localizer).localize(query.images)
    assert fix.success and fix.fallback and np.linalg.norm(fix.map_from_base.translation - truth) < 0.25
    strict = AstraLocalizer(model, blind, evaluated.localizer, AstraLocalizerConfig(hybrid_fallback=False))
    assert not strict.localize(query.images).success


def test_an_unsure_region_fix_meets_the_whole_maps_and_the_better_scored_one_stands(office: tuple) -> None:
    """Every landmark seen only from one keyframe a metre or more from the query, so that the learned region holds
    a part of the place at best. A region fix less sure than `hybrid_trust` (here any: in this small office every fix
    is over 0.97 sure), or scoring below `hybrid_trust_score`, is checked against the whole map's, and the one whose
    place scores better stands; a region fix that meets both stands alone."""
    topo, lake = office
    evaluated = EvaluatedMap(topo, lake)
    localizer = evaluated.localizer
    map_from_world = world_from_map(topo, lake).inverse()
    episode = sorted(set(topo.nodes["episode_id"].to_pylist()))[-1]
    [query] = query_instants(lake, episode, 1)
    truth = (map_from_world * query.world_from_base).translation
    whole = localizer.localize(query.images)
    config = AstraLocalizerConfig(hybrid_radius_m=0.75)
    distance = np.linalg.norm(localizer.keyframe_positions[:, :2] - truth[:2], axis=1)
    for keyframe in np.flatnonzero(distance > 1.0)[np.argsort(distance[distance > 1.0])]:
        region = np.flatnonzero(
            np.linalg.norm(localizer.keyframe_positions[:, :2] - localizer.keyframe_positions[keyframe, :2], axis=1)
            <= config.hybrid_radius_m
        )
        unsure = localizer.localize(query.images, candidates=region)
        if unsure.success and unsure.score < whole.score:
            break
    else:
        raise AssertionError("no region of the office map gives a fix that scores below the whole map's")
    # The hybrid describes its query once, in the background, for both searches: they must find what each would alone.
    described = localizer.describe_query(query.images, extract_now=True)
    assert localizer.localize(described, candidates=region).score == unsure.score
    assert localizer.localize(described).score == whole.score
    nodes = [localizer.node_ids[n] for n in localizer.keyframe_nodes[keyframe] if n >= 0]
    seen_from_one = pa.table(
        {"node_id": [nodes[0]] * topo.landmarks.num_rows, "landmark_id": topo.landmarks["landmark_id"].to_pylist()}
    )
    one_place = landmark_map(localizer, topo.landmarks, seen_from_one)
    model = evaluated.astra("grpo", "hybrid").model

    unsure_of_it = replace(config, hybrid_trust=1.0)
    finds_it_unexplained = replace(config, hybrid_trust=0.0, hybrid_trust_score=unsure.score + 1.0)
    trusts_it = replace(config, hybrid_trust=0.0, hybrid_trust_score=-np.inf)

    for checked in (unsure_of_it, finds_it_unexplained):
        fix = AstraLocalizer(model, one_place, localizer, checked).localize(query.images)
        assert fix.success and fix.fallback and fix.score == whole.score
        assert np.linalg.norm(fix.map_from_base.translation - truth) < 0.25
    fix = AstraLocalizer(model, one_place, localizer, trusts_it).localize(query.images)
    assert not fix.fallback and fix.score == unsure.score


def test_the_hybrid_keeps_the_fix_whose_place_scores_better_not_the_surer_one() -> None:
    # A look-alike in the learned region, sure on inliers, against the whole map's true place, which a rival with
    # more inliers leaves no confidence but which explains its view better.
    def fix(x: float, confidence: float, score: float) -> LocalizationFix:
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(), np.array([x, 0.0, 0.0]))
        return LocalizationFix(True, pose, np.eye(6), confidence, 300, (), score=score)

    look_alike, true_place = fix(9.6, 0.4, 1.96), fix(0.0, 0.0, 4.87)

    chosen = better_fix(look_alike, true_place)
    assert chosen.fallback and chosen.map_from_base.translation[0] == 0.0
    assert better_fix(true_place, look_alike) is true_place
    assert better_fix(None, look_alike).fallback
