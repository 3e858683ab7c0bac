"""Fleet logs in other formats land in the lake with the rows of the same recording as MCAP: rosbag2 SQLite bags
(plain, zstd per message, zstd per file), ROS 1 bags (ROS 1 type names; plain, lz4, bz2 chunks), whole-file compressed
MCAP, and rosbag2 directories split into several files, which are one episode. Damaged bags are salvaged and
quarantined like damaged MCAP; every file not ingested is named in the summary with the reason.

The bags are made from our recording (and from real ROS 2 bags) with `rosbags-convert`, another project's converter."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from datasets.log_files import list_logs
from datasets.rosbag_reader import ROS1_MAGIC
from pipelines.ingest import ingest
from pipelines.staging import identify_source, read_episode
from schemas.lake import QUARANTINE_DIR, ROS2_TABLES
from tests.log_formats import compress_whole, split_rosbag2, storage_file, to_ros1_bag, to_rosbag2
from tests.test_ingest import BAG_COUNTS, ROS2_BAGS, connect, episode, needs_bags, one, record_episode

TYPED = sorted(set(ROS2_TABLES.values()))
# What every format holds of a raw message: rosbag2 and ROS 1 keep no publish time, sequence or channel id.
RAW_COLUMNS = ["t_ns", "topic", "schema_name", "data"]
EPISODE_COLUMNS = ["start_ns", "end_ns", "duration_s", "message_count", "distance_m", "collisions", "outcome"]
EPISODE_COLUMNS += ["salvaged", "problems"]
ASTRA = Path(sys.executable).with_name("astra")

Tables = dict[str, pa.Table]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_episode(tmp_path_factory.mktemp("recording") / "episode.mcap")


def _by_topic_and_time(table: pa.Table) -> list[dict]:
    # A stable sort: rows of one topic at one time keep their order within the message.
    return table.sort_by([("topic", "ascending"), ("t_ns", "ascending")]).to_pylist()


def comparable(tables: Tables) -> dict[str, object]:
    """The rows of a log that every format holds: typed rows whole, raw messages without what only MCAP keeps,
    channels as topic, type and count, and the episode's summary."""
    found: dict[str, object] = {name: _by_topic_and_time(tables[name]) for name in TYPED if name in tables}
    if "messages" in tables:
        found["messages"] = _by_topic_and_time(tables["messages"].select(RAW_COLUMNS))
    found["channels"] = sorted(
        (c["topic"], c["schema_name"], c["message_count"]) for c in tables["channels"].to_pylist()
    )
    [row] = tables["episodes"].select([*EPISODE_COLUMNS, "message_counts"]).to_pylist()
    found["episodes"] = {**row, "message_counts": dict(row["message_counts"])}
    return found


def _without_source(tables: Tables) -> Tables:
    columns = ["source_path", "source_size", "source_sha256", "ingested_at_ns"]
    return {**tables, "episodes": tables["episodes"].drop_columns(columns)}


def read(path: Path) -> Tables:
    return read_episode(identify_source(str(path)))


# Each format made from the MCAP recording at `good`, under `out`.
ROSBAG_FORMATS: dict[str, Callable[[Path, Path], Path]] = {
    ".db3": lambda good, out: storage_file(to_rosbag2(good, out / "bag")),
    "rosbag2 directory": lambda good, out: to_rosbag2(good, out / "bag"),
    "zstd per message": lambda good, out: to_rosbag2(good, out / "bag", compression_mode="message"),
    "zstd per file": lambda good, out: to_rosbag2(good, out / "bag", compression_mode="file"),
    ".bag": lambda good, out: to_ros1_bag(good, out / "episode.bag"),
    ".bag, lz4 chunks": lambda good, out: to_ros1_bag(good, out / "episode.bag", "lz4"),
    ".bag, bz2 chunks": lambda good, out: to_ros1_bag(good, out / "episode.bag", "bz2"),
}


@pytest.mark.parametrize("made", sorted(ROSBAG_FORMATS))
def test_rosbag_gives_the_rows_of_the_mcap(tmp_path: Path, good: Path, made: str) -> None:
    log = ROSBAG_FORMATS[made](good, tmp_path)
    mcap, other = read(good), read(log)
    assert comparable(other) == comparable(mcap)
    assert len(comparable(mcap)) > 10  # every typed table of our recording is compared
    assert "attachments" not in other and "metadata" not in other  # MCAP-only: world.json, astra.episode


def test_ros1_bag_holds_ros1_type_names(tmp_path: Path, good: Path) -> None:
    bag = to_ros1_bag(good, tmp_path / "episode.bag")
    data = bag.read_bytes()
    assert b"type=sensor_msgs/Imu" in data and b"sensor_msgs/msg/Imu" not in data
    assert b"uint32 seq" in data  # the ROS 1 header, whose sequence number ROS 2 dropped
    assert read(bag)["imu"].num_rows == read(good)["imu"].num_rows


@pytest.mark.parametrize("suffix", [".mcap.zstd", ".mcap.lz4"])
def test_whole_file_compressed_mcap_gives_the_same_tables(tmp_path: Path, good: Path, suffix: str) -> None:
    compressed = compress_whole(good, tmp_path / f"episode{suffix}")
    assert _without_source(read(compressed)) == _without_source(read(good))


def test_db3_without_stored_definitions_takes_them_from_the_ros2_typestore(tmp_path: Path, good: Path) -> None:
    """rosbag2 stores message definitions only since Iron: older bags name their types, nothing more."""
    db3 = storage_file(to_rosbag2(good, tmp_path / "bag"))
    with sqlite3.connect(db3) as con:
        con.execute("DROP TABLE message_definitions")
    old, mcap = comparable(read(db3)), comparable(read(good))
    standard = [t for t in TYPED if t in mcap and t not in ("obstacles", "events")]
    assert standard and {t: old.get(t) for t in standard} == {t: mcap[t] for t in standard}
    # Our own types are not in the typestore: they land raw, with their type name.
    raw = {(m["topic"], m["schema_name"]) for m in old["messages"]}
    assert {("/events", "astra_msgs/msg/Event"), ("/ground_truth/obstacles", "astra_msgs/msg/DynamicObstacles")} <= raw
    assert old["episodes"]["problems"] == []


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_split_rosbag2_directory_is_one_episode_in_time_order(tmp_path: Path, good: Path, storage: str) -> None:
    bag = split_rosbag2(good, tmp_path / "logs" / "run", storage, parts=3, custom_data={"robot_id": "robot-7"})
    assert len(list(bag.glob("run_*"))) == 3
    summary = ingest([tmp_path / "logs"], tmp_path / "lake", progress=False)
    assert (summary.files, summary.episodes, summary.skipped, summary.quarantined) == (1, 1, {}, [])
    con = connect(tmp_path / "lake")
    row = episode(con, bag)
    assert row["message_counts"] == comparable(read(good))["episodes"]["message_counts"]
    assert one(
        con,
        "SELECT bool_and(t_ns >= previous) FROM (SELECT t_ns, lag(t_ns, 1, 0) OVER (PARTITION BY topic "
        "ORDER BY file_row_number) previous FROM read_parquet(?, file_row_number = true))",
        f"{tmp_path}/lake/imu/site=*/**/*.parquet",
    ) == (True,)
    tables = read(bag)
    assert comparable(tables) == comparable(read(good))
    assert {"name": "rosbag2", "metadata": [("robot_id", "robot-7")]} in tables["metadata"].to_pylist()


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory, good: Path) -> dict[str, tuple[Path, Path]]:
    """A .db3 and a ROS 1 bag (16 KiB chunks) cut in half, each beside the whole file it was cut from."""
    root = tmp_path_factory.mktemp("damaged")
    whole = {
        "db3": storage_file(to_rosbag2(good, root / "whole" / "bag")),
        "bag": to_ros1_bag(good, root / "whole" / "episode.bag", small_chunks=True),
    }
    (root / "cut").mkdir()
    cut = {kind: root / "cut" / f"cut.{kind}" for kind in whole}
    for kind, path in whole.items():
        data = path.read_bytes()
        cut[kind].write_bytes(data[: len(data) // 2])
    return {kind: (whole[kind], cut[kind]) for kind in whole}


def test_cut_bags_are_salvaged_and_quarantined_with_exit_3(
    tmp_path: Path, damaged: dict[str, tuple[Path, Path]]
) -> None:
    lake = tmp_path / "lake"
    folder = damaged["db3"][1].parent
    run = subprocess.run([ASTRA, "ingest", folder, "--lake", lake], capture_output=True, text=True, check=False)
    assert run.returncode == 3, run.stderr
    summary = json.loads(run.stdout.splitlines()[-1])
    assert summary["quarantined"] == sorted(str(cut) for _, cut in damaged.values())
    con = connect(lake)
    for kind, (whole, cut) in damaged.items():
        row = episode(con, cut)
        assert (row["outcome"], row["salvaged"]) == ("salvaged", True), kind
        assert row["problems"][0].startswith("truncated"), row["problems"]
        # What is salvaged is the recording up to the cut: the first rows of the whole file, none changed.
        full = read(whole)["imu"].sort_by("t_ns").to_pylist()
        cursor = con.execute(
            "SELECT * EXCLUDE (episode_id, site, day) FROM imu WHERE episode_id = ? ORDER BY t_ns", [row["episode_id"]]
        )
        kept = [dict(zip([d[0] for d in cursor.description], r, strict=True)) for r in cursor.fetchall()]
        assert 0 < len(kept) < len(full), kind
        assert kept == full[: len(kept)], kind
        assert 0 < row["message_count"] < sum(read(whole)["episodes"]["message_count"].to_pylist())
        held = lake / QUARANTINE_DIR / row["episode_id"]
        reason = json.loads((held / "reason.json").read_text())
        assert (reason["source_path"], reason["problems"]) == (str(cut), row["problems"])
        assert (held / reason["copy"]).read_bytes() == cut.read_bytes()


def test_unclosed_ros1_bag_is_read_without_its_index(tmp_path: Path, good: Path) -> None:
    """`rosbag record` writes `NAME.bag.active`, and the index and its position only when it closes: a recorder
    that died leaves a bag without them. Every message is still there, chunk by chunk."""
    whole = to_ros1_bag(good, tmp_path / "episode.bag", small_chunks=True)
    data = bytearray(whole.read_bytes())
    field = data.index(b"index_pos=") + len(b"index_pos=")
    index_pos = int.from_bytes(data[field : field + 8], "little")
    data[field : field + 8] = bytes(8)
    active = tmp_path / "episode.bag.active"
    active.write_bytes(data[:index_pos])
    unclosed, closed = comparable(read(active)), comparable(read(whole))
    outcome = [unclosed["episodes"].pop(key) for key in ("outcome", "salvaged", "problems")]
    assert outcome == [
        "salvaged",
        True,
        [f"unindexed at byte {len(ROS1_MAGIC)}: the bag was not closed: it has no index"],
    ]
    for key in ("outcome", "salvaged", "problems"):
        closed["episodes"].pop(key)
    assert unclosed == closed


def test_summary_names_every_file_not_ingested_with_the_reason(tmp_path: Path, good: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "b").mkdir(parents=True)
    first, copy = logs / "a.mcap", logs / "b" / "copy.mcap"
    for path in (first, copy):
        path.write_bytes(good.read_bytes())
    bag = to_rosbag2(good, logs / "bag")
    (bag / "notes.md").write_text("recorded by hand\n")
    (logs / "empty.db3").write_bytes(b"")
    (logs / "robot.yaml").write_text("id: 7\n")
    (tmp_path / "nothing").mkdir()
    not_logs = {
        str(bag / "notes.md"): "unsupported format",
        str(logs / "empty.db3"): "empty",
        str(logs / "robot.yaml"): "unsupported format",
        str(tmp_path / "nothing"): "empty",
    }
    summary = ingest([logs, tmp_path / "nothing"], tmp_path / "lake", progress=False)
    assert (summary.files, summary.episodes) == (3, 2)
    assert summary.skipped == {str(copy): f"duplicate content: the same bytes as {first}", **not_logs}
    again = ingest([logs, tmp_path / "nothing"], tmp_path / "lake", progress=False)
    assert again.episodes == 0
    assert again.skipped == {**dict.fromkeys(map(str, (first, copy, bag)), "already in the lake"), **not_logs}


def test_list_logs_recognizes_each_format(tmp_path: Path) -> None:
    names = ["a.mcap", "b.MCAP.zstd", "c.mcap.lz4", "d.db3", "e.db3.zstd", "f.bag", "g.bag.active", "h.mcap.gz"]
    names += ["i.db3-wal", "j.bag.orig"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    listing = list_logs([tmp_path, tmp_path / "a.mcap"])
    assert [p.name for p in listing.logs] == names[:7]
    assert listing.skipped == {str(tmp_path / n): "unsupported format" for n in names[7:]}
    with pytest.raises(FileNotFoundError):
        list_logs([tmp_path / "missing"])


# --- real ROS 2 bags, converted ---------------------------------------------------------------------


@needs_bags
@pytest.mark.parametrize("made", [".db3", ".bag"])
@pytest.mark.parametrize("bag", ["jackal_imu_odom.mcap", "nav2_turtlebot.mcap"])
def test_real_bag_converted_gives_the_rows_of_the_mcap(tmp_path: Path, bag: str, made: str) -> None:
    log = ROSBAG_FORMATS[made](ROS2_BAGS / bag, tmp_path)
    converted, mcap = comparable(read(log)), comparable(read(ROS2_BAGS / bag))
    assert converted == mcap
    assert converted["episodes"]["message_counts"] == BAG_COUNTS[bag]


def test_a_cut_rosbag2_directory_is_quarantined_whole(tmp_path: Path, good: Path) -> None:
    bag = split_rosbag2(good, tmp_path / "logs" / "run", "mcap", parts=2)
    last = sorted(bag.glob("run_*.mcap"))[-1]
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    summary = ingest([tmp_path / "logs"], tmp_path / "lake", progress=False)
    assert (summary.episodes, summary.quarantined) == (1, [str(bag)])
    [held] = (tmp_path / "lake" / QUARANTINE_DIR).iterdir()
    reason = json.loads((held / "reason.json").read_text())
    copy = held / reason["copy"]
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in bag.iterdir())
    assert (copy / last.name).read_bytes() == last.read_bytes()
