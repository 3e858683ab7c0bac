"""`astra ingest`: our recordings and real ROS 2 bags land in typed lake tables with the right values;
damaged files are salvaged and quarantined without stopping the run; re-ingesting changes nothing;
Dask gives the same lake as the DirectRunner."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import zstandard
from deltalake import DeltaTable
from mcap.data_stream import RecordBuilder
from mcap.records import Channel, Chunk, DataEnd, Footer, McapRecord, Message
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.writer import MCAP0_MAGIC
from mcap.writer import Writer as McapWriter
from mcap_ros2.writer import Writer as ROS2Writer

from datasets.lake import EXAMPLE_QUERIES, Lake
from datasets.lake_tables import commit_files, vacuum
from datasets.log_files import list_logs
from datasets.mcap_reader import SalvagingReader, chunk_records
from datasets.recording import EpisodeWriter, summarize
from pipelines.ingest import ingest
from pipelines.staging import (
    BatchBounds,
    EpisodeStream,
    StagingRun,
    identify_source,
    read_episode,
    staging_processes,
)
from schemas import messages as m
from schemas.episode import EpisodeMetadata
from schemas.lake import QUARANTINE_DIR, ROS2_TABLES, STAGING_DIR, TABLES
from schemas.ros2_rows import CONVERTERS
from schemas.topics import BY_OUTPUT
from tests.conftest import T0, sample_message
from tests.log_formats import split_rosbag2, to_ros1_bag

ROS2_BAGS = Path(__file__).resolve().parents[2] / "shared" / "external" / "ros2"
BAG_COUNTS = {
    "nav2_turtlebot.mcap": {"/odom": 2639, "/tf": 5422, "/tf_static": 1, "/amcl_pose": 135},
    "turtlebot3_sim.mcap": {"/cmd_vel": 2335, "/imu": 2253, "/odom": 2741, "/scan": 457, "/joint_states": 2741},
    "jackal_imu_odom.mcap": {"/imu/data": 3061, "/jackal_velocity_controller/odom": 3060},
}
needs_bags = pytest.mark.skipif(not ROS2_BAGS.is_dir(), reason=f"no ROS 2 bags under {ROS2_BAGS}")

METADATA = EpisodeMetadata("robot-7", "office-3", "office", 3, 11, "0.1.0", 4, 3)
STEPS, DT_NS = 60, 20_000_000
FRAME_STEPS = 5  # camera frames every 100 ms
DAMAGED_CHUNK = 3


# --- test data -------------------------------------------------------------------------------------


def record_episode(
    path: Path, steps: int = STEPS, dropped: Mapping[str, Collection[int]] = {}, late: Collection[int] = ()
) -> Path:
    """A small episode on every topic, in ~4 KiB chunks; ground truth moves 0.1 m, 0.05 m per step.

    Camera frames come every FRAME_STEPS steps: `dropped` leaves out frames (output id -> frame numbers), and the
    front image frames numbered in `late` are written after everything else, so that chunks overlap in time.
    """
    writer = EpisodeWriter(path, METADATA, world_json=b'{"kind": "office"}', start_ns=T0, chunk_size=4096)
    writer.write("tf_static", sample_message("tf_static", T0))
    for i in range(steps):
        t = T0 + i * DT_NS
        for output_id in ("clock", "imu", "wheels", "odom", "tf", "cmd_vel"):
            writer.write(output_id, sample_message(output_id, t))
        writer.write(
            "ground_truth",
            m.Odometry(t, "map", "base_link", (0.1 * i, 0.05 * i, 0.0), (0, 0, 0, 1), (0.5, 0, 0), (0, 0, 0)),
        )
        if i % FRAME_STEPS == 0:
            frame = i // FRAME_STEPS
            for output_id in ("image_front", "depth_front", "camera_info_front", "obstacles"):
                if frame not in dropped.get(output_id, ()) and not (output_id == "image_front" and frame in late):
                    writer.write(output_id, sample_message(output_id, t))
        if i == steps // 2:
            writer.write("events", sample_message("events", t))  # a collision
            writer.write("safety_events", sample_message("safety_events", t))
    for frame in late:
        writer.write("image_front", sample_message("image_front", T0 + frame * FRAME_STEPS * DT_NS))
    writer.close()
    return path


def _records(path: Path) -> list[McapRecord]:
    with open(path, "rb") as f:
        return list(StreamReader(f, emit_chunks=True).records)


def _write_records(path: Path, records: Iterable[McapRecord]) -> Path:
    builder = RecordBuilder()
    for record in records:
        record.write(builder)
    path.write_bytes(MCAP0_MAGIC + builder.end() + MCAP0_MAGIC)
    return path


def with_chunk_changed(good: Path, out: Path, change: Callable[[Chunk], Chunk]) -> Path:
    """The file re-serialized record by record, with chunk number DAMAGED_CHUNK changed."""
    chunks = 0
    records = []
    for record in _records(good):
        if isinstance(record, Chunk):
            record = change(record) if chunks == DAMAGED_CHUNK else record
            chunks += 1
        records.append(DataEnd(0) if isinstance(record, DataEnd) else record)
    return _write_records(out, records)


def with_bad_payload(good: Path, out: Path, topic: str) -> Path:
    """The file unchunked, with the first message on `topic` cut to 7 bytes: a valid MCAP, bad CDR."""
    records, channels, cut = [], {}, False
    with open(good, "rb") as f:
        for record in StreamReader(f).records:
            if isinstance(record, DataEnd):
                break
            if isinstance(record, Channel):
                channels[record.id] = record.topic
            if isinstance(record, Message) and channels[record.channel_id] == topic and not cut:
                record, cut = dataclasses.replace(record, data=record.data[:7]), True
            records.append(record)
    return _write_records(out, [*records, DataEnd(0), Footer(0, 0, 0)])


def chunk_spans(path: Path) -> list[tuple[int, int, Counter[str]]]:
    """(start offset, end offset, messages per topic) of each chunk."""
    spans, topics = [], {}
    with open(path, "rb") as f:
        start = 0
        for record in StreamReader(f, emit_chunks=True).records:
            if isinstance(record, Chunk):
                counts: Counter[str] = Counter()
                for inner in breakup_chunk(record):
                    if isinstance(inner, Channel):
                        topics[inner.id] = inner.topic
                    elif isinstance(inner, Message):
                        counts[topics[inner.channel_id]] += 1
                spans.append((start, f.tell(), counts))
            start = f.tell()
    return spans


@dataclasses.dataclass
class Inputs:
    good: Path
    bad: dict[str, Path]  # variant -> file
    expected_counts: dict[str, Counter[str]]  # variant -> messages per topic that should be salvaged


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    root = tmp_path_factory.mktemp("inputs")
    good = record_episode(root / "good" / "episode.mcap")
    bad = root / "bad"
    bad.mkdir()
    data = good.read_bytes()
    spans = chunk_spans(good)
    total = summarize(good)
    all_counts = Counter({topic: stats.count for topic, stats in total.topics.items()})
    start, end, lost = spans[DAMAGED_CHUNK]
    garbage = bytearray(data)
    garbage[start : start + 9] = b"\xff" * 9  # the chunk's opcode and length
    (bad / "truncated.mcap").write_bytes(data[: (start + end) // 2])
    (bad / "garbage.mcap").write_bytes(bytes(garbage))
    (bad / "empty.mcap").write_bytes(b"")
    (bad / "not_mcap.mcap").write_bytes(b"this is not an MCAP file\n" * 40)
    variants = {
        "truncated": bad / "truncated.mcap",
        "bad_record": bad / "garbage.mcap",
        "chunk_crc": with_chunk_changed(
            good, bad / "chunk_crc.mcap", lambda c: dataclasses.replace(c, uncompressed_crc=c.uncompressed_crc ^ 1)
        ),
        "compression": with_chunk_changed(good, bad / "xz.mcap", lambda c: dataclasses.replace(c, compression="xz")),
        "undecodable": with_bad_payload(good, bad / "bad_payload.mcap", "/imu"),
        "empty": bad / "empty.mcap",
        "not_mcap": bad / "not_mcap.mcap",
    }
    before_cut = sum((counts for _, _, counts in spans[:DAMAGED_CHUNK]), Counter())
    expected = {
        "truncated": before_cut,
        "bad_record": all_counts - lost,
        "chunk_crc": all_counts - lost,
        "compression": all_counts - lost,
        "undecodable": all_counts,
        "empty": Counter(),
        "not_mcap": Counter(),
    }
    return Inputs(good, variants, expected)


def connect(lake: Path) -> duckdb.DuckDBPyConnection:
    """DuckDB with one view per lake table, at the lake's latest version."""
    return Lake(lake).connect()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, inputs: Inputs) -> Path:
    """One DirectRunner run over our episode, every damaged variant and the ROS 2 bags. The empty file is not
    ingested: the summary names it."""
    lake = tmp_path_factory.mktemp("lake")
    paths = [inputs.good, inputs.bad["truncated"].parent, *([ROS2_BAGS] if ROS2_BAGS.is_dir() else [])]
    summary = ingest(paths, lake, progress=False)
    assert summary.files == len(inputs.bad) + (len(BAG_COUNTS) if ROS2_BAGS.is_dir() else 0)
    assert summary.episodes == summary.files
    assert summary.skipped == {str(inputs.bad["empty"].resolve()): "empty"}
    assert summary.quarantined == sorted(str(p.resolve()) for v, p in inputs.bad.items() if v != "empty")
    assert json.loads(json.dumps(summary.to_dict()))["rows"] == summary.rows
    return lake


def rows(con: duckdb.DuckDBPyConnection, sql: str, *params: object) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


def one(con: duckdb.DuckDBPyConnection, sql: str, *params: object) -> tuple:
    [row] = rows(con, sql, *params)
    return row


def episode(con: duckdb.DuckDBPyConnection, path: Path) -> dict:
    cursor = con.execute("SELECT * FROM episodes WHERE source_path = ?", [str(path.resolve())])
    [row] = cursor.fetchall()
    return dict(zip([d[0] for d in cursor.description], row, strict=True))


# --- pure parts ------------------------------------------------------------------------------------


def test_every_typed_ros2_type_has_a_converter() -> None:
    assert CONVERTERS.keys() == ROS2_TABLES.keys()


def test_list_logs_recurses_dedupes_and_names_what_it_skips(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/one.mcap", "a/b/two.mcap", "a/notes.txt", "three.bag"):
        (tmp_path / name).write_bytes(b"x")
    listing = list_logs([tmp_path / "a", tmp_path / "a" / "one.mcap", tmp_path / "three.bag"])
    assert listing.logs == sorted(
        p.resolve() for p in (tmp_path / "a/one.mcap", tmp_path / "a/b/two.mcap", tmp_path / "three.bag")
    )
    assert listing.skipped == {str((tmp_path / "a/notes.txt").resolve()): "unsupported format"}
    with pytest.raises(FileNotFoundError):
        list_logs([tmp_path / "missing"])


@pytest.mark.parametrize("variant", ["truncated", "bad_record", "chunk_crc", "compression", "empty", "not_mcap"])
def test_salvaging_reader_names_the_damage_and_keeps_intact_messages(inputs: Inputs, variant: str) -> None:
    with open(inputs.bad[variant], "rb") as f:
        reader = SalvagingReader(f)
        messages = [r for r in reader.records() if isinstance(r, Message)]
    assert variant in {d.kind for d in reader.damage}
    assert len(messages) == inputs.expected_counts[variant].total()


def test_read_episode_keeps_an_undecodable_payload_raw(inputs: Inputs) -> None:
    tables = read_episode(identify_source(str(inputs.bad["undecodable"])))
    [row] = tables["episodes"].to_pylist()
    assert (row["outcome"], row["salvaged"]) == ("salvaged", True)
    assert row["problems"][0].startswith("undecodable: 1 of 60 sensor_msgs/msg/Imu messages on /imu")
    assert tables["imu"].num_rows == STEPS - 1
    raw = tables["messages"].filter(pc.field("topic") == "/imu").to_pylist()
    assert [(r["schema_name"], r["message_encoding"], len(r["data"])) for r in raw] == [
        ("sensor_msgs/msg/Imu", "cdr", 7)
    ]


UNBOUNDED = BatchBounds(messages=1 << 40, payload_bytes=1 << 40, total_payload_bytes=1 << 40)


def _without_ingest_time(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    return {**tables, "episodes": tables["episodes"].drop_columns(["ingested_at_ns"])}


@pytest.mark.parametrize(
    "bounds",
    [BatchBounds(messages=5), BatchBounds(total_payload_bytes=2048)],
    ids=["messages per channel", "bytes of all channels"],
)
def test_ingest_writes_bounded_batches_with_the_rows_of_an_unbounded_read(
    tmp_path: Path, inputs: Inputs, bounds: BatchBounds
) -> None:
    ingest([inputs.good], tmp_path / "bounded", progress=False, bounds=bounds)
    ingest([inputs.good], tmp_path / "unbounded", progress=False, bounds=UNBOUNDED)

    def files(lake: Path) -> dict[str, list[pq.ParquetFile]]:
        """Each table's files of its one commit, one per channel, in order."""
        return {
            table: [pq.ParquetFile(f) for f in sorted(DeltaTable(lake / table).file_uris())]
            for table in Lake(lake).tables()
        }

    def row_groups(parts: list[pq.ParquetFile]) -> list[int]:
        return [part.metadata.row_group(i).num_rows for part in parts for i in range(part.num_row_groups)]

    def read(parts: list[pq.ParquetFile]) -> pa.Table:
        return pa.concat_tables(part.read() for part in parts)

    bounded, unbounded = files(tmp_path / "bounded"), files(tmp_path / "unbounded")
    assert bounded.keys() == unbounded.keys()
    # Unbounded, one row group per channel (/imu; /odom and ground truth; two cameras): bounded, several.
    for table, channels in {"imu": 1, "odometry": 2, "images": 2}.items():
        assert len(unbounded[table]) == len(bounded[table]) == channels
        assert len(row_groups(unbounded[table])) == channels
        groups = row_groups(bounded[table])
        assert len(groups) > 2 * channels, table
        assert bounds.messages > STEPS or max(groups) <= bounds.messages
    as_read = {table: read(parts) for table, parts in bounded.items()}
    assert _without_ingest_time(as_read) == _without_ingest_time({t: read(p) for t, p in unbounded.items()})


def test_bulk_decoding_gives_the_rows_of_per_message_decoding(inputs: Inputs) -> None:
    source = identify_source(str(inputs.good))
    bulk, per_message = EpisodeStream(source), EpisodeStream(source, bulk=False)
    assert _without_ingest_time(bulk.tables()) == _without_ingest_time(per_message.tables())
    assert bulk.bulk_decoded == {
        "sensor_msgs/msg/Imu": STEPS,
        "nav_msgs/msg/Odometry": 2 * STEPS,
        "sensor_msgs/msg/JointState": STEPS,
        "geometry_msgs/msg/Twist": STEPS,
        "tf2_msgs/msg/TFMessage": STEPS + 1,
        "sensor_msgs/msg/CameraInfo": STEPS // 5,
        "sensor_msgs/msg/CompressedImage": STEPS // 5,
        "sensor_msgs/msg/Image": STEPS // 5,
    }
    assert not per_message.bulk_decoded


# --- our own recordings ----------------------------------------------------------------------------


def test_own_episode_lands_in_typed_tables(lake: Path, inputs: Inputs) -> None:
    con = connect(lake)
    expected = summarize(inputs.good)
    row = episode(con, inputs.good)
    assert (row["robot_id"], row["site"], row["world_kind"]) == ("robot-7", "office-3", "office")
    assert (row["outcome"], row["salvaged"], row["problems"], row["collisions"]) == ("ok", False, [], 1)
    assert row["message_counts"] == {topic: s.count for topic, s in expected.topics.items()}
    assert row["message_count"] == sum(s.count for s in expected.topics.values())
    assert row["distance_m"] == pytest.approx(expected.distance_m)
    assert row["distance_m"] == pytest.approx((STEPS - 1) * math.hypot(0.1, 0.05))
    assert (row["start_ns"], row["end_ns"]) == (T0, T0 + (STEPS - 1) * DT_NS)
    assert row["duration_s"] == pytest.approx(expected.duration_s)
    assert row["metadata"]["world_seed"] == "3" and row["episode_id"] == row["source_sha256"][:16]

    def select(columns: str, table: str, condition: str = "true") -> tuple:
        return one(con, f"SELECT {columns} FROM {table} WHERE episode_id = ? AND {condition}", row["episode_id"])

    imu = sample_message("imu")
    assert select("count(*), first(angular_velocity_z), first(linear_acceleration_z), first(frame_id)", "imu") == (
        STEPS,
        imu.angular_velocity[2],
        imu.linear_acceleration[2],
        "imu_link",
    )
    assert select("count(*), bool_and(stamp_ns = t_ns), first(name), first(velocity)", "wheels") == (
        STEPS,
        True,
        ["left_wheel", "right_wheel"],
        [5.0, 5.2],
    )
    assert select("count(*), max(position_x)", "odometry", "topic = '/ground_truth/odom'") == (
        STEPS,
        pytest.approx(0.1 * (STEPS - 1)),
    )
    # One row per transform: each /tf message holds map -> odom and odom -> base_link, /tf_static both mounts.
    assert select("count(*), count(DISTINCT t_ns), list_sort(list(DISTINCT child_frame_id))", "tf", "NOT static") == (
        2 * STEPS,
        STEPS,
        ["base_link", "odom"],
    )
    assert select("count(*), list_sort(list(child_frame_id)), bool_and(topic = '/tf_static')", "tf", "static") == (
        2,
        ["camera_front_optical_frame", "imu_link"],
        True,
    )
    depth, jpeg = sample_message("depth_front"), sample_message("image_front")
    assert select(
        "count(*), first(format), first(width), first(height), first(step), first(data)",
        "images",
        "encoding = '32FC1' AND NOT is_bigendian",
    ) == (STEPS // 5, None, 4, 3, 16, depth.data)
    assert select("count(*), first(encoding), first(width), first(data)", "images", "format = 'jpeg'") == (
        STEPS // 5,
        None,
        None,
        jpeg.data,
    )
    assert select("count(*), first(k), first(distortion_model)", "camera_info") == (
        STEPS // 5,
        list(sample_message("camera_info_front").k),
        "plumb_bob",
    )
    assert select("count(*), first(ids), first(radius)", "obstacles") == (STEPS // 5, ["p1", "c1"], [0.25, 0.4])
    assert select("count(*), count(*) FILTER (kind = 'collision'), first(detail ORDER BY kind)", "events") == (
        2,
        1,
        "wall_3",
    )
    assert select("count(*), first(linear_x), first(angular_z)", "commands") == (STEPS, 0.5, 0.2)
    # /clock has no typed table: it lands raw with its schema name, and the schema text is in `channels`.
    assert select("count(*), first(schema_name), first(message_encoding)", "messages") == (
        STEPS,
        "rosgraph_msgs/msg/Clock",
        "cdr",
    )
    assert select("first(schema_data)", "channels", "topic = '/clock'")[0].startswith(b"builtin_interfaces/Time clock")
    assert select("name, data", "attachments") == ("world.json", b'{"kind": "office"}')
    assert select("name, metadata['robot_id']", "metadata") == ("astra.episode", "robot-7")


# --- frame gaps, stored at ingest ------------------------------------------------------------------

GAPS_QUERY = EXAMPLE_QUERIES["Gaps in camera frames (over 1.5 x the nominal 100 ms)"]
# The README's gaps query before `since_previous_ns` was stored: a window over every image row.
WINDOW_GAPS_QUERY = """
SELECT episode_id, topic, t_ns, (t_ns - lag(t_ns) OVER w) / 1e6 AS gap_ms
FROM images
WINDOW w AS (PARTITION BY episode_id, topic ORDER BY t_ns)
QUALIFY gap_ms > 150
ORDER BY gap_ms DESC, episode_id, topic, t_ns"""
FRONT, DEPTH = BY_OUTPUT["image_front"].ros_topic, BY_OUTPUT["depth_front"].ros_topic
FRAME_NS = FRAME_STEPS * DT_NS
SMALL_BATCHES = BatchBounds(messages=3)  # a camera's frames in batches of 3


def frame_gaps(lake: Path) -> set[tuple[str, str, int, float]]:
    """The README's gaps query over the lake, checked to give the rows of the window query it replaced in the same
    order; as (file name, topic, frame number, gap in ms)."""
    db = Lake(lake)
    found = db.sql(GAPS_QUERY).rows()
    assert found == db.sql(WINDOW_GAPS_QUERY).rows()
    files = dict(db.sql("SELECT episode_id, source_path FROM episodes").rows())
    return {(Path(files[e]).name, topic, (t - T0) // FRAME_NS, gap) for e, topic, t, gap in found}


def _frames(db3: Path, topic: str) -> list[int]:
    with sqlite3.connect(db3) as con:
        query = "SELECT timestamp FROM messages JOIN topics ON topics.id = topic_id WHERE name = ? ORDER BY 1"
        return [(t - T0) // FRAME_NS for (t,) in con.execute(query, [topic])]


def test_stored_frame_gaps_give_the_rows_of_the_window_query(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    # a, also as a ROS 1 bag: front frame 3 dropped, so that frame 4 opens a batch; depth frames 7 and 8 dropped.
    a = record_episode(logs / "a.mcap", dropped={"image_front": {3}, "depth_front": {7, 8}})
    to_ros1_bag(a, logs / "a.bag", small_chunks=True)
    # b, also as a rosbag2 directory of three .db3 files: its gaps straddle the files.
    b = record_episode(tmp_path / "b.mcap", dropped={"image_front": {4}, "depth_front": {8}})
    bag = split_rosbag2(b, logs / "b", "sqlite3", parts=3)
    # c: front frame 5 written last, so that its chunk overlaps the others, and frame 8 dropped. Taken as they
    # come, frame 6 would be 200 ms after frame 4.
    c = record_episode(logs / "c.mcap", dropped={"image_front": {8}}, late={5})
    summary = ingest([logs, b], tmp_path / "lake", progress=False, bounds=SMALL_BATCHES)
    assert (summary.episodes, summary.quarantined) == (5, [])

    assert frame_gaps(tmp_path / "lake") == {
        ("a.mcap", FRONT, 4, 200.0),
        ("a.mcap", DEPTH, 9, 300.0),
        ("a.bag", FRONT, 4, 200.0),
        ("a.bag", DEPTH, 9, 300.0),
        ("b.mcap", FRONT, 5, 200.0),
        ("b.mcap", DEPTH, 9, 200.0),
        ("b", FRONT, 5, 200.0),
        ("b", DEPTH, 9, 200.0),
        ("c.mcap", FRONT, 9, 200.0),
    }
    # The gaps lie where they should: across a's batches, across b's files, and c's frames come out of order.
    stream = EpisodeStream(identify_source(str(a)), SMALL_BATCHES)
    image_batches = [batch.data for batch in stream.batches() if batch.table == "images"]
    front = [data["t_ns"] for data in image_batches if data["topic"][0].as_py() == FRONT]
    assert [(t.as_py() - T0) // FRAME_NS for t in front[1]] == [4, 5, 6] and not stream.unordered_topics
    assert [_frames(f, FRONT) for f in sorted(bag.glob("*.db3"))] == [[0, 1, 2, 3], [5, 6, 7], [8, 9, 10, 11]]
    assert [_frames(f, DEPTH) for f in sorted(bag.glob("*.db3"))] == [[0, 1, 2, 3], [4, 5, 6, 7], [9, 10, 11]]
    stream = EpisodeStream(identify_source(str(c)), SMALL_BATCHES)
    images = stream.tables()["images"]
    assert stream.unordered_topics == {FRONT}
    window = "t_ns - lag(t_ns) OVER (PARTITION BY topic ORDER BY t_ns)"
    exact = f"SELECT since_previous_ns IS NOT DISTINCT FROM {window} AS exact FROM images"
    assert duckdb.from_arrow(images).query("images", f"SELECT bool_and(exact) FROM ({exact})").fetchall() == [(True,)]


# --- real ROS 2 bags -------------------------------------------------------------------------------


@needs_bags
@pytest.mark.parametrize("bag", sorted(BAG_COUNTS))
def test_ros2_bag_lands_with_exact_counts(lake: Path, bag: str) -> None:
    con = connect(lake)
    row = episode(con, ROS2_BAGS / bag)
    assert row["message_counts"] == BAG_COUNTS[bag]
    assert (row["outcome"], row["robot_id"], row["collisions"]) == ("ok", None, None)
    typed = rows(
        con,
        """
        SELECT topic, count(*) FROM (
            SELECT topic, episode_id FROM odometry UNION ALL SELECT topic, episode_id FROM imu
            UNION ALL SELECT topic, episode_id FROM commands UNION ALL SELECT topic, episode_id FROM laser_scans
            UNION ALL SELECT topic, episode_id FROM wheels UNION ALL SELECT topic, episode_id FROM poses
        ) WHERE episode_id = ? GROUP BY topic""",
        row["episode_id"],
    )
    assert dict(typed) == {t: n for t, n in BAG_COUNTS[bag].items() if not t.startswith("/tf")}
    assert not rows(con, "SELECT * FROM messages WHERE episode_id = ?", row["episode_id"])


@needs_bags
def test_ros2_bag_values(lake: Path) -> None:
    con = connect(lake)
    ids = {bag: episode(con, ROS2_BAGS / bag)["episode_id"] for bag in BAG_COUNTS}
    turtlebot, jackal, nav2 = ids["turtlebot3_sim.mcap"], ids["jackal_imu_odom.mcap"], ids["nav2_turtlebot.mcap"]

    def first(sql: str, episode_id: str) -> tuple:
        return one(con, f"{sql} WHERE episode_id = ? ORDER BY t_ns LIMIT 1", episode_id)

    assert first(
        "SELECT t_ns, stamp_ns, frame_id, angular_velocity_x, angular_velocity_z, orientation_w FROM imu", turtlebot
    ) == (
        112841753604,
        112842000000,
        "base_footprint",
        -0.0012714547753157105,
        0.0014623497469889559,
        0.9999665521311487,
    )
    assert first("SELECT child_frame_id, position_x, position_y, orientation_z, angular_z FROM odometry", jackal) == (
        "base_link",
        0.1571574254425733,
        -0.00041900730771831583,
        -0.00149407918317891,
        0.00635724555666083,
    )
    scan = first(
        "SELECT len(ranges), ranges[1], angle_increment, range_max, len(intensities) FROM laser_scans", turtlebot
    )
    assert scan == (360, pytest.approx(0.7438583970069885), pytest.approx(0.017501922324299812), 3.5, scan[4])
    assert first("SELECT name, position, velocity FROM wheels", turtlebot) == (
        ["wheel_right_joint", "wheel_left_joint"],
        [-4.232067807109665, 9.00880970856678],
        [],
    )
    # nav2: header stamps are simulation time (~924 s), log times wall-clock.
    pose = first("SELECT t_ns, stamp_ns, frame_id, position_x, position_y, covariance[1] FROM poses", nav2)
    assert pose == (1778234353600224000, 924102000000, "map", 4.36519665396771, 7.579351695734543, 0.028234069455002037)
    assert one(
        con,
        "SELECT min(stamp_ns) < 1e12, min(t_ns) > 1.7e18, count(*) FILTER (static) FROM tf WHERE episode_id = ?",
        nav2,
    ) == (True, True, 29)
    distance = episode(con, ROS2_BAGS / "jackal_imu_odom.mcap")["distance_m"]
    assert distance == pytest.approx(
        one(
            con,
            "SELECT sum(sqrt((position_x - px) ** 2 + (position_y - py) ** 2)) FROM (SELECT position_x, position_y, "
            "lag(position_x) OVER w px, lag(position_y) OVER w py FROM odometry WHERE episode_id = ? "
            "WINDOW w AS (ORDER BY t_ns))",
            jackal,
        )[0]
    )


# --- damaged input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["truncated", "bad_record", "chunk_crc", "compression", "undecodable", "not_mcap"])
def test_damaged_file_is_salvaged_and_quarantined(lake: Path, inputs: Inputs, variant: str) -> None:
    con = connect(lake)
    source = inputs.bad[variant]
    row = episode(con, source)
    expected = inputs.expected_counts[variant]
    assert row["message_counts"] == dict(expected)
    rejected = not expected
    assert (row["outcome"], row["salvaged"]) == (("rejected", False) if rejected else ("salvaged", True))
    assert any(p.startswith(variant) for p in row["problems"]), row["problems"]
    held = lake / QUARANTINE_DIR / row["episode_id"]
    reason = json.loads((held / "reason.json").read_text())
    assert (reason["source_path"], reason["outcome"], reason["problems"]) == (
        str(source.resolve()),
        row["outcome"],
        row["problems"],
    )
    assert (held / reason["copy"]).read_bytes() == source.read_bytes()
    if not rejected:
        [imu] = one(con, "SELECT count(*) FROM imu WHERE episode_id = ?", row["episode_id"])
        assert imu == expected["/imu"] - (variant == "undecodable")
        assert rows(con, "SELECT name FROM metadata WHERE episode_id = ?", row["episode_id"]) == [("astra.episode",)]


def test_good_file_beside_damaged_ones_is_not_quarantined(lake: Path, inputs: Inputs) -> None:
    row = episode(connect(lake), inputs.good)
    assert row["outcome"] == "ok" and not (lake / QUARANTINE_DIR / row["episode_id"]).exists()
    assert not any((lake / STAGING_DIR).iterdir())


# --- idempotence, atomic publishing, Dask ----------------------------------------------------------


def _lake_files(lake: Path) -> dict[str, int]:
    return {str(p.relative_to(lake)): p.stat().st_mtime_ns for p in lake.rglob("*") if p.is_file()}


def test_ingesting_again_adds_nothing(lake: Path, inputs: Inputs) -> None:
    before = _lake_files(lake)
    summary = ingest([inputs.good, inputs.bad["bad_record"].parent], lake, progress=False)
    assert (summary.episodes, summary.rows, summary.quarantined) == (0, {}, [])
    assert summary.skipped == {
        str(p.resolve()): "empty" if p == inputs.bad["empty"] else "already in the lake"
        for p in (inputs.good, *inputs.bad.values())
    }
    assert _lake_files(lake) == before


def test_staging_processes_report_a_log_they_cannot_read_and_go_on_with_the_others(
    tmp_path: Path, inputs: Inputs
) -> None:
    """Identification runs ahead of staging by two logs a process: a log that fails must still queue the next."""
    gone = [str(tmp_path / f"gone-{i}.mcap") for i in range(3)]
    run = StagingRun(str(tmp_path / "lake"), str(tmp_path / "staging"))
    with staging_processes(1, [*gone, str(inputs.good)], run) as processes:
        for path in gone:
            with pytest.raises(FileNotFoundError):
                processes.staged(path)
        staged = processes.staged(str(inputs.good))
    assert staged.source == identify_source(str(inputs.good))
    assert staged.rows == {table: t.num_rows for table, t in read_episode(staged.source).items()}


def test_logs_with_the_same_bytes_are_staged_apart_each_with_its_marker(tmp_path: Path, inputs: Inputs) -> None:
    """Two processes staging copies of one log once raced for one marker, named by the episode: a copy's rename
    found its temporary file gone."""
    copies = [tmp_path / f"copy-{i}.mcap" for i in range(2)]
    for copy in copies:
        copy.write_bytes(inputs.good.read_bytes())
    run = StagingRun(str(tmp_path / "lake"), str(tmp_path / "staging"), progress_dir=str(tmp_path / "progress"))
    (tmp_path / "progress").mkdir()
    with staging_processes(2, [str(c) for c in copies], run) as processes:
        staged = [processes.staged(str(c)) for c in copies]
    assert staged[0].source.episode_id == staged[1].source.episode_id and staged[0].root != staged[1].root
    markers = sorted((tmp_path / "progress").iterdir())
    assert [int(m.read_text()) for m in markers] == [inputs.good.stat().st_size] * 2


def test_ingest_loads_beam_only_once_its_staging_processes_are_forked() -> None:
    """What makes the processes start on the first logs while Beam loads: neither ingest nor staging imports it."""
    code = "import sys, pipelines.ingest, pipelines.staging; print('apache_beam' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"


def one_file(lake: Path, table: str) -> str:
    [file] = DeltaTable(lake / table).file_uris()
    return file


def test_leftovers_of_a_killed_ingest_are_cleaned_up_and_a_changed_file_is_a_new_episode(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    path = record_episode(tmp_path / "logs" / "episode.mcap", steps=10)
    first_id = identify_source(str(path)).episode_id
    # A killed ingest left a half-written staging folder and a file it never committed, and committed the
    # episode's `tf` rows (a commit is whole) but not its `episodes` row.
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    half_written = lake / STAGING_DIR / f"{socket.gethostname()}-{killed.pid}-0" / "imu"
    half_written.mkdir(parents=True)
    (half_written / "rows.parquet").write_bytes(b"PAR1 half")
    tf = read_episode(identify_source(str(path)))["tf"]
    staged = tmp_path / "tf.parquet"
    pq.write_table(tf.append_column("episode_id", pa.array([first_id] * tf.num_rows)), staged)
    commit_files(lake, "tf", {first_id: ([staged], {"site": "office-3", "day": "2023-11-14"})})
    uncommitted = lake / "tf" / "site=office-3" / "day=2023-11-14" / "uncommitted.parquet"
    uncommitted.write_bytes(b"PAR1 half")

    assert ingest([path], lake, progress=False).episodes == 1
    assert not any((lake / STAGING_DIR).iterdir())
    record_episode(path, steps=12)
    assert ingest([path], lake, progress=False).episodes == 1

    con = connect(lake)
    assert one(con, "SELECT count(*), count(DISTINCT source_path) FROM episodes") == (2, 1)
    assert rows(con, "SELECT episode_id, count(*) FROM imu GROUP BY ALL ORDER BY 2") == [
        (first_id, 10),
        (identify_source(str(path)).episode_id, 12),
    ]
    # The committed `tf` rows were not committed again: the table's transaction for the episode says they are in.
    assert one(con, "SELECT count(*) FROM tf WHERE episode_id = ?", first_id) == (tf.num_rows,)
    assert vacuum(lake, retention_hours=0)["tf"] == 1 and not uncommitted.exists()


def test_files_with_the_same_bytes_are_one_episode(
    tmp_path: Path, inputs: Inputs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    copies = [tmp_path / "logs" / "b" / "copy.mcap", tmp_path / "logs" / "a.mcap"]
    for copy in copies:
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(inputs.good.read_bytes())
    summary = ingest([tmp_path / "logs"], tmp_path / "lake", progress=False)
    assert (summary.files, summary.episodes) == (2, 1)
    assert summary.skipped == {str(copies[0]): f"duplicate content: the same bytes as {copies[1]}"}
    assert one(connect(tmp_path / "lake"), "SELECT source_path FROM episodes") == (str(copies[1]),)
    # Ran in-process: Beam's DirectRunner would first try to download its Prism runner from the internet.
    assert not [r.message for r in caplog.records if "prism" in r.getMessage().lower()]


def test_the_cli_keeps_dask_s_logs_to_itself(tmp_path: Path, inputs: Inputs) -> None:
    command = [sys.executable, "-m", "astra.cli", "ingest", str(inputs.good), "--lake", str(tmp_path / "lake")]
    quiet = subprocess.run([*command, "--runner", "dask", "--workers", "1"], capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    assert "distributed" not in quiet.stderr, "Dask's scheduler logged without --verbose"
    verbose = subprocess.run(
        [*command, "--runner", "dask", "--workers", "1", "--verbose"], capture_output=True, text=True
    )
    assert "INFO distributed.scheduler" in verbose.stderr


@needs_bags
def test_dask_runner_builds_the_same_lake(tmp_path: Path, lake: Path, inputs: Inputs) -> None:
    paths = [ROS2_BAGS, inputs.good, inputs.bad["chunk_crc"]]
    summary = ingest(paths, tmp_path / "lake", runner="dask", workers=2, progress=False)
    assert (summary.runner, summary.episodes, summary.quarantined) == (
        "dask",
        5,
        [str(inputs.bad["chunk_crc"].resolve())],
    )
    dask, direct = connect(tmp_path / "lake"), connect(lake)
    ids = "', '".join(r[0] for r in rows(dask, "SELECT episode_id FROM episodes"))
    for table in sorted(summary.rows.keys() - {"episodes"}):
        numeric = [f.name for f in TABLES[table] if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
        sums = ", ".join(f"round(sum({c}), 6)" for c in numeric)
        sql = f"SELECT episode_id, count(*), {sums} FROM {table} WHERE episode_id IN ('{ids}') GROUP BY 1 ORDER BY 1"
        assert rows(dask, sql) == rows(direct, sql), table
    key = "source_path, message_counts, distance_m, collisions, outcome, problems"
    assert rows(dask, f"SELECT {key} FROM episodes ORDER BY 1") == rows(
        direct, f"SELECT {key} FROM episodes WHERE episode_id IN ('{ids}') ORDER BY 1"
    )


NAVSATFIX_DEFINITION = """std_msgs/Header header
NavSatStatus status
float64 latitude
float64 longitude
float64 altitude
float64[9] position_covariance
uint8 position_covariance_type
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
================================================================================
MSG: sensor_msgs/NavSatStatus
int8 status
uint16 service
"""


def test_navsatfix_from_a_foreign_writer(tmp_path: Path) -> None:
    path = tmp_path / "gps.mcap"
    with open(path, "wb") as f, ROS2Writer(f) as writer:
        schema = writer.register_msgdef("sensor_msgs/msg/NavSatFix", NAVSATFIX_DEFINITION)
        fix = {
            "header": {"stamp": {"sec": 5, "nanosec": 7}, "frame_id": "gps"},
            "status": {"status": -1, "service": 1},
            "latitude": 48.1,
            "longitude": 11.5,
            "altitude": 520.0,
            "position_covariance": [float(i) for i in range(9)],
            "position_covariance_type": 2,
        }
        writer.write_message("/fix", schema, fix, log_time=10, publish_time=9, sequence=3)
    tables = read_episode(identify_source(str(path)))
    assert tables["navsatfix"].to_pylist() == [
        {
            "t_ns": 10,
            "topic": "/fix",
            "stamp_ns": 5_000_000_007,
            "frame_id": "gps",
            "status": -1,
            "service": 1,
            "latitude": 48.1,
            "longitude": 11.5,
            "altitude": 520.0,
            "position_covariance": [float(i) for i in range(9)],
            "position_covariance_type": 2,
        }
    ]
    assert "messages" not in tables


def test_json_messages_land_raw_with_their_schema(tmp_path: Path) -> None:
    path = tmp_path / "json.mcap"
    with open(path, "wb") as f:
        writer = McapWriter(f)
        writer.start()
        channel = writer.register_channel("/status", "json", writer.register_schema("Status", "jsonschema", b"{}"))
        writer.add_message(channel, log_time=11, data=b'{"ok": true}', publish_time=10, sequence=1)
        writer.finish()
    tables = read_episode(identify_source(str(path)))
    assert tables["messages"].to_pylist() == [
        {
            "t_ns": 11,
            "topic": "/status",
            "publish_time_ns": 10,
            "sequence": 1,
            "channel_id": channel,
            "message_encoding": "json",
            "schema_name": "Status",
            "schema_encoding": "jsonschema",
            "data": b'{"ok": true}',
        }
    ]
    assert tables["episodes"]["message_counts"].to_pylist() == [[("/status", 1)]]
    assert tables["channels"]["schema_data"].to_pylist() == [b"{}"]


def test_chunk_records_match_the_library_and_a_broken_chunk_costs_only_itself(inputs: Inputs, tmp_path: Path) -> None:
    chunks = [record for record in _records(inputs.good) if isinstance(record, Chunk)]
    assert {chunk.compression for chunk in chunks} == {"zstd"}
    for chunk in chunks:
        assert chunk_records(chunk) == breakup_chunk(chunk, validate_crc=True)
    damaged = chunks[DAMAGED_CHUNK]
    data = zstandard.decompress(damaged.data, damaged.uncompressed_size)

    def cut(chunk: Chunk) -> Chunk:
        """Uncompressed, unchecked and cut inside its last record: only the framing tells."""
        return dataclasses.replace(chunk, compression="", data=data[:-5], uncompressed_crc=0, uncompressed_size=0)

    with pytest.raises(ValueError, match="runs past the chunk's end"):
        chunk_records(cut(damaged))
    broken = with_chunk_changed(inputs.good, tmp_path / "cut.mcap", cut)
    with open(broken, "rb") as f:
        reader = SalvagingReader(f)
        messages = sum(isinstance(record, Message) for record in reader.records())
    assert [damage.kind for damage in reader.damage] == ["bad_chunk"]
    assert messages == sum(inputs.expected_counts["chunk_crc"].values())
