"""Site-scale mapping's pure parts: how keyframes are cut into submaps, and the pose graph that joins them."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pycolmap
from scipy.spatial.transform import Rotation

from datasets.lake import Lake
from datasets.site_log import read_trajectory, site_episodes
from models.localization import LocalizerConfig
from models.mapping.evaluation import trajectory_errors
from models.mapping.keyframes import KeyframeConfig
from models.mapping.sfm import SfmConfig
from models.mapping.submaps import (
    LoopSearch,
    PoseGraph,
    SubmapConfig,
    build_submap,
    correction,
    join_submaps,
    planar,
    submap_parts,
    submap_spans,
)
from pipelines.mapping import episode_keyframes
from schemas.topics import GROUND_TRUTH_TOPIC


def test_submaps_share_their_overlap_and_a_short_tail_joins_the_last_one() -> None:
    config = SubmapConfig(keyframes=100, overlap=10)
    assert submap_spans(250, config) == [(0, 100), (90, 190), (180, 250)]
    # 15 keyframes past the first submap's overlap are too few alone: they join it.
    assert submap_spans(105, config) == [(0, 105)]
    assert submap_spans(7, config) == [(0, 7)]
    spans = submap_spans(3000, config)
    assert spans[0][0] == 0 and spans[-1][1] == 3000
    assert all(a[1] - b[0] == 10 for a, b in itertools.pairwise(spans))
    assert max(stop - start for start, stop in spans) < 150


def _seen_from(c: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """The planar pose that correction c moves onto `pose`."""
    cos, sin = math.cos(c[2]), math.sin(c[2])
    x, y = pose[0] - c[0], pose[1] - c[1]
    return np.array([cos * x + sin * y, -sin * x + cos * y, pose[2] - c[2]])


def test_a_correction_moves_poses_as_its_rigid_motion_does() -> None:
    c, pose = np.array([0.4, -1.2, 0.3]), np.array([2.0, 1.0, -0.5])
    rigid = pycolmap.Rigid3d(pycolmap.Rotation3d(Rotation.from_euler("z", pose[2]).as_quat()), [*pose[:2], 0.2])
    np.testing.assert_allclose(planar(correction(c) * rigid), [*_rotate(c, pose[:2]), pose[2] + c[2]], atol=1e-9)
    np.testing.assert_allclose(_seen_from(c, planar(correction(c) * rigid)), pose, atol=1e-9)


def _rotate(c: np.ndarray, xy: np.ndarray) -> np.ndarray:
    cos, sin = math.cos(c[2]), math.sin(c[2])
    return np.array([cos * xy[0] - sin * xy[1] + c[0], sin * xy[0] + cos * xy[1] + c[1]])


def test_the_pose_graph_recovers_each_submaps_drift_and_shrugs_off_a_wrong_loop_closure() -> None:
    rng = np.random.default_rng(0)
    truth = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.05], [0.8, 0.1, -0.08], [1.1, 0.6, 0.12]])
    graph = PoseGraph(len(truth))
    places = rng.uniform(-10, 10, (40, 3))
    for n, place in enumerate(places):  # chains 0-1-2-3, and loop closures 3-0
        i, j = (n % 3, n % 3 + 1) if n < 30 else (3, 0)
        noise = rng.normal(0, [0.01, 0.01, 0.002])
        graph.add(i, _seen_from(truth[i], place), j, _seen_from(truth[j], place + noise), 0.02, 0.2)
    # A look-alike place 2 m away, taken for a loop closure.
    graph.add(3, _seen_from(truth[3], places[0]), 0, places[0] + [2.0, 0.0, 0.0], 0.05, 0.5)
    solved = graph.solve(np.zeros_like(truth), robust_scale=3.0)
    np.testing.assert_allclose(solved, truth, atol=0.02)
    plain = graph.solve(np.zeros_like(truth), robust_scale=1e6)  # without the robust loss it pulls the map over
    assert np.abs(plain - truth).max() > 0.02


def test_a_submap_with_enough_loop_closure_partners_looks_for_no_new_ones_but_can_still_be_found() -> None:
    config = SubmapConfig(loop_partners=2, loop_pair_closures=2)
    search = LoopSearch()
    search.close(0, 1)
    search.close(2, 0)
    assert not search.is_open(0, 3, config)  # 0 has its two partners
    assert search.is_open(3, 0, config)  # but 3 has none: it may still close with 0
    assert search.is_open(0, 1, config)  # and 0 still closes with its partners, up to loop_pair_closures
    search.close(1, 0)
    assert not search.is_open(0, 1, config) and not search.is_open(1, 0, config)
    assert search.is_open(0, -1, config)  # the map a tour is added to is always searched


def test_loop_closures_pull_a_tour_that_started_off_its_dock_onto_the_map(tour_lake: Path, tmp_path: Path) -> None:
    """Two real tours of the office, cut into several submaps each. The second tour's recorded map -> odom is made
    1.5 m and 10 degrees wrong: only loop closures into the first tour's submaps can put it back."""
    lake = Lake(tour_lake)
    config = SubmapConfig(keyframes=24, overlap=4)
    episodes = [episode_keyframes(e, lake, KeyframeConfig()) for e in site_episodes(lake, "office-0")]
    rig = episodes[0].rig
    submaps = [
        build_submap(part, tmp_path, SfmConfig(), config)
        for e in episodes
        for part in submap_parts(e.episode_id, e.rig, e.keyframes, e.descriptors, config)
    ]
    assert len(submaps) >= 4
    wrong = pycolmap.Rigid3d(pycolmap.Rotation3d(Rotation.from_euler("z", 10, degrees=True).as_quat()), [1.5, 0, 0])
    recorded = {e.episode_id: e.map_from_odom for e in episodes}
    recorded[episodes[1].episode_id] = wrong * recorded[episodes[1].episode_id]
    order = [e.episode_id for e in episodes]
    joined = join_submaps(submaps, recorded, order, rig, config, LocalizerConfig(descriptor="vpr"))

    keyframes = [k for e in episodes for k in e.keyframes]
    assert len(joined.mapped) == len(keyframes)
    assert [(m.episode_id, m.t_ns) for m in joined.mapped] == [(k.episode_id, k.t_ns) for k in keyframes]
    assert joined.counts["registered"] >= 0.95 * len(keyframes)
    assert joined.counts["loop_closures"] > 0
    truth = {e: read_trajectory(lake, e, GROUND_TRUTH_TOPIC) for e in order}
    registered = [(k, m) for k, m in zip(keyframes, joined.mapped, strict=True) if m.registered]
    true_poses = [truth[k.episode_id].at(np.array([k.t_ns])).poses()[0] for k, _ in registered]
    ate, _ = trajectory_errors([m.map_from_base for _, m in registered], true_poses)
    assert ate <= 0.10
    # Owners' features only, each point id once per submap, and every point in front of the map's cameras.
    owned = {k.image_name(c.name) for k, _ in registered for c in rig}
    assert set(joined.observations) == owned and set(joined.node_features["node_id"].to_pylist()) <= owned
    assert len(joined.points) == len(set(joined.node_features["point3D_id"].to_pylist()))
