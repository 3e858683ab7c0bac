"""dora node `actuation`: the safety layer between any driver or planner and the wheels.

Inputs: `clock` (robot time), `cmd` (requested Twist), `estop` (EstopState; stops the robot while engaged).
Outputs: `cmd_vel` (governed Twist, at ASTRA_ACTUATION_HZ of robot time) and `safety_events` when a
forced stop starts (watchdog or e-stop).
"""

from __future__ import annotations

from dora import Node

from models.safety import SafetyGovernor
from operators import config
from schemas.messages import Clock, EstopState, Event, Twist, from_arrow, to_arrow


def main(node: Node | None = None) -> None:
    node = node or Node()
    governor = SafetyGovernor()
    period_ns = int(1e9 / config.actuation_hz())
    now_ns: int | None = None
    last_sent_ns: int | None = None
    last_reason: str | None = "watchdog_stop"  # held until the first command: not worth an event
    for event in node:
        if event["type"] == "STOP":
            break
        if event["type"] != "INPUT":
            continue
        input_id = event["id"]
        if input_id == "estop":
            governor.set_estop(from_arrow(event["value"], event["metadata"], EstopState).engaged)
        elif input_id == "cmd" and now_ns is not None:
            governor.on_command(from_arrow(event["value"], event["metadata"], Twist), now_ns)
        elif input_id == "clock":
            now_ns = from_arrow(event["value"], event["metadata"], Clock).t_ns
            if last_sent_ns is not None and now_ns - last_sent_ns < period_ns:
                continue
            last_sent_ns = now_ns
            node.send_output("cmd_vel", *to_arrow(governor.step(now_ns)))
            reason = governor.stopping_reason
            if reason is not None and reason != last_reason:
                node.send_output("safety_events", *to_arrow(Event(now_ns, reason, "actuation", "", 0.0)))
            last_reason = reason


if __name__ == "__main__":
    main()
