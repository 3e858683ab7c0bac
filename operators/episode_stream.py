"""The episode event loop shared by sink nodes (recorder, viz)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from schemas.messages import Event, from_arrow

# After `episode_end`, inputs from other nodes may still be in flight (dora orders messages per
# input, not across inputs): keep reading until nothing arrives for this long.
QUIET_S = 0.5


def episode_messages(node: Any, quiet_s: float = QUIET_S) -> Iterator[tuple[str, Any]]:
    """Yield (input_id, message) until STOP, or until inputs go quiet after an `episode_end` event."""
    ending = False
    while True:
        event = node.next(timeout=quiet_s) if ending else node.next()
        if event is None or event["type"] == "STOP":
            return
        if event["type"] != "INPUT":
            continue
        msg = from_arrow(event["value"], event["metadata"])
        yield event["id"], msg
        if isinstance(msg, Event) and msg.kind == "episode_end":
            ending = True
