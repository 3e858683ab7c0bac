"""dora node `sensor`: the robot's sensors, from the simulator (default) or replayed from an MCAP.

ASTRA_SENSOR=sim steps MuJoCo in real time, driven by `cmd_vel` (Twist from actuation); ASTRA_START places
the robot. ASTRA_SIM_TF=0 leaves /tf to the navigation stack: local publishes odom -> base_link from its
fused odometry, global map -> odom from localization (REP-105), and the truth stays on /ground_truth/odom.
ASTRA_SENSOR=replay plays ASTRA_REPLAY's recorded sensor topics at their recorded pace, for open-loop
debugging of the stack; `cmd_vel` is then ignored.

Besides the sensors it outputs `estop`, the e-stop button (ASTRA_ESTOP schedules presses), whenever its state
changes. The node paces itself with `next(timeout=...)` instead of a timer input: a machine too slow for real
time then runs the simulation slower, without dropped ticks. After ASTRA_SECONDS of robot time, or once a
`mission_status` input reports a final state, it publishes `episode_end` and waits for every ack named in
ASTRA_EPISODE_ACKS (or its input closing) before exiting, because dora drops messages still queued when a
source exits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from dora import Node

from operators import config
from operators.episode_stream import is_timeout, raise_if_error
from schemas.messages import (
    MISSION_FINAL_STATES,
    EstopState,
    Event,
    MissionStatus,
    Twist,
    from_arrow,
    to_arrow,
)
from schemas.topics import TICK_S

PROGRESS_EVERY_NS = 1_000_000_000
MISSION_END_GRACE_NS = 1_000_000_000  # after a final mission state, so that its last messages are recorded


class _SimulatedRobot:
    """The simulator, stepped TICK_S at a time."""

    def __init__(self, start_ns: int) -> None:
        from sim.simulator import SIGHTED, Simulator

        self.sim = Simulator(
            config.world_dir(),
            config.robot_config(),
            seed=config.episode_seed(),
            start_ns=start_ns,
            agent_sight=None if config.blind_agents() else SIGHTED,
        )
        if (start := config.start_pose()) is not None:
            self.sim.place(*start)
        self.site = self.sim.world.site

    @property
    def t_ns(self) -> int:
        return self.sim.t_ns

    def step(self, cmd: Twist | None) -> Iterator[tuple[str, object]]:
        yield from self.sim.advance(cmd, TICK_S)

    def close(self) -> None:
        self.sim.close()


class _ReplayedRobot:
    """A recording's sensor topics, TICK_S of robot time at a time, in their recorded stamps."""

    def __init__(self) -> None:
        from datasets.replay import replay_messages, replay_site

        path = config.replay_path()
        self.site = replay_site(path)
        self._messages = replay_messages(path)
        self._next = next(self._messages, None)
        self.t_ns = self._next[1].t_ns if self._next is not None else 0

    def step(self, cmd: Twist | None) -> Iterator[tuple[str, object]]:
        self.t_ns += int(TICK_S * 1e9)
        while self._next is not None and self._next[1].t_ns <= self.t_ns:
            yield self._next
            self._next = next(self._messages, None)

    def close(self) -> None:
        self._messages.close()


def main(node: Node | None = None) -> None:
    node = node or Node()
    robot = _SimulatedRobot(time.time_ns()) if config.sensor_backend() == "sim" else _ReplayedRobot()
    start_ns = robot.t_ns
    episode_ns = int(config.episode_seconds() * 1e9)  # 0: run until stopped
    pending_acks = config.episode_acks()
    estop = config.estop_schedule()
    sim_tf = config.sim_tf()
    estop_pressed: bool | None = None
    mission_over_ns: int | None = None

    def publish(output_id: str, msg: object) -> None:
        node.send_output(output_id, *to_arrow(msg))

    publish("events", Event(robot.t_ns, "episode_start", "sensor", robot.site, 0.0))
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
            elif event["type"] == "INPUT" and input_id == "mission_status":
                status = from_arrow(event["value"], event["metadata"], MissionStatus)
                if status.state in MISSION_FINAL_STATES and mission_over_ns is None:
                    mission_over_ns = robot.t_ns
            elif event["type"] in ("INPUT", "INPUT_CLOSED") and input_id in pending_acks:
                pending_acks.discard(input_id)
        if ended or time.monotonic() < next_step:
            continue
        # Falling behind real time slows the simulation down rather than bunching steps up.
        next_step = max(next_step + TICK_S, time.monotonic() - TICK_S)
        for output_id, msg in robot.step(cmd):
            if output_id != "tf" or sim_tf:
                publish(output_id, msg)
        cmd = None
        elapsed_ns = robot.t_ns - start_ns
        if (pressed := estop.pressed(elapsed_ns * 1e-9)) != estop_pressed:
            estop_pressed = pressed
            publish("estop", EstopState(robot.t_ns, pressed))
        if elapsed_ns % PROGRESS_EVERY_NS < TICK_S * 1e9:
            print(f"progress {elapsed_ns * 1e-9:.1f}", flush=True)  # `astra record` follows these for its bar
        mission_over = mission_over_ns is not None and robot.t_ns - mission_over_ns >= MISSION_END_GRACE_NS
        if mission_over or (episode_ns and elapsed_ns >= episode_ns):
            publish("events", Event(robot.t_ns, "episode_end", "sensor", robot.site, elapsed_ns * 1e-9))
            ended = True
    robot.close()


if __name__ == "__main__":
    main()
