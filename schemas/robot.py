"""The robot's description: geometry, motion limits, sensors and their noise, camera mounts.

One definition for every layer: the simulator builds its model from it, the safety layer enforces
its limits, drivers and planners plan within them, and mapping reads the camera rig from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from schemas.topics import BY_OUTPUT, CAMERA_YAWS, CAMERAS

WHEELS = ("left_wheel", "right_wheel")  # JointState names of the drive wheels, in this order


@dataclass(frozen=True)
class MotionLimits:
    """The robot's rated motion, in base_link: what any driver may ask for, and actuation enforces."""

    max_speed: float = 1.0  # m/s forward
    max_reverse_speed: float = 0.3  # m/s backward: there are no rear bumpers on a mobile base
    max_yaw_rate: float = 1.5  # rad/s
    max_accel: float = 1.0  # m/s^2 when speeding up
    max_yaw_accel: float = 3.0  # rad/s^2 when speeding up


MOTION_LIMITS = MotionLimits()


@dataclass(frozen=True)
class SensorNoise:
    """How the robot's sensors and drive err: the fixed figures; per-episode draws come from them (sim.robot)."""

    # IMU figures are a consumer MEMS part's (Bosch BMI088 datasheet noise densities; bias random walks of
    # the size Kalibr calibrations of such parts report): white noise per sample is density * sqrt(imu_hz), and the
    # bias starts at a per-episode draw, then random-walks.
    accel_noise_density: float = 1.7e-3  # m/s^2/sqrt(Hz) (175 ug/sqrt(Hz))
    accel_bias_std: float = 0.05  # m/s^2, initial bias
    accel_bias_random_walk: float = 1e-3  # m/s^3/sqrt(Hz)
    gyro_noise_density: float = 2.4e-4  # rad/s/sqrt(Hz) (0.014 deg/s/sqrt(Hz))
    gyro_bias_std: float = 0.002  # rad/s, initial bias
    gyro_bias_random_walk: float = 2e-5  # rad/s^2/sqrt(Hz)
    # Wheels. The estimator uses the nominal radius and separation; the true ones differ per episode (tyre wear,
    # assembly), which makes wheel odometry drift systematically.
    wheel_radius_error_std: float = 0.002  # relative, each wheel on its own
    wheel_separation_error_std: float = 0.02  # relative: the effective contact points are not where designed
    # Slip: fraction of extra tyre travel, per unit of acceleration (m/s^2) and of yaw rate (rad/s), times the floor's
    # slip coefficient; plus white slip per encoder sample of the same scale.
    wheel_slip_per_accel: float = 0.01
    wheel_slip_per_yaw_rate: float = 0.03
    wheel_slip_std: float = 0.01
    floor_slip: tuple[tuple[str, float], ...] = (  # textures.FLOOR_STYLES: polished floors slip more than carpet
        ("carpet", 0.6),
        ("wood", 0.9),
        ("concrete", 1.0),
        ("vinyl", 1.1),
        ("tiles", 1.3),
    )
    # Camera exposure: each camera's auto-exposure adapts to the light of the room the robot is in with a lag, so a
    # room lit differently shows over- or under-exposed for a moment; on top, the gain drifts slowly (mean-reverting).
    room_light_std: float = 0.35  # log-brightness spread of rooms, drawn per episode
    exposure_time_constant: float = 0.8  # s for auto-exposure to adapt
    exposure_drift_std: float = 0.1  # log-gain, stationary spread of the slow drift
    exposure_drift_time_constant: float = 20.0  # s
    # Depth, like a structured-light or stereo RGB-D camera: noise sigma = depth_noise_per_m2 * z^2; NaN (REP-118
    # "invalid") where the depth jumps by more than depth_edge_jump * z between neighbours and where the surface is
    # too dark (mean RGB below depth_dark_level) to return the projected pattern.
    depth_noise_per_m2: float = 0.0025
    depth_edge_jump: float = 0.1
    depth_dark_level: int = 20


@dataclass(frozen=True)
class RobotConfig:
    """Physical, sensor and noise parameters of the simulated robot."""

    robot_id: str = "astra-sim-01"
    # Base and drive.
    radius: float = 0.25
    shell_top: float = 0.40  # m above the floor
    floor_clearance: float = 0.04  # the shell never touches the floor plane
    mass: float = 25.0
    limits: MotionLimits = MOTION_LIMITS  # what drivers may command; the servos clip to its speeds
    motor_accel: float = 3.0  # m/s^2 the motors can deliver; walls resist more than this
    motor_yaw_accel: float = 10.0
    servo_time_constant: float = 0.005  # s, velocity servo lag
    wheel_radius: float = 0.08
    wheel_separation: float = 0.42
    timestep: float = 0.002
    # Cameras: names and yaws from schemas.topics, 120 deg each so the three cover 360 deg.
    cameras: tuple[str, ...] = CAMERAS
    camera_hfov_deg: float = 120.0
    camera_width: int = 320
    camera_height: int = 240
    camera_mount_z: float = 0.45
    camera_mount_radius: float = 0.22
    depth_near: float = 0.02  # m; closer surfaces are clipped (cameras sit 3 cm inside the shell edge)
    depth_far: float = 60.0  # m; beyond is reported as +inf (REP-118 "too far")
    jpeg_quality: int = 90
    imu_mount: tuple[float, float, float] = (0.0, 0.0, 0.20)
    # Output rates, Hz of simulated time; defaults are the nominal rates in schemas/topics.py.
    clock_hz: float = BY_OUTPUT["clock"].rate_hz
    imu_hz: float = BY_OUTPUT["imu"].rate_hz
    odom_hz: float = BY_OUTPUT["odom"].rate_hz  # wheels, odom, ground_truth and tf
    camera_hz: float = BY_OUTPUT["image_front"].rate_hz
    obstacles_hz: float = BY_OUTPUT["obstacles"].rate_hz
    noise: SensorNoise = SensorNoise()
    collision_release_s: float = 0.25  # s free of contact before a new touch counts as a new collision

    @property
    def fovy_deg(self) -> float:
        """Vertical field of view that gives `camera_hfov_deg` at the configured aspect ratio."""
        half = math.radians(self.camera_hfov_deg) / 2
        return math.degrees(2 * math.atan(math.tan(half) * self.camera_height / self.camera_width))

    @property
    def focal_px(self) -> float:
        """Pinhole focal length in pixels (square pixels)."""
        return self.camera_width / 2 / math.tan(math.radians(self.camera_hfov_deg) / 2)


DEFAULT_ROBOT = RobotConfig()


def camera_mount(config: RobotConfig, camera: str) -> tuple[tuple[float, float, float], Rotation]:
    """Translation and rotation of a camera's optical frame in base_link."""
    yaw = CAMERA_YAWS[camera]
    forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    rotation = Rotation.from_matrix(np.column_stack([right, down, forward]))
    r = config.camera_mount_radius
    return (r * forward[0], r * forward[1], config.camera_mount_z), rotation
