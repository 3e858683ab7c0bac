"""The simulated robot: a differential-drive base with three RGB-D cameras, an IMU and wheel encoders.

`RobotConfig` (schemas/robot.py) holds every physical, sensor and noise parameter; `add_robot` builds the robot into a
`mujoco.MjSpec` of a world. The base moves on three joints (slide x, slide y, hinge yaw), so it can
never tip, and three force-limited velocity servos drive it. The simulator sets the servo targets
from the commanded (v, w) every physics step, which keeps lateral velocity at zero (no side slip)
while contacts with walls still win over the bounded motor force.

`draw_sensor_errors` draws an episode's calibration errors, initial IMU biases and room lights from its seed, so
the simulator and whoever records the episode's metadata get the same values.

Frames: base_link sits on the floor between the wheels (x forward, z up); imu_link is a pure
translation of it; each camera has a REP-103 optical frame (z forward, x right, y down).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from schemas.robot import RobotConfig, SensorNoise, camera_mount

BODY = "robot"
JOINTS = ("robot_x", "robot_y", "robot_yaw")
ACTUATORS = ("drive_x", "drive_y", "drive_yaw")
GEOM = "robot_shell"
IMU_SITE = "imu"
ACCEL_SENSOR, GYRO_SENSOR = "imu_accel", "imu_gyro"

# MuJoCo cameras look along -z with y up; the optical frame looks along +z with y down.
_MUJOCO_FROM_OPTICAL = Rotation.from_euler("x", math.pi)


@dataclass(frozen=True)
class SensorErrors:
    """One episode's sensor and drive errors: the fixed noise figures and what was drawn from them."""

    noise: SensorNoise
    wheel_radius_scale: tuple[float, float]  # true / nominal radius of the left and right wheel
    wheel_separation_scale: float  # true / nominal wheel separation
    accel_bias: tuple[float, float, float]  # m/s^2 at start; it random-walks from there
    gyro_bias: tuple[float, float, float]  # rad/s at start
    room_light: dict[str, float]  # log-brightness of each room's light, by room id

    def to_json(self) -> str:
        """The record stored in episode metadata (`EpisodeMetadata.sensor_errors`)."""
        return json.dumps(asdict(self), sort_keys=True)


def draw_sensor_errors(noise: SensorNoise, seed: int, room_ids: Sequence[str]) -> SensorErrors:
    """The errors of the episode with this seed, in a world with these rooms."""
    rng = np.random.default_rng(seed)
    return SensorErrors(
        noise=noise,
        wheel_radius_scale=tuple((1 + rng.normal(0.0, noise.wheel_radius_error_std, 2)).tolist()),
        wheel_separation_scale=float(1 + rng.normal(0.0, noise.wheel_separation_error_std)),
        accel_bias=tuple(rng.normal(0.0, noise.accel_bias_std, 3).tolist()),
        gyro_bias=tuple(rng.normal(0.0, noise.gyro_bias_std, 3).tolist()),
        room_light={room: float(rng.normal(0.0, noise.room_light_std)) for room in room_ids},
    )


def camera_name(camera: str) -> str:
    """Name of a camera in the MuJoCo model."""
    return f"camera_{camera}"


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
        (config.mass * config.motor_accel, config.mass * config.motor_accel, yaw_inertia * config.motor_yaw_accel),
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
