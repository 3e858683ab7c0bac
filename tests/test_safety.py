"""The actuation safety core never exceeds its caps, whatever it is asked (property-based)."""

from __future__ import annotations

import pyarrow as pa
from dora.testing import MockNode
from hypothesis import given, settings
from hypothesis import strategies as st

from models.safety import SafetyGovernor, SafetyLimits
from operators import actuation
from schemas.messages import Clock, Event, Twist, from_arrow, to_arrow

LIMITS = SafetyLimits()
TOL = 1e-9

finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64)
step = st.tuples(
    st.integers(min_value=1_000_000, max_value=150_000_000),  # time since the previous step, ns
    st.one_of(st.none(), st.tuples(finite_or_not, finite_or_not)),  # a command, or none this step
    st.booleans(),  # e-stop
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=60))
def test_never_exceeds_speed_or_acceleration_caps(steps: list) -> None:
    governor = SafetyGovernor(LIMITS)
    now, prev_v, prev_w = 0, 0.0, 0.0
    for dt_ns, command, estop in steps:
        now += dt_ns
        governor.set_estop(estop)
        if command is not None:
            governor.on_command(Twist(now, (command[0], 0.0, 0.0), (0.0, 0.0, command[1])), now)
        out = governor.step(now)
        v, w, dt = out.linear[0], out.angular[2], dt_ns * 1e-9
        assert -LIMITS.max_reverse_speed - TOL <= v <= LIMITS.max_speed + TOL
        assert abs(w) <= LIMITS.max_yaw_rate + TOL
        assert out.linear[1:] == (0.0, 0.0) and out.angular[:2] == (0.0, 0.0)
        # Speeding up is capped by max_accel; any slowing down by the (larger) brake limit.
        v_cap = LIMITS.max_accel if abs(v) > abs(prev_v) else LIMITS.brake_decel
        w_cap = LIMITS.max_yaw_accel if abs(w) > abs(prev_w) else LIMITS.brake_yaw_decel
        assert abs(v - prev_v) <= v_cap * dt + TOL
        assert abs(w - prev_w) <= w_cap * dt + TOL
        if estop:
            assert abs(v) <= abs(prev_v) + TOL and abs(w) <= abs(prev_w) + TOL
        prev_v, prev_w = v, w


@settings(max_examples=100, deadline=None)
@given(st.floats(0.05, 1.0), st.floats(-1.5, 1.5), st.integers(1_000_000, 20_000_000))
def test_stale_commands_stop_the_robot_within_200_ms(v: float, w: float, tick_ns: int) -> None:
    governor = SafetyGovernor(LIMITS)
    now = 0
    while now < 3_000_000_000:  # drive at speed for 3 s
        governor.on_command(Twist(now, (v, 0, 0), (0, 0, w)), now)
        governor.step(now)
        now += tick_ns
    last_command = now - tick_ns
    while now <= last_command + 200_000_000:
        out = governor.step(now)
        now += tick_ns
    assert out.linear[0] == 0.0 and out.angular[2] == 0.0
    assert governor.stopping_reason == "watchdog_stop"
    assert LIMITS.stop_deadline_s <= 0.2


def test_a_command_delayed_in_transport_is_already_stale() -> None:
    governor = SafetyGovernor(LIMITS)
    now = 1_000_000_000
    governor.on_command(Twist(now - 300_000_000, (0.5, 0, 0), (0, 0, 0)), now)  # stamped 300 ms ago
    assert governor.step(now).linear[0] == 0.0 and governor.stopping_reason == "watchdog_stop"
    governor.on_command(Twist(now, (0.5, 0, 0), (0, 0, 0)), now)
    assert governor.step(now + 20_000_000).linear[0] > 0.0 and governor.stopping_reason is None


def test_estop_is_latched_until_released() -> None:
    governor = SafetyGovernor(LIMITS)
    now = 0
    for _ in range(300):
        governor.on_command(Twist(now, (1.0, 0, 0), (0, 0, 0)), now)
        governor.step(now)
        now += 10_000_000
    governor.set_estop(True)
    for _ in range(20):
        governor.on_command(Twist(now, (1.0, 0, 0), (0, 0, 0)), now)
        out = governor.step(now)
        now += 10_000_000
    assert out.linear[0] == 0.0 and governor.stopping_reason == "estop"
    governor.set_estop(False)
    governor.on_command(Twist(now, (1.0, 0, 0), (0, 0, 0)), now)
    assert governor.step(now + 10_000_000).linear[0] > 0.0


def _input(input_id: str, msg: object) -> dict:
    array, metadata = to_arrow(msg)
    return {"type": "INPUT", "id": input_id, "value": array, "metadata": metadata}


def test_actuation_node_caps_commands_and_reports_stops() -> None:
    ms = 1_000_000
    events = [_input("clock", Clock(0))]
    for t in range(10, 510, 10):  # 0.5 s of a too-fast command, then silence
        events.append(_input("cmd", Twist(t * ms, (5.0, 0, 0), (0, 0, 9.0))))
        events.append(_input("clock", Clock(t * ms)))
    events += [_input("clock", Clock(t * ms)) for t in range(510, 900, 10)]
    events.append({"type": "INPUT", "id": "estop", "value": pa.array([True]), "metadata": {}})
    events.append(_input("clock", Clock(900 * ms)))
    node = MockNode(events)
    actuation.main(node)

    commands = [from_arrow(a, cls=Twist) for a in node.outputs["cmd_vel"]]
    assert all(c.linear[0] <= LIMITS.max_speed and abs(c.angular[2]) <= LIMITS.max_yaw_rate for c in commands)
    assert max(c.linear[0] for c in commands) > 0.3
    assert [c.t_ns % (20 * ms) for c in commands] == [0] * len(commands)  # 50 Hz of robot time
    assert commands[-1].linear[0] == 0.0
    stops = [from_arrow(a, cls=Event).kind for a in node.outputs["safety_events"]]
    assert stops == ["watchdog_stop", "estop"]
