"""Message formats: the arrow transport used between dora nodes."""

from __future__ import annotations

import pytest

from schemas.messages import MESSAGE_TYPES, from_arrow, to_arrow
from schemas.topics import TOPICS
from tests.conftest import sample_message


@pytest.mark.parametrize("output_id", [t.output_id for t in TOPICS])
def test_arrow_round_trip(output_id: str) -> None:
    msg = sample_message(output_id)
    array, metadata = to_arrow(msg)
    assert metadata == {"kind": type(msg).__name__, "t_ns": msg.t_ns}
    assert from_arrow(array, metadata) == msg
    assert from_arrow(array, cls=type(msg)) == msg


def test_from_arrow_rejects_unknown_kind_and_multi_row() -> None:
    array, _ = to_arrow(sample_message("clock"))
    with pytest.raises(ValueError, match="unknown message kind"):
        from_arrow(array, {"kind": "Nope"})
    with pytest.raises(ValueError, match="one-row"):
        from_arrow(array.take([0, 0]), cls=MESSAGE_TYPES["Clock"])


def test_to_arrow_rejects_unregistered_types() -> None:
    with pytest.raises(TypeError, match="not a registered message type"):
        to_arrow(object())
