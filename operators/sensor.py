"""dora node `sensor` (simulator backend): steps MuJoCo on each tick and publishes every sensor.

Inputs: `tick` (timer, one physics step of TICK_S), `cmd_vel` (Twist from actuation), and the
episode acknowledgements named in ASTRA_EPISODE_ACKS. After ASTRA_SECONDS of simulated time it
publishes an `episode_end` event and waits for every ack (or its input closing) before exiting:
dora drops messages still queued when a source exits.
"""

from __future__ import annotations

import os
import time

from dora import Node

from operators import config
from schemas.messages import Event, Twist, from_arrow, to_arrow
from sim.simulator import Simulator

TICK_S = 0.01
PROGRESS_EVERY_NS = 1_000_000_000


def main(node: Node | None = None) -> None:
    node = node or Node()
    start_ns = time.time_ns()
    sim = Simulator(config.world_dir(), config.robot_config(), seed=config.episode_seed(), start_ns=start_ns)
    episode_ns = int(float(os.environ.get("ASTRA_SECONDS", "0")) * 1e9)  # 0: run until stopped
    pending_acks = {a for a in os.environ.get("ASTRA_EPISODE_ACKS", "").split(",") if a}

    def publish(output_id: str, msg: object) -> None:
        node.send_output(output_id, *to_arrow(msg))

    cmd: Twist | None = None
    started = ended = False
    for event in node:
        kind, input_id = event["type"], event.get("id")
        if kind == "STOP":
            break
        if kind == "INPUT" and input_id == "tick" and not ended:
            if not started:
                publish("events", Event(sim.t_ns, "episode_start", "sensor", sim.world.site, 0.0))
                started = True
            for output_id, msg in sim.advance(cmd, TICK_S):
                publish(output_id, msg)
            cmd = None
            elapsed_ns = sim.t_ns - start_ns
            if elapsed_ns % PROGRESS_EVERY_NS < int(TICK_S * 1e9):
                print(f"progress {elapsed_ns * 1e-9:.1f}", flush=True)  # read by `astra record`
            if episode_ns and elapsed_ns >= episode_ns:
                publish("events", Event(sim.t_ns, "episode_end", "sensor", sim.world.site, elapsed_ns * 1e-9))
                ended = True
        elif kind == "INPUT" and input_id == "cmd_vel":
            cmd = from_arrow(event["value"], event["metadata"], Twist)
        elif kind in ("INPUT", "INPUT_CLOSED") and input_id in pending_acks:
            pending_acks.discard(input_id)
        if ended and not pending_acks:
            break
    sim.close()


if __name__ == "__main__":
    main()
