"""A navigation run's recording scored against the simulator's truth (models.navigation.scoring).

`astra navigate` records every topic of dataflow.yml, ground truth included; this reads the MCAP back and says
how the mission went: its final state, success, time, path length, SPL, collisions, fallbacks, recoveries,
relocalization errors and the loop timings the nodes reported.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from models.navigation import se2
from models.navigation.global_navigator import GlobalParams
from models.navigation.scoring import fix_record, mission_success, relocalization_summary, spl
from models.navigation.se2 import Pose2
from models.planning import ClearanceMap, GridPlanner, occupancy_grid, path_length
from schemas.robot import DEFAULT_ROBOT
from schemas.topics import BY_OUTPUT
from schemas.world import World

_TOPICS = {
    BY_OUTPUT[o].ros_topic: o
    for o in ("ground_truth", "goal", "mission_status", "events", "safety_events", "localization", "nav_events")
}
_STATS = re.compile(r"hz=([0-9.]+) p50_ms=([0-9.]+) p99_ms=([0-9.]+)")


def _pose(msg: Any) -> Pose2:
    p, q = msg.pose.position, msg.pose.orientation
    return (p.x, p.y, se2.yaw_of((q.x, q.y, q.z, q.w)))


def score_recording(mcap: Path, world: World, world_from_map: Pose2, goal_room: str | None = None) -> dict[str, Any]:
    """The mission's outcome from its recording; `goal_room`, where known, is the room the goal should lie in."""
    trusted = GlobalParams().min_confidence
    truth_t: list[int] = []
    truth: list[Pose2] = []
    goal: Pose2 | None = None
    state, goal_label, collisions, fallbacks, recoveries = "timeout", "", 0, 0, 0
    fixes: list[dict[str, Any]] = []
    latencies: list[float] = []
    loop_stats: list[tuple[float, float, float]] = []
    with open(mcap, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, channel, message, msg in reader.iter_decoded_messages(topics=list(_TOPICS), log_time_order=True):
            kind = _TOPICS[channel.topic]
            if kind == "ground_truth":
                truth_t.append(message.log_time)
                truth.append(_pose(msg.pose))
            elif kind == "goal":
                goal = _pose(msg)
            elif kind == "mission_status":
                state, goal_label = msg.state, msg.goal_label
            elif kind == "events":
                collisions += msg.kind == "collision"
            elif kind == "safety_events":
                fallbacks += msg.kind == "localization_fallback"
            elif kind == "nav_events" and msg.kind == "recovery":
                recoveries += 1
            elif kind == "nav_events" and msg.kind == "loop_stats" and (match := _STATS.search(msg.detail)):
                loop_stats.append(tuple(float(v) for v in match.groups()))
            elif kind == "localization":
                p, q = msg.pose.pose.position, msg.pose.pose.orientation
                pose = (p.x, p.y, se2.yaw_of((q.x, q.y, q.z, q.w)))
                t_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                true_pose = _nearest(truth_t, truth, t_ns)
                fixes.append(fix_record(world_from_map, t_ns, msg.success, msg.confidence, pose, true_pose, trusted))
                latencies.append(msg.latency_s * 1e3)
    if not truth:
        raise ValueError(f"{mcap} holds no ground truth: it is not a simulated navigation run")
    xy = np.array([(x, y) for x, y, _ in truth])
    driven = float(np.hypot(*np.diff(xy, axis=0).T).sum())
    final_error, shortest, goal_correct = math.inf, math.nan, None
    if goal is not None:
        gx, gy, _ = se2.compose(world_from_map, goal)
        final_error = math.hypot(xy[-1, 0] - gx, xy[-1, 1] - gy)
        clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
        path = GridPlanner(clearance, DEFAULT_ROBOT.radius + 0.05).plan(xy[0], np.array([gx, gy]))
        shortest = path_length(path) if path is not None else math.nan
        if goal_room is not None:
            room = world.room_at(gx, gy)
            goal_correct = room is not None and room.name == goal_room
    success = mission_success(state, final_error, collisions, goal_correct)
    stats = np.array(loop_stats) if loop_stats else np.zeros((0, 3))
    return {
        "state": state,
        "success": success,
        "goal": goal_label,
        "goal_correct": goal_correct,
        "time_s": (truth_t[-1] - truth_t[0]) * 1e-9,
        "path_length_m": driven,
        "shortest_m": shortest,
        "spl": spl(success, shortest, driven),
        "final_error_m": final_error,
        "collisions": collisions,
        "fallbacks": fallbacks,
        "recoveries": recoveries,
        "relocalization": relocalization_summary(fixes),
        "local_hz": float(stats[:, 0].mean()) if len(stats) else None,
        "local_p99_ms": float(stats[:, 2].max()) if len(stats) else None,
        "global_latency_p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "global_latency_p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
    }


def _nearest(t: list[int], poses: list[Pose2], t_ns: int) -> Pose2 | None:
    if not t:
        return None
    return poses[int(np.argmin(np.abs(np.asarray(t) - t_ns)))]
