"""An expert tour driven in-process: the simulator's outputs while the expert drives, as fast as the sim runs.

Tests and benchmarks need minutes of real driving; the dataflow paces itself to the wall clock, this loop does
not. `datasets.tours.record_tour` writes such a tour to MCAP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from schemas.messages import Event
from sim.expert import ExpertDriver
from sim.simulator import Simulator

STEP_S = 0.05  # the expert's command period


def drive_tour(sim: Simulator, expert: ExpertDriver, seconds: float) -> Iterator[tuple[str, Any]]:
    """The simulator's outputs (output id, message) while the expert drives until `seconds` of sim time, and an
    `events` message as each of the expert's perturbations starts."""
    avoid = bool(expert.world.agents)
    schedule = expert.perturbations
    while sim.t_ns < seconds * 1e9:
        started = len(schedule.drawn) if schedule is not None else 0
        command = expert.command(sim.t_ns, sim.pose(), sim.obstacles() if avoid else None)
        if schedule is not None and len(schedule.drawn) > started:
            bend = schedule.drawn[-1]
            left_s = bend.start_s + bend.duration_s - sim.t_ns * 1e-9
            yield "events", Event(sim.t_ns, "perturbation", "expert", bend.kind, left_s)
        yield from sim.advance(command, STEP_S)
