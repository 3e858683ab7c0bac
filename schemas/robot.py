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
    # Noise. IMU values are typical of a consumer MEMS part (e.g. BMI088) sampled at 100 Hz;
    # biases are drawn once per episode.
    accel_noise_std: float = 0.02  # m/s^2
    accel_bias_std: float = 0.05  # m/s^2
    gyro_noise_std: float = 0.002  # rad/s
    gyro_bias_std: float = 0.002  # rad/s
    wheel_slip_std: float = 0.01  # multiplicative, per encoder sample
    wheel_scale_std: float = 0.003  # multiplicative, per episode (tyre wear, calibration)
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
