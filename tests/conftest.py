"""Shared fixtures: small, generated test data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sim  # noqa: F401  (picks MuJoCo's rendering backend before any test imports mujoco)
from schemas import messages as m
from schemas.topics import CAMERAS, TOPICS, camera_frame

T0 = 1_700_000_000_000_000_000


def sample_message(output_id: str, t_ns: int = T0) -> object:
    """A plausible message for every recorded output id."""
    identity = (0.0, 0.0, 0.0, 1.0)
    if output_id.startswith(("image_", "depth_", "camera_info_")):
        kind, camera = next(
            (k, c) for c in CAMERAS for k in ("image", "depth", "camera_info") if output_id == f"{k}_{c}"
        )
        frame = camera_frame(camera)
        if kind == "image":
            return m.CompressedImage(t_ns, frame, "jpeg", b"\xff\xd8fake-jpeg\xff\xd9")
        if kind == "depth":
            depth = np.linspace(0.5, 4.0, 12, dtype="<f4").reshape(3, 4)
            return m.DepthImage(t_ns, frame, 4, 3, depth.tobytes())
        return m.CameraInfo(
            t_ns,
            frame,
            4,
            3,
            (2.0, 0, 2.0, 0, 2.0, 1.5, 0, 0, 1),
            "plumb_bob",
            (0.0,) * 5,
            (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
            (2.0, 0, 2.0, 0, 0, 2.0, 1.5, 0, 0, 0, 1, 0),
        )
    samples = {
        "clock": m.Clock(t_ns),
        "imu": m.Imu(t_ns, "imu_link", identity, (0.0, 0.0, 0.01), (0.02, -0.01, 9.81)),
        "wheels": m.WheelState(t_ns, ("left_wheel", "right_wheel"), (1.0, 1.1), (5.0, 5.2)),
        "odom": m.Odometry(t_ns, "odom", "base_link", (1.0, 2.0, 0.0), identity, (0.5, 0.0, 0.0), (0.0, 0.0, 0.1)),
        "ground_truth": m.Odometry(t_ns, "map", "base_link", (1.0, 2.0, 0.0), identity, (0.5, 0, 0), (0, 0, 0.1)),
        "tf": m.TFMessage(
            t_ns,
            (
                m.Transform(t_ns, "map", "odom", (0.5, -0.2, 0.0), identity),
                m.Transform(t_ns, "odom", "base_link", (1.0, 2.0, 0.0), identity),
            ),
        ),
        "tf_static": m.TFMessage(
            t_ns,
            (
                m.Transform(t_ns, "base_link", "imu_link", (0.0, 0.0, 0.2), identity),
                m.Transform(t_ns, "base_link", camera_frame("front"), (0.22, 0.0, 0.45), (-0.5, 0.5, -0.5, 0.5)),
            ),
        ),
        "obstacles": m.DynamicObstacles(
            t_ns, ("p1", "c1"), (1.0, 2.0), (3.0, 4.0), (0.5, 0.0), (0.0, -0.5), (0.25, 0.4)
        ),
        "expert_cmd_vel": m.Twist(t_ns, (0.5, 0.0, 0.0), (0.0, 0.0, 0.2)),
        "cmd_vel": m.Twist(t_ns, (0.5, 0.0, 0.0), (0.0, 0.0, 0.2)),
        "events": m.Event(t_ns, "collision", "sim", "wall_3", 0.4),
        "safety_events": m.Event(t_ns, "watchdog_stop", "actuation", "", 0.0),
        "mission_goal": m.MissionGoal(t_ns, "m1", "take me to radiology"),
        "mission_status": m.MissionStatus(
            t_ns, "m1", "goal_not_found", "sing me a song", "", "", "", 0.0, ("Kitchen", "Lobby", "Radiology"), ""
        ),
        "localization": m.LocalizationResult(
            t_ns,
            "map",
            True,
            (1.0, 2.0, 0.0),
            identity,
            tuple(float(i == j) * 0.01 for i in range(6) for j in range(6)),
            0.9,
            312,
            ("n1", "n7"),
            0.42,
            "periodic",
            "",
        ),
        "localization_pose": m.PoseWithCovariance(
            t_ns, "map", (1.0, 2.0, 0.0), identity, tuple(float(i == j) * 0.01 for i in range(6) for j in range(6))
        ),
        "map_odom": m.TFMessage(t_ns, (m.Transform(t_ns, "map", "odom", (0.4, -0.1, 0.0), identity),)),
        "goal": m.PoseStamped(t_ns, "map", (5.0, 3.0, 0.0), (0.0, 0.0, 0.7071067811865476, 0.7071067811865476)),
        "route": m.Path(t_ns, "map", (0.0, 1.5, 3.0), (0.0, 0.5, 1.0), (0.0, 0.3, 0.3)),
        "subgoals": m.Path(t_ns, "odom", (1.5, 3.0), (0.5, 1.0), (0.3, 0.3)),
        "odom_tf": m.TFMessage(t_ns, (m.Transform(t_ns, "odom", "base_link", (1.0, 2.0, 0.0), identity),)),
        "local_odom": m.Odometry(t_ns, "odom", "base_link", (1.0, 2.0, 0.0), identity, (0.5, 0, 0), (0, 0, 0.1)),
        "local_cmd": m.Twist(t_ns, (0.6, 0.0, 0.0), (0.0, 0.0, -0.3)),
        "plan": m.Path(t_ns, "odom", (1.0, 1.1, 1.2), (2.0, 2.0, 2.1), (0.0, 0.1, 0.2)),
        "local_costmap": m.OccupancyGrid(t_ns, "odom", 0.05, 4, 3, (-0.1, -0.075, 0.0), bytes([0, 100, 255, 0] * 3)),
        "moving_obstacles": m.DynamicObstacles(t_ns, ("m0",), (1.5,), (0.2,), (0.0,), (0.0,), (0.3,)),
        "nav_events": m.Event(t_ns, "recovery", "local", "back_up", 0.3),
    }
    return samples[output_id]


@pytest.fixture
def all_topic_messages() -> list[tuple[str, object]]:
    return [(t.output_id, sample_message(t.output_id)) for t in TOPICS]


@pytest.fixture(scope="session")
def office_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated office building, shared by the tests that drive the robot through it."""
    from sim.world import generate_world, write_world

    out = tmp_path_factory.mktemp("worlds") / "office-0"
    write_world(generate_world("office", 0), out)
    return out
