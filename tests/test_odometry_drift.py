"""Odometry's drift figures (models.odometry_drift) against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.odometry_drift import integrate, odometry_drift


def _straight(metres: float, steps: int) -> np.ndarray:
    return np.column_stack([np.linspace(0, metres, steps + 1), np.zeros(steps + 1), np.zeros(steps + 1)])


def test_a_rigidly_moved_copy_of_the_truth_has_no_drift() -> None:
    truth = integrate(np.tile([0.25, 0.0, 0.05], (120, 1)))  # an arc
    moved = integrate(np.tile([0.25, 0.0, 0.05], (120, 1)), start=(3.0, -1.0, 0.7))
    figures = odometry_drift(moved, truth)
    assert figures["rte_pct"] == pytest.approx(0, abs=1e-9) and figures["ate_m"] == pytest.approx(0, abs=1e-9)
    assert figures["rre_deg_per_10m"] == pytest.approx(0, abs=1e-9) and figures["segments"] > 50


def test_a_two_per_cent_scale_error_is_two_per_cent_rte_and_no_rre() -> None:
    truth = _straight(20.0, 80)
    scaled = truth * [1.02, 1.0, 1.0]
    figures = odometry_drift(scaled, truth)
    assert figures["rte_pct"] == pytest.approx(2.0, rel=1e-6)
    assert figures["rre_deg_per_10m"] == pytest.approx(0, abs=1e-9)
    # After the best alignment (the centres matched), positions are off by 2 % of their distance from the middle:
    # the RMS of 0.02 * |u| for u even over [-10, 10] m is 0.02 * 10 / sqrt(3).
    assert figures["ate_m"] == pytest.approx(0.02 * 10 / math.sqrt(3), rel=0.02)


def test_a_heading_that_turns_one_degree_per_ten_metres_is_one_degree_rre() -> None:
    steps = 80
    motion = np.tile([0.25, 0.0, 0.0], (steps, 1))
    biased = motion + np.array([0.0, 0.0, math.radians(1.0) * 0.25 / 10])  # 1 degree per 10 m driven
    figures = odometry_drift(integrate(biased), integrate(motion))
    assert figures["rre_deg_per_10m"] == pytest.approx(1.0, rel=1e-6)
    # A heading error growing to 1 degree over 10 m puts the end about half a degree's worth of 10 m aside.
    assert figures["rte_pct"] == pytest.approx(100 * math.radians(1.0) / 2, rel=0.05)


def test_a_tour_shorter_than_a_segment_has_no_rte() -> None:
    figures = odometry_drift(_straight(5.0, 20), _straight(5.0, 20))
    assert figures["segments"] == 0 and math.isnan(figures["rte_pct"]) and figures["ate_m"] == 0
