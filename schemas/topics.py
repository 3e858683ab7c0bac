"""Every recorded topic: its dora output id, ROS 2 topic name, ROS 2 type, frame and nominal rate.

This table is the one place that ties a dora output to an MCAP channel. The recorder,
the viz node and the ingest pipeline all read it.
"""

from __future__ import annotations

from dataclasses import dataclass

CAMERAS = ("front", "rear_left", "rear_right")
DEPTH_OUTPUTS = frozenset(f"depth_{camera}" for camera in CAMERAS)  # most of a recording's bytes
# Camera yaw in base_link, rad: front plus two rear-facing cameras at +-120 degrees.
CAMERA_YAWS = {"front": 0.0, "rear_left": 2.0943951023931953, "rear_right": -2.0943951023931953}

MAP_FRAME, ODOM_FRAME, BASE_FRAME, IMU_FRAME = "map", "odom", "base_link", "imu_link"
TICK_S = 0.01  # robot time the sensor node steps the simulator (or a recording's replay) by, one step at a time


def camera_frame(camera: str) -> str:
    """REP-103 optical frame of a camera (z forward, x right, y down)."""
    return f"camera_{camera}_optical_frame"


@dataclass(frozen=True)
class Topic:
    output_id: str  # dora output id on the node that publishes it
    ros_topic: str
    ros_type: str
    rate_hz: float | None  # nominal rate; None for event-driven and once-per-episode topics
    description: str
    latched: bool = False  # transient-local durability: a late subscriber still gets the last message


def _camera_topics(camera: str) -> list[Topic]:
    return [
        Topic(
            f"image_{camera}",
            f"/camera/{camera}/image/compressed",
            "sensor_msgs/msg/CompressedImage",
            10.0,
            f"{camera} RGB camera, JPEG",
        ),
        Topic(
            f"depth_{camera}",
            f"/camera/{camera}/depth",
            "sensor_msgs/msg/Image",
            10.0,
            f"{camera} depth camera, 32FC1 metres along the optical axis",
        ),
        Topic(
            f"camera_info_{camera}",
            f"/camera/{camera}/camera_info",
            "sensor_msgs/msg/CameraInfo",
            10.0,
            f"{camera} intrinsics (pinhole, no distortion)",
        ),
    ]


TOPICS: tuple[Topic, ...] = (
    Topic("clock", "/clock", "rosgraph_msgs/msg/Clock", 100.0, "simulation time"),
    Topic("imu", "/imu", "sensor_msgs/msg/Imu", 100.0, "accelerometer and gyro in imu_link, with noise and bias"),
    Topic(
        "wheels",
        "/wheels/joint_states",
        "sensor_msgs/msg/JointState",
        50.0,
        "left and right wheel encoders, rad and rad/s, with slip",
    ),
    Topic("odom", "/odom", "nav_msgs/msg/Odometry", 50.0, "wheel odometry, odom -> base_link"),
    Topic("ground_truth", "/ground_truth/odom", "nav_msgs/msg/Odometry", 50.0, "simulator truth, map -> base_link"),
    Topic(
        "tf",
        "/tf",
        "tf2_msgs/msg/TFMessage",
        50.0,
        "map -> odom and odom -> base_link, one TFMessage per stamp holding both",
    ),
    Topic(
        "tf_static",
        "/tf_static",
        "tf2_msgs/msg/TFMessage",
        None,
        "base_link -> imu_link and the 3 camera optical frames: one TFMessage at episode start, latched",
        latched=True,
    ),
    *[t for camera in CAMERAS for t in _camera_topics(camera)],
    Topic(
        "obstacles",
        "/ground_truth/obstacles",
        "astra_msgs/msg/DynamicObstacles",
        10.0,
        "simulator truth about people and carts",
    ),
    Topic("expert_cmd_vel", "/expert/cmd_vel", "geometry_msgs/msg/Twist", 20.0, "expert driver command, before safety"),
    Topic("cmd_vel", "/cmd_vel", "geometry_msgs/msg/Twist", 50.0, "command after the actuation safety layer"),
    Topic("events", "/events", "astra_msgs/msg/Event", None, "collisions and episode bounds, from the robot"),
    Topic(
        "safety_events",
        "/actuation/events",
        "astra_msgs/msg/Event",
        None,
        "watchdog stops, e-stops, slowdowns near people and localization fallbacks",
    ),
    # The navigation stack (dataflow.yml): mission -> global -> local -> actuation.
    Topic("mission_goal", "/mission/goal", "astra_msgs/msg/MissionGoal", None, "text goal, from the mission node"),
    Topic("mission_status", "/mission/status", "astra_msgs/msg/MissionStatus", None, "mission state, from global"),
    Topic(
        "localization",
        "/localization/result",
        "astra_msgs/msg/LocalizationResult",
        None,
        "every relocalization from images: pose, confidence, inliers, latency, why it failed",
    ),
    Topic(
        "localization_pose",
        "/localization/pose",
        "geometry_msgs/msg/PoseWithCovarianceStamped",
        None,
        "successful relocalizations: base_link in map with covariance",
    ),
    Topic("map_odom", "/tf", "tf2_msgs/msg/TFMessage", None, "map -> odom as localization corrects it, from global"),
    Topic("goal", "/goal", "geometry_msgs/msg/PoseStamped", None, "the resolved goal pose in map"),
    Topic("route", "/route", "nav_msgs/msg/Path", None, "the route on the map graph, in map"),
    Topic("subgoals", "/route/subgoals", "nav_msgs/msg/Path", None, "the route ahead as subgoals, in odom"),
    Topic("local_odom", "/local/odom", "nav_msgs/msg/Odometry", 50.0, "wheel and IMU fused odometry"),
    Topic("odom_tf", "/tf", "tf2_msgs/msg/TFMessage", 50.0, "odom -> base_link from the fused odometry, from local"),
    Topic("local_cmd", "/local/cmd_vel", "geometry_msgs/msg/Twist", 10.0, "local planner command, before safety"),
    Topic("plan", "/plan", "nav_msgs/msg/Path", 10.0, "the local planner's chosen trajectory, in odom"),
    Topic(
        "local_candidates",
        "/local/candidates",
        "astra_msgs/msg/CandidatePaths",
        10.0,
        "the trajectories the local planner sampled, their costs and the one it chose, in odom",
    ),
    Topic("local_costmap", "/local_costmap", "nav_msgs/msg/OccupancyGrid", 2.0, "rolling costmap from depth, in odom"),
    Topic(
        "moving_obstacles",
        "/local/moving_obstacles",
        "astra_msgs/msg/DynamicObstacles",
        10.0,
        "obstacles the costmap sees moving (people, carts), in base_link",
    ),
    Topic("nav_events", "/navigation/events", "astra_msgs/msg/Event", None, "recoveries, arrival, relocalize requests"),
)

BY_OUTPUT: dict[str, Topic] = {t.output_id: t for t in TOPICS}

ODOMETRY_TOPIC = BY_OUTPUT["odom"].ros_topic  # wheel odometry, odom -> base_link
GROUND_TRUTH_TOPIC = BY_OUTPUT["ground_truth"].ros_topic  # simulator truth, for evaluation only
