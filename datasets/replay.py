"""A recording's topics as the nodes published them: the sensors' for replay into the navigation graph, and
every topic for `astra viz episode`.

Replay takes only the topics the simulator publishes (schemas.topics names their outputs), in log-time order;
anything the recording's own stack computed (commands, plans, localization) is left out, since the graph
under test computes it afresh. `recorded_messages` takes every topic in file order, the order the recorder got
them in, one chunk at a time and past damage, as a recorder killed mid-episode leaves its file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mcap.reader import make_reader
from mcap.records import Attachment, Message
from mcap_ros2.decoder import DecoderFactory

from datasets.mcap_reader import SalvagingReader
from schemas.episode import EPISODE_METADATA_NAME, WORLD_ATTACHMENT_NAME
from schemas.ros2 import from_ros2
from schemas.topics import BY_OUTPUT, CAMERAS, TOPICS
from schemas.world import World

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
# Outputs that share a topic (/tf) read back as the first of them: the viz tells them apart by their frames.
_FIRST_OUTPUT_OF_TOPIC = {t.ros_topic: t.output_id for t in reversed(TOPICS)}


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


def replay_world(path: Path) -> World | None:
    """The building a recording was made in, from its world.json; None without one. The recorder attaches it
    before any message, so the search ends at the first message."""
    with open(path, "rb") as stream:
        for record in SalvagingReader(stream).records():
            if isinstance(record, Message):
                break
            if isinstance(record, Attachment) and record.name == WORLD_ATTACHMENT_NAME:
                return World.from_json(record.data.decode())
    return None


def recorded_messages(reader: SalvagingReader) -> Iterator[tuple[str, object]]:
    """(output id, message) of every message on a schemas.topics topic, of its type, that the file still holds,
    in file order; what is damaged lands in `reader.damage`."""
    decoders = DecoderFactory()
    for record in reader.records():
        channel = reader.channels.get(record.channel_id) if isinstance(record, Message) else None
        output_id = _FIRST_OUTPUT_OF_TOPIC.get(channel.topic) if channel else None
        schema = reader.schemas.get(channel.schema_id) if output_id else None
        if schema is None or schema.name != BY_OUTPUT[output_id].ros_type:
            continue
        decode = decoders.decoder_for(channel.message_encoding, schema)  # None unless CDR with a ROS 2 schema
        if decode is not None:
            yield output_id, from_ros2(schema.name, decode(record.data), record.log_time)
