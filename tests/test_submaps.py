"""Site-scale mapping's pure parts: how keyframes are cut into submaps, and the pose graph that joins them."""

from __future__ import annotations

import math

import numpy as np

from models.mapping.submaps import PoseGraph, SubmapConfig, correction, planar, submap_spans


def test_submaps_share_their_overlap_and_a_short_tail_joins_the_last_one() -> None:
    config = SubmapConfig(keyframes=100, overlap=10)
    assert submap_spans(250, config) == [(0, 100), (90, 190), (180, 250)]
    # 15 keyframes past the first submap's overlap are too few alone: they join it.
    assert submap_spans(105, config) == [(0, 105)]
    assert submap_spans(7, config) == [(0, 7)]
    spans = submap_spans(3000, config)
    assert spans[0][0] == 0 and spans[-1][1] == 3000
    assert all(a[1] - b[0] == 10 for a, b in zip(spans, spans[1:], strict=False))
    assert max(stop - start for start, stop in spans) < 150


def _seen_from(c: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """The planar pose that correction c moves onto `pose`."""
    cos, sin = math.cos(c[2]), math.sin(c[2])
    x, y = pose[0] - c[0], pose[1] - c[1]
    return np.array([cos * x + sin * y, -sin * x + cos * y, pose[2] - c[2]])


def test_a_correction_moves_poses_as_its_rigid_motion_does() -> None:
    import pycolmap
    from scipy.spatial.transform import Rotation

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
