"""Event-loop helpers shared by the nodes: timeouts, the episode loop of sink nodes, the loop of the stack's nodes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from schemas.messages import Event, from_arrow

# After `episode_end`, inputs from other nodes may still be in flight (dora orders messages per
# input, not across inputs): keep reading until nothing arrives for this long.
QUIET_S = 0.5


def is_timeout(event: dict[str, Any] | None) -> bool:
    """dora 1.1 reports `node.next(timeout=...)` running out as an ERROR event, not as None."""
    return event is not None and event["type"] == "ERROR" and "timed out" in str(event.get("error", ""))


def raise_if_error(event: dict[str, Any]) -> None:
    if event["type"] == "ERROR" and not is_timeout(event):
        raise RuntimeError(f"dora error event: {event.get('error')}")


def episode_messages(node: Any, quiet_s: float = QUIET_S) -> Iterator[tuple[str, Any]]:
    """Yield (input_id, message) until STOP, or until inputs go quiet after an `episode_end` event."""
    ending = False
    while True:
        event = node.next(timeout=quiet_s) if ending else node.next()
        if event is None or event["type"] == "STOP" or (ending and is_timeout(event)):
            return
        raise_if_error(event)
        if event["type"] != "INPUT":
            continue
        msg = from_arrow(event["value"], event["metadata"])
        yield event["id"], msg
        if isinstance(msg, Event) and msg.kind == "episode_end":
            ending = True


def sensor_lifetime_messages(node: Any) -> Iterator[Any]:
    """Every input message until STOP, or until the sensor's `clock` closes: in the navigation graph's cycles no
    other input would ever close, so nodes that only translate messages end with the sensor."""
    for event in node:
        if event["type"] == "STOP" or (event["type"] == "INPUT_CLOSED" and event["id"] == "clock"):
            return
        if event["type"] == "INPUT":
            yield from_arrow(event["value"], event["metadata"])
