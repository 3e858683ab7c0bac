"""Wheel and IMU odometry: an EKF that fuses the gyro, the accelerometer and the wheel encoders.

The estimate is REP-105 `odom` -> `base_link`: it starts at the origin and moves continuously (no jumps),
updated at the IMU rate (100 Hz) and the wheel rate (50 Hz).

State: x, y, yaw in `odom`; forward speed v and yaw rate w in base_link; gyro z bias; accelerometer x bias; and
the wheels' yaw-rate calibration: the relative error of the track (separation) and the yaw rate that a difference
in wheel radii adds per m/s of speed. Calibrating online is what lets the gyro bias be told apart from the
wheels' systematic errors while the robot moves.
- IMU: the accelerometer's forward axis drives v between wheel samples (imu_link has base_link's rotation and sits
  on the yaw axis, so it feels dv/dt with no lever arm); the gyro measures w + gyro bias.
- Wheels: encoder increments give the mean v and w over the sample interval; wheel w is modelled as
  w * (1 + track error) + v * radii yaw rate. Slip is white noise that grows with speed and yaw rate, several
  times the gyro's noise at any speed: when wheels and gyro disagree on the yaw rate, the gyro wins.
- Both wheels still: a zero-velocity update, which makes both IMU biases observable.
- No update moves the pose (x, y, yaw): only integrating v and w does (see `_update`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from schemas.messages import Imu, WheelState
from schemas.robot import DEFAULT_ROBOT, WHEELS, RobotConfig

X, Y, YAW, V, W, GYRO_BIAS, ACCEL_BIAS, TRACK_ERROR, RADII_YAW_RATE = range(9)
STATES = 9


@dataclass(frozen=True)
class OdometryConfig:
    """Noise densities of the filter (continuous time, per sqrt(s)) and measurement standard deviations."""

    speed_accel_std: float = 0.3  # m/s^2: unmodelled dv/dt beyond the accelerometer's (slip, bumps)
    yaw_accel_std: float = 3.0  # rad/s^2: yaw acceleration, MotionLimits.max_yaw_accel in size
    accel_bias_walk: float = 1e-3  # m/s^2/sqrt(s)
    gyro_noise_std: float = 0.003  # rad/s per sample
    wheel_speed_std: float = 0.01  # m/s at rest, plus wheel_speed_rel_std * |v|
    wheel_speed_rel_std: float = 0.03
    wheel_yaw_rate_std: float = 0.01  # rad/s at rest, plus the slip terms below
    wheel_yaw_rate_slip_per_speed: float = 0.05  # rad/s per m/s
    wheel_yaw_rate_slip_rel: float = 0.05  # relative to |w|
    stationary_std: float = 1e-3  # m/s and rad/s of a zero-velocity update
    stationary_rate: float = 1e-3  # rad/s: wheel rates below this on both wheels mean standing still
    initial_accel_bias_std: float = 0.1
    initial_track_error_std: float = 0.03  # relative
    initial_radii_yaw_rate_std: float = 0.02  # rad/s per m/s: 0.4 % radius difference over a 0.42 m track
    calibration_walk: float = 1e-5  # per sqrt(s), of both wheel calibration states


class WheelImuOdometry:
    """The fused `odom` -> `base_link` estimate; feed it every Imu and WheelState in time order."""

    def __init__(self, robot: RobotConfig = DEFAULT_ROBOT, config: OdometryConfig = OdometryConfig()) -> None:
        self.robot = robot
        self.config = config
        self._state = np.zeros(STATES)
        self._cov = np.diag(
            [
                0.0,
                0.0,
                0.0,
                0.01,
                0.01,
                robot.noise.gyro_bias_std**2,  # the robot's IMU figures: a prior 5x wider cost a quarter of the RTE
                config.initial_accel_bias_std**2,
                config.initial_track_error_std**2,
                config.initial_radii_yaw_rate_std**2,
            ]
        )
        self._t_ns: int | None = None
        self._forward_accel = 0.0  # latest accelerometer x, the control input of v between IMU samples
        self._last_wheels: WheelState | None = None

    @property
    def t_ns(self) -> int | None:
        """Stamp of the newest message taken in, None before the first."""
        return self._t_ns

    def pose(self) -> tuple[float, float, float]:
        """x, y, yaw of base_link in odom (yaw wrapped to [-pi, pi))."""
        x, y, yaw = self._state[:3]
        return float(x), float(y), (float(yaw) + math.pi) % (2 * math.pi) - math.pi

    def velocity(self) -> tuple[float, float]:
        """Forward speed (m/s) and yaw rate (rad/s) in base_link."""
        return float(self._state[V]), float(self._state[W])

    def biases(self) -> tuple[float, float]:
        """Estimated gyro z bias (rad/s) and accelerometer x bias (m/s^2)."""
        return float(self._state[GYRO_BIAS]), float(self._state[ACCEL_BIAS])

    def covariance(self) -> np.ndarray:
        """3x3 covariance of x, y, yaw."""
        return self._cov[:3, :3].copy()

    def on_imu(self, msg: Imu) -> None:
        """Predict to the IMU stamp, then correct w with the gyro; the accelerometer drives v from here on."""
        self._predict(msg.t_ns)
        gyro_z = msg.angular_velocity[2]
        h = np.zeros((1, STATES))
        h[0, W] = h[0, GYRO_BIAS] = 1.0
        self._update(np.array([gyro_z - self._state[W] - self._state[GYRO_BIAS]]), h, self.config.gyro_noise_std**2)
        self._forward_accel = msg.linear_acceleration[0]

    def on_wheels(self, msg: WheelState) -> None:
        """Predict to the encoder stamp, then correct v and w with the mean wheel motion since the last sample."""
        self._predict(msg.t_ns)
        previous, self._last_wheels = self._last_wheels, msg
        if previous is None or msg.t_ns <= previous.t_ns:
            return
        cfg = self.config
        if max(abs(r) for r in msg.velocity) < cfg.stationary_rate:
            h = np.zeros((2, STATES))
            h[0, V] = h[1, W] = 1.0
            self._update(-self._state[[V, W]], h, np.full(2, cfg.stationary_std**2))
            return
        dt = (msg.t_ns - previous.t_ns) * 1e-9
        if tuple(msg.names) != WHEELS:
            raise ValueError(f"expected wheels {WHEELS}, got {msg.names}")
        travel = (np.asarray(msg.position) - np.asarray(previous.position)) * self.robot.wheel_radius
        speed = float(travel.mean()) / dt
        yaw_rate = float(travel[1] - travel[0]) / self.robot.wheel_separation / dt
        s = self._state
        h = np.zeros((1, STATES))
        h[0, V] = 1.0
        self._update(np.array([speed - s[V]]), h, (cfg.wheel_speed_std + cfg.wheel_speed_rel_std * abs(speed)) ** 2)
        h = np.zeros((1, STATES))
        h[0, V], h[0, W], h[0, TRACK_ERROR], h[0, RADII_YAW_RATE] = s[RADII_YAW_RATE], 1 + s[TRACK_ERROR], s[W], s[V]
        predicted = s[W] * (1 + s[TRACK_ERROR]) + s[V] * s[RADII_YAW_RATE]
        std = (
            cfg.wheel_yaw_rate_std
            + cfg.wheel_yaw_rate_slip_per_speed * abs(speed)
            + cfg.wheel_yaw_rate_slip_rel * abs(yaw_rate)
        )
        self._update(np.array([yaw_rate - predicted]), h, std**2)

    def _predict(self, t_ns: int) -> None:
        if self._t_ns is None:
            self._t_ns = t_ns
            return
        dt = (t_ns - self._t_ns) * 1e-9
        if dt <= 0.0:  # a late message: take it as if it came now
            return
        self._t_ns = t_ns
        cfg = self.config
        s = self._state
        yaw_mid = s[YAW] + s[W] * dt / 2
        c, sn = math.cos(yaw_mid), math.sin(yaw_mid)
        s[X] += s[V] * c * dt
        s[Y] += s[V] * sn * dt
        s[YAW] += s[W] * dt
        s[V] += (self._forward_accel - s[ACCEL_BIAS]) * dt
        f = np.eye(STATES)
        f[X, YAW], f[X, V], f[X, W] = -s[V] * sn * dt, c * dt, -s[V] * sn * dt * dt / 2
        f[Y, YAW], f[Y, V], f[Y, W] = s[V] * c * dt, sn * dt, s[V] * c * dt * dt / 2
        f[YAW, W] = dt
        f[V, ACCEL_BIAS] = -dt
        q = np.zeros(STATES)
        q[V] = cfg.speed_accel_std**2 * dt
        q[W] = cfg.yaw_accel_std**2 * dt
        q[GYRO_BIAS] = self.robot.noise.gyro_bias_random_walk**2 * dt
        q[ACCEL_BIAS] = cfg.accel_bias_walk**2 * dt
        q[TRACK_ERROR] = q[RADII_YAW_RATE] = cfg.calibration_walk**2 * dt
        self._cov = f @ self._cov @ f.T + np.diag(q)

    def _update(self, innovation: np.ndarray, h: np.ndarray, variance: float | np.ndarray) -> None:
        s = h @ self._cov @ h.T + np.diag(np.broadcast_to(variance, innovation.shape))
        gain = np.linalg.solve(s, h @ self._cov).T
        # No measurement sees the pose: only integrating the speeds moves it. Through the covariance's terms that
        # linearising builds up, the speed updates walked it 0.15 m in one turn in place.
        gain[[X, Y, YAW]] = 0.0
        self._state += gain @ innovation
        i_kh = np.eye(STATES) - gain @ h
        # Joseph form: right for any gain, the pose's zeroed rows included; stays positive definite over hours.
        self._cov = i_kh @ self._cov @ i_kh.T + gain @ np.diag(np.broadcast_to(variance, innovation.shape)) @ gain.T
