"""dora node `actuation`: the safety layer between any driver or planner and the wheels.

Inputs: `clock` (robot time), `cmd` (requested Twist), `estop` (EstopState; stops the robot while engaged) and,
in the navigation graph, `moving_obstacles` (what local perceives moving, in base_link: slower near people)
and `localization` (global's fixes: the confidence fallback). Outputs: `cmd_vel` (governed Twist, at
ASTRA_ACTUATION_HZ of robot time) and `safety_events` when a forced stop or a slowdown starts.
"""

from __future__ import annotations

from dora import Node

from models.safety import SafetyGovernor
from operators import config
from operators.episode_stream import sensor_lifetime_messages
from schemas.messages import (
    Clock,
    DynamicObstacles,
    EstopState,
    Event,
    LocalizationResult,
    Twist,
    to_arrow,
)


def main(node: Node | None = None) -> None:
    node = node or Node()
    governor = SafetyGovernor()
    period_ns = int(1e9 / config.actuation_hz())
    now_ns: int | None = None
    last_sent_ns: int | None = None
    last_reason: str | None = "watchdog_stop"  # held until the first command: not worth an event
    slowing: frozenset[str] = frozenset()
    for msg in sensor_lifetime_messages(node):
        if isinstance(msg, EstopState):
            governor.set_estop(msg.engaged)
        elif isinstance(msg, DynamicObstacles):
            governor.set_people(msg)
        elif isinstance(msg, LocalizationResult):
            governor.on_localization(msg)
        elif isinstance(msg, Twist) and now_ns is not None:
            governor.on_command(msg, now_ns)
        elif isinstance(msg, Clock):
            now_ns = msg.t_ns
            if last_sent_ns is not None and now_ns - last_sent_ns < period_ns:
                continue
            last_sent_ns = now_ns
            node.send_output("cmd_vel", *to_arrow(governor.step(now_ns)))
            reason = governor.stopping_reason
            started = {reason} - {last_reason, None} | (governor.slowing_reasons - slowing)
            for kind in sorted(started):
                node.send_output("safety_events", *to_arrow(Event(now_ns, kind, "actuation", "", 0.0)))
            last_reason, slowing = reason, governor.slowing_reasons


if __name__ == "__main__":
    main()
