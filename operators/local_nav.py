"""dora node `local`: fused odometry, the local costmap from depth, and the planner (models/navigation): the classical
one, or with ASTRA_LOCAL=astra Astra-Local's learned one with the classical one as its fallback.

Inputs: `imu`, `wheels`, the three `depth_*` and `camera_info_*`, the three `image_*` (read only by a learned
planner that attends to the 4D encoder's tokens), `subgoals` (the route ahead in odom, from
global), `mission_status` (while global is still localizing, local drives to new viewpoints) and `clock`
(robot time: the planner runs every 1/plan_hz of it). Outputs: `local_odom` (per wheel sample, >= 50 Hz) and
`odom_tf`, `local_cmd` (to actuation), `plan`, `local_candidates` (the rollouts weighed), `local_costmap`,
`moving_obstacles` (base_link, for actuation's slowdown near people) and `nav_events` (arrival, recoveries,
blocked route, relocalize requests, and every few seconds `loop_stats`: the planner's rate and p50/p99 compute
time inside the running graph).
"""

from __future__ import annotations

from dora import Node

from models.astra_local.serving import local_planner
from models.navigation.local_navigator import LocalNavigator
from operators import config
from operators.episode_stream import sensor_lifetime_messages
from schemas.messages import (
    CameraInfo,
    Clock,
    CompressedImage,
    DepthImage,
    Imu,
    MissionStatus,
    Path,
    WheelState,
    to_arrow,
)

STATS_EVERY_NS = 5_000_000_000


def main(node: Node | None = None) -> None:
    node = node or Node()
    navigator = LocalNavigator(config.robot_config(), planner=local_planner(config.local_planner()))
    period_ns = int(1e9 / navigator.params.plan_hz)
    next_plan_ns: int | None = None
    last_stats_ns: int | None = None

    def publish(outputs: list[tuple[str, object]]) -> None:
        for output_id, msg in outputs:
            node.send_output(output_id, *to_arrow(msg))

    for msg in sensor_lifetime_messages(node):
        if isinstance(msg, Imu):
            navigator.on_imu(msg)
        elif isinstance(msg, WheelState):
            publish(navigator.on_wheels(msg))
        elif isinstance(msg, CameraInfo):
            navigator.on_camera_info(msg)
        elif isinstance(msg, DepthImage):
            publish(navigator.on_depth(msg))
        elif isinstance(msg, CompressedImage):
            navigator.on_image(msg)
        elif isinstance(msg, Path):
            navigator.on_subgoals(msg)
        elif isinstance(msg, MissionStatus):
            navigator.on_mission_status(msg)
        elif isinstance(msg, Clock):
            if next_plan_ns is not None and msg.t_ns < next_plan_ns:
                continue
            # On a fixed grid of robot time, so that late ticks do not stretch every period; after a stall of
            # more than a period, the grid restarts rather than bursting to catch up.
            on_grid = (msg.t_ns if next_plan_ns is None else next_plan_ns) + period_ns
            next_plan_ns = on_grid if on_grid > msg.t_ns else msg.t_ns + period_ns
            publish(navigator.plan(msg.t_ns))
            if last_stats_ns is None:
                last_stats_ns = msg.t_ns
            elif msg.t_ns - last_stats_ns >= STATS_EVERY_NS:
                publish([("nav_events", navigator.loop_stats(msg.t_ns, (msg.t_ns - last_stats_ns) * 1e-9))])
                last_stats_ns = msg.t_ns


if __name__ == "__main__":
    main()
