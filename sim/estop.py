"""The simulated robot's e-stop button: held down over scheduled intervals of simulated time.

A real base reports its hardware button through its driver; the simulator stands in with a schedule,
so that tests and scenarios can press it at known times.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EstopSchedule:
    """Intervals [start, end) of seconds since the episode started during which the button is held."""

    intervals: tuple[tuple[float, float], ...] = ()

    @classmethod
    def parse(cls, text: str) -> EstopSchedule:
        """Parse "START-END[,START-END...]" in seconds, e.g. "4-6,20-21.5"; an empty text never presses."""
        intervals = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            try:
                start, end = (float(x) for x in part.split("-"))
            except ValueError:
                raise ValueError(f"e-stop interval {part!r} is not START-END in seconds") from None
            if not 0 <= start < end:
                raise ValueError(f"e-stop interval {part!r} must have 0 <= START < END")
            intervals.append((start, end))
        return cls(tuple(intervals))

    def pressed(self, elapsed_s: float) -> bool:
        return any(start <= elapsed_s < end for start, end in self.intervals)
