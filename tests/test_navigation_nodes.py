"""The navigation nodes' event loops under dora.testing.MockNode: local and mission (global runs in the graph tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dora.testing import MockNode

from operators import local_nav, mission
from schemas.messages import Clock, MissionGoal, MissionStatus, OccupancyGrid, Odometry, Twist, from_arrow, to_arrow
from schemas.messages import Path as PathMsg
from sim.simulator import Simulator


def _input(input_id: str, msg: object) -> dict:
    array, metadata = to_arrow(msg)
    return {"type": "INPUT", "id": input_id, "value": array, "metadata": metadata}


def _sensor_events(world_dir: Path, seconds: float) -> list[dict]:
    """What the sensor sends local over `seconds` of a robot standing still."""
    sim = Simulator(world_dir, seed=0)
    try:
        wanted = ("clock", "imu", "wheels", "depth_", "camera_info_")
        return [_input(o, m) for o, m in sim.advance(None, seconds) if o.startswith(wanted)]
    finally:
        sim.close()


def test_local_drives_toward_its_subgoals_and_publishes_odometry_and_costmap(
    office_world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASTRA_CAMERA_WIDTH", raising=False)
    events = _sensor_events(office_world, 1.0)
    t_first = next(e for e in events if e["id"] == "clock")["metadata"]["t_ns"]
    # The office's dock faces open floor: a subgoal 2 m straight ahead, in odom.
    subgoals = PathMsg(t_first, "odom", (1.0, 2.0), (0.0, 0.0), (0.0, 0.0))
    node = MockNode([_input("subgoals", subgoals), *events])
    local_nav.main(node)

    odom = [from_arrow(a, cls=Odometry) for a in node.outputs["local_odom"]]
    assert len(odom) == sum(e["id"] == "wheels" for e in events)  # one per wheel sample: 50 Hz
    assert all(abs(o.position[0]) < 0.05 for o in odom)  # standing still, the odometry stays put
    commands = [from_arrow(a, cls=Twist) for a in node.outputs["local_cmd"]]
    assert len(commands) == pytest.approx(10, abs=1)  # 10 Hz of robot time
    assert commands[-1].linear[0] > 0.1  # heading for the subgoal
    grids = [from_arrow(a, cls=OccupancyGrid) for a in node.outputs["local_costmap"]]
    assert grids and grids[0].width * grids[0].height == len(grids[0].data)
    assert grids[0].width * grids[0].resolution >= 8.0


def test_local_stands_still_without_a_route(office_world: Path) -> None:
    node = MockNode(_sensor_events(office_world, 0.5))
    local_nav.main(node)
    commands = [from_arrow(a, cls=Twist) for a in node.outputs["local_cmd"]]
    assert commands and all(c.linear[0] == 0.0 and c.angular[2] == 0.0 for c in commands)


def test_mission_resends_its_goal_until_global_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_GOAL", "take me to the kitchen")
    ticks = [_input("clock", Clock(i * 500_000_000)) for i in range(12)]  # 6 s
    status = MissionStatus(3_000_000_000, "astra-sim-01-0", "navigating", "", "n1", "Kitchen", "Kitchen", 5.0, (), "")
    node = MockNode([*ticks[:7], _input("mission_status", status), *ticks[7:]])
    mission.main(node)
    goals = [from_arrow(a, cls=MissionGoal) for a in node.outputs["mission_goal"]]
    assert [g.t_ns for g in goals] == [0, 2_000_000_000]  # every 2 s, then never again once answered
    assert {g.text for g in goals} == {"take me to the kitchen"}


def test_mission_without_a_goal_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_GOAL", "  ")
    with pytest.raises(ValueError, match="ASTRA_GOAL"):
        mission.main(MockNode([]))


def test_local_stops_when_the_sensor_is_gone(office_world: Path) -> None:
    # In the navigation graph's cycles no other input ever closes: the sensor's clock closing must end the node.
    events = _sensor_events(office_world, 0.5)
    node = MockNode([*events[: len(events) // 2], {"type": "INPUT_CLOSED", "id": "clock"}, *events[len(events) // 2 :]])
    local_nav.main(node)
    sent = [from_arrow(a, cls=Twist).t_ns for a in node.outputs["local_cmd"]]
    last_before = max(e["metadata"]["t_ns"] for e in events[: len(events) // 2] if e["id"] == "clock")
    assert sent and max(sent) <= last_before
