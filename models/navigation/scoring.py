"""How a mission is scored against the simulator's truth: one definition for the in-process runs and the graph's.

A mission succeeds when global reports `succeeded`, the robot stands within SUCCESS_RADIUS_M of the goal pose
(its truth: the resolved goal moved into the world by world_from_map), with no collision, in time, and, where
the intended room is known, the goal lies in it. SPL is success weighted by shortest / max(driven, shortest).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.navigation import se2
from models.navigation.se2 import Pose2

SUCCESS_RADIUS_M = 1.0
FIX_WITHIN_M, FIX_WITHIN_DEG = 1.0, 5.0


def fix_record(
    world_from_map: Pose2,
    t_ns: int,
    success: bool,
    confidence: float,
    map_pose: Pose2,
    truth: Pose2 | None,
    min_confidence: float,
) -> dict[str, Any]:
    """One relocalization's record: its error against the true pose where it succeeded, and whether the stack
    trusted it (confidence at least `min_confidence`: global moves map -> odom only on those)."""
    accepted = success and confidence >= min_confidence
    record: dict[str, Any] = {"t_ns": t_ns, "success": success, "confidence": confidence, "accepted": accepted}
    if success and truth is not None:
        x, y, yaw = se2.compose(world_from_map, map_pose)
        error_m = math.hypot(x - truth[0], y - truth[1])
        error_deg = abs(math.degrees(se2.wrap(yaw - truth[2])))
        record |= {"error_m": error_m, "error_deg": error_deg}
        record["within"] = error_m <= FIX_WITHIN_M and error_deg <= FIX_WITHIN_DEG
    return record


def relocalization_summary(fixes: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the fixes the stack trusted: {"n", "within_1m_5deg", "median_m", "p95_m"}; and how many were tried
    (`attempts`), returned a pose (`poses`), and how many of those poses were within 1 m / 5 deg at all
    (`poses_within_1m_5deg`, trusted or not)."""
    posed = [f for f in fixes if "error_m" in f]
    used = [f for f in posed if f["accepted"]]
    errors = np.array([f["error_m"] for f in used])
    return {
        "n": len(used),
        "within_1m_5deg": float(np.mean([f["within"] for f in used])) if used else None,
        "median_m": float(np.median(errors)) if used else None,
        "p95_m": float(np.percentile(errors, 95)) if used else None,
        "attempts": len(fixes),
        "poses": len(posed),
        "poses_within_1m_5deg": float(np.mean([f["within"] for f in posed])) if posed else None,
    }


def mission_success(state: str, final_error_m: float, collisions: int, goal_correct: bool | None) -> bool:
    return (
        state == "succeeded"
        and final_error_m <= SUCCESS_RADIUS_M
        and collisions == 0
        and goal_correct is not False  # None: the intended room is not known (a user's own goal)
    )


def spl(success: bool, shortest_m: float, driven_m: float) -> float:
    """Success weighted by path length (Anderson et al. 2018)."""
    if not success or not shortest_m > 0:
        return 0.0
    return shortest_m / max(driven_m, shortest_m)
