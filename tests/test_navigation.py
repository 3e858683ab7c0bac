"""The navigation stack end to end on a real map: in-process missions, `astra navigate` through dataflow.yml, the
two agree, the lake gains navigation tables, and bad input is a usage error.

The map is the encrypted office map the mapping tests build from two short tours (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from datasets.lake import run_query
from datasets.map_store import read_map
from datasets.navigation import global_navigator, planar_world_from_map
from models.localization import LocalizationFix
from models.navigation import se2
from models.navigation.global_navigator import GlobalParams
from models.navigation.scoring import relocalization_summary
from models.routing import base_poses
from pipelines.ingest import ingest
from pipelines.missions import MissionRunner, mapped_rooms
from schemas.map import KEY_ENV, generate_key, parse_key
from schemas.messages import MissionGoal, Odometry
from schemas.world import World
from sim.missions import Mission, sample_missions

ASTRA = Path(sys.executable).parent / "astra"
SECONDS = 60.0


def _astra(*argv: str, key: str | None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV and not k.startswith("ASTRA_")}
    env |= {KEY_ENV: key} if key else {}
    return subprocess.run([str(ASTRA), *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def navigable(office_world: Path, office_map: tuple[Path, str, object]) -> tuple[MissionRunner, Mission]:
    """The in-process runner on the office map, and a mission between two rooms the map covers."""
    map_dir, key, _ = office_map
    topo = read_map(map_dir, parse_key(key))
    world = World.load(office_world)
    alignment = planar_world_from_map(topo)
    rooms = mapped_rooms(world, topo, alignment)
    assert len(rooms) >= 2, rooms
    [mission] = sample_missions(world, 1, seed=3, rooms=rooms)
    room = next(r for r in world.rooms if r.name == mission.goal_room)
    mission = Mission(mission.start, mission.start_room, f"take me to the {room.name}", "room", room.id, room.name)
    return MissionRunner(office_world, topo, alignment), mission


@pytest.fixture(scope="module")
def in_process(navigable: tuple[MissionRunner, Mission]):
    runner, mission = navigable
    return runner.run(mission, seed=0)


def test_a_mission_in_process_reaches_its_room_goal_from_an_unknown_start(in_process) -> None:
    outcome = in_process
    assert outcome.state == "succeeded" and outcome.success, outcome.summary()
    assert outcome.goal_correct and outcome.collisions == 0
    assert outcome.final_error_m <= 1.0 and outcome.spl > 0.5
    # How many fixes land before arrival depends on how long each takes on the machine (they run in real time), so
    # a short mission may arrive on its first, tentative one.
    fixes = relocalization_summary(outcome.relocalizations)
    assert fixes["n"] >= 1 and fixes["within_1m_5deg"] >= 0.75 and fixes["median_m"] < 0.2


def test_an_unknown_goal_leaves_the_robot_still(navigable: tuple[MissionRunner, Mission]) -> None:
    runner, mission = navigable
    nonsense = Mission(mission.start, mission.start_room, "sing me a song about the moon", "room", "", "")
    outcome = runner.run(nonsense, seed=0)
    assert outcome.state == "goal_not_found" and not outcome.success
    assert outcome.path_length_m < 0.05


def test_each_collision_is_logged_with_what_the_robot_made_of_it(navigable: tuple[MissionRunner, Mission]) -> None:
    """A robot that starts pressed into a wall: the contact is counted, and logged with what it hit."""
    runner, mission = navigable
    wall = max(runner.world.walls, key=lambda w: w.box.half_size[0])  # the longest east-west wall
    (cx, cy, _), (_, hy, _) = wall.box.center, wall.box.half_size
    pressed = (cx, cy + hy + 0.1, 0.0)  # the robot's radius is 0.25 m
    nonsense = Mission(pressed, mission.start_room, "sing me a song about the moon", "room", "", "")
    outcome = runner.run(nonsense, seed=0)
    assert outcome.collisions >= 1 and len(outcome.contacts) == outcome.collisions
    contact = outcome.contacts[0]
    assert contact["hit"] == f"wall_{wall.id}" and contact["t_s"] < 0.1 and abs(contact["robot_v"]) < 0.05
    assert contact["seen_gap_m"] is None, "a wall is no moving obstacle"
    assert outcome.summary()["contacts"] == outcome.contacts


def test_goal_not_found_names_three_candidates(office_map: tuple[Path, str, object]) -> None:
    map_dir, key, _ = office_map
    navigator = global_navigator(read_map(map_dir, parse_key(key)))
    [(output_id, status)] = navigator.on_mission_goal(MissionGoal(0, "m", "what is the capital of France"))
    assert output_id == "mission_status" and status.state == "goal_not_found"
    assert len(status.candidates) == 3 and all(status.candidates)


def _fix(x: float, y: float, success: bool = True, confidence: float = 0.9) -> LocalizationFix:
    pose = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([0.0, 0.0, 0.0, 1.0])), np.array([x, y, 0.0]))
    covariance = np.eye(6) * 0.01
    return LocalizationFix(success, pose if success else None, covariance, confidence * success, 100 * success, ())


def _along_x(step: int) -> Odometry:
    """Odometry of driving straight along x at 1 m/s in odom, at 10 Hz."""
    return Odometry(step * 100_000_000, "odom", "base_link", (0.1 * step, 0.0, 0.0), (0, 0, 0, 1), (1, 0, 0), (0,) * 3)


def _drive_along_x(navigator, seconds: float) -> None:
    for step in range(int(seconds * 10) + 1):
        navigator.on_local_odom(_along_x(step))


@pytest.mark.parametrize("misses", [GlobalParams.max_prior_misses, 1000])
def test_a_confirmed_estimate_that_finds_nothing_near_it_searches_the_whole_map_again(
    office_map: tuple[Path, str, object], misses: int
) -> None:
    """A look-alike place can confirm itself (the aisle beside the right one looks the same all along); once fixes
    near the estimate keep finding nothing, the next one searches the whole map. With the release off (1000 misses)
    the robot stays locked on the look-alike."""
    map_dir, key, _ = office_map
    navigator = global_navigator(read_map(map_dir, parse_key(key)), params=GlobalParams(max_prior_misses=misses))
    _drive_along_x(navigator, 3.9)
    navigator.on_fix(_fix(5.0, 2.0), 0, "initial", 0.1)
    navigator.on_fix(_fix(7.0, 2.0), 2_000_000_000, "confirm", 0.1)  # 2 m further on: the second agrees
    assert navigator.confirmed
    for k in range(GlobalParams.max_prior_misses):
        navigator.on_fix(_fix(0.0, 0.0, success=False), 3_000_000_000 + k, "periodic", 0.1)
    assert navigator.confirmed == (misses == 1000)
    assert (navigator.due_relocalization(3_900_000_000) == "request") == (misses != 1000)


@pytest.mark.parametrize("recheck_every", [GlobalParams.recheck_every, 0])
def test_a_look_alike_that_confirmed_itself_gives_way_once_two_whole_map_rechecks_agree_elsewhere(
    office_map: tuple[Path, str, object], recheck_every: int
) -> None:
    """The robot starts in the aisle beside the one it thinks, 9.6 m off in y, where every fix near the estimate
    keeps finding the look-alike. A recheck without the prior finds the true place; the estimate moves there once
    a second, 1.5 m on, agrees. With rechecks off the robot stays on the look-alike."""
    map_dir, key, _ = office_map
    navigator = global_navigator(read_map(map_dir, parse_key(key)), params=GlobalParams(recheck_every=recheck_every))
    fired = []
    for step in range(141):  # 14 s, relocalizing whenever due; map x is odom x + 5, the truth at y = 11.6
        navigator.on_local_odom(odometry := _along_x(step))
        if trigger := navigator.due_relocalization(odometry.t_ns):
            navigator.started_relocalization(odometry.t_ns)
            place = _fix(odometry.position[0] + 5.0, 11.6 if trigger == "recheck" else 2.0)
            navigator.on_fix(place, odometry.t_ns, trigger, 0.1)
            fired.append(trigger)
    assert fired[:4] == ["initial", "confirm", "periodic", "periodic"]
    x, y, _ = navigator.map_pose_at(14_000_000_000)
    assert navigator.confirmed and x == pytest.approx(19.0, abs=0.01)
    if recheck_every:
        assert fired[4:6] == ["recheck", "recheck"]  # the second 1.5 m after the first
        assert y == pytest.approx(11.6, abs=0.01)
    else:
        assert "recheck" not in fired and y == pytest.approx(2.0, abs=0.01)


@pytest.mark.parametrize("consensus_fixes", [GlobalParams.consensus_fixes, 1000])
def test_unsure_fixes_that_agree_from_places_apart_confirm_the_estimate(
    office_map: tuple[Path, str, object], consensus_fixes: int
) -> None:
    """In aisles that look alike every fix may be unsure (a look-alike rivals it) and still right. Unsure fixes
    0.7 m apart that agree through odometry confirm the estimate once they span 1.5 m; a sure fix at the look-alike
    that they outvote moves nothing. With the consensus off the robot stays lost (the look-alike still outvoted)."""
    map_dir, key, _ = office_map
    params = GlobalParams(consensus_fixes=consensus_fixes)
    navigator = global_navigator(read_map(map_dir, parse_key(key)), params=params)
    _drive_along_x(navigator, 3.9)  # map x is odom x + 5
    for t_s in (0.0, 0.0, 0.7, 1.4):  # two from one spot: one vote
        navigator.on_fix(_fix(5.0 + t_s, 2.0, confidence=0.1), int(t_s * 1e9), "initial", 0.1)
    assert not navigator.confirmed and navigator.map_from_odom is None  # three spots, but only 1.4 m apart
    outputs = navigator.on_fix(_fix(6.8, 11.6), 1_800_000_000, "initial", 0.1)  # sure, but one against three
    assert [output_id for output_id, _ in outputs] == ["localization"]
    navigator.on_fix(_fix(7.1, 2.0, confidence=0.1), 2_100_000_000, "initial", 0.1)
    if consensus_fixes == GlobalParams.consensus_fixes:
        assert navigator.confirmed and navigator.map_pose_at(3_000_000_000)[:2] == pytest.approx((8.0, 2.0))
    else:
        assert not navigator.confirmed and navigator.map_from_odom is None


def test_a_lone_recheck_elsewhere_leaves_the_estimate_until_another_agrees(
    office_map: tuple[Path, str, object],
) -> None:
    """One whole-map fix far from a confirmed estimate may be a look-alike itself: it moves nothing, and the next
    recheck, agreeing with the estimate, dismisses it."""
    map_dir, key, _ = office_map
    navigator = global_navigator(read_map(map_dir, parse_key(key)))
    _drive_along_x(navigator, 14.0)
    navigator.on_fix(_fix(5.0, 2.0), 0, "initial", 0.1)
    navigator.on_fix(_fix(7.0, 2.0), 2_000_000_000, "confirm", 0.1)
    outputs = navigator.on_fix(_fix(10.0, 11.6), 5_000_000_000, "recheck", 0.1)
    assert [output_id for output_id, _ in outputs] == ["localization"]
    assert navigator.map_pose_at(5_000_000_000)[:2] == pytest.approx((10.0, 2.0))
    navigator.on_fix(_fix(12.0, 2.0), 7_000_000_000, "recheck", 0.1)  # agrees with the estimate
    navigator.on_fix(_fix(13.0, 11.6), 8_000_000_000, "recheck", 0.1)  # would have agreed with the dismissed one
    assert navigator.map_pose_at(8_000_000_000)[:2] == pytest.approx((13.0, 2.0))


def test_a_fix_that_moves_the_estimate_far_plans_the_route_again(office_map: tuple[Path, str, object]) -> None:
    """The route was planned from where the robot was thought to be: after a fix puts it metres away, that route's
    subgoals would first lead it back there."""
    map_dir, key, _ = office_map
    topo = read_map(map_dir, parse_key(key))
    navigator = global_navigator(topo)
    _drive_along_x(navigator, 3.9)
    navigator.on_mission_goal(MissionGoal(0, "m", "take me to the reception"))
    poses = base_poses(topo.nodes)[:, :2]
    start = poses[0]
    far = poses[np.argmax(np.hypot(*(poses - start).T))]

    def sent(x: float, y: float, t_ns: int, trigger: str) -> list[str]:
        return [output_id for output_id, _ in navigator.on_fix(_fix(x, y), t_ns, trigger, 0.1)]

    assert "route" in sent(*start, 0, "initial")
    assert "route" not in sent(start[0] + 0.3, start[1], 300_000_000, "periodic")  # where odometry says
    assert "route" in sent(*far, 2_000_000_000, "confirm")
    assert navigator.mission_state == "navigating"


@pytest.fixture(scope="module")
def navigated(
    navigable: tuple[MissionRunner, Mission], office_world: Path, office_map: tuple[Path, str, object], tmp_path_factory
) -> tuple[dict, Path]:
    """`astra navigate` of the same mission through `dora run dataflow.yml`: its JSON line and its MCAP."""
    _, mission = navigable
    map_dir, key, _ = office_map
    out = tmp_path_factory.mktemp("navigate")
    start = ",".join(f"{v:.4f}" for v in mission.start)
    proc = _astra(
        "navigate", "--world", str(office_world), "--map", str(map_dir), "--goal", mission.instruction,
        "--start", start, "--seconds", str(SECONDS), "--out", str(out), key=key,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary, Path(summary["mcap"])


def test_navigate_through_the_graph_reaches_the_goal(navigated: tuple[dict, Path]) -> None:
    summary, _ = navigated
    assert summary["state"] == "succeeded" and summary["success"], summary
    assert summary["collisions"] == 0 and summary["final_error_m"] <= 1.0
    fixes = summary["relocalization"]
    assert fixes["n"] >= 2 and fixes["within_1m_5deg"] >= 0.75 and fixes["median_m"] < 0.2
    assert summary["local_hz"] is not None and summary["local_hz"] > 5


def test_the_graph_and_the_in_process_harness_agree(navigated: tuple[dict, Path], in_process) -> None:
    summary, _ = navigated
    assert (summary["state"], summary["success"]) == (in_process.state, in_process.success)
    assert summary["goal"] == in_process.goal_label


def test_the_lake_answers_sql_about_the_mission(navigated: tuple[dict, Path], tmp_path: Path) -> None:
    _, mcap = navigated
    report = ingest([mcap], tmp_path / "lake", progress=False)
    assert report.episodes == 1 and not report.quarantined
    states = json.loads(run_query(tmp_path / "lake", "SELECT DISTINCT state FROM mission_status", "json"))
    assert "succeeded" in {row["state"] for row in states}
    for table in ("localization", "plans", "costmaps", "goals", "mission_goals", "poses"):
        [row] = json.loads(run_query(tmp_path / "lake", f"SELECT count(*) AS n FROM {table}", "json"))
        assert row["n"] > 0, table
    [row] = json.loads(
        run_query(
            tmp_path / "lake", "SELECT count(*) AS n FROM tf WHERE frame_id = 'map' AND child_frame_id = 'odom'", "json"
        )
    )
    assert row["n"] > 0  # map -> odom on /tf comes from localization


@pytest.mark.parametrize("problem", ["unknown goal", "no key", "wrong world", "no map", "unknown localization"])
def test_bad_input_is_a_usage_error(
    problem: str, office_world: Path, office_map: tuple[Path, str, object], tmp_path: Path
) -> None:
    map_dir, key, _ = office_map
    world, goal = office_world, "take me to the reception"
    if problem == "unknown goal":
        goal = "sing me a song about the moon"
    elif problem == "no key":
        key = None
    elif problem == "wrong world":
        from sim.world import generate_world, write_world

        world = tmp_path / "home"
        write_world(generate_world("home", 1), world)
    elif problem == "no map":
        map_dir = tmp_path / "nothing"
    localization = ["--global", "learned"] if problem == "unknown localization" else []
    proc = _astra("navigate", "--world", str(world), "--map", str(map_dir), "--goal", goal, *localization, key=key)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout
    expected = {
        "unknown goal": "goal_not_found",
        "no key": "key",
        "wrong world": "site",
        "no map": "no map",
        "unknown localization": "classical, astra, hybrid",
    }[problem]
    assert expected in proc.stderr
    if problem == "unknown goal":
        assert proc.stderr.count("(0.") + proc.stderr.count("(-0.") == 3  # the three closest, with their scores


def test_planar_world_from_map_aligns_the_maps_keyframes_with_the_truth(office_map: tuple[Path, str, object]) -> None:
    map_dir, key, _ = office_map
    x, y, yaw = planar_world_from_map(read_map(map_dir, parse_key(key)))
    # The map's frame is the first tour's odometry frame: near the world's, but not the same.
    assert abs(x) < 2.0 and abs(y) < 2.0 and abs(se2.wrap(yaw)) < 0.5


def test_generate_key_differs_each_time() -> None:
    assert generate_key() != generate_key()
