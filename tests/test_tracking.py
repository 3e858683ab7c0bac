"""Moving obstacles: tracks from moving clusters, rollouts checked against their predictions, and giving way."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.local_planner import DwaConfig, DwaPlanner, rollout
from models.navigation.local_navigator import LocalNavigator, LocalParams
from models.planning import ClearanceMap
from models.safety import SafetyGovernor, SafetyLimits, people_speed_scale
from models.tracking import MovingObstacles, ObstacleTracker, registration_shift
from schemas.world import Agent, GridSpec, Room
from sim.simulator import Simulator
from sim.world import write_world
from tests.worlds import box_world, simulable

CONFIG = DwaConfig()
PERSON_RADIUS = 0.25
HOLD_STEPS = round((CONFIG.obstacle_horizon_s - CONFIG.horizon_s) / CONFIG.dt)  # the robot stands at a rollout's end


def _open_floor() -> ClearanceMap:
    """An 8 x 8 m window around the origin with nothing in it."""
    return ClearanceMap.from_occupancy(np.zeros((160, 160), dtype=bool), GridSpec(0.05, (-4.0, -4.0), (160, 160)))


def test_tracks_follow_walking_clusters_with_their_velocities() -> None:
    rng = np.random.default_rng(0)
    tracker = ObstacleTracker()
    start = np.array([[3.0, -2.0], [-1.0, 0.6]])
    velocity = np.array([[-0.2, 0.8], [0.9, 0.0]])  # they end up 0.9 m apart
    for frame in range(30):
        t = frame * 0.1
        seen = start + velocity * t + rng.normal(0.0, 0.05, start.shape)
        blip = [[rng.uniform(-3, 3), rng.uniform(-3, 3)]] if frame % 7 == 3 else []  # one-frame noise
        tracker.update(t, np.vstack([seen, *blip]) if blip else seen, np.full(len(seen) + len(blip), 0.25))
    tracks = tracker.obstacles()
    assert len(tracks) == 2, "the two walkers, and no blip"
    order = np.argsort(tracks.position[:, 0])[::-1]
    now = start + velocity * 2.9
    assert tracks.position[order] == pytest.approx(now, abs=0.15)
    assert tracks.velocity[order] == pytest.approx(velocity, abs=0.15)
    # Unseen for longer than max_missed_s, a track is dropped.
    tracker.update(3.0 + tracker.config.max_missed_s + 0.1, np.zeros((0, 2)), np.zeros(0))
    assert len(tracker.obstacles()) == 0


def test_a_track_keeps_the_size_of_a_body_seen_only_in_part() -> None:
    """A cart passing close by shows only its near side: its track stays as large as the cart was seen whole."""
    tracker = ObstacleTracker()
    for frame, radius in enumerate([0.42, 0.41, 0.42, 0.3, 0.22, 0.2]):
        tracker.update(frame * 0.1, np.array([[2.0 - 0.06 * frame, 0.0]]), np.array([radius]))
    assert tracker.obstacles().radius == pytest.approx([0.42])


def _box_faces(centre: np.ndarray, half: float, cell: float = 0.05) -> np.ndarray:
    """Cell centres of a box's two faces towards -x and -y: an L, as a robot sees a cart ahead and to its left."""
    steps = np.arange(-half, half + 1e-9, cell)
    near_x = np.column_stack([np.full(len(steps), centre[0] - half), centre[1] + steps])
    near_y = np.column_stack([centre[0] + steps, np.full(len(steps), centre[1] - half)])
    return np.floor(np.vstack([near_x, near_y]) / cell) * cell + cell / 2


def test_a_cart_whose_part_in_view_changes_moves_at_its_speed_by_registration() -> None:
    """A cart passing close by: less and less of its side face is in view, so the centre of the cells seen moves
    faster than the cart, while the cells themselves move with it (here exactly a cell per frame)."""
    velocity, half, start = np.array([-0.5, -0.5]), 0.28, np.array([2.31, 2.21])
    errors = {}
    for with_cells in (False, True):
        tracker = ObstacleTracker()
        for frame in range(12):
            t = frame * 0.1
            centre = start + velocity * t
            cells = _box_faces(centre, half)
            cells = cells[cells[:, 0] <= centre[0] + half - 0.03 * frame]  # the far end leaves the view
            mean, radius = cells.mean(axis=0), float(np.hypot(*(cells - cells.mean(axis=0)).T).max())
            tracker.update(t, mean[None], np.array([radius]), [cells] if with_cells else None)
        errors[with_cells] = float(np.hypot(*(tracker.obstacles().velocity[0] - velocity)))
    assert errors[False] > 0.08, "the centre of the cells seen runs ahead of the cart"
    assert errors[True] < 0.03


def test_registration_finds_a_shift_within_reach_and_only_there() -> None:
    face = np.column_stack([np.arange(0.025, 1.0, 0.05), np.full(20, 1.025)])
    shift = registration_shift(face, face + np.array([0.2, -0.1]), np.zeros(2), 0.05, 0.5, 0.5)
    assert shift == pytest.approx([0.2, -0.1], abs=1e-9)
    assert registration_shift(face, face + np.array([0.0, 0.6]), np.zeros(2), 0.05, 0.5, 0.5) is None


def test_closest_approach_of_a_person_passing_by() -> None:
    person = MovingObstacles(np.array([[3.0, 0.0]]), np.array([[-1.0, 0.0]]), np.array([PERSON_RADIUS]))
    t, gap = person.closest_approach(np.array([0.0, 1.0]))
    assert t == pytest.approx([3.0]) and gap == pytest.approx([1.0 - PERSON_RADIUS])
    t, gap = person.closest_approach(np.array([0.0, 1.0]), velocity=(-1.0, 0.0))  # walking along with it
    assert t == pytest.approx([0.0]) and gap == pytest.approx([math.hypot(3.0, 1.0) - PERSON_RADIUS])


def _gaps_to(trajectory: np.ndarray, obstacles: MovingObstacles, dt: float) -> np.ndarray:
    """Edge-to-edge gaps of the robot along a rollout to the obstacles' predicted positions at the same instants."""
    predicted = obstacles.at(dt * np.arange(1, len(trajectory) + 1))
    return np.hypot(*(trajectory[None, :, :2] - predicted).transpose(2, 0, 1)) - obstacles.radius[:, None]


def test_the_planner_rejects_rollouts_that_meet_a_predicted_person() -> None:
    route = np.array([[1.5, 0.0], [3.0, 0.0]])
    clearance = _open_floor()
    ahead = DwaPlanner().plan((0.0, 0.0, 0.0), (0.8, 0.0), route, True, clearance)
    assert ahead.status == "ok" and ahead.w == pytest.approx(0.0) and ahead.v > 0.5  # straight on, nobody there
    # Someone walks across the route 1.2 m ahead, reaching it when the robot would.
    person = MovingObstacles(np.array([[1.2, -1.2]]), np.array([[0.0, 1.0]]), np.array([PERSON_RADIUS]))
    plan = DwaPlanner().plan((0.0, 0.0, 0.0), (0.8, 0.0), route, True, clearance, person)
    straight = _gaps_to(ahead.trajectory, person, CONFIG.dt)
    assert straight.min() - CONFIG.robot_radius < CONFIG.obstacle_margin, "straight on meets the person"
    gaps = _gaps_to(plan.trajectory, person, CONFIG.dt) - CONFIG.robot_radius
    assert plan.status in ("ok", "yield") and gaps.min() >= CONFIG.obstacle_margin
    # The candidates it weighed (finite cost) keep clear of the person too; those that meet them were rejected.
    predicted = person.at(CONFIG.dt * np.arange(1, plan.candidates.shape[1] + 1))[0]
    candidate_gaps = np.hypot(*(plan.candidates - predicted).transpose(2, 0, 1)) - PERSON_RADIUS - CONFIG.robot_radius
    weighed = np.isfinite(plan.candidate_costs)
    assert candidate_gaps[weighed].min() >= CONFIG.obstacle_margin
    assert (candidate_gaps[~weighed].min(axis=1) < CONFIG.obstacle_margin).any()


def test_the_planner_never_plans_into_where_a_person_ahead_stands_now() -> None:
    """Someone walks on ahead, as fast as the robot: they may stop or turn back at any moment, so the robot keeps
    the room it needs to stop short of where they stand now, not only of where they would walk to."""
    route = np.array([[2.0, 0.0], [6.0, 0.0]])
    person = MovingObstacles(np.array([[1.3, 0.0]]), np.array([[0.9, 0.0]]), np.array([PERSON_RADIUS]))
    plan = DwaPlanner().plan((0.0, 0.0, 0.0), (0.9, 0.0), route, True, _open_floor(), person)
    walking_on = _gaps_to(plan.trajectory, person, CONFIG.dt) - CONFIG.robot_radius
    standing = np.hypot(*(plan.trajectory[:, :2] - person.position[0]).T) - PERSON_RADIUS - CONFIG.robot_radius
    assert walking_on.min() >= CONFIG.obstacle_margin
    assert standing.min() >= CONFIG.obstacle_margin
    assert plan.v < 0.9, "it falls back behind the person"


def test_the_margin_to_a_walking_person_grows_with_how_far_ahead_it_is_predicted() -> None:
    """A track's velocity is an estimate: the robot keeps a margin that grows with the prediction's lead time, so it
    does not plan to pass just in front of someone crossing 2 s from now."""
    route = np.array([[2.0, 0.0], [4.0, 0.0]])
    person = MovingObstacles(np.array([[2.34, 1.48]]), np.array([[-0.48, -0.89]]), np.array([PERSON_RADIUS]))
    times = CONFIG.dt * np.arange(1, round(CONFIG.obstacle_horizon_s / CONFIG.dt) + 1)
    needed = CONFIG.obstacle_margin + CONFIG.obstacle_margin_growth * times
    fixed_margin = DwaPlanner(replace(CONFIG, obstacle_margin_growth=0.0))
    kept = {}
    for name, planner in (("growing", DwaPlanner()), ("fixed", fixed_margin)):
        plan = planner.plan((0.0, 0.0, 0.0), (0.94, 0.0), route, False, _open_floor(), person)
        held = np.vstack([plan.trajectory, np.repeat(plan.trajectory[-1:], HOLD_STEPS, axis=0)])
        kept[name] = _gaps_to(held, person, CONFIG.dt)[0] - CONFIG.robot_radius - needed
    assert kept["fixed"].min() < -0.1, "with a fixed margin it cuts in front of the person"
    assert kept["growing"].min() >= 0.0


def test_standing_still_in_a_walking_persons_way_is_not_an_option() -> None:
    """Head-on in the open: with nowhere to go, the planner still moves out of the person's line."""
    clearance = _open_floor()
    planner = DwaPlanner()
    pose, velocity = np.zeros(3), np.zeros(2)
    person = np.array([2.5, 0.0])
    for step in range(40):  # 4 s at 10 Hz, the person walks 1 m/s straight at where the robot started
        obstacles = MovingObstacles(person[None].copy(), np.array([[-1.0, 0.0]]), np.array([PERSON_RADIUS]))
        plan = planner.evade(tuple(pose), tuple(velocity), clearance, obstacles, 0.0)
        assert plan.status == "yield"
        for _ in range(10):
            step = 0.01 * np.array([CONFIG.limits.max_accel, CONFIG.limits.max_yaw_accel])
            velocity += np.clip(np.array([plan.v, plan.w]) - velocity, -step, step)
            pose[2] += velocity[1] * 0.01
            pose[:2] += velocity[0] * 0.01 * np.array([math.cos(pose[2]), math.sin(pose[2])])
            person[0] -= 0.01
            gap = float(np.hypot(*(pose[:2] - person))) - PERSON_RADIUS - CONFIG.robot_radius
            assert gap > 0.0, f"hit at {step / 10:.1f} s"
    assert abs(pose[1]) > 0.5, "out of the person's line"


@pytest.mark.parametrize(
    ("speed", "position", "velocity"),
    [
        (0.34, (0.52, -1.07), (-0.22, 0.73)),  # crossing ahead, from the right
        (0.47, (-0.10, -1.47), (0.36, 0.64)),  # coming from behind on the right
    ],
)
def test_giving_way_keeps_the_margin_when_some_way_does(speed: float, position: tuple, velocity: tuple) -> None:
    """A way out that keeps the hard margin beats one that is clearer on average but brushes past the person."""
    person = MovingObstacles(np.array([position]), np.array([velocity]), np.array([PERSON_RADIUS]))
    plan = DwaPlanner().evade((0.0, 0.0, 0.0), (speed, 0.0), _open_floor(), person, 0.0)
    # Over the obstacle horizon, the robot standing at its rollout's end after it.
    held = np.vstack(
        [
            plan.trajectory,
            np.repeat(plan.trajectory[-1:], HOLD_STEPS, axis=0),
        ]
    )
    walking_on = _gaps_to(held, person, CONFIG.dt) - CONFIG.robot_radius
    standing = np.hypot(*(held[:, :2] - person.position[0]).T) - PERSON_RADIUS - CONFIG.robot_radius
    assert plan.status == "yield"
    assert min(walking_on.min(), standing.min()) >= CONFIG.obstacle_margin


def test_giving_way_plans_with_the_speed_the_safety_layer_leaves() -> None:
    """Near people the safety layer scales the robot's speed down: a way out that needs full speed is no way out."""
    position, velocity, speed = np.array([0.16, 1.42]), np.array([0.2, -0.68]), 0.49  # crossing ahead, from the left
    person = MovingObstacles(position[None], velocity[None], np.array([PERSON_RADIUS]))
    forward = people_speed_scale(SafetyLimits(), float(np.hypot(*position)) - PERSON_RADIUS)
    assert forward < 1.0
    plan = DwaPlanner().evade((0.0, 0.0, 0.0), (speed, 0.0), _open_floor(), person, 0.0, (forward, 1.0))
    driven = np.array([[plan.v * (forward if plan.v >= 0 else 1.0), plan.w]])
    [expected] = rollout((0.0, 0.0, 0.0), (speed, 0.0), driven, CONFIG.limits, CONFIG.dt, len(plan.trajectory))
    np.testing.assert_allclose(plan.trajectory, expected, atol=1e-9)  # the rollout is what the robot will drive
    # No way keeps the margin to the robot standing at its end after; it keeps it while it drives, on to a haven.
    walking_on = _gaps_to(plan.trajectory, person, CONFIG.dt) - CONFIG.robot_radius
    standing = np.hypot(*(plan.trajectory[:, :2] - position).T) - PERSON_RADIUS - CONFIG.robot_radius
    assert min(walking_on.min(), standing.min()) >= CONFIG.obstacle_margin


@pytest.fixture(scope="module")
def corridor_with_a_walker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 x 3 m corridor; a person walks its centre line back and forth, first toward the robot's spawn."""
    world = box_world((10, 3), [], [Room("hall", "Hall", "corridor", "corridor", (0.1, 0.1, 9.9, 2.9))], (2, 1.5, 0))
    person = Agent("a0", "person", ((7.0, 1.5), (0.8, 1.5)), 1.0, PERSON_RADIUS)
    out = tmp_path_factory.mktemp("corridor")
    write_world(replace(simulable(world), agents=(person,)), out)
    return out


def _wait_in_the_corridor(world_dir: Path, params: LocalParams, seconds: float = 8.0) -> Simulator:
    """The robot waits with no route (as while localizing), its local core and safety layer running; the walker is
    blind to it, the hardest case."""
    sim = Simulator(world_dir, agent_sight=None)
    local, governor = LocalNavigator(params=params), SafetyGovernor()
    cmd = None
    for tick in range(round(seconds / 0.01)):
        for output_id, msg in sim.advance(cmd):
            for out_id, out in local.on_sensor(output_id, msg):
                if out_id == "moving_obstacles":
                    governor.set_people(out)
        for out_id, out in local.plan(sim.t_ns) if tick % 10 == 0 else []:
            if out_id == "local_cmd":
                governor.on_command(out, sim.t_ns)
        cmd = governor.step(sim.t_ns) if tick % 2 == 0 else None
    return sim


def test_a_robot_with_no_route_gives_way_to_a_person_walking_at_it(corridor_with_a_walker: Path) -> None:
    sim = _wait_in_the_corridor(corridor_with_a_walker, LocalParams())
    assert sim.collisions == 0
    assert abs(sim.pose()[1] - 1.5) > 0.4, "it stepped out of the walker's line"
    sim.close()
