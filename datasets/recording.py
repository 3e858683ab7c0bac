"""Episode recordings: write our messages to MCAP with ROS 2 encodings, and summarize a recording.

The writer flushes each finished chunk to the OS at once, so a killed recorder leaves every
chunk written before the kill readable; a clean `close()` adds the summary and footer.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcap.reader import make_reader
from mcap.well_known import MessageEncoding, Profile, SchemaEncoding
from mcap.writer import Writer
from mcap_ros2._dynamic import serialize_dynamic  # mcap_ros2's own CDR encoder: its Writer sets no channel metadata
from mcap_ros2.decoder import DecoderFactory

from schemas.episode import EPISODE_METADATA_NAME, WORLD_ATTACHMENT_MEDIA_TYPE, WORLD_ATTACHMENT_NAME, EpisodeMetadata
from schemas.ros2 import channel_metadata, message_definition, to_ros2
from schemas.topics import BY_OUTPUT, Topic


class _ChunkFlushingFile(io.BufferedWriter):
    """MCAP writes whole records (a chunk and its indexes) per call: push each to the OS at once."""

    def write(self, data: Any) -> int:
        written = super().write(data)
        self.flush()
        return written


class EpisodeWriter:
    """Writes one episode to an MCAP file: zstd chunks with indexes, metadata and world.json."""

    def __init__(
        self,
        path: Path,
        metadata: EpisodeMetadata,
        world_json: bytes | None = None,
        start_ns: int = 0,
        chunk_size: int = 1 << 20,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = _ChunkFlushingFile(io.FileIO(self.path, "w"))
        self._writer = Writer(self._file, chunk_size=chunk_size)
        self._writer.start(profile=Profile.ROS2)
        self._schemas: dict[str, tuple[int, Callable[[Any], bytes]]] = {}  # ROS 2 type -> schema id, CDR encoder
        self._channels: dict[str, tuple[int, Callable[[Any], bytes]]] = {}  # ROS 2 topic -> channel id, encoder
        self.counts: Counter[str] = Counter()
        self._writer.add_metadata(EPISODE_METADATA_NAME, metadata.to_record())
        if world_json is not None:
            self._writer.add_attachment(
                create_time=start_ns,
                log_time=start_ns,
                name=WORLD_ATTACHMENT_NAME,
                media_type=WORLD_ATTACHMENT_MEDIA_TYPE,
                data=world_json,
            )
        self.closed = False

    def write(self, output_id: str, msg: Any) -> None:
        """Write a message published on dora output `output_id` (see schemas.topics)."""
        topic = BY_OUTPUT.get(output_id)
        if topic is None:
            raise KeyError(f"no recorded topic for output {output_id!r}; add it to schemas/topics.py")
        channel_id, encode = self._channels.get(topic.ros_topic) or self._register_channel(topic)
        self._writer.add_message(channel_id, log_time=msg.t_ns, data=encode(to_ros2(msg)), publish_time=msg.t_ns)
        self.counts[topic.ros_topic] += 1

    def _register_channel(self, topic: Topic) -> tuple[int, Callable[[Any], bytes]]:
        """The topic's channel, with the QoS metadata `ros2 bag record` writes; its type's schema once per file."""
        if topic.ros_type not in self._schemas:
            definition = message_definition(topic.ros_type)
            schema_id = self._writer.register_schema(topic.ros_type, SchemaEncoding.ROS2, definition.encode())
            encode = serialize_dynamic(topic.ros_type, definition)[topic.ros_type]
            self._schemas[topic.ros_type] = (schema_id, encode)
        schema_id, encode = self._schemas[topic.ros_type]
        metadata = channel_metadata(topic)
        channel_id = self._writer.register_channel(topic.ros_topic, MessageEncoding.CDR, schema_id, metadata)
        self._channels[topic.ros_topic] = (channel_id, encode)
        return channel_id, encode

    def close(self) -> None:
        if not self.closed:
            self._writer.finish()
            self._file.close()
            self.closed = True


@dataclass
class TopicStats:
    count: int = 0
    first_ns: int | None = None
    last_ns: int | None = None

    @property
    def rate_hz(self) -> float:
        if self.count < 2 or self.last_ns == self.first_ns:
            return 0.0
        return (self.count - 1) / ((self.last_ns - self.first_ns) * 1e-9)


@dataclass
class EpisodeSummary:
    path: str
    metadata: dict[str, str]
    duration_s: float
    distance_m: float
    collisions: int
    topics: dict[str, TopicStats] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "metadata": self.metadata,
            "duration_s": round(self.duration_s, 3),
            "distance_m": round(self.distance_m, 3),
            "collisions": self.collisions,
            "topics": {
                name: {"count": s.count, "rate_hz": round(s.rate_hz, 2)} for name, s in sorted(self.topics.items())
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


_GROUND_TRUTH = BY_OUTPUT["ground_truth"].ros_topic
_EVENTS = BY_OUTPUT["events"].ros_topic


def summarize(path: Path) -> EpisodeSummary:
    """Per-topic counts and rates, duration, ground-truth distance and collisions of a recording."""
    topics: dict[str, TopicStats] = defaultdict(TopicStats)
    distance, collisions, last_xy = 0.0, 0, None
    decoders = DecoderFactory()
    with open(path, "rb") as f:
        reader = make_reader(f)
        metadata = next((dict(r.metadata) for r in reader.iter_metadata() if r.name == EPISODE_METADATA_NAME), {})
        for schema, channel, message in reader.iter_messages(log_time_order=True):
            stats = topics[channel.topic]
            stats.count += 1
            stats.first_ns = message.log_time if stats.first_ns is None else stats.first_ns
            stats.last_ns = message.log_time
            if channel.topic == _GROUND_TRUTH:
                pose = decoders.decoder_for(channel.message_encoding, schema)(message.data).pose.pose
                xy = (pose.position.x, pose.position.y)
                if last_xy is not None:
                    distance += math.dist(xy, last_xy)
                last_xy = xy
            elif channel.topic == _EVENTS:
                collisions += decoders.decoder_for(channel.message_encoding, schema)(message.data).kind == "collision"
    starts = [s.first_ns for s in topics.values() if s.first_ns is not None]
    ends = [s.last_ns for s in topics.values() if s.last_ns is not None]
    duration = (max(ends) - min(starts)) * 1e-9 if starts else 0.0
    return EpisodeSummary(str(path), metadata, duration, distance, collisions, dict(topics))
