"""dora node `sensor` (simulator backend): steps MuJoCo in real time and publishes every sensor.

Inputs: `cmd_vel` (Twist from actuation) and the episode acknowledgements named in
ASTRA_EPISODE_ACKS. Besides the sensors it outputs `estop`, the e-stop button (ASTRA_ESTOP schedules
presses), whenever its state changes. The node paces itself with `next(timeout=...)` instead of a timer input: a
machine too slow for real time then runs the simulation slower, without dropped ticks. After
ASTRA_SECONDS of simulated time it publishes `episode_end` and waits for every ack (or its input
closing) before exiting, because dora drops messages still queued when a source exits.
"""

from __future__ import annotations

import time

from dora import Node

from operators import config
from operators.episode_stream import is_timeout, raise_if_error
from schemas.messages import EstopState, Event, Twist, from_arrow, to_arrow
from sim.simulator import Simulator

TICK_S = 0.01
PROGRESS_EVERY_NS = 1_000_000_000


def main(node: Node | None = None) -> None:
    node = node or Node()
    start_ns = time.time_ns()
    sim = Simulator(config.world_dir(), config.robot_config(), seed=config.episode_seed(), start_ns=start_ns)
    episode_ns = int(config.episode_seconds() * 1e9)  # 0: run until stopped
    pending_acks = config.episode_acks()
    estop = config.estop_schedule()
    estop_pressed: bool | None = None

    def publish(output_id: str, msg: object) -> None:
        node.send_output(output_id, *to_arrow(msg))

    publish("events", Event(sim.t_ns, "episode_start", "sensor", sim.world.site, 0.0))
    cmd: Twist | None = None
    ended = False
    next_step = time.monotonic()
    while not (ended and not pending_acks):
        event = node.next(timeout=max(0.0, next_step - time.monotonic()) if not ended else 1.0)
        if event is None or event["type"] == "STOP":
            break
        if not is_timeout(event):
            raise_if_error(event)
            input_id = event.get("id")
            if event["type"] == "INPUT" and input_id == "cmd_vel":
                cmd = from_arrow(event["value"], event["metadata"], Twist)
            elif event["type"] in ("INPUT", "INPUT_CLOSED") and input_id in pending_acks:
                pending_acks.discard(input_id)
        if ended or time.monotonic() < next_step:
            continue
        # Falling behind real time slows the simulation down rather than bunching steps up.
        next_step = max(next_step + TICK_S, time.monotonic() - TICK_S)
        for output_id, msg in sim.advance(cmd, TICK_S):
            publish(output_id, msg)
        cmd = None
        elapsed_ns = sim.t_ns - start_ns
        if (pressed := estop.pressed(elapsed_ns * 1e-9)) != estop_pressed:
            estop_pressed = pressed
            publish("estop", EstopState(sim.t_ns, pressed))
        if elapsed_ns % PROGRESS_EVERY_NS < TICK_S * 1e9:
            print(f"progress {elapsed_ns * 1e-9:.1f}", flush=True)  # `astra record` follows these for its bar
        if episode_ns and elapsed_ns >= episode_ns:
            publish("events", Event(sim.t_ns, "episode_end", "sensor", sim.world.site, elapsed_ns * 1e-9))
            ended = True
    sim.close()


if __name__ == "__main__":
    main()
