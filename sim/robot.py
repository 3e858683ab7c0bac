"""The simulated robot: a differential-drive base with three RGB-D cameras, an IMU and wheel encoders.

`RobotConfig` holds every physical, sensor and noise parameter; `add_robot` builds the robot into a
`mujoco.MjSpec` of a world. The base moves on three joints (slide x, slide y, hinge yaw), so it can
never tip, and three force-limited velocity servos drive it. The simulator sets the servo targets
from the commanded (v, w) every physics step, which keeps lateral velocity at zero (no side slip)
while contacts with walls still win over the bounded motor force.

Frames: base_link sits on the floor between the wheels (x forward, z up); imu_link is a pure
translation of it; each camera has a REP-103 optical frame (z forward, x right, y down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from schemas.topics import BY_OUTPUT, CAMERA_YAWS, CAMERAS

BODY = "robot"
JOINTS = ("robot_x", "robot_y", "robot_yaw")
ACTUATORS = ("drive_x", "drive_y", "drive_yaw")
GEOM = "robot_shell"
IMU_SITE = "imu"
ACCEL_SENSOR, GYRO_SENSOR = "imu_accel", "imu_gyro"
WHEELS = ("left_wheel", "right_wheel")

# MuJoCo cameras look along -z with y up; the optical frame looks along +z with y down.
_MUJOCO_FROM_OPTICAL = Rotation.from_euler("x", math.pi)


@dataclass(frozen=True)
class RobotConfig:
    """Physical, sensor and noise parameters of the simulated robot."""

    robot_id: str = "astra-sim-01"
    # Base and drive.
    radius: float = 0.25
    shell_top: float = 0.40  # m above the floor
    floor_clearance: float = 0.04  # the shell never touches the floor plane
    mass: float = 25.0
    max_speed: float = 1.0
    max_yaw_rate: float = 1.5
    max_accel: float = 3.0  # m/s^2 the motors can deliver; walls resist more than this
    max_yaw_accel: float = 10.0
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
    tf_static_hz: float = BY_OUTPUT["tf_static"].rate_hz
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


def camera_name(camera: str) -> str:
    """Name of a camera in the MuJoCo model."""
    return f"camera_{camera}"


def camera_mount(config: RobotConfig, camera: str) -> tuple[tuple[float, float, float], Rotation]:
    """Translation and rotation of a camera's optical frame in base_link."""
    yaw = CAMERA_YAWS[camera]
    forward = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    rotation = Rotation.from_matrix(np.column_stack([right, down, forward]))
    r = config.camera_mount_radius
    return (r * forward[0], r * forward[1], config.camera_mount_z), rotation


def add_robot(spec: mujoco.MjSpec, config: RobotConfig) -> None:
    """Add the robot body, its drive servos, IMU sensors and cameras to a world spec.

    The body starts at the origin; place it by writing the joint positions (x, y, yaw).
    """
    spec.option.timestep = config.timestep
    # Implicit integration treats the stiff velocity servos' damping stably at a 2 ms step.
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, config.camera_width)
    spec.visual.global_.offheight = max(spec.visual.global_.offheight, config.camera_height)

    body = spec.worldbody.add_body(name=BODY)
    for name, kind, axis in zip(
        JOINTS,
        (mujoco.mjtJoint.mjJNT_SLIDE, mujoco.mjtJoint.mjJNT_SLIDE, mujoco.mjtJoint.mjJNT_HINGE),
        ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
        strict=True,
    ):
        body.add_joint(name=name, type=kind, axis=axis)

    half_height = (config.shell_top - config.floor_clearance) / 2
    body.add_geom(
        name=GEOM,
        type=mujoco.mjtGeom.mjGEOM_CYLINDER,
        size=(config.radius, half_height, 0),
        pos=(0, 0, config.floor_clearance + half_height),
        mass=config.mass,
        rgba=(0.85, 0.45, 0.1, 1),
    )
    body.add_site(name=IMU_SITE, pos=config.imu_mount)
    spec.add_sensor(
        name=ACCEL_SENSOR,
        type=mujoco.mjtSensor.mjSENS_ACCELEROMETER,
        objtype=mujoco.mjtObj.mjOBJ_SITE,
        objname=IMU_SITE,
    )
    spec.add_sensor(
        name=GYRO_SENSOR, type=mujoco.mjtSensor.mjSENS_GYRO, objtype=mujoco.mjtObj.mjOBJ_SITE, objname=IMU_SITE
    )

    yaw_inertia = config.mass * config.radius**2 / 2
    for name, joint, limit in zip(
        ACTUATORS,
        JOINTS,
        (config.mass * config.max_accel, config.mass * config.max_accel, yaw_inertia * config.max_yaw_accel),
        strict=True,
    ):
        actuator = spec.add_actuator(name=name, target=joint, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        inertia = yaw_inertia if joint == JOINTS[2] else config.mass
        actuator.set_to_velocity(kv=inertia / config.servo_time_constant)
        actuator.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        actuator.forcerange = (-limit, limit)

    for camera in config.cameras:
        pos, optical = camera_mount(config, camera)
        body.add_camera(
            name=camera_name(camera),
            pos=pos,
            fovy=config.fovy_deg,
            quat=(optical * _MUJOCO_FROM_OPTICAL).as_quat(scalar_first=True),
        )
