"""MCAP episode recordings: every topic decodes with mcap-ros2-support, /tf and /tf_static are written as
ROS 2 writes them, and a killed writer loses only its unfinished chunk."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from mcap.exceptions import EndOfFile
from mcap.reader import make_reader
from mcap.records import Message
from mcap.stream_reader import StreamReader
from mcap_ros2.decoder import DecoderFactory

from datasets.recording import EpisodeWriter, summarize
from datasets.tours import record_tour
from pipelines.staging import identify_source, read_episode
from schemas.episode import EPISODE_METADATA_NAME, WORLD_ATTACHMENT_NAME, EpisodeMetadata
from schemas.robot import RobotConfig
from schemas.ros2_rows import stamp_ns
from schemas.topics import BY_OUTPUT, CAMERAS, TOPICS, camera_frame
from schemas.world import World
from sim.robot import draw_sensor_errors
from tests.conftest import T0, sample_message

ROS2_BAG = Path(__file__).resolve().parents[2] / "shared" / "external" / "ros2" / "nav2_turtlebot.mcap"
BASE = "base_link"
STATIC_FRAMES = sorted(["imu_link", *map(camera_frame, CAMERAS)])  # every mount on base_link

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


def test_tour_has_one_tf_per_stamp_and_one_latched_tf_static(office_world: Path, tmp_path: Path) -> None:
    config = RobotConfig(camera_width=32, camera_height=24)
    path = record_tour(office_world, tmp_path / "tour.mcap", seconds=1.0, config=config)
    messages: dict[str, list] = defaultdict(list)
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        channels = {c.topic: c for c in reader.get_summary().channels.values()}
        for _, channel, message, decoded in reader.iter_decoded_messages(topics=["/tf", "/tf_static", "/odom"]):
            messages[channel.topic].append((message.log_time, decoded))

    odom_stamps = [t for t, _ in messages["/odom"]]
    assert len(odom_stamps) == 51
    assert [t for t, _ in messages["/tf"]] == odom_stamps
    for t, tf in messages["/tf"]:
        assert [(x.header.frame_id, x.child_frame_id) for x in tf.transforms] == [("map", "odom"), ("odom", BASE)]
        assert {stamp_ns(x.header.stamp) for x in tf.transforms} == {t}
    [(t, static)] = messages["/tf_static"]
    assert t == odom_stamps[0]
    mounts = sorted((x.header.frame_id, x.child_frame_id) for x in static.transforms)
    assert mounts == [(BASE, frame) for frame in STATIC_FRAMES]
    [latched] = yaml.safe_load(channels["/tf_static"].metadata["offered_qos_profiles"])
    assert (latched["durability"], latched["history"], latched["depth"]) == ("transient_local", "keep_last", 1)
    [volatile] = yaml.safe_load(channels["/tf"].metadata["offered_qos_profiles"])
    assert volatile["durability"] == "volatile"

    # The lake's tf table keeps one row per transform.
    tf = read_episode(identify_source(str(path)))["tf"].to_pylist()
    assert sum(not row["static"] for row in tf) == 2 * len(odom_stamps)
    assert sorted(row["child_frame_id"] for row in tf if row["static"]) == STATIC_FRAMES


def test_tour_metadata_records_the_episode_sensor_errors(office_world: Path, tmp_path: Path) -> None:
    config = RobotConfig(camera_width=32, camera_height=24)
    path = record_tour(office_world, tmp_path / "tour.mcap", seconds=0.1, config=config, seed=7)
    with open(path, "rb") as f:
        record = next(dict(r.metadata) for r in make_reader(f).iter_metadata() if r.name == EPISODE_METADATA_NAME)
    errors = json.loads(EpisodeMetadata.from_record(record).sensor_errors)
    # What the dataflow's recorder stores: the simulator's draws, made again from the episode seed.
    rooms = [room.id for room in World.load(office_world).rooms]
    assert errors == json.loads(draw_sensor_errors(config.noise, 7, rooms).to_json())
    assert errors["noise"] == json.loads(json.dumps(asdict(config.noise)))
    assert set(errors) >= {"wheel_radius_scale", "wheel_separation_scale", "accel_bias", "gyro_bias", "room_light"}
    assert errors["wheel_radius_scale"] != [1.0, 1.0]


def test_metadata_recorded_before_sensor_errors_still_reads() -> None:
    record = METADATA.to_record()
    del record["sensor_errors"]
    assert EpisodeMetadata.from_record(record) == METADATA
    with pytest.raises(KeyError):
        EpisodeMetadata.from_record({k: v for k, v in record.items() if k != "site"})


@pytest.mark.skipif(not ROS2_BAG.is_file(), reason=f"no ROS 2 bag at {ROS2_BAG}")
def test_tf_static_channel_metadata_is_what_rosbag2_writes(tmp_path: Path) -> None:
    path = tmp_path / "episode.mcap"
    writer = EpisodeWriter(path, METADATA)
    writer.write("tf_static", sample_message("tf_static"))
    writer.close()
    channels = {}
    for recording in (path, ROS2_BAG):
        with open(recording, "rb") as f:
            summary = make_reader(f).get_summary()
        channels[recording] = next(c for c in summary.channels.values() if c.topic == "/tf_static")
    key = "offered_qos_profiles"
    assert channels[path].metadata[key] == channels[ROS2_BAG].metadata[key]


_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from datasets.recording import EpisodeWriter
    from schemas.episode import EpisodeMetadata
    from tests.conftest import T0, sample_message
    # chunk_size=1: each message closes its own chunk, so every message written is in a finished chunk.
    writer = EpisodeWriter(sys.argv[1], EpisodeMetadata("r", "s", "office", 0, 0, "0", 4, 3), chunk_size=1)
    for i in range(int(sys.argv[2])):
        writer.write("imu", sample_message("imu", T0 + i * 10_000_000))
    print("written", flush=True)
    sys.stdin.read()  # write nothing more until killed: only what the writer flushed can reach the file
    """
)
KILLED_AFTER = 200  # messages


def test_killed_recorder_leaves_finished_chunks_readable(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    args = [sys.executable, "-c", _KILLED_WRITER, str(path), str(KILLED_AFTER)]
    cwd = Path(__file__).parents[1]
    with subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd) as proc:
        try:
            marker = proc.stdout.readline()
        finally:
            proc.send_signal(signal.SIGKILL)  # no chance to flush or close, as in a crash
    assert marker == "written\n"

    log_times: list[int] = []
    with open(path, "rb") as f:
        try:
            for record in StreamReader(f).records:
                if isinstance(record, Message):
                    log_times.append(record.log_time)
        except EndOfFile:  # no summary or footer: the writer never closed
            pass
    assert log_times == [T0 + i * 10_000_000 for i in range(KILLED_AFTER)]


def test_astra_sim_tours_records_each_building_without_depth_and_keeps_tours_already_recorded(tmp_path: Path) -> None:
    astra = Path(sys.executable).parent / "astra"
    argv = [astra, "sim", "tours", "--kinds", "home", "--seeds", "3", "--tours", "2", "--seconds", "1"]
    argv += ["--camera-width", "32", "--camera-height", "24", "--out", str(tmp_path)]
    first = subprocess.run(argv, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads(first.stdout.splitlines()[-1])["tours"] == 2
    tours = sorted(tmp_path.glob("*/tour-*.mcap"))
    assert [p.relative_to(tmp_path).as_posix() for p in tours] == ["home-3/tour-0.mcap", "home-3/tour-1.mcap"]
    with open(tours[0], "rb") as f:
        topics = {c.topic for c in make_reader(f).get_summary().channels.values()}
    assert topics >= {BY_OUTPUT[f"image_{c}"].ros_topic for c in CAMERAS}
    assert not topics & {BY_OUTPUT[f"depth_{c}"].ros_topic for c in CAMERAS}
    recorded = [p.stat().st_mtime_ns for p in tours]
    again = subprocess.run(argv, capture_output=True, text=True)
    assert again.returncode == 0 and [p.stat().st_mtime_ns for p in tours] == recorded
