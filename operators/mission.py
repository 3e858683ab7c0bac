"""dora node `mission`: gives global the goal in words (ASTRA_GOAL) and reports how the mission goes.

Inputs: `clock` (robot time) and `mission_status` (from global). Output: `mission_goal`, re-sent every
RESEND_S until global answers, since global may still be loading its map when the graph starts. Each status
is printed as one line, `mission <state> ...`, which `astra navigate` follows.
"""

from __future__ import annotations

from dora import Node

from operators import config
from operators.episode_stream import sensor_lifetime_messages
from schemas.messages import Clock, MissionGoal, MissionStatus, to_arrow

RESEND_S = 2.0


def main(node: Node | None = None) -> None:
    node = node or Node()
    text = config.goal_text()
    mission_id = f"{config.robot_config().robot_id}-{config.episode_seed()}"
    answered = False
    last_sent_ns: int | None = None
    for msg in sensor_lifetime_messages(node):
        if isinstance(msg, Clock) and not answered:
            if last_sent_ns is None or msg.t_ns - last_sent_ns >= RESEND_S * 1e9:
                last_sent_ns = msg.t_ns
                node.send_output("mission_goal", *to_arrow(MissionGoal(msg.t_ns, mission_id, text)))
        elif isinstance(msg, MissionStatus) and msg.mission_id == mission_id:
            answered = True
            print(f"mission {msg.state} goal={msg.goal_label!r} room={msg.goal_room!r} {msg.detail}", flush=True)


if __name__ == "__main__":
    main()
