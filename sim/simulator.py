"""The simulator core the dora `sensor` node wraps: MuJoCo physics, sensors and their message streams.

Time is simulated: every stream falls due at exact multiples of its period (in whole physics steps),
and `advance` returns the messages stamped inside the interval it simulated, in time order.

Sensor models (figures in `RobotConfig.noise`, per-episode draws in `Simulator.sensor_errors`):
- IMU: MuJoCo accelerometer (specific force, +g on z at rest) and gyro, plus white noise and a bias
  that starts at a per-episode draw and random-walks. The orientation is what a 6-axis AHRS without
  magnetometer reports: level, with yaw integrated from the noisy gyro since start-up, so it drifts.
- Wheels: tyre travel derived from the true planar motion (forward and yaw components only, so a wall
  pushing the robot sideways is invisible to them) with the episode's true wheel separation, plus slip
  that grows with acceleration and yaw rate and with the floor's slipperiness; encoders turn that
  travel into angles with the episode's true wheel radii.
- Odometry: dead reckoning from the encoder angles with the nominal radius and separation, `odom` -> `base_link`.
- Cameras: RGB scaled by the room's light and each camera's lagging auto-exposure gain before JPEG;
  depth with noise growing as z^2 and NaN at depth edges and on dark surfaces.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from schemas.messages import (
    CameraInfo,
    Clock,
    CompressedImage,
    DepthImage,
    DynamicObstacles,
    Event,
    Imu,
    Odometry,
    TFMessage,
    Transform,
    Twist,
    WheelState,
)
from schemas.robot import DEFAULT_ROBOT, WHEELS, RobotConfig, camera_mount
from schemas.topics import BASE_FRAME, IMU_FRAME, MAP_FRAME, ODOM_FRAME, TICK_S, camera_frame
from schemas.world import Agent, World
from sim.robot import (
    ACCEL_SENSOR,
    ACTUATORS,
    BODY,
    GYRO_SENSOR,
    JOINTS,
    add_robot,
    camera_name,
    draw_sensor_errors,
)
from sim.vocabulary import FLOOR_USES, KINDS, floor_use

Message = tuple[str, object]


def _yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    # Closed form rather than scipy: this runs for every IMU and odometry sample, and scipy costs ~50 us a call.
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _tyre(ground: np.ndarray, factor: np.ndarray, turn_gain: float) -> np.ndarray:
    """Travel (or speed) at the (left, right) tyres for this ground travel (or speed) under slip."""
    forward, turn = ground.mean(), (ground[1] - ground[0]) / 2 * turn_gain
    return factor * np.array([forward - turn, forward + turn])


class _Schedule:
    """A stream that falls due at 0, P, 2P, ... nanoseconds of simulated time; without a rate, at 0 only."""

    def __init__(self, rate_hz: float | None, emit: Callable[[int], list[Message]]):
        self.period_ns = round(1e9 / rate_hz) if rate_hz else None
        self.next_ns: int | None = 0
        self.emit = emit

    def due(self, elapsed_ns: int) -> bool:
        if self.next_ns is None or elapsed_ns < self.next_ns:
            return False
        self.next_ns = None if self.period_ns is None else self.next_ns + self.period_ns
        return True


@dataclasses.dataclass(frozen=True)
class AgentSight:
    """How people, and the people pushing carts, react to the robot: they stop while it stands in their way just
    ahead of them, and walk on once it has left. They never step aside, and what is beside or behind them they do
    not see: a robot that drives into someone's side or back still hits them. Blind agents (`Simulator`'s
    `agent_sight=None`) walk into a robot in their way too: the stress test."""

    stop_gap_m: float = 0.5  # edge to edge, along their way
    lateral_margin_m: float = 0.1  # beyond both radii, across their way


SIGHTED = AgentSight()
MOVING_MPS = 0.05  # a collision event's speed below this is the robot being walked into, not driving into it


class _Crowd:
    """Mocap agents, each walking its closed polyline at constant speed; vectorised over agents.

    All loops are laid end to end on one arc-length axis, so one searchsorted finds every agent's segment.
    """

    def __init__(self, agents: tuple[Agent, ...], model: mujoco.MjModel, sight: AgentSight | None, robot_radius: float):
        self.mocap_ids = np.array([model.body(f"agent_{a.id}").mocapid[0] for a in agents], dtype=int)
        self.speed = np.array([a.speed for a in agents])
        self.radius = np.array([a.radius for a in agents])
        self.sight, self.robot_radius = sight, robot_radius
        self.walking = np.ones(len(agents), dtype=bool)
        self.s = np.zeros(len(agents))
        loops = [np.asarray(a.waypoints + a.waypoints[:1], dtype=float) for a in agents]
        deltas = [np.diff(loop, axis=0) for loop in loops]
        seg_lengths = np.concatenate([np.linalg.norm(d, axis=1) for d in deltas])
        self.starts = np.concatenate([loop[:-1] for loop in loops])
        self.directions = np.concatenate(deltas) / np.maximum(seg_lengths, 1e-9)[:, None]
        self.begins = np.concatenate([[0.0], np.cumsum(seg_lengths)[:-1]])
        counts = np.array([len(d) for d in deltas])
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.last_segment = first + counts - 1
        self.base = self.begins[first]
        self.length = np.add.reduceat(seg_lengths, first)
        headings = np.arctan2(self.directions[:, 1], self.directions[:, 0])
        self.quats = Rotation.from_euler("z", headings[:, None]).as_quat(scalar_first=True)

    def _segments(self) -> tuple[np.ndarray, np.ndarray]:
        """Each agent's position on the shared arc-length axis, and its segment index."""
        arc = self.base + self.s % self.length
        return arc, np.minimum(np.searchsorted(self.begins, arc, side="right") - 1, self.last_segment)

    def state(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (n, 2), velocities (n, 2) and segment indices (n,) of every agent."""
        arc, seg = self._segments()
        positions = self.starts[seg] + self.directions[seg] * (arc - self.begins[seg])[:, None]
        return positions, self.directions[seg] * (self.speed * self.walking)[:, None], seg

    def since_turn(self) -> np.ndarray:
        """Seconds of walking since each agent passed its last waypoint (turned a corner, or turned back)."""
        arc, seg = self._segments()
        return (arc - self.begins[seg]) / self.speed

    def step(self, data: mujoco.MjData, dt: float, robot_xy: np.ndarray) -> None:
        """Advance every agent that walks by dt and move its mocap body (height stays as modelled)."""
        if self.sight is not None:
            positions, _, seg = self.state()
            heading = self.directions[seg]
            offset = np.asarray(robot_xy) - positions
            along = (offset * heading).sum(axis=1)
            across = np.abs(offset[:, 0] * heading[:, 1] - offset[:, 1] * heading[:, 0])
            reach = self.radius + self.robot_radius
            in_way = (along > 0) & (across < reach + self.sight.lateral_margin_m)
            self.walking = ~(in_way & (along - reach < self.sight.stop_gap_m))
        self.s += self.speed * self.walking * dt
        positions, _, seg = self.state()
        data.mocap_pos[self.mocap_ids, :2] = positions
        data.mocap_quat[self.mocap_ids] = self.quats[seg]


class RgbdRenderer(mujoco.Renderer):
    """`mujoco.Renderer` that reads colour and depth from one pass (perspective cameras, as the robot's are).

    The library renders depth in a pass of its own (segmented, unlit); the lit pass leaves the same depth buffer (in
    every kind of building, `tests/test_sensors.py` compares them), and one pass costs about two thirds of two.
    """

    def render_rgbd(self) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8 and metric depth (H, W) float32 of the scene last updated, as `render` gives them."""
        if self._mjr_context is None:
            raise RuntimeError("render_rgbd cannot be called after close")
        if self._gl_context:
            self._gl_context.make_current()
        rgb = np.empty((self.height, self.width, 3), np.uint8)
        ndc = np.empty((self.height, self.width), np.float32)
        mujoco.mjr_render(self._rect, self._scene, self._mjr_context)
        mujoco.mjr_readPixels(rgb, ndc, self._rect, self._mjr_context)
        # Undo the reversed-Z perspective projection in float32 coefficients and float64 arithmetic, as `render` does.
        extent = self._model.stat.extent
        near, far = np.float32(self._model.vis.map.znear * extent), np.float32(self._model.vis.map.zfar * extent)
        c = np.float32(-0.5) * (-(far + near) / (far - near)) - np.float32(0.5)
        d = np.float32(-0.5) * (-(np.float32(2) * far * near) / (far - near))
        depth = (d / (ndc.astype(np.float64) + c)).astype(np.float32)
        if self._gl_context:  # EGL, OSMesa and GLFW read bottom row first
            return np.flipud(rgb).copy(), np.flipud(depth).copy()
        return rgb, depth


class Simulator:
    """A robot in a generated world: physics, sensors with noise, and their messages."""

    def __init__(
        self,
        world_dir: Path,
        config: RobotConfig = DEFAULT_ROBOT,
        seed: int = 0,
        start_ns: int = 0,
        agent_sight: AgentSight | None = SIGHTED,
    ):
        world_dir = Path(world_dir)
        self.world = World.load(world_dir)
        self.config = config
        self.start_ns = start_ns
        spec = mujoco.MjSpec.from_file(str(world_dir / "world.xml"))
        add_robot(spec, config)
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        # Clipping planes are stored relative to the model extent, which depends on the building size.
        self.model.vis.map.znear = config.depth_near / self.model.stat.extent
        self.model.vis.map.zfar = config.depth_far / self.model.stat.extent

        self.sensor_errors = draw_sensor_errors(config.noise, seed, [room.id for room in self.world.rooms])
        self._rng = np.random.default_rng((seed, 1))  # per-sample noise, apart from the per-episode draws
        self._qpos = np.array([self.model.joint(j).qposadr[0] for j in JOINTS])
        self._qvel = np.array([self.model.joint(j).dofadr[0] for j in JOINTS])
        self._ctrl = np.array([self.model.actuator(a).id for a in ACTUATORS])
        self._accel = self._sensor_slice(ACCEL_SENSOR)
        self._gyro = self._sensor_slice(GYRO_SENSOR)
        self._floor = self.model.geom("floor").id
        self._robot_body = self.model.body(BODY).id
        self._timestep_ns = round(config.timestep * 1e9)
        self._steps = 0
        agents = self.world.agents
        self._crowd = _Crowd(agents, self.model, agent_sight, config.radius) if agents else None

        self._cmd = (0.0, 0.0)
        errors = self.sensor_errors
        self._accel_bias = np.array(errors.accel_bias)
        self._gyro_bias = np.array(errors.gyro_bias)
        self._imu_yaw = 0.0
        self._true_wheel_radius = config.wheel_radius * np.array(errors.wheel_radius_scale)
        self._true_half_track = config.wheel_separation * errors.wheel_separation_scale / 2
        self._wheel_true_delta = np.zeros(2)  # true ground travel (m) of each wheel since the last encoder sample
        self._wheel_angle = np.zeros(2)
        self._last_speed = 0.0  # forward speed at the last encoder sample, for the acceleration that makes slip
        self._odom = np.zeros(3)  # x, y, yaw in odom

        # Rooms decide the floor under the wheels and the light the cameras see; doorways keep the last room's.
        self._room_bounds = np.array([room.bounds for room in self.world.rooms]).reshape(-1, 4)
        floor_of = dict(zip(FLOOR_USES, KINDS[self.world.kind].floors, strict=True))
        slip_of = dict(config.noise.floor_slip)
        self._room_slip = np.array([slip_of[floor_of[floor_use(room.kind)]] for room in self.world.rooms])
        self._room_light = np.array([errors.room_light[room.id] for room in self.world.rooms])
        self.place(*self.world.spawn)
        self._room = max(self._room_at(*self.pose()[:2]), 0)
        # Each camera's auto-exposure starts adapted to the room it wakes up in.
        self._exposure_adapt = dict.fromkeys(
            config.cameras, -float(self._room_light[self._room]) if len(self._room_light) else 0.0
        )
        # Depth noise is cut from a bank of normals at a random offset per frame: drawing fresh ones costs as much
        # as all the rest of the depth model.
        self._depth_normals = self._rng.standard_normal(4 * config.camera_width * config.camera_height, np.float32)
        self._exposure_drift = {
            c: float(self._rng.normal(0.0, config.noise.exposure_drift_std)) for c in config.cameras
        }

        self.collisions = 0
        self._last_contact = -math.inf  # elapsed seconds
        self._events: list[Message] = []

        self._camera_info = {c: self._make_camera_info(c) for c in config.cameras}
        self._schedules = [
            _Schedule(config.clock_hz, lambda t: [("clock", Clock(t))]),
            _Schedule(config.imu_hz, self._imu_messages),
            _Schedule(config.odom_hz, self._odom_messages),
            _Schedule(config.camera_hz, self._camera_messages),
            _Schedule(None, self._tf_static_messages),  # latched: once per episode, as ROS 2 publishes it
        ]
        if self._crowd:
            self._schedules.append(_Schedule(config.obstacles_hz, lambda t: [("obstacles", self._obstacles(t))]))

    @property
    def t_ns(self) -> int:
        """Current simulated time in nanoseconds."""
        return self.start_ns + self._steps * self._timestep_ns

    def advance(self, cmd: Twist | None, dt: float = TICK_S) -> list[Message]:
        """Apply `cmd` (None keeps the last one), simulate `dt` seconds, return the messages that fell due."""
        steps = round(dt / self.config.timestep)
        if steps < 1 or abs(steps * self.config.timestep - dt) > 1e-9:
            raise ValueError(f"dt={dt} is not a positive multiple of the physics step {self.config.timestep}")
        if cmd is not None:
            self._cmd = (
                float(np.clip(cmd.linear[0], -self.config.limits.max_speed, self.config.limits.max_speed)),
                float(np.clip(cmd.angular[2], -self.config.limits.max_yaw_rate, self.config.limits.max_yaw_rate)),
            )
        messages = self._emit_due()
        for _ in range(steps):
            self._step()
            messages += self._events
            self._events = []
            messages += self._emit_due()
        return messages

    def pose(self) -> tuple[float, float, float]:
        """Ground-truth x, y, yaw of base_link in map."""
        x, y, yaw = self.data.qpos[self._qpos]
        return float(x), float(y), _wrap(float(yaw))

    def velocity(self) -> tuple[float, float]:
        """Ground-truth forward speed (m/s) and yaw rate (rad/s)."""
        vx, vy, wz = self.data.qvel[self._qvel]
        yaw = self.data.qpos[self._qpos[2]]
        return float(vx * math.cos(yaw) + vy * math.sin(yaw)), float(wz)

    def lateral_velocity(self) -> float:
        """Ground-truth sideways speed (m/s, +left); zero unless something pushes the robot."""
        vx, vy, _ = self.data.qvel[self._qvel]
        yaw = self.data.qpos[self._qpos[2]]
        return float(-vx * math.sin(yaw) + vy * math.cos(yaw))

    def place(self, x: float, y: float, yaw: float) -> None:
        """Teleport the robot to rest at a map pose; wheel odometry does not see the jump."""
        self.data.qpos[self._qpos] = (x, y, yaw)
        self.data.qvel[self._qvel] = 0.0
        if self._crowd:  # the agents stand where they are, and see the robot where it now is
            self._crowd.step(self.data, 0.0, np.array([x, y]))
        mujoco.mj_forward(self.model, self.data)
        self._last_pose = self.pose()

    def obstacles(self) -> DynamicObstacles:
        """Privileged truth about the dynamic agents."""
        return self._obstacles(self.t_ns)

    def agents_since_turn(self) -> dict[str, float]:
        """Privileged, for evaluation: seconds since each agent last turned, by id."""
        if not self._crowd:
            return {}
        return {a.id: float(t) for a, t in zip(self.world.agents, self._crowd.since_turn(), strict=True)}

    def render(self, camera: str) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H, W, 3) uint8 and metric depth along the optical axis (H, W) float32 of one camera, noise-free."""
        self._update_scene(camera)
        rgb, depth = self._renderer.render_rgbd()
        depth[depth >= self.config.depth_far * 0.999] = np.inf
        return rgb, depth

    def segmentation(self, camera: str) -> np.ndarray:
        """Id of the geom seen at each pixel (H, W) int32 of one camera, -1 for none; `model.geom(id).name` names it."""
        self._update_scene(camera)
        self._renderer.enable_segmentation_rendering()
        ids = self._renderer.render()
        self._renderer.disable_segmentation_rendering()
        # int(): against the enum object itself numpy compares pixel by pixel in Python (80 ms a frame, not 0.1).
        return np.where(ids[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), ids[..., 0], -1)

    def camera_info(self, camera: str) -> CameraInfo:
        """Pinhole intrinsics of one camera, stamped now."""
        return dataclasses.replace(self._camera_info[camera], t_ns=self.t_ns)

    def close(self) -> None:
        """Free the renderer's GL resources."""
        if "_renderer" in self.__dict__:
            self._renderer.close()

    @functools.cached_property
    def _renderer(self) -> RgbdRenderer:
        # Created on first use, so a simulator without cameras needs no GL at all.
        return RgbdRenderer(self.model, self.config.camera_height, self.config.camera_width)

    def _update_scene(self, camera: str) -> None:
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        self._renderer.update_scene(self.data, camera=camera_name(camera))

    # Physics.

    def _sensor_slice(self, name: str) -> slice:
        sensor = self.model.sensor(name)
        return slice(int(sensor.adr[0]), int(sensor.adr[0] + sensor.dim[0]))

    def _step(self) -> None:
        v, w = self._cmd
        yaw = self.data.qpos[self._qpos[2]]
        # World-frame servo targets follow the heading each step: that is the no-side-slip constraint.
        self.data.ctrl[self._ctrl] = (v * math.cos(yaw), v * math.sin(yaw), w)
        speed = math.hypot(*self.data.qvel[self._qvel[:2]])
        if self._crowd:
            self._crowd.step(self.data, self.config.timestep, self.data.qpos[self._qpos[:2]])
        mujoco.mj_step(self.model, self.data)
        self._steps += 1
        self._accumulate_wheels()
        self._detect_collisions(speed)

    def _accumulate_wheels(self) -> None:
        (x0, y0, yaw0), (x, y, yaw) = self._last_pose, self.pose()
        dyaw = _wrap(yaw - yaw0)
        heading = yaw0 + dyaw / 2
        forward = (x - x0) * math.cos(heading) + (y - y0) * math.sin(heading)
        self._wheel_true_delta[0] += forward - dyaw * self._true_half_track
        self._wheel_true_delta[1] += forward + dyaw * self._true_half_track
        self._last_pose = (x, y, yaw)

    def _detect_collisions(self, speed: float) -> None:
        # One event per contact episode of the robot as a whole: scraping along a wall built from
        # several segments is one collision, not one per segment.
        if not self.data.ncon:
            return
        pairs = self.data.contact.geom[: self.data.ncon]
        bodies = self.model.geom_bodyid[pairs]
        others = np.where(bodies[:, 0] == self._robot_body, pairs[:, 1], pairs[:, 0])
        hits = others[((bodies == self._robot_body).any(axis=1)) & (others != self._floor)]
        if not len(hits):
            return
        elapsed = self._steps * self.config.timestep
        if elapsed - self._last_contact > self.config.collision_release_s:
            self.collisions += 1
            self._events.append(("events", Event(self.t_ns, "collision", "sim", self._geom_label(hits[0]), speed)))
        self._last_contact = elapsed

    def _geom_label(self, geom: int) -> str:
        return self.model.geom(int(geom)).name or self.model.body(self.model.geom_bodyid[geom]).name

    # Message streams.

    def _emit_due(self) -> list[Message]:
        elapsed = self._steps * self._timestep_ns
        due = [s for s in self._schedules if s.due(elapsed)]
        if not due:
            return []
        # mj_step leaves sensors describing the state before integration; refresh them for this stamp.
        mujoco.mj_forward(self.model, self.data)
        return [message for s in due for message in s.emit(self.t_ns)]

    def _imu_messages(self, t_ns: int) -> list[Message]:
        cfg, noise = self.config, self.config.noise
        # Continuous-time densities to per-sample figures: white noise * sqrt(rate), bias steps / sqrt(rate).
        white, walk = self._rng.normal(0.0, 1.0, (2, 6))
        root_hz = math.sqrt(cfg.imu_hz)
        self._accel_bias += walk[:3] * (noise.accel_bias_random_walk / root_hz)
        self._gyro_bias += walk[3:] * (noise.gyro_bias_random_walk / root_hz)
        accel = self.data.sensordata[self._accel] + self._accel_bias + white[:3] * (noise.accel_noise_density * root_hz)
        gyro = self.data.sensordata[self._gyro] + self._gyro_bias + white[3:] * (noise.gyro_noise_density * root_hz)
        self._imu_yaw += gyro[2] / cfg.imu_hz
        imu = Imu(t_ns, IMU_FRAME, _yaw_quat(self._imu_yaw), tuple(gyro.tolist()), tuple(accel.tolist()))
        return [("imu", imu)]

    def _odom_messages(self, t_ns: int) -> list[Message]:
        cfg = self.config
        v, w = self.velocity()
        ground_rates = np.array([v - w * self._true_half_track, v + w * self._true_half_track])
        factor, turn_gain = self._slip(v, w)
        angles = _tyre(self._wheel_true_delta, factor, turn_gain) / self._true_wheel_radius
        self._wheel_true_delta[:] = 0.0
        self._wheel_angle += angles
        rates = _tyre(ground_rates, factor, turn_gain) / self._true_wheel_radius
        wheels = WheelState(t_ns, WHEELS, tuple(self._wheel_angle.tolist()), tuple(rates.tolist()))

        travel = angles * cfg.wheel_radius  # what the estimator believes the wheels covered
        forward, dyaw = travel.mean(), (travel[1] - travel[0]) / cfg.wheel_separation
        heading = self._odom[2] + dyaw / 2
        self._odom += (forward * math.cos(heading), forward * math.sin(heading), dyaw)
        odom_v = cfg.wheel_radius * rates.mean()
        odom_w = cfg.wheel_radius * (rates[1] - rates[0]) / cfg.wheel_separation
        ox, oy, oyaw = self._odom.tolist()
        odom = Odometry(
            t_ns, ODOM_FRAME, BASE_FRAME, (ox, oy, 0.0), _yaw_quat(oyaw), (odom_v, 0.0, 0.0), (0.0, 0.0, odom_w)
        )

        x, y, yaw = self.pose()
        truth = Odometry(
            t_ns, MAP_FRAME, BASE_FRAME, (x, y, 0.0), _yaw_quat(yaw), (v, self.lateral_velocity(), 0.0), (0.0, 0.0, w)
        )
        # map -> odom is whatever makes map -> odom -> base_link equal the true pose.
        correction = _wrap(yaw - oyaw)
        c, s = math.cos(correction), math.sin(correction)
        map_odom = Transform(
            t_ns, MAP_FRAME, ODOM_FRAME, (x - (c * ox - s * oy), y - (s * ox + c * oy), 0.0), _yaw_quat(correction)
        )
        odom_base = Transform(t_ns, ODOM_FRAME, BASE_FRAME, (ox, oy, 0.0), odom.orientation)
        tf = TFMessage(t_ns, (map_odom, odom_base))
        return [("wheels", wheels), ("odom", odom), ("ground_truth", truth), ("tf", tf)]

    def _room_at(self, x: float, y: float) -> int:
        """Index of the room holding (x, y), -1 in none (a doorway or a wall)."""
        b = self._room_bounds
        inside = np.flatnonzero((b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3]))
        return int(inside[0]) if len(inside) else -1

    def _current_room(self) -> int:
        room = self._room_at(*self.pose()[:2])
        if room >= 0:
            self._room = room
        return self._room

    def _slip(self, v: float, w: float) -> tuple[np.ndarray, float]:
        """This encoder sample's tyre/ground ratio of each wheel, and the gain on their difference (see `_tyre`).

        Accelerating spins the tyres ahead of the ground and braking drags them behind; turning scrubs them
        sideways, which a differential drive sees as extra turning; a slippery floor makes both worse.
        """
        noise = self.config.noise
        slipperiness = self._room_slip[self._current_room()] if len(self._room_slip) else 1.0
        accel = (v - self._last_speed) * self.config.odom_hz
        self._last_speed = v
        turn_gain = 1 + slipperiness * noise.wheel_slip_per_yaw_rate * abs(w)
        white = self._rng.normal(0.0, noise.wheel_slip_std, 2)
        return 1 + slipperiness * (noise.wheel_slip_per_accel * accel + white), turn_gain

    def _tf_static_messages(self, t_ns: int) -> list[Message]:
        transforms = [Transform(t_ns, BASE_FRAME, IMU_FRAME, self.config.imu_mount, (0.0, 0.0, 0.0, 1.0))]
        for camera in self.config.cameras:
            translation, rotation = camera_mount(self.config, camera)
            quat = tuple(rotation.as_quat().tolist())
            transforms.append(Transform(t_ns, BASE_FRAME, camera_frame(camera), translation, quat))
        return [("tf_static", TFMessage(t_ns, tuple(transforms)))]

    def _camera_messages(self, t_ns: int) -> list[Message]:
        messages: list[Message] = []
        light = float(self._room_light[self._current_room()]) if len(self._room_light) else 0.0
        for camera in self.config.cameras:
            rgb, depth = self.render(camera)
            depth = self._depth_errors(depth, rgb)
            rgb = self._expose(camera, rgb, light)
            jpeg = io.BytesIO()
            Image.fromarray(rgb).save(jpeg, format="JPEG", quality=self.config.jpeg_quality)
            frame = camera_frame(camera)
            h, w = depth.shape
            messages += [
                (f"image_{camera}", CompressedImage(t_ns, frame, "jpeg", jpeg.getvalue())),
                (f"depth_{camera}", DepthImage(t_ns, frame, w, h, depth.astype("<f4").tobytes())),
                (f"camera_info_{camera}", dataclasses.replace(self._camera_info[camera], t_ns=t_ns)),
            ]
        return messages

    def _expose(self, camera: str, rgb: np.ndarray, light: float) -> np.ndarray:
        """The image as this camera's auto-exposure records it under the room's light, one frame later."""
        noise, dt = self.config.noise, 1.0 / self.config.camera_hz
        log_gain = light + self._exposure_adapt[camera] + self._exposure_drift[camera]
        # Auto-exposure closes part of the gap to the room's light each frame; the drift is an Ornstein-Uhlenbeck step.
        self._exposure_adapt[camera] += (-light - self._exposure_adapt[camera]) * -math.expm1(
            -dt / noise.exposure_time_constant
        )
        keep = math.exp(-dt / noise.exposure_drift_time_constant)
        self._exposure_drift[camera] = keep * self._exposure_drift[camera] + self._rng.normal(
            0.0, noise.exposure_drift_std * math.sqrt(1 - keep * keep)
        )
        # A lookup table is far cheaper than float arithmetic on every pixel.
        table = np.clip(np.arange(256) * math.exp(log_gain) + 0.5, 0, 255).astype(np.uint8)
        return table.take(rgb)

    def _depth_errors(self, depth: np.ndarray, rgb: np.ndarray) -> np.ndarray:
        """Depth as an RGB-D camera measures it: noise sigma k * z^2, NaN at depth edges and on dark surfaces."""
        noise = self.config.noise
        start = self._rng.integers(len(self._depth_normals) - depth.size)
        normals = self._depth_normals[start : start + depth.size].reshape(depth.shape)
        measured = depth + noise.depth_noise_per_m2 * np.square(depth) * normals
        measured[np.isinf(depth)] = np.inf  # "too far" stays so, rather than inf - inf
        with np.errstate(invalid="ignore"):  # inf next to inf is no edge
            near = np.minimum(depth[:, 1:], depth[:, :-1])
            across = np.abs(depth[:, 1:] - depth[:, :-1]) > noise.depth_edge_jump * near
            near = np.minimum(depth[1:], depth[:-1])
            down = np.abs(depth[1:] - depth[:-1]) > noise.depth_edge_jump * near
        # Summing the channels one by one is ten times faster than a sum over the last axis.
        invalid = rgb[..., 0].astype(np.uint16) + rgb[..., 1] + rgb[..., 2] < 3 * noise.depth_dark_level
        invalid[:, 1:] |= across
        invalid[:, :-1] |= across
        invalid[1:] |= down
        invalid[:-1] |= down
        measured[invalid] = np.nan
        return measured

    def _make_camera_info(self, camera: str) -> CameraInfo:
        cfg = self.config
        f = cfg.focal_px
        # The optical axis passes through the image centre; pixel centres sit at integer coordinates.
        cx, cy = (cfg.camera_width - 1) / 2, (cfg.camera_height - 1) / 2
        return CameraInfo(
            t_ns=0,
            frame_id=camera_frame(camera),
            width=cfg.camera_width,
            height=cfg.camera_height,
            k=(f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0),
            distortion_model="plumb_bob",
            d=(0.0,) * 5,
            r=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
            p=(f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0),
        )

    def _obstacles(self, t_ns: int) -> DynamicObstacles:
        if self._crowd is None:
            return DynamicObstacles(t_ns, (), (), (), (), (), ())
        positions, velocities, _ = self._crowd.state()
        return DynamicObstacles(
            t_ns=t_ns,
            ids=tuple(a.id for a in self.world.agents),
            x=tuple(positions[:, 0].tolist()),
            y=tuple(positions[:, 1].tolist()),
            vx=tuple(velocities[:, 0].tolist()),
            vy=tuple(velocities[:, 1].tolist()),
            radius=tuple(a.radius for a in self.world.agents),
        )
