"""MCAP episode recordings: every topic decodes with mcap-ros2-support, and a killed writer loses
only its unfinished chunk."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.stream_reader import StreamReader
from mcap_ros2.decoder import DecoderFactory

from datasets.recording import EpisodeWriter, summarize
from schemas.episode import EPISODE_METADATA_NAME, WORLD_ATTACHMENT_NAME, EpisodeMetadata
from schemas.topics import BY_OUTPUT, TOPICS
from tests.conftest import T0, sample_message

METADATA = EpisodeMetadata("robot-7", "office-3", "office", 3, 11, "0.1.0", 320, 240)


def test_every_topic_decodes_with_metadata_and_attachment(tmp_path: Path, all_topic_messages) -> None:
    path = tmp_path / "episode.mcap"
    writer = EpisodeWriter(path, METADATA, world_json=b'{"kind": "office"}', start_ns=T0)
    for output_id, msg in all_topic_messages:
        writer.write(output_id, msg)
    writer.close()

    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert summary.statistics.message_count == len(TOPICS)
        assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
        assert {s.encoding for s in summary.schemas.values()} == {"ros2msg"}
        assert all(ci.compression == "zstd" for ci in summary.chunk_indexes)
        decoded = {channel.topic: (schema.name, msg) for schema, channel, _, msg in reader.iter_decoded_messages()}
        assert decoded.keys() == {t.ros_topic for t in TOPICS}
        for topic in TOPICS:
            assert decoded[topic.ros_topic][0] == topic.ros_type
        metadata = {r.name: dict(r.metadata) for r in reader.iter_metadata()}
        assert EpisodeMetadata.from_record(metadata[EPISODE_METADATA_NAME]) == METADATA
        attachments = {a.name: a.data for a in reader.iter_attachments()}
        assert json.loads(attachments[WORLD_ATTACHMENT_NAME]) == {"kind": "office"}

    gt = decoded[BY_OUTPUT["ground_truth"].ros_topic][1]
    assert gt.header.frame_id == "map" and gt.child_frame_id == "base_link"
    depth = decoded[BY_OUTPUT["depth_front"].ros_topic][1]
    assert (depth.encoding, depth.width, depth.height, depth.step) == ("32FC1", 4, 3, 16)
    assert bytes(depth.data) == sample_message("depth_front").data


def test_summary_counts_rates_distance_and_collisions(tmp_path: Path) -> None:
    path = tmp_path / "episode.mcap"
    writer = EpisodeWriter(path, METADATA)
    for i in range(101):  # 2 s at 50 Hz along x
        t = T0 + i * 20_000_000
        gt = sample_message("ground_truth", t)
        writer.write(
            "ground_truth",
            type(gt)(
                t, "map", "base_link", (0.01 * i, 0.0, 0.0), gt.orientation, gt.linear_velocity, gt.angular_velocity
            ),
        )
    writer.write("events", sample_message("events", T0 + 500_000_000))
    writer.write("safety_events", sample_message("safety_events", T0 + 600_000_000))
    writer.close()
    summary = summarize(path)
    assert summary.collisions == 1
    assert abs(summary.distance_m - 1.0) < 1e-9
    assert abs(summary.duration_s - 2.0) < 1e-9
    assert abs(summary.topics["/ground_truth/odom"].rate_hz - 50.0) < 1e-6
    assert summary.metadata["robot_id"] == "robot-7"


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from datasets.recording import EpisodeWriter
    from schemas.episode import EpisodeMetadata
    from tests.conftest import T0, sample_message
    writer = EpisodeWriter(sys.argv[1], EpisodeMetadata("r", "s", "office", 0, 0, "0", 4, 3), chunk_size=4096)
    i = 0
    while True:
        writer.write("imu", sample_message("imu", T0 + i * 10_000_000))
        i += 1
        if i == 2000:
            print("written", flush=True)
        if i > 2000:
            time.sleep(0.001)
    """
)


def test_killed_recorder_leaves_finished_chunks_readable(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert proc.stdout.readline().strip() == "written"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    messages = 0
    with open(path, "rb") as f:
        try:
            for record in StreamReader(f, skip_magic=False).records:
                messages += type(record).__name__ == "Message"
        except (struct.error, McapError):  # the torn record after the last whole chunk
            pass
    assert messages >= 2000 - 4096 // 100  # at most one chunk's worth (~100 B per message) is lost
