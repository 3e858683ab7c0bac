"""The simulated robot's sensors, rates and physics, on real MuJoCo."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import mujoco
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from schemas.messages import Twist, from_arrow, to_arrow
from schemas.topics import BY_OUTPUT, camera_frame
from schemas.world import Agent, Box, GridSpec, Room, Wall, World
from sim.robot import BODY, RobotConfig
from sim.simulator import Simulator

SMALL = RobotConfig(camera_width=64, camera_height=48)
HALF_X, HALF_Y, WALL = 5.0, 3.0, 0.1  # room half-extents to the wall centres, wall half-thickness

_ROOM_XML = f"""
<mujoco model="room">
  <visual>
    <global offwidth="640" offheight="480"/>
    <quality shadowsize="0" offsamples="0"/>
  </visual>
  <asset>
    <texture name="checker" type="2d" builtin="checker" rgb1=".6 .6 .6" rgb2=".3 .3 .3" width="64" height="64"/>
    <material name="checker" texture="checker" texrepeat="8 8"/>
  </asset>
  <worldbody>
    <light pos="0 0 2.4" dir="0 0 -1"/>
    <geom name="floor" type="plane" size="6 4 0.1" material="checker"/>
    <geom name="wall_e" type="box" pos="{HALF_X} 0 1.25" size="{WALL} {HALF_Y} 1.25" rgba=".8 .7 .6 1"/>
    <geom name="wall_w" type="box" pos="-{HALF_X} 0 1.25" size="{WALL} {HALF_Y} 1.25" rgba=".8 .7 .6 1"/>
    <geom name="wall_n" type="box" pos="0 {HALF_Y} 1.25" size="{HALF_X} {WALL} 1.25" rgba=".7 .8 .6 1"/>
    <geom name="wall_s" type="box" pos="0 -{HALF_Y} 1.25" size="{HALF_X} {WALL} 1.25" rgba=".7 .8 .6 1"/>
    <body name="agent_p0" mocap="true" pos="-3 -2 0.9">
      <geom name="agent_p0" type="capsule" size="0.25 0.6" rgba=".2 .3 .9 1"/>
    </body>
  </worldbody>
</mujoco>
"""


def _room_world(spawn: tuple[float, float, float]) -> World:
    walls = tuple(
        Wall(name, Box((cx, cy, 1.25), (hx, hy, 1.25)), "plain")
        for name, cx, cy, hx, hy in (
            ("wall_e", HALF_X, 0, WALL, HALF_Y), ("wall_w", -HALF_X, 0, WALL, HALF_Y),
            ("wall_n", 0, HALF_Y, HALF_X, WALL), ("wall_s", 0, -HALF_Y, HALF_X, WALL),
        )
    )
    inner = (-HALF_X + WALL, -HALF_Y + WALL, HALF_X - WALL, HALF_Y - WALL)
    return World(
        kind="office", seed=0, site="test-room", bounds=(-HALF_X - WALL, -HALF_Y - WALL, HALF_X + WALL, HALF_Y + WALL),
        wall_height=2.5, rooms=(Room("r0", "Lab", "testing", "room", inner),), doors=(), walls=walls, landmarks=(),
        agents=(Agent("p0", "person", ((-3.0, -2.0), (-1.0, -2.0), (-1.0, -1.0)), 1.0, 0.25),),
        grid=GridSpec(0.1, (-HALF_X - WALL, -HALF_Y - WALL), (62, 102)), spawn=spawn,
    )


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory):
    """A factory of room worlds: 10 x 6 m between wall centres, one walking person, robot at `spawn`."""

    def make(spawn: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Path:
        out = tmp_path_factory.mktemp("room")
        _room_world(spawn).save(out / "world.json")
        (out / "world.xml").write_text(_ROOM_XML)
        return out

    return make


def _drive(sim: Simulator, seconds: float, v: float = 0.0, w: float = 0.0) -> dict[str, list]:
    """Run under a constant command; messages grouped by output id."""
    cmd = Twist(sim.t_ns, (v, 0.0, 0.0), (0.0, 0.0, w))
    out: dict[str, list] = defaultdict(list)
    for _ in range(round(seconds / 0.01)):
        for output_id, msg in sim.advance(cmd):
            out[output_id].append(msg)
    return out


def test_imu_reads_gravity_at_rest(room) -> None:
    sim = Simulator(room(), SMALL, seed=1)
    imus = _drive(sim, 1.0)["imu"]
    accel = np.array([m.linear_acceleration for m in imus])
    gyro = np.array([m.angular_velocity for m in imus])
    # Four bias sigmas plus the noise on a 100-sample mean.
    accel_tol = 4 * SMALL.accel_bias_std + 4 * SMALL.accel_noise_std / 10
    gyro_tol = 4 * SMALL.gyro_bias_std + 4 * SMALL.gyro_noise_std / 10
    assert accel.mean(axis=0) == pytest.approx([0.0, 0.0, 9.81], abs=accel_tol)
    assert gyro.mean(axis=0) == pytest.approx([0.0, 0.0, 0.0], abs=gyro_tol)
    assert accel[:, 2].std() == pytest.approx(SMALL.accel_noise_std, rel=0.3)
    assert all(m.frame_id == "imu_link" for m in imus)
    sim.close()


def test_wheel_odometry_tracks_a_straight_drive(room) -> None:
    sim = Simulator(room((-4.0, 0.0, 0.0)), SMALL, seed=2)
    out = _drive(sim, 4.0, v=1.0)
    odom, truth = out["odom"][-1], out["ground_truth"][-1]
    travelled = math.dist(truth.position[:2], (-4.0, 0.0))
    assert travelled > 3.5
    assert math.hypot(*odom.position[:2]) == pytest.approx(travelled, rel=0.02)
    # Encoders integrate to the same distance: angle * radius, averaged over both wheels.
    wheels = out["wheels"][-1]
    assert wheels.names == ("left_wheel", "right_wheel")
    assert np.mean(wheels.position) * SMALL.wheel_radius == pytest.approx(travelled, rel=0.02)
    # map -> odom -> base_link reproduces the true pose.
    map_odom, odom_base = out["tf"][-2:]
    assert (map_odom.parent_frame_id, odom_base.child_frame_id) == ("map", "base_link")
    pose = (Rotation.from_quat(map_odom.rotation), np.array(map_odom.translation))
    composed = pose[0].apply(odom_base.translation) + pose[1]
    assert composed[:2] == pytest.approx(truth.position[:2], abs=1e-6)
    sim.close()


def test_rates_follow_the_config(room) -> None:
    seconds = 2.0
    config = RobotConfig(camera_width=64, camera_height=48, camera_hz=5.0)
    sim = Simulator(room(), config, start_ns=10**12)
    out = _drive(sim, seconds)
    expected = {
        "clock": 100.0, "imu": 100.0, "wheels": 50.0, "odom": 50.0, "ground_truth": 50.0,
        "image_front": 5.0, "depth_rear_left": 5.0, "camera_info_rear_right": 5.0, "obstacles": 10.0,
    }
    for output_id, rate in expected.items():
        stamps = np.array([m.t_ns for m in out[output_id]])
        assert len(stamps) == round(seconds * rate) + 1, output_id  # both ends included
        assert stamps[0] == 10**12
        assert set(np.diff(stamps)) == {round(1e9 / rate)}, output_id
    assert len(out["tf"]) == 2 * len(out["odom"])
    assert len(out["tf_static"]) == 3 * (1 + len(config.cameras))
    assert set(out) <= set(BY_OUTPUT), "every output id is a known topic"
    for messages in out.values():
        assert from_arrow(*to_arrow(messages[0])) == messages[0]
    # The default config publishes cameras at the schema rate.
    assert RobotConfig().camera_hz == BY_OUTPUT["image_front"].rate_hz
    sim.close()


def test_depth_is_metric_along_the_optical_axis(room) -> None:
    sim = Simulator(room(), RobotConfig(camera_width=96, camera_height=72), seed=3)
    rgb, depth = sim.render("front")
    assert rgb.shape == (72, 96, 3) and rgb.dtype == np.uint8 and depth.dtype == np.float32
    # The east wall face is perpendicular to the front camera, so its depth is the same at every pixel.
    wall_depth = HALF_X - WALL - sim.config.camera_mount_radius
    assert np.abs(depth[26:37, 40:56] - wall_depth).max() < 0.01

    # Unproject pixels with the published intrinsics and extrinsics; each must land on the surface
    # that a MuJoCo ray cast through the same direction hits.
    info = sim.camera_info("rear_left")
    statics = {t.child_frame_id: t for t in _drive(sim, 0.01)["tf_static"]}
    mount = statics[camera_frame("rear_left")]
    _, depth = sim.render("rear_left")
    fx, cx, fy, cy = info.k[0], info.k[2], info.k[4], info.k[5]
    x, y, yaw = sim.pose()
    to_map = Rotation.from_euler("z", yaw) * Rotation.from_quat(mount.rotation)
    origin = Rotation.from_euler("z", yaw).apply(mount.translation) + np.array([x, y, 0.0])
    robot = sim.model.body(BODY).id
    for v, u in ((36, 48), (70, 10), (60, 90), (30, 5), (40, 80)):
        ray = to_map.apply([(u - cx) / fx, (v - cy) / fy, 1.0])  # unit optical z: hit distance == depth
        hit = mujoco.mj_ray(sim.model, sim.data, origin, ray, None, 1, robot, np.zeros(1, np.int32))
        assert depth[v, u] == pytest.approx(hit, rel=0.01, abs=0.005), (u, v)
    # Above the walls there is nothing within range: REP-118 "too far".
    assert np.isinf(depth[0, 40:56]).all()
    sim.close()


def test_driving_into_a_wall_is_one_collision(room) -> None:
    sim = Simulator(room((3.0, 0.0, 0.0)), SMALL, seed=4)
    events = _drive(sim, 4.0, v=0.8)["events"]
    assert [(e.kind, e.source, e.detail) for e in events] == [("collision", "sim", "wall_e")]
    assert events[0].value == pytest.approx(0.8, abs=0.05)
    assert sim.collisions == 1
    x, y, _ = sim.pose()
    assert x <= HALF_X - WALL - SMALL.radius + 0.005
    assert abs(y) < 0.01
    # Backing off and hitting again is a second onset.
    _drive(sim, 1.0, v=-0.5)
    assert _drive(sim, 2.0, v=0.8)["events"][0].detail == "wall_e"
    assert sim.collisions == 2
    sim.close()


def test_commanded_twist_is_tracked_without_side_slip(room) -> None:
    sim = Simulator(room(), SMALL, seed=5)
    _drive(sim, 0.6, v=0.5, w=0.8)
    samples = []
    for _ in range(50):
        _drive(sim, 0.01, v=0.5, w=0.8)
        samples.append((*sim.velocity(), sim.lateral_velocity()))
    v, w, lateral = np.array(samples).T
    assert v == pytest.approx(0.5, abs=0.01)
    assert w == pytest.approx(0.8, abs=0.01)
    assert np.abs(lateral).max() < 0.01
    # Commands beyond the motor limits saturate.
    _drive(sim, 0.5, v=3.0, w=0.0)
    assert sim.velocity()[0] == pytest.approx(SMALL.max_speed, abs=0.01)
    sim.close()


def test_dynamic_agents_walk_their_loop(room) -> None:
    sim = Simulator(room(), SMALL)
    obstacles = _drive(sim, 0.5)["obstacles"]
    first, last = obstacles[0], obstacles[-1]
    assert first.ids == ("p0",) and first.radius == (0.25,)
    assert (first.x[0], first.y[0]) == pytest.approx((-3.0, -2.0))
    assert (last.x[0], last.y[0]) == pytest.approx((-2.5, -2.0))
    assert (last.vx[0], last.vy[0]) == pytest.approx((1.0, 0.0))
    body = sim.data.mocap_pos[sim.model.body("agent_p0").mocapid[0]]
    assert body[:2] == pytest.approx((-2.5, -2.0))
    sim.close()
