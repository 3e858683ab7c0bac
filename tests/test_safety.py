"""The actuation safety core never exceeds its caps, whatever it is asked, and reaches them when asked long
enough (property-based and deterministic)."""

from __future__ import annotations

import math

import pytest
from dora.testing import MockNode
from hypothesis import given, settings
from hypothesis import strategies as st

from models.safety import SafetyGovernor, SafetyLimits
from operators import actuation
from schemas.messages import (
    Clock,
    DynamicObstacles,
    EstopState,
    Event,
    LocalizationResult,
    Twist,
    from_arrow,
    to_arrow,
)

LIMITS = SafetyLimits()
TOL = 1e-9
WATCHDOG_S = 0.2  # the requirement: exactly zero this long after the last command
# Worst case from any output to any other: brake to zero, then speed up the other way.
SETTLE_S = max(
    LIMITS.max_speed / LIMITS.brake_decel + LIMITS.max_reverse_speed / LIMITS.max_accel,
    LIMITS.max_reverse_speed / LIMITS.brake_decel + LIMITS.max_speed / LIMITS.max_accel,
    LIMITS.max_yaw_rate / LIMITS.brake_yaw_decel + LIMITS.max_yaw_rate / LIMITS.max_yaw_accel,
)
# Braking from the caps to a stop.
ESTOP_STOP_S = max(LIMITS.max_speed / LIMITS.brake_decel, LIMITS.max_yaw_rate / LIMITS.brake_yaw_decel)

Command = tuple[float, float]
Step = tuple[int, Command | None, bool]  # ns since the previous step, a command sent at it (or none), e-stop

finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64)
step = st.tuples(
    st.integers(min_value=1_000_000, max_value=150_000_000),  # time since the previous step, ns
    st.one_of(st.none(), st.tuples(finite_or_not, finite_or_not)),  # a command, or none this step
    st.booleans(),  # e-stop
)
# Random steps almost never keep a fast command fresh for the 1 s it takes to reach the speed cap:
# draw commands held for seconds instead, re-sent at every tick, with silences in between.
speed = st.one_of(finite_or_not, st.floats(-10.0, 10.0))
long_hold = st.tuples(
    st.integers(10_000_000, 100_000_000),  # tick, ns: under the watchdog timeout
    st.integers(100_000_000, 5_000_000_000),  # how long the command is held, ns
    st.one_of(st.none(), st.tuples(speed, speed)),  # the command, or silence
    st.sampled_from([False, False, False, True]),  # e-stop, now and then
).map(lambda h: [(h[0], h[2], h[3])] * max(1, h[1] // h[0]))


def _target(command: Command | None) -> Command:
    """What the governor should steer toward: the command clamped to the caps, or a stop."""
    if command is None or not all(math.isfinite(x) for x in command):
        return (0.0, 0.0)
    v, w = command
    return (
        min(max(v, -LIMITS.max_reverse_speed), LIMITS.max_speed),
        min(max(w, -LIMITS.max_yaw_rate), LIMITS.max_yaw_rate),
    )


def _shortest_s(prev: float, new: float, accel: float, brake: float) -> float:
    """The least time the limits allow from `prev` to `new`: reversing brakes to zero first."""
    if prev * new < 0.0:
        return abs(prev) / brake + abs(new) / accel
    if abs(new) > abs(prev):
        return (abs(new) - abs(prev)) / accel
    return (abs(prev) - abs(new)) / brake


def _drive(steps: list[Step]) -> None:
    """Run the governor through `steps`, checking every output against the limits."""
    governor = SafetyGovernor(LIMITS)
    now, prev_v, prev_w = 0, 0.0, 0.0
    last_command: int | None = None
    estop_since: int | None = None
    held: Command | None = None  # the target of a run of identical fresh commands without e-stop
    held_since = 0
    for dt_ns, command, estop in steps:
        now += dt_ns
        governor.set_estop(estop)
        if command is not None:
            governor.on_command(Twist(now, (command[0], 0.0, 0.0), (0.0, 0.0, command[1])), now)
            last_command = now
        out = governor.step(now)
        v, w, dt = out.linear[0], out.angular[2], dt_ns * 1e-9
        assert -LIMITS.max_reverse_speed - TOL <= v <= LIMITS.max_speed + TOL
        assert abs(w) <= LIMITS.max_yaw_rate + TOL
        assert out.linear[1:] == (0.0, 0.0) and out.angular[:2] == (0.0, 0.0)
        # Speeding up is capped by max_accel; any slowing down by the (larger) brake limit.
        assert _shortest_s(prev_v, v, LIMITS.max_accel, LIMITS.brake_decel) <= dt + TOL
        assert _shortest_s(prev_w, w, LIMITS.max_yaw_accel, LIMITS.brake_yaw_decel) <= dt + TOL

        estop_since = (now if estop_since is None else estop_since) if estop else None
        if estop:
            assert governor.stopping_reason == "estop"
            assert abs(v) <= abs(prev_v) + TOL and abs(w) <= abs(prev_w) + TOL
            if (now - estop_since) * 1e-9 >= ESTOP_STOP_S:
                assert (v, w) == (0.0, 0.0)
        if last_command is None or (now - last_command) * 1e-9 >= WATCHDOG_S:
            assert (v, w) == (0.0, 0.0) and governor.stopping_reason in ("watchdog_stop", "estop")
        elif command is not None and not estop:
            assert governor.stopping_reason is None

        # A command kept fresh is reached as fast as the limits allow, and held there.
        target = None if command is None or estop else _target(command)
        if target != held:
            held, held_since = target, now
        if held is not None and (now - held_since) * 1e-9 >= SETTLE_S:
            assert v == pytest.approx(held[0], abs=TOL) and w == pytest.approx(held[1], abs=TOL)
        prev_v, prev_w = v, w


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=60))
def test_never_exceeds_speed_or_acceleration_caps(steps: list[Step]) -> None:
    _drive(steps)


@settings(max_examples=200, deadline=None)
@given(st.lists(long_hold, min_size=1, max_size=6))
def test_long_held_commands_reach_but_never_pass_the_caps(holds: list[list[Step]]) -> None:
    _drive([s for h in holds for s in h])


@pytest.mark.parametrize("tick_ns", [20_000_000, 100_000_000])
def test_reversing_brakes_to_zero_then_speeds_up_at_the_acceleration_limit(tick_ns: int) -> None:
    # One braking step can overshoot zero: at 10 Hz, or toward a slower turn the other way (1.5 -> -0.5 rad/s).
    ahead = [(tick_ns, (5.0, 5.0), False)] * (2_000_000_000 // tick_ns)
    astern = [(tick_ns, (-5.0, -0.5), False)] * (2_000_000_000 // tick_ns)
    _drive(ahead + astern)  # 2 s each way: long enough to settle at both


def _run_at_50_hz(governor: SafetyGovernor, command: Command, ticks: int, start_ns: int = 0) -> list[Command]:
    """Send `command` fresh and step at each of `ticks` 50 Hz ticks; the outputs (v, w)."""
    outputs: list[Command] = []
    for tick in range(ticks):
        now = start_ns + tick * 20_000_000
        governor.on_command(Twist(now, (command[0], 0.0, 0.0), (0.0, 0.0, command[1])), now)
        out = governor.step(now)
        outputs.append((out.linear[0], out.angular[2]))
    return outputs


@pytest.mark.parametrize(
    ("command", "peak"),
    [
        ((5.0, 0.0), (LIMITS.max_speed, 0.0)),
        ((-5.0, 0.0), (-LIMITS.max_reverse_speed, 0.0)),
        ((0.0, 5.0), (0.0, LIMITS.max_yaw_rate)),
        ((0.0, -5.0), (0.0, -LIMITS.max_yaw_rate)),
        ((5.0, -5.0), (LIMITS.max_speed, -LIMITS.max_yaw_rate)),
    ],
)
def test_a_fast_command_held_for_3_s_peaks_exactly_at_the_cap(command: Command, peak: Command) -> None:
    outputs = _run_at_50_hz(SafetyGovernor(LIMITS), command, 151)
    assert (max((o[0] for o in outputs), key=abs), max((o[1] for o in outputs), key=abs)) == peak
    assert outputs[-1] == peak  # reached within the 3 s, and held


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_command_brings_the_robot_to_rest(bad: float) -> None:
    for command in ((bad, 0.5), (0.5, bad)):
        governor = SafetyGovernor(LIMITS)
        _run_at_50_hz(governor, (0.5, 0.5), 50)  # 1 s of a fair command, then 1 s of the bad one
        outputs = _run_at_50_hz(governor, command, 50, start_ns=1_000_000_000)
        assert all(
            -LIMITS.max_reverse_speed <= v <= LIMITS.max_speed and abs(w) <= LIMITS.max_yaw_rate for v, w in outputs
        )
        assert outputs[-1] == (0.0, 0.0)


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


def test_a_command_stamped_in_the_future_is_stale_200_ms_after_it_arrives() -> None:
    governor = SafetyGovernor(LIMITS)
    _run_at_50_hz(governor, (0.5, 0.5), 50)  # 1 s of driving
    arrived = 1_000_000_000
    governor.on_command(Twist(arrived + 1_000_000_000, (0.5, 0, 0), (0, 0, 0.5)), arrived)  # stamped 1 s ahead
    governor.step(arrived)
    out = governor.step(arrived + 200_000_000)
    assert (out.linear[0], out.angular[2]) == (0.0, 0.0) and governor.stopping_reason == "watchdog_stop"


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
    events.append(_input("estop", EstopState(900 * ms, True)))
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


def _hold(governor: SafetyGovernor, start_ns: int, seconds: float, v: float = 1.0) -> tuple[int, Twist]:
    """Command `v` every 10 ms for `seconds`; the time reached and the last output."""
    now = start_ns
    out = governor.step(now)
    for _ in range(round(seconds * 100)):
        governor.on_command(Twist(now, (v, 0, 0), (0, 0, 0.5)), now)
        out = governor.step(now)
        now += 10_000_000
    return now, out


@pytest.mark.parametrize(
    ("distance", "expected"),
    [
        (math.inf, LIMITS.max_speed),
        (LIMITS.people_slow_m, LIMITS.max_speed),
        ((LIMITS.people_slow_m + LIMITS.people_near_m) / 2, LIMITS.max_speed * (1 + LIMITS.people_min_scale) / 2),
        (LIMITS.people_near_m, LIMITS.max_speed * LIMITS.people_min_scale),
        (0.0, LIMITS.max_speed * LIMITS.people_min_scale),
    ],
)
def test_people_nearby_cap_the_speed_but_not_the_turning(distance: float, expected: float) -> None:
    governor = SafetyGovernor(LIMITS)
    governor.set_people(_person_at(distance + 0.1, 0.0) if math.isfinite(distance) else _person_at())
    _, out = _hold(governor, 0, 3.0)
    assert out.linear[0] == pytest.approx(expected)
    assert out.angular[2] == pytest.approx(0.5)
    assert ("people_slowdown" in governor.slowing_reasons) == (distance < LIMITS.people_slow_m)


def _person_at(*xy: float) -> DynamicObstacles:
    """One perceived person of radius 0.1 at (x, y) in base_link, or none."""
    n = len(xy) // 2
    return DynamicObstacles(0, ("p",) * n, xy[:1], xy[1:], (0.0,) * n, (0.0,) * n, (0.1,) * n)


def test_driving_away_from_a_person_is_not_slowed() -> None:
    governor = SafetyGovernor(LIMITS)
    governor.set_people(_person_at(-0.5, 0.0))  # just behind: forwards is away from it
    now, out = _hold(governor, 0, 3.0)
    assert out.linear[0] == pytest.approx(LIMITS.max_speed) and not governor.slowing_reasons
    now, out = _hold(governor, now, 3.0, v=-LIMITS.max_reverse_speed)  # backing into it is slowed
    assert out.linear[0] == pytest.approx(-LIMITS.max_reverse_speed * LIMITS.people_min_scale)
    governor.set_people(_person_at(0.5, 0.0))  # just ahead: now backing up is giving way
    _, out = _hold(governor, now, 3.0, v=-LIMITS.max_reverse_speed)
    assert out.linear[0] == pytest.approx(-LIMITS.max_reverse_speed) and not governor.slowing_reasons


def test_a_person_beside_the_path_slows_the_robot_less_than_one_in_it() -> None:
    """Someone 1.4 m to the side, about to cross behind the robot, must not take away the speed it needs to get
    clear (office-507 #4 of the mission benchmark); someone 1.4 m ahead still slows it."""
    distance = 1.4 + 0.1  # centre to the person's edge 1.4 m
    beside, ahead = SafetyGovernor(LIMITS), SafetyGovernor(LIMITS)
    beside.set_people(_person_at(0.05, distance))
    ahead.set_people(_person_at(distance, 0.05))
    _, out_beside = _hold(beside, 0, 3.0)
    _, out_ahead = _hold(ahead, 0, 3.0)
    assert out_ahead.linear[0] < LIMITS.max_speed * 0.8
    assert out_beside.linear[0] == pytest.approx(LIMITS.max_speed) and not beside.slowing_reasons


def test_doubtful_localization_slows_the_robot_then_stops_it_until_a_good_fix() -> None:
    governor = SafetyGovernor(LIMITS)
    now, out = _hold(governor, 0, 2.0)
    assert out.linear[0] == pytest.approx(LIMITS.max_speed)  # never localized yet: not a fallback
    governor.on_localization(_fix(now, 0.9))
    now, out = _hold(governor, now, 2.0)
    assert out.linear[0] == pytest.approx(LIMITS.max_speed) and not governor.slowing_reasons
    governor.on_localization(_fix(now, LIMITS.min_confidence / 2))  # a fix below the threshold
    now, out = _hold(governor, now, 2.0)
    assert out.linear[0] == pytest.approx(LIMITS.max_speed * LIMITS.fallback_scale)
    assert governor.slowing_reasons == {"localization_fallback"}
    now, out = _hold(governor, now, LIMITS.localization_lost_s)
    assert out.linear[0] == 0.0 and governor.stopping_reason == "localization_lost"
    governor.on_localization(_fix(now, 0.9))
    _, out = _hold(governor, now, 2.0)
    assert out.linear[0] == pytest.approx(LIMITS.max_speed) and governor.stopping_reason is None


def test_an_unsure_whole_map_recheck_does_not_slow_the_robot() -> None:
    """Look-alike aisles leave a search of the whole map unsure where the fixes near the estimate are sure: an unsure
    recheck says nothing of the estimate, and the same fix near it would slow the robot (test above)."""
    governor = SafetyGovernor(LIMITS)
    governor.on_localization(_fix(0, 0.9))
    governor.on_localization(_fix(0, LIMITS.min_confidence / 2, trigger="recheck"))
    _, out = _hold(governor, 0, 2.0)
    assert out.linear[0] == pytest.approx(LIMITS.max_speed) and not governor.slowing_reasons


def test_no_fix_for_too_long_is_a_fallback() -> None:
    governor = SafetyGovernor(LIMITS)
    governor.on_localization(_fix(0, 0.9))
    now, out = _hold(governor, 0, LIMITS.localization_stale_s - 0.5)
    assert out.linear[0] == pytest.approx(LIMITS.max_speed)
    _, out = _hold(governor, now, 1.0)
    assert governor.slowing_reasons == {"localization_fallback"}
    assert out.linear[0] == pytest.approx(LIMITS.max_speed * LIMITS.fallback_scale)


def test_actuation_node_slows_near_perceived_people_and_reports_fallbacks() -> None:
    ms = 1_000_000
    events = [_input("clock", Clock(0)), _input("localization", _fix(0, 0.9))]
    for t in range(10, 3000, 10):
        events.append(_input("cmd", Twist(t * ms, (1.0, 0, 0), (0, 0, 0))))
        if t == 1500:  # someone 0.6 m ahead (0.3 m radius): 0.3 m from the robot's centre line
            events.append(
                _input("moving_obstacles", DynamicObstacles(t * ms, ("m0",), (0.6,), (0.0,), (0.0,), (0.0,), (0.3,)))
            )
        if t == 2500:
            events.append(_input("localization", _fix(t * ms, 0.1)))
        events.append(_input("clock", Clock(t * ms)))
    node = MockNode(events)
    actuation.main(node)
    commands = [from_arrow(a, cls=Twist) for a in node.outputs["cmd_vel"]]
    speed_at = {c.t_ns // ms: c.linear[0] for c in commands}
    assert speed_at[1480] == pytest.approx(LIMITS.max_speed)
    assert speed_at[2480] == pytest.approx(LIMITS.max_speed * LIMITS.people_min_scale)
    assert speed_at[2980] <= LIMITS.max_speed * LIMITS.people_min_scale
    kinds = [from_arrow(a, cls=Event).kind for a in node.outputs["safety_events"]]
    assert kinds == ["people_slowdown", "localization_fallback"]


def _fix(t_ns: int, confidence: float, trigger: str = "periodic") -> LocalizationResult:
    cov = tuple(0.01 * (i == j) for i in range(6) for j in range(6))
    return LocalizationResult(
        t_ns, "map", True, (0.0, 0.0, 0.0), (0, 0, 0, 1.0), cov, confidence, 100, (), 0.3, trigger, ""
    )
