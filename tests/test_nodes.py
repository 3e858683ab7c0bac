"""dora nodes driven by dora.testing.MockNode: the event loops, without a daemon."""

from __future__ import annotations

from pathlib import Path

import pytest
from dora.testing import MockNode
from mcap.reader import make_reader

from operators import actuation, recorder
from schemas.messages import Clock, EstopState, Event, Twist, from_arrow, to_arrow
from schemas.topics import BY_OUTPUT
from tests.conftest import T0, sample_message


def _input(input_id: str, msg: object) -> dict:
    array, metadata = to_arrow(msg)
    return {"type": "INPUT", "id": input_id, "value": array, "metadata": metadata}


def test_recorder_writes_messages_arriving_after_episode_end(
    office_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mcap = tmp_path / "episode.mcap"
    monkeypatch.setenv("ASTRA_WORLD", str(office_world))
    monkeypatch.setenv("ASTRA_MCAP", str(mcap))
    events = [_input("imu", sample_message("imu", T0 + i * 10_000_000)) for i in range(5)]
    events.append(_input("events", Event(T0 + 50_000_000, "episode_end", "sensor", "office-0", 0.05)))
    # dora orders messages per input only: a command stamped before the end can still arrive after it.
    events.append(_input("cmd_vel", sample_message("cmd_vel", T0 + 40_000_000)))
    node = MockNode(events)
    recorder.main(node)

    assert node.outputs["done"][0].to_pylist() == [True]
    with open(mcap, "rb") as f:
        summary = make_reader(f).get_summary()
    counts = {summary.channels[cid].topic: n for cid, n in summary.statistics.channel_message_counts.items()}
    assert counts == {BY_OUTPUT["imu"].ros_topic: 5, "/events": 1, "/cmd_vel": 1}


def test_actuation_holds_the_robot_while_the_estop_is_engaged() -> None:
    ticks = [T0 + i * 20_000_000 for i in range(150)]  # 3 s at 50 Hz
    events = []
    for i, t in enumerate(ticks):
        events.append(_input("clock", Clock(t)))
        events.append(_input("cmd", Twist(t, (0.8, 0.0, 0.0), (0.0, 0.0, 0.0))))
        if i in (50, 100):  # pressed at 1 s, released at 2 s
            events.append(_input("estop", EstopState(t, i == 50)))
    node = MockNode(events)
    actuation.main(node)

    speeds = [from_arrow(array, cls=Twist).linear[0] for array in node.outputs["cmd_vel"]]
    assert len(speeds) == len(ticks)
    assert speeds[49] > 0.4  # driving before the press
    assert max(speeds[52:101]) == 0.0  # stopped within two ticks of the press, held until the release
    assert speeds[-1] > 0.4  # and driving again once released
    kinds = [from_arrow(array, cls=Event).kind for array in node.outputs["safety_events"]]
    assert kinds == ["estop"]
