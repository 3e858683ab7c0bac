"""A recording's sensor topics as the sensor node publishes them, for replay into the navigation graph.

Only the topics the simulator publishes are replayed (schemas.topics names their outputs), in log-time order;
anything the recording's own stack computed (commands, plans, localization) is left out, since the graph
under test computes it afresh.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from schemas.episode import EPISODE_METADATA_NAME
from schemas.ros2 import from_ros2
from schemas.topics import BY_OUTPUT, CAMERAS

SENSOR_OUTPUTS = (
    "clock",
    "imu",
    "wheels",
    "odom",
    "ground_truth",
    "tf",
    "tf_static",
    "obstacles",
    *(f"{kind}_{camera}" for camera in CAMERAS for kind in ("image", "depth", "camera_info")),
)
_OUTPUT_OF_TOPIC = {BY_OUTPUT[o].ros_topic: o for o in SENSOR_OUTPUTS}


def replay_site(path: Path) -> str:
    """The site a recording was made at, from its episode metadata; "replay" when it has none."""
    with open(path, "rb") as stream:
        for record in make_reader(stream).iter_metadata():
            if record.name == EPISODE_METADATA_NAME:
                return record.metadata.get("site", "replay")
    return "replay"


def replay_messages(path: Path) -> Iterator[tuple[str, object]]:
    """(output id, message) of every sensor message in the recording, in log-time order."""
    with open(path, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, _, decoded in reader.iter_decoded_messages(
            topics=list(_OUTPUT_OF_TOPIC), log_time_order=True
        ):
            yield _OUTPUT_OF_TOPIC[channel.topic], from_ros2(schema.name, decoded)
