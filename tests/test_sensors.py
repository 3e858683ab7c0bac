"""The simulated robot's sensors, rates and physics, on real MuJoCo in generated buildings."""

from __future__ import annotations

import dataclasses
import io
import math
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import mujoco
import numpy as np
import pycolmap
import pytest
from PIL import Image
from scipy.ndimage import distance_transform_edt
from scipy.spatial.transform import Rotation

from models.planning import occupancy_grid
from schemas.messages import CompressedImage, Twist, from_arrow, to_arrow
from schemas.robot import RobotConfig, SensorNoise
from schemas.topics import BY_OUTPUT, camera_frame
from schemas.world import WORLD_KINDS, Agent, Room, World
from sim.robot import BODY
from sim.simulator import SIGHTED, AgentSight, Simulator, camera_name
from sim.world import generate_world, write_world

SMALL = RobotConfig(camera_width=64, camera_height=48)
BODY_Z = 0.2  # a height inside the robot shell


def _clearance(world: World) -> np.ndarray:
    """Metres from each grid cell to the nearest blocked one."""
    return distance_transform_edt(~occupancy_grid(world)) * world.grid.resolution


Boxes = tuple[list[str], np.ndarray, np.ndarray]  # geom names, lower corners, upper corners


def _boxes(world: World, visible: bool) -> Boxes:
    """The boxes that block the robot, or with `visible` every box a camera sees."""
    named = [(f"wall_{w.id}", w.box) for w in world.walls]
    named += [(f"lm_{lm.id}", lm.box) for lm in world.landmarks if visible or lm.collides]
    centers = np.array([b.center for _, b in named])
    halves = np.array([b.half_size for _, b in named])
    return [n for n, _ in named], centers - halves, centers + halves


def _ray(boxes: Boxes, x: float, y: float, z: float, yaw: float) -> tuple[float, str]:
    """Distance along an axis-aligned heading to the first box face, and that box's geom name."""
    names, lo, hi = boxes
    axis, sign = (0, round(math.cos(yaw))) if abs(math.cos(yaw)) > 0.5 else (1, round(math.sin(yaw)))
    p = (x, y)
    across = 1 - axis
    distance = lo[:, axis] - p[axis] if sign > 0 else p[axis] - hi[:, axis]
    ahead = (lo[:, 2] <= z) & (hi[:, 2] >= z) & (lo[:, across] <= p[across]) & (hi[:, across] >= p[across])
    distance = np.where(ahead & (distance >= 0), distance, np.inf)
    first = int(np.argmin(distance))
    return float(distance[first]), names[first]


def _poses(world: World, radius: float) -> Iterator[tuple[float, float, float, float, str]]:
    """Axis-aligned poses with free floor, each with the straight run ahead and the flat face that ends it.

    Only poses whose whole swept corridor ends on one face are kept, so that face is what the robot hits.
    """
    boxes = _boxes(world, visible=False)
    clearance = _clearance(world)
    free_cells = np.argwhere(clearance[::10, ::10] >= radius + 0.15) * 10  # a 0.5 m lattice
    for x, y in world.grid.cell_to_world(free_cells):
        for dx, dy in ((1, 0), (0, 1), (-1, 0), (0, -1)):
            yaw = math.atan2(dy, dx)
            offsets = np.linspace(-radius, radius, 11)
            hits = {_ray(boxes, x - dy * offset, y + dx * offset, BODY_Z, yaw) for offset in offsets}
            if len(hits) == 1:
                run, name = hits.pop()
                yield float(x), float(y), yaw, run, name


def _drive(sim: Simulator, seconds: float, v: float = 0.0, w: float = 0.0) -> dict[str, list]:
    """Run under a constant command; messages grouped by output id."""
    cmd = Twist(sim.t_ns, (v, 0.0, 0.0), (0.0, 0.0, w))
    out: dict[str, list] = defaultdict(list)
    for _ in range(round(seconds / 0.01)):
        for output_id, msg in sim.advance(cmd):
            out[output_id].append(msg)
    return out


def test_imu_reads_gravity_at_rest(office_world) -> None:
    sim = Simulator(office_world, SMALL, seed=1)
    imus = _drive(sim, 1.0)["imu"]
    accel = np.array([m.linear_acceleration for m in imus])
    gyro = np.array([m.angular_velocity for m in imus])
    noise = SMALL.noise
    accel_std = noise.accel_noise_density * math.sqrt(SMALL.imu_hz)
    # Four bias sigmas plus the noise on a 100-sample mean (the bias walks far less in a second).
    accel_tol = 4 * noise.accel_bias_std + 4 * accel_std / 10
    gyro_tol = 4 * noise.gyro_bias_std + 4 * noise.gyro_noise_density * math.sqrt(SMALL.imu_hz) / 10
    assert accel.mean(axis=0) == pytest.approx([0.0, 0.0, 9.81], abs=accel_tol)
    assert gyro.mean(axis=0) == pytest.approx([0.0, 0.0, 0.0], abs=gyro_tol)
    assert accel[:, 2].std() == pytest.approx(accel_std, rel=0.3)
    assert all(m.frame_id == "imu_link" for m in imus)
    sim.close()


def test_wheel_odometry_tracks_a_straight_drive(office_world) -> None:
    sim = Simulator(office_world, SMALL, seed=2)
    x, y, yaw, _, _ = next(p for p in _poses(sim.world, SMALL.radius) if p[3] > 4.6)
    sim.place(x, y, yaw)
    out = _drive(sim, 4.0, v=1.0)
    odom, truth = out["odom"][-1], out["ground_truth"][-1]
    travelled = math.dist(truth.position[:2], (x, y))
    assert travelled > 3.5
    assert sim.collisions == 0
    assert math.hypot(*odom.position[:2]) == pytest.approx(travelled, rel=0.02)
    # Encoders integrate to the same distance: angle * radius, averaged over both wheels.
    wheels = out["wheels"][-1]
    assert wheels.names == ("left_wheel", "right_wheel")
    assert np.mean(wheels.position) * SMALL.wheel_radius == pytest.approx(travelled, rel=0.02)
    # map -> odom -> base_link reproduces the true pose.
    map_odom, odom_base = out["tf"][-1].transforms
    assert (map_odom.parent_frame_id, odom_base.child_frame_id) == ("map", "base_link")
    composed = Rotation.from_quat(map_odom.rotation).apply(odom_base.translation) + map_odom.translation
    assert composed[:2] == pytest.approx(truth.position[:2], abs=1e-6)
    sim.close()


def test_rates_follow_the_config(hospital_world: Path) -> None:
    seconds = 2.0
    config = RobotConfig(camera_width=64, camera_height=48, camera_hz=5.0)
    sim = Simulator(hospital_world, config, start_ns=10**12)
    out = _drive(sim, seconds)
    expected = {
        "clock": 100.0,
        "imu": 100.0,
        "wheels": 50.0,
        "odom": 50.0,
        "ground_truth": 50.0,
        "image_front": 5.0,
        "depth_rear_left": 5.0,
        "camera_info_rear_right": 5.0,
        "obstacles": 10.0,
    }
    for output_id, rate in expected.items():
        stamps = np.array([m.t_ns for m in out[output_id]])
        assert len(stamps) == round(seconds * rate) + 1, output_id  # both ends included
        assert stamps[0] == 10**12
        assert set(np.diff(stamps)) == {round(1e9 / rate)}, output_id
    # One TFMessage per odometry stamp holds both transforms; /tf_static comes once, at the start, with every mount.
    assert [tf.t_ns for tf in out["tf"]] == [odom.t_ns for odom in out["odom"]]
    frames = ("odom", "base_link")
    assert all(tuple(t.child_frame_id for t in tf.transforms) == frames for tf in out["tf"])
    [static] = out["tf_static"]
    assert static.t_ns == 10**12
    assert [t.child_frame_id for t in static.transforms] == ["imu_link", *map(camera_frame, config.cameras)]
    assert set(out) <= set(BY_OUTPUT), "every output id is a known topic"
    for messages in out.values():
        assert from_arrow(*to_arrow(messages[0])) == messages[0]
    # The default config publishes cameras at the schema rate.
    assert RobotConfig().camera_hz == BY_OUTPUT["image_front"].rate_hz
    sim.close()


def test_depth_is_metric_along_the_optical_axis(office_world) -> None:
    config = RobotConfig(camera_width=96, camera_height=72)
    sim = Simulator(office_world, config, seed=3)
    x, y, yaw, _, _ = next(p for p in _poses(sim.world, config.radius) if 1.0 < p[3] < 4.0)
    sim.place(x, y, yaw)
    rgb, depth = sim.render("front")
    assert rgb.shape == (72, 96, 3) and rgb.dtype == np.uint8 and depth.dtype == np.float32
    assert np.isfinite(depth).all(), "a closed building returns depth everywhere"
    # The face ahead is perpendicular to the optical axis: the four centre pixels all see it at one depth.
    ahead, _ = _ray(_boxes(sim.world, visible=True), x, y, config.camera_mount_z, yaw)
    assert depth[35:37, 47:49] == pytest.approx(np.full((2, 2), ahead - config.camera_mount_radius), abs=0.01)

    # Unproject pixels with the published intrinsics and extrinsics; each must land on the surface
    # that a MuJoCo ray cast through the same direction hits.
    info = sim.camera_info("rear_left")
    statics = {t.child_frame_id: t for t in _drive(sim, 0.01)["tf_static"][0].transforms}
    mount = statics[camera_frame("rear_left")]
    _, depth = sim.render("rear_left")
    fx, cx, fy, cy = info.k[0], info.k[2], info.k[4], info.k[5]
    to_map = Rotation.from_euler("z", yaw) * Rotation.from_quat(mount.rotation)
    origin = Rotation.from_euler("z", yaw).apply(mount.translation) + np.array([x, y, 0.0])
    robot = sim.model.body(BODY).id
    for v, u in ((0, 0), (5, 90), (36, 48), (70, 10), (60, 90), (30, 5), (40, 80)):
        ray = to_map.apply([(u - cx) / fx, (v - cy) / fy, 1.0])  # unit optical z: hit distance == depth
        hit = mujoco.mj_ray(sim.model, sim.data, origin, ray, None, 1, robot, np.zeros(1, np.int32))
        assert depth[v, u] == pytest.approx(hit, rel=0.01, abs=0.005), (u, v)
    sim.close()


def test_driving_into_a_wall_is_one_collision(office_world) -> None:
    sim = Simulator(office_world, SMALL, seed=4)
    x, y, yaw, run, face = next(p for p in _poses(sim.world, SMALL.radius) if 1.0 < p[3] < 3.0)
    sim.place(x, y, yaw)
    events = _drive(sim, (run - SMALL.radius) / 0.8 + 1.5, v=0.8)["events"]
    assert [(e.kind, e.source, e.detail) for e in events] == [("collision", "sim", face)]
    assert events[0].value == pytest.approx(0.8, abs=0.05)
    assert sim.collisions == 1
    px, py, _ = sim.pose()
    along = (px - x) * math.cos(yaw) + (py - y) * math.sin(yaw)
    across = -(px - x) * math.sin(yaw) + (py - y) * math.cos(yaw)
    assert run - SMALL.radius - 0.01 < along <= run - SMALL.radius + 0.005, "stopped at the face, not through it"
    assert abs(across) < 0.01
    # Backing off and driving in again is a second collision.
    _drive(sim, 1.0, v=-0.5)
    assert [e.detail for e in _drive(sim, 2.0, v=0.8)["events"]] == [face]
    assert sim.collisions == 2
    sim.close()


def test_commanded_twist_is_tracked_without_side_slip(office_world) -> None:
    sim = Simulator(office_world, SMALL, seed=5)
    clearance = _clearance(sim.world)
    roomiest = np.unravel_index(np.argmax(clearance), clearance.shape)
    assert clearance[roomiest] > 1.2, "room for a 0.375 m radius circle"
    sim.place(*sim.world.grid.cell_to_world(np.array(roomiest)), 0.0)
    _drive(sim, 0.6, v=0.3, w=0.8)
    samples, imus = [], []
    for _ in range(50):
        imus += _drive(sim, 0.01, v=0.3, w=0.8)["imu"]
        samples.append((*sim.velocity(), sim.lateral_velocity()))
    v, w, lateral = np.array(samples).T
    assert v == pytest.approx(0.3, abs=0.01)
    assert w == pytest.approx(0.8, abs=0.01)
    assert np.abs(lateral).max() < 0.01
    # The IMU feels the turn: centripetal v * w to the left, yaw rate on z.
    accel = np.mean([m.linear_acceleration for m in imus], axis=0)
    gyro = np.mean([m.angular_velocity for m in imus], axis=0)
    assert accel[1] == pytest.approx(0.3 * 0.8, abs=4 * SMALL.noise.accel_bias_std)
    assert gyro[2] == pytest.approx(0.8, abs=4 * SMALL.noise.gyro_bias_std)
    # Commands beyond the motor limits saturate.
    _drive(sim, 0.5, v=0.0, w=5.0)
    assert sim.velocity()[1] == pytest.approx(SMALL.limits.max_yaw_rate, abs=0.01)
    assert sim.collisions == 0
    sim.close()


def test_people_walk_their_loops(hospital_world: Path) -> None:
    sim = Simulator(hospital_world, SMALL)
    obstacles = _drive(sim, 0.5)["obstacles"]
    first, last = obstacles[0], obstacles[-1]
    agents = sim.world.agents
    assert first.ids == tuple(a.id for a in agents) and first.radius == tuple(a.radius for a in agents)
    for i, agent in enumerate(agents):
        start, towards = np.array(agent.waypoints[0]), np.array(agent.waypoints[1])
        heading = (towards - start) / np.linalg.norm(towards - start)
        assert (first.x[i], first.y[i]) == pytest.approx(tuple(start))
        assert (last.x[i], last.y[i]) == pytest.approx(tuple(start + heading * agent.speed * 0.5))
        assert (last.vx[i], last.vy[i]) == pytest.approx(tuple(heading * agent.speed))
        body = sim.data.mocap_pos[sim.model.body(f"agent_{agent.id}").mocapid[0]]
        assert body[:2] == pytest.approx((last.x[i], last.y[i]))
    assert sim.agents_since_turn() == pytest.approx({a.id: 0.5 for a in agents}, abs=0.011)  # none turned yet
    sim.close()


def _in_a_persons_way(world_dir: Path, sight: AgentSight | None) -> tuple[Simulator, Agent, np.ndarray]:
    """The robot placed 1.2 m along the longest first leg of an agent's walk, across it; the leg's heading."""
    sim = Simulator(world_dir, SMALL, agent_sight=sight)
    agent = max(sim.world.agents, key=lambda a: math.dist(*a.waypoints[:2]))
    start, towards = np.array(agent.waypoints[0]), np.array(agent.waypoints[1])
    heading = (towards - start) / np.linalg.norm(towards - start)
    x, y = start + heading * 1.2
    sim.place(x, y, math.atan2(heading[1], heading[0]) + math.pi / 2)
    return sim, agent, heading


def test_a_blind_person_walking_into_the_robot_is_a_collision(hospital_world: Path) -> None:
    sim, agent, heading = _in_a_persons_way(hospital_world, None)
    x, y, _ = sim.pose()
    events = _drive(sim, 2.0)["events"]
    assert [e.detail for e in events] == [f"agent_{agent.id}"]
    px, py, _ = sim.pose()
    assert (px - x) * heading[0] + (py - y) * heading[1] > 0.1, "the person shoves the robot along"
    sim.close()


def test_a_person_who_sees_the_robot_in_their_way_stops_short_and_walks_on_once_it_has_left(
    hospital_world: Path,
) -> None:
    sim, agent, heading = _in_a_persons_way(hospital_world, SIGHTED)
    index = sim.world.agents.index(agent)
    stopped = _drive(sim, 4.0)
    assert not stopped["events"]
    last = stopped["obstacles"][-1]
    gap = math.dist((last.x[index], last.y[index]), sim.pose()[:2]) - agent.radius - SMALL.radius
    assert SIGHTED.stop_gap_m - 0.05 < gap <= SIGHTED.stop_gap_m
    assert (last.vx[index], last.vy[index]) == (0.0, 0.0)
    behind = np.array(agent.waypoints[0]) - 0.6 * heading  # where they came from: they do not look back
    sim.place(*behind, sim.pose()[2])
    walking = _drive(sim, 0.5)["obstacles"][-1]
    assert math.hypot(walking.vx[index], walking.vy[index]) == pytest.approx(agent.speed)
    sim.close()


def test_wall_texture_gives_sift_matches_across_views(office_world: Path) -> None:
    """Mapping (pycolmap SfM) needs features that survive a change of viewpoint."""
    sim = Simulator(office_world, RobotConfig(camera_width=320, camera_height=240))
    x, y, yaw = sim.world.spawn
    sift = pycolmap.FeatureExtractor.create()  # SIFT by default
    descriptors = []
    for dyaw in (0.0, 0.2):  # two views 11 degrees apart
        sim.place(x, y, yaw + dyaw)
        rgb, _ = sim.render("front")
        _, features = sift.extract_from_float32_array(rgb.mean(axis=2).astype(np.float32) / 255.0)
        desc = features.data.astype(np.float32)
        descriptors.append(desc / np.linalg.norm(desc, axis=1, keepdims=True))
    sim.close()
    a, b = descriptors
    assert min(len(a), len(b)) > 300
    distances = 1.0 - a @ b.T  # unit descriptors: cosine distance
    best = np.argsort(distances, axis=1)[:, :2]
    rows = np.arange(len(a))
    ratio_ok = distances[rows, best[:, 0]] < 0.8**2 * distances[rows, best[:, 1]]
    mutual = np.argmin(distances, axis=0)[best[:, 0]] == rows
    assert np.count_nonzero(ratio_ok & mutual) > 100


# Error models. Each test isolates one model by switching the others' figures off.

STILL = SensorNoise(
    accel_noise_density=0.0,
    accel_bias_std=0.0,
    accel_bias_random_walk=0.0,
    gyro_noise_density=0.0,
    gyro_bias_std=0.0,
    gyro_bias_random_walk=0.0,
    wheel_radius_error_std=0.0,
    wheel_separation_error_std=0.0,
    wheel_slip_per_accel=0.0,
    wheel_slip_per_yaw_rate=0.0,
    wheel_slip_std=0.0,
    room_light_std=0.0,
    exposure_drift_std=0.0,
    depth_noise_per_m2=0.0,
    depth_edge_jump=math.inf,
    depth_dark_level=0,
)


def _free_spot(world: World, room: Room) -> tuple[float, float]:
    """The point of a room farthest from anything blocking."""
    clearance = _clearance(world)
    cells = np.argwhere(clearance > 0)
    xy = world.grid.cell_to_world(cells)
    xmin, ymin, xmax, ymax = room.bounds
    inside = (xy[:, 0] > xmin) & (xy[:, 0] < xmax) & (xy[:, 1] > ymin) & (xy[:, 1] < ymax)
    best = np.argmax(np.where(inside, clearance[tuple(cells.T)], -1.0))
    return float(xy[best, 0]), float(xy[best, 1])


def _planar(odometry) -> tuple[float, float, float]:
    return odometry.position[0], odometry.position[1], 2 * math.atan2(odometry.orientation[2], odometry.orientation[3])


def test_wheel_odometry_drifts_like_a_real_robot_around_a_square(office_world) -> None:
    """Calibration errors and slip: real indoor robots drift 2-5 % of the distance on wheels alone."""
    config = RobotConfig(cameras=())
    side = 2.0
    drifts = []
    for seed in range(8):  # eight robots, each with its own calibration errors
        sim = Simulator(office_world, config, seed=seed)
        clearance = _clearance(sim.world)
        x, y = sim.world.grid.cell_to_world(np.array(np.unravel_index(np.argmax(clearance), clearance.shape)))
        assert clearance.max() > side / 2 + config.radius + 0.3, "room for the square"
        sim.place(x - side / 2, y - side / 2, 0.0)
        for _ in range(4):
            _drive(sim, side / 0.75, v=0.75)
            _drive(sim, 0.2)
            _drive(sim, math.pi / 2, w=1.0)
            out = _drive(sim, 0.2)
        odom, truth = _planar(out["odom"][-1]), _planar(out["ground_truth"][-1])
        # Odometry starts at the origin, facing +x: the start pose in map.
        drifts.append(math.dist(odom[:2], (truth[0] - x + side / 2, truth[1] - y + side / 2)) / (4 * side))
        assert sim.collisions == 0
        sim.close()
    assert 0.02 <= np.mean(drifts) <= 0.05


def test_turning_slips_more_on_tiles_than_on_carpet(office_world) -> None:
    """Office rooms have carpet, corridors tiles: the same spin overcounts more in the corridor."""
    noise = dataclasses.replace(STILL, wheel_slip_per_yaw_rate=0.03)
    config = RobotConfig(cameras=(), noise=noise)
    slip_of = dict(noise.floor_slip)
    world = World.load(office_world)
    for kind, floor in (("room", "carpet"), ("corridor", "tiles")):
        sim = Simulator(office_world, config, seed=0)
        sim.place(*_free_spot(world, next(r for r in world.rooms if r.kind == kind)), 0.0)
        out = _drive(sim, 3.0, w=1.0)
        measured = sum(m.angular_velocity[2] for m in out["odom"])
        true = sum(m.angular_velocity[2] for m in out["ground_truth"])
        assert measured / true - 1 == pytest.approx(slip_of[floor] * 0.03 * 1.0, rel=0.1), floor
        sim.close()


def test_imu_bias_random_walks_from_the_episode_draw(office_world) -> None:
    walks = {"accel": 0.05, "gyro": 0.01}  # far above a MEMS part's, so the walk shows in 5 s
    noise = dataclasses.replace(
        STILL, accel_bias_std=0.05, gyro_bias_std=0.002, accel_bias_random_walk=walks["accel"],
        gyro_bias_random_walk=walks["gyro"],
    )  # fmt: skip
    config = RobotConfig(cameras=(), noise=noise)
    sim = Simulator(office_world, config, seed=3)
    imus = _drive(sim, 5.0)["imu"]
    readings = {
        "accel": np.array([m.linear_acceleration for m in imus]) - (0.0, 0.0, 9.81),
        "gyro": np.array([m.angular_velocity for m in imus]),
    }
    initial = {"accel": sim.sensor_errors.accel_bias, "gyro": sim.sensor_errors.gyro_bias}
    for sensor, walk in walks.items():
        step = walk / math.sqrt(config.imu_hz)  # a random walk's step per sample
        assert readings[sensor][0] == pytest.approx(initial[sensor], abs=4 * step), sensor
        assert np.diff(readings[sensor], axis=0).std(axis=0) == pytest.approx([step] * 3, rel=0.1), sensor
    sim.close()


def _brightness(sim: Simulator, image: CompressedImage) -> float:
    """Mean of a published image over the mean of what the camera's scene renders to now."""
    published = np.asarray(Image.open(io.BytesIO(image.data)), dtype=float)
    rgb, _ = sim.render("front")
    return float(published.mean() / rgb.mean())


def test_auto_exposure_lags_behind_a_change_of_room_light(office_world) -> None:
    config = RobotConfig(
        camera_width=64, camera_height=48, cameras=("front",), noise=dataclasses.replace(STILL, room_light_std=0.35)
    )
    sim = Simulator(office_world, config, seed=0)
    rooms = [r for r in sim.world.rooms if r.kind == "room"]
    light = sim.sensor_errors.room_light
    bright = max(rooms, key=lambda r: light[r.id])
    dark = min(rooms, key=lambda r: light[r.id])
    assert light[bright.id] - light[dark.id] > 0.3
    sim.place(*_free_spot(sim.world, bright), 0.0)
    frames = _drive(sim, 3.0)["image_front"]
    assert _brightness(sim, frames[-1]) == pytest.approx(1.0, abs=0.03), "adapted to the bright room"
    sim.place(*_free_spot(sim.world, dark), 0.0)
    frames = _drive(sim, 3.0)["image_front"]
    expected = math.exp(light[dark.id] - light[bright.id])
    assert _brightness(sim, frames[0]) == pytest.approx(expected, rel=0.1), "under-exposed on entering"
    assert _brightness(sim, frames[-1]) == pytest.approx(1.0, abs=0.03), "adapted again"
    sim.close()


def test_exposure_gain_drifts_slowly(office_world) -> None:
    config = RobotConfig(
        camera_width=64, camera_height=48, cameras=("front",),
        noise=dataclasses.replace(STILL, exposure_drift_std=0.1, exposure_drift_time_constant=20.0),
    )  # fmt: skip
    sim = Simulator(office_world, config, seed=1)
    sim.place(*_free_spot(sim.world, sim.world.rooms[0]), 0.0)
    log_gains = np.log([_brightness(sim, frame) for frame in _drive(sim, 20.0)["image_front"]])
    assert log_gains.std() > 0.02, "the gain wanders"
    assert np.abs(np.diff(log_gains)).max() < 0.1, "slowly, not frame to frame"
    sim.close()


def _published_depth(sim: Simulator) -> np.ndarray:
    depth = _drive(sim, 0.01)["depth_front"][0]
    return np.frombuffer(depth.data, "<f4").reshape(depth.height, depth.width)


def test_depth_noise_grows_with_the_square_of_range(office_world) -> None:
    noise = dataclasses.replace(STILL, depth_noise_per_m2=0.0025)
    sim = Simulator(office_world, RobotConfig(camera_width=96, camera_height=72, cameras=("front",), noise=noise), 4)
    measured = _published_depth(sim)
    _, truth = sim.render("front")
    assert np.isfinite(measured).all()
    error, z = measured - truth, truth
    near, far = z < np.median(z), z >= np.median(z)
    assert error[far].std() > 2 * error[near].std()
    for half in (near, far):
        assert (error[half] / (noise.depth_noise_per_m2 * z[half] ** 2)).std() == pytest.approx(1.0, rel=0.1)
    sim.close()


def test_depth_is_nan_at_edges_and_on_dark_surfaces(office_world) -> None:
    noise = dataclasses.replace(STILL, depth_edge_jump=0.1, depth_dark_level=60)
    config = RobotConfig(camera_width=96, camera_height=72, cameras=("front",), noise=noise)
    sim = Simulator(office_world, config, seed=5)
    measured = _published_depth(sim)
    rgb, truth = sim.render("front")
    jump_x = np.abs(np.diff(truth, axis=1)) > 0.1 * np.minimum(truth[:, 1:], truth[:, :-1])
    jump_y = np.abs(np.diff(truth, axis=0)) > 0.1 * np.minimum(truth[1:], truth[:-1])
    edge = np.zeros_like(jump_x, shape=truth.shape)
    edge[:, 1:] |= jump_x
    edge[:, :-1] |= jump_x
    edge[1:] |= jump_y
    edge[:-1] |= jump_y
    dark = rgb.astype(int).sum(axis=2) < 3 * 60
    assert edge.any() and dark.any() and not (edge | dark).all()
    np.testing.assert_array_equal(np.isnan(measured), edge | dark)
    np.testing.assert_array_equal(measured[~(edge | dark)], truth[~(edge | dark)])
    sim.close()


@pytest.mark.parametrize("kind", WORLD_KINDS)
def test_one_pass_colour_and_depth_equal_the_renderers_own_passes(kind: str, tmp_path: Path) -> None:
    """`render` reads colour and depth from one lit pass; MuJoCo's renderer draws depth in an unlit segmented pass of
    its own. Both must give the same pixels, people and carts included."""
    write_world(generate_world(kind, 0, dynamic=True), tmp_path / kind)
    sim = Simulator(tmp_path / kind, RobotConfig(camera_width=96, camera_height=72), seed=1)
    reference = mujoco.Renderer(sim.model, 72, 96)
    for _ in range(4):
        sim.advance(Twist(0, (0.4, 0.0, 0.0), (0.0, 0.0, 0.3)), 0.5)
        for camera in sim.config.cameras:
            rgb, depth = sim.render(camera)
            reference.update_scene(sim.data, camera=camera_name(camera))
            reference.enable_depth_rendering()
            expected_depth = reference.render()
            reference.disable_depth_rendering()
            expected_depth[expected_depth >= sim.config.depth_far * 0.999] = np.inf
            np.testing.assert_array_equal(rgb, reference.render())
            np.testing.assert_array_equal(depth, expected_depth)
    reference.close()
    sim.close()
