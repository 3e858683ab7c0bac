"""An expert tour driven in-process: the simulator's outputs while the expert drives, as fast as the sim runs.

Tests and benchmarks need minutes of real driving; the dataflow paces itself to the wall clock, this loop does
not. `datasets.tours.record_tour` writes such a tour to MCAP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sim.expert import ExpertDriver
from sim.simulator import Simulator

STEP_S = 0.05  # the expert's command period


def drive_tour(sim: Simulator, expert: ExpertDriver, seconds: float) -> Iterator[tuple[str, Any]]:
    """The simulator's outputs (output id, message) while the expert drives until `seconds` of sim time."""
    avoid = bool(expert.world.agents)
    while sim.t_ns < seconds * 1e9:
        command = expert.command(sim.t_ns, sim.pose(), sim.obstacles() if avoid else None)
        yield from sim.advance(command, STEP_S)
