"""The local costmap from depth images: back-projection, marking and clearing, ESDF, moving obstacles."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from models.costmap import FREE, OCCUPIED, UNKNOWN, CostmapConfig, LocalCostmap, back_project
from models.planning import ClearanceMap, occupancy_grid
from schemas.messages import CameraInfo, DepthImage, Twist
from schemas.robot import DEFAULT_ROBOT, RobotConfig, camera_mount
from schemas.topics import camera_frame
from sim.simulator import Simulator
from tests.depth_views import front_view

# Half the pixels of the default cameras, sampled twice as densely: the rays of the default stride, rendered faster.
ROBOT = RobotConfig(camera_width=160, camera_height=120)
CONFIG = CostmapConfig(stride=2)

Pose = tuple[float, float, float]


def _odom_from_map(sim: Simulator) -> Callable[[Pose], Pose]:
    """The simulator's odom frame is the spawn pose; ground truth in odom is the map pose seen from there."""
    sx, sy, syaw = sim.world.spawn
    c, s = math.cos(syaw), math.sin(syaw)
    return lambda p: (c * (p[0] - sx) + s * (p[1] - sy), -s * (p[0] - sx) + c * (p[1] - sy), p[2] - syaw)


def _map_from_odom(sim: Simulator, xy: np.ndarray) -> np.ndarray:
    sx, sy, syaw = sim.world.spawn
    c, s = math.cos(syaw), math.sin(syaw)
    return np.stack([sx + c * xy[..., 0] - s * xy[..., 1], sy + s * xy[..., 0] + c * xy[..., 1]], axis=-1)


def _run(sim: Simulator, costmap: LocalCostmap, script: list[tuple[float, float, float]], each_frame=None) -> None:
    """Drive (seconds, v, w) steps; feed every camera frame to the costmap with the true pose at its stamp."""
    to_odom = _odom_from_map(sim)
    poses = {sim.t_ns: to_odom(sim.pose())}
    frames: dict[int, dict[str, object]] = {}
    for seconds, v, w in script:
        for _ in range(round(seconds / 0.01)):
            messages = sim.advance(Twist(sim.t_ns, (v, 0.0, 0.0), (0.0, 0.0, w)))
            poses[sim.t_ns] = to_odom(sim.pose())  # frames fall due at the end of an advance
            for output_id, msg in messages:
                if output_id.startswith(("depth_", "camera_info_")):
                    frames.setdefault(msg.t_ns, {})[output_id] = msg
            for t_ns in sorted(frames):
                frame = frames.pop(t_ns)
                depths = [(frame[f"depth_{c}"], frame[f"camera_info_{c}"]) for c in ROBOT.cameras]
                costmap.update(t_ns, poses[t_ns], depths)
                if each_frame:
                    each_frame(t_ns)


def test_back_projection_of_a_wall_ahead() -> None:
    """A flat wall 2 m ahead of the front camera, with a NaN and a too-far (+inf) pixel."""
    width, height, f = 8, 6, 4.0
    depth = np.full((height, width), 2.0, dtype="<f4")
    depth[1, 1], depth[3, 5] = np.nan, np.inf
    frame = camera_frame("front")
    image = DepthImage(0, frame, width, height, depth.tobytes())
    cx, cy = (width - 1) / 2, (height - 1) / 2
    info = CameraInfo(0, frame, width, height, (f, 0, cx, 0, f, cy, 0, 0, 1), "plumb_bob", (0.0,) * 5, (), ())
    translation, rotation = camera_mount(DEFAULT_ROBOT, "front")
    ends, hit, valid = back_project(image, info, (np.array(translation), rotation.as_matrix()), 1, max_range=10.0)
    assert ends.shape == (height, width, 3)
    assert not valid[1, 1] and valid.sum() == width * height - 1
    assert not hit[3, 5] and hit.sum() == width * height - 2
    # The optical axis looks along base_link x: every surface point is 2 m ahead of the camera.
    np.testing.assert_allclose(ends[hit][:, 0], translation[0] + 2.0, atol=1e-6)
    # Image right is base_link -y and image down is -z.
    assert ends[0, -1, 1] < ends[0, 0, 1] and ends[-1, 0, 2] < ends[0, 0, 2]
    # The too-far ray ends at max_range from the camera.
    assert np.linalg.norm(ends[3, 5] - translation) == pytest.approx(10.0)


def _occupied_on(costmap: LocalCostmap, panel: tuple[float, float, float]) -> bool:
    """Whether any occupied cell lies on a panel's face (x, y_min, y_max), within a cell."""
    grid, spec = costmap.occupancy()
    x, y = spec.cell_to_world(np.argwhere(grid == OCCUPIED)).T
    return bool(((np.abs(x - panel[0]) < 0.05) & (y > panel[1] - 0.05) & (y < panel[2] + 0.05)).any())


def test_moving_cells_decay_and_static_ones_stay() -> None:
    costmap = LocalCostmap(CostmapConfig(stride=1, decay_s=1.0, min_moving_cells=1), DEFAULT_ROBOT)
    wall = (1.0, 0.3, 0.6)  # there from the start: static
    person = (2.0, -0.9, -0.5)  # walks in where the floor was seen free
    flicker = (1.5, -0.2, 0.1)  # seen, gone for three frames, back: a surface seen edge-on, not someone walking in
    # A static surface seen one cell farther along (from a new angle, or past a sampling gap) is not motion either.
    wall_grown = (1.0, 0.3, 0.65)
    views = [[wall, flicker]] + [[wall]] * 3 + [[wall_grown, flicker, person]] * 2
    t_ns = 0
    for panels in views:
        t_ns += 100_000_000
        costmap.update(t_ns, (0.0, 0.0, 0.0), [front_view(panels)])
    [centre], [radius] = costmap.moving_obstacles()
    assert centre == pytest.approx((2.0, -0.7), abs=0.1)
    assert radius == pytest.approx(0.2, abs=0.05)  # the panel is 0.4 m wide
    assert costmap.distance_to_moving((0.0, 0.0)) == pytest.approx(math.hypot(2.0, 0.5), abs=0.1)
    assert _occupied_on(costmap, wall) and _occupied_on(costmap, person)
    # The camera goes blind: the person is no longer where it was seen last (for the tracker) ...
    for _ in range(2):
        t_ns += 100_000_000
        costmap.update(t_ns, (0.0, 0.0, 0.0), [front_view([], blind=True)])
    assert len(costmap.moving_obstacles(max_age_s=0.15)[0]) == 0 and len(costmap.moving_obstacles()[0]) == 1
    # ... and what moved fades out after decay_s, the static wall stays.
    for _ in range(10):
        t_ns += 100_000_000
        costmap.update(t_ns, (0.0, 0.0, 0.0), [front_view([], blind=True)])
    assert _occupied_on(costmap, wall) and not _occupied_on(costmap, person)
    assert len(costmap.moving_obstacles()[0]) == 0 and costmap.distance_to_moving((0.0, 0.0)) == math.inf


def test_a_person_out_of_every_cameras_view_does_not_fade_until_seen_gone() -> None:
    """Three 120-degree cameras set apart on the shell leave strips beside the robot that none sees. A person who
    stops there is not gone: four collisions of the learned planner with people (session 50) came from their cells
    fading while they stood in such a strip, and the robot turning into them."""
    costmap = LocalCostmap(CostmapConfig(stride=1, decay_s=1.0, min_moving_cells=1), DEFAULT_ROBOT)
    person = (2.0, -0.9, -0.5)
    t_ns = 0

    def see(panels: list[tuple[float, float, float]], yaw: float, frames: int) -> None:
        nonlocal t_ns
        for _ in range(frames):
            t_ns += 100_000_000
            costmap.update(t_ns, (0.0, 0.0, yaw), [front_view(panels)])

    see([], 0.0, 4)
    see([person], 0.0, 2)  # walks in where the floor was seen free
    assert _occupied_on(costmap, person) and len(costmap.moving_obstacles()[0]) == 1
    see([], math.pi / 2, 20)  # the robot turns left: the only camera looks away for twice decay_s
    assert _occupied_on(costmap, person)
    see([], 0.0, 1)  # looks back and sees the floor there
    assert not _occupied_on(costmap, person)


def test_a_person_turning_back_stays_moving() -> None:
    """People walk back and forth: on the way back they walk into cells they left a second ago, and must not turn
    into a static wall there (the tracker would lose them as they come at the robot)."""
    costmap = LocalCostmap(CostmapConfig(stride=1), DEFAULT_ROBOT)
    t_ns = 0

    def see(y_min: float | None) -> None:
        nonlocal t_ns
        t_ns += 100_000_000
        costmap.update(t_ns, (0.0, 0.0, 0.0), [front_view([(2.0, y_min, y_min + 0.4)] if y_min is not None else [])])

    for _ in range(4):  # the floor, seen free
        see(None)
    walk = [-1.0 + 0.1 * step for step in range(11)]  # 1 m/s across the view, then back the same way
    for y_min in walk + walk[-2:3:-1]:
        see(y_min)
    centres, _ = costmap.moving_obstacles(max_age_s=0.15)
    assert len(centres) == 1 and centres[0] == pytest.approx((2.0, -0.4), abs=0.15)


@pytest.mark.parametrize("stride", [2, 4])  # 4800 and 1200 rays a camera
def test_costmap_matches_the_building(office_world: Path, stride: int) -> None:
    sim = Simulator(office_world, ROBOT, seed=1)
    costmap = LocalCostmap(CostmapConfig(stride=stride), ROBOT)
    # Turn on the spot to see all around, then drive 0.6 m so the window rolls by whole cells.
    _run(sim, costmap, [(2.0, 0.0, 0.8), (2.0, 0.3, 0.0)])
    assert sim.collisions == 0
    grid, spec = costmap.occupancy()
    assert grid.dtype == np.int8 and set(np.unique(grid)) == {UNKNOWN, FREE, OCCUPIED}
    assert spec.shape == (160, 160) and spec.resolution == 0.05
    x, y, _ = _odom_from_map(sim)(sim.pose())
    assert tuple(spec.world_to_cell(np.array([x, y]))) == (80, 80), "the window is centred on the robot"

    # Every occupied cell lies on a true obstacle, up to a cell.
    world = sim.world
    truth = occupancy_grid(world)
    metres_to_truth = ndimage.distance_transform_edt(~truth) * world.grid.resolution
    occupied = np.argwhere(grid == OCCUPIED)
    assert len(occupied) > 100
    rc = world.grid.world_to_cell(_map_from_odom(sim, spec.cell_to_world(occupied)))
    assert metres_to_truth[rc[:, 0], rc[:, 1]].max() <= 1.5 * spec.resolution

    # The ESDF agrees with the true clearance around the robot (where the nearest obstacle is within 1.5 m).
    ours = costmap.clearance()
    true_clearance = ClearanceMap.from_occupancy(truth, world.grid)
    points = np.array([x, y]) + np.random.default_rng(0).uniform(-1.5, 1.5, (300, 2))
    expected = true_clearance.at(_map_from_odom(sim, points))
    near = (expected > 0.1) & (expected < 1.5)
    errors = np.abs(ours.at(points) - expected)[near]
    assert near.sum() > 50
    assert np.median(errors) < 0.05 and np.percentile(errors, 90) < 0.15
    assert ours.at(np.array([x, y])) == pytest.approx(float(true_clearance.at(np.array(sim.pose()[:2]))), abs=0.1)
    # Nothing moves in an office without people.
    assert len(costmap.moving_obstacles()[0]) == 0 and costmap.distance_to_moving((x, y)) == math.inf
    sim.close()


def test_a_walking_person_is_flagged_moving_and_its_trail_clears(hospital_world: Path) -> None:
    sim = Simulator(hospital_world, ROBOT)
    agent = max(sim.world.agents, key=lambda a: math.dist(*a.waypoints[:2]))
    index = sim.world.agents.index(agent)
    start, towards = np.array(agent.waypoints[0]), np.array(agent.waypoints[1])
    heading = (towards - start) / np.linalg.norm(towards - start)
    side = np.array([-heading[1], heading[0]])
    # Stand 1.5 m beside the person's path, facing it, as they walk past.
    robot_xy = start + heading * 2.0 + side * 1.5
    sim.place(*robot_xy, math.atan2(-side[1], -side[0]))
    costmap = LocalCostmap(CONFIG, ROBOT)
    to_odom = _odom_from_map(sim)
    track: dict[int, np.ndarray] = {}

    def remember(t_ns: int) -> None:
        obstacles = sim.obstacles()
        track[t_ns] = np.array(to_odom((obstacles.x[index], obstacles.y[index], 0.0))[:2])

    _run(sim, costmap, [(4.0, 0.0, 0.0)], remember)
    person = track[max(track)]
    moving, _ = costmap.moving_obstacles()
    assert len(moving), "the person is seen moving"
    assert np.hypot(*(moving - person).T).min() < agent.radius + 0.1
    # Speed control needs the distance to the person's near side.
    robot_odom = np.array(to_odom((*robot_xy, 0.0))[:2])
    true_gap = np.hypot(*(person - robot_odom)) - agent.radius
    assert costmap.distance_to_moving(tuple(robot_odom)) == pytest.approx(true_gap, abs=0.2)
    # Nothing else is flagged: every moving cluster sits on some agent.
    obstacles = sim.obstacles()
    agents = np.array([to_odom((ax, ay, 0.0))[:2] for ax, ay in zip(obstacles.x, obstacles.y, strict=True)])
    radii = np.array(obstacles.radius)
    assert all((np.hypot(*(agents - m).T) < radii + 0.5).any() for m in moving)
    # Where the person stood 2.5 s ago, now left behind, is no longer an obstacle.
    then = track[min(track, key=lambda t: abs(t - (max(track) - 2_500_000_000)))]
    grid, spec = costmap.occupancy()
    centres = spec.cell_to_world(np.argwhere(grid == OCCUPIED))
    left_behind = (np.hypot(*(centres - then).T) < agent.radius + 0.1) & (
        np.hypot(*(centres - person).T) > agent.radius + 0.3
    )
    assert not left_behind.any()
    sim.close()
