"""The lake as Delta Lake tables: one commit per table per batch of episodes, `episodes` last; re-runs that commit
nothing by the tables' transaction ids; compaction, vacuum, time travel (`Lake(version=)`, `astra sql --as-of`) and the
migration of lakes written before Delta Lake. Read-only SQL is tested in test_lake.py, over these tables."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from datasets.lake import Lake
from datasets.lake_tables import (
    AUTO_COMPACT_SMALL_FILES,
    CHECKPOINT_INTERVAL,
    EpisodeFiles,
    LakeError,
    commit_episodes,
    commit_files,
    committed_episodes,
    compact,
    migrate,
    partition_values,
    vacuum,
    write_partition,
)
from pipelines.ingest import ingest
from schemas.lake import INGEST_TXN_VERSION, PARTITIONS, SINCE_PREVIOUS, TABLES, file_schema, table_from_rows
from tests.conftest import T0  # 2023-11-14 22:13:20 UTC, where recordings start
from tests.test_ingest import DEPTH, FRONT, GAPS_QUERY, WINDOW_GAPS_QUERY, frame_gaps, record_episode

ASTRA = str(Path(sys.executable).parent / "astra")


def _staged(directory: Path, table: str, episode_id: str, rows: int) -> Path:
    """A file of `rows` rows of a message table, as ingest stages it."""
    schema = file_schema(table)
    columns = {"t_ns": list(range(rows)), "topic": [f"/{table}"] * rows, "episode_id": [episode_id] * rows}
    path = directory / f"{episode_id}-{table}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict({f.name: columns.get(f.name, [None] * rows) for f in schema}, schema), path)
    return path


def _episode(episode_id: str, site: str = "office-0", start_ns: int = T0) -> pa.Table:
    """A one-row `episodes` table as ingest reads it from a file."""
    values = {"source_path": f"/logs/{episode_id}.mcap", "site": site, "start_ns": start_ns, "duration_s": 1.0}
    return table_from_rows("episodes", [tuple(values.get(f.name) for f in TABLES["episodes"])])


def _commit(lake: Path, episode_id: str, rows: int = 3, **where: object) -> dict[str, int]:
    files = {t: [_staged(lake.parent / "staged", t, episode_id, rows)] for t in ("imu", "odometry")}
    return commit_episodes(lake, [EpisodeFiles(episode_id, files, _episode(episode_id, **where))])


def _astra(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ASTRA, *args], capture_output=True, text=True, timeout=120)


# --- commits ---------------------------------------------------------------------------------------------------


def test_an_episode_is_one_commit_per_table_episodes_last(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    versions = _commit(lake, "ep-a")
    assert versions == {"imu": 1, "odometry": 1, "episodes": 1}  # version 0 of each is its creation
    for table in versions:
        history = DeltaTable(lake / table).history()
        assert [h["operation"] for h in history] == ["WRITE", "CREATE TABLE"]
        assert DeltaTable(lake / table).transaction_version("ep-a") == INGEST_TXN_VERSION
    commit_times = {t: DeltaTable(lake / t).history(1)[0]["timestamp"] for t in versions}
    assert commit_times["episodes"] >= max(commit_times["imu"], commit_times["odometry"])
    # The episodes row names the versions its rows landed in, and sits in its site and day's partition.
    row = Lake(lake).sql("SELECT table_versions, site, day::VARCHAR AS day FROM episodes").row(0, named=True)
    assert row == {"table_versions": {"imu": 1, "odometry": 1}, "site": "office-0", "day": "2023-11-14"}
    [file] = DeltaTable(lake / "imu").file_uris()
    assert "/imu/site=office-0/day=2023-11-14/" in file


def test_a_rerun_commits_nothing_by_the_transaction_ids(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    # An earlier run committed the episode's imu rows, then died before its other tables.
    write_partition(lake, "imu", "ep-a", {"t_ns": [0, 1, 2], "topic": ["/imu"] * 3})
    assert committed_episodes(lake, "imu")("ep-a") and not committed_episodes(lake, "episodes")("ep-a")
    first = _commit(lake, "ep-a")
    assert first["imu"] == 1 and DeltaTable(lake / "imu").history(1)[0]["operation"] == "WRITE"
    again = _commit(lake, "ep-a")
    assert again == first
    assert not list((tmp_path / "staged").iterdir())  # the files of the run that committed nothing are gone
    counts = Lake(lake).sql("SELECT (SELECT count(*) FROM imu) AS imu, (SELECT count(*) FROM odometry) AS odometry")
    assert counts.row(0) == (3, 3)
    assert {t: DeltaTable(lake / t).version() for t in first} == first


def test_a_batch_is_one_commit_per_table_without_what_an_earlier_run_committed(tmp_path: Path) -> None:
    lake, staged = tmp_path / "lake", tmp_path / "staged"
    # An earlier run committed ep-1's imu rows, then died before its other tables.
    write_partition(lake, "imu", "ep-1", {"t_ns": [0, 1, 2], "topic": ["/imu"] * 3})
    ids = ["ep-0", "ep-1", "ep-2"]
    batch = [EpisodeFiles(e, {t: [_staged(staged, t, e, 3)] for t in ("imu", "odometry")}, _episode(e)) for e in ids]
    assert commit_episodes(lake, batch) == {"imu": 2, "odometry": 1, "episodes": 1}
    for table, commits in {"imu": 2, "odometry": 1, "episodes": 1}.items():
        delta = DeltaTable(lake / table)
        assert [h["operation"] for h in delta.history()] == ["WRITE"] * commits + ["CREATE TABLE"], table
        assert all(delta.transaction_version(e) == INGEST_TXN_VERSION for e in ids), table
    assert not list(staged.iterdir())  # ep-1's imu file of this run was left out and deleted
    db = Lake(lake)
    assert db.sql("SELECT episode_id, count(*) FROM imu GROUP BY 1 ORDER BY 1").rows() == [(e, 3) for e in ids]
    versions = db.sql("SELECT table_versions FROM episodes").to_series().to_list()
    assert versions == [{"imu": 2, "odometry": 1}] * 3


def test_ingest_commits_its_episodes_in_one_commit_per_table_and_a_rerun_in_none(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    logs = [record_episode(tmp_path / "logs" / f"{steps}.mcap", steps=steps) for steps in (5, 6, 7)]
    assert ingest(logs, lake, progress=False).episodes == 3  # fewer than a batch
    ids = Lake(lake).sql("SELECT episode_id FROM episodes").to_series().to_list()
    tables = [d for d in lake.iterdir() if (d / "_delta_log").is_dir()]
    for table in tables:
        delta = DeltaTable(table)
        assert [h["operation"] for h in delta.history()] == ["WRITE", "CREATE TABLE"], table.name
        assert all(delta.transaction_version(e) == INGEST_TXN_VERSION for e in ids), table.name
    again = ingest(logs, lake, progress=False)
    assert again.episodes == 0 and set(again.skipped.values()) == {"already in the lake"}
    assert all(DeltaTable(table).version() == 1 for table in tables)


def test_a_table_is_checkpointed_every_few_commits(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for i in range(CHECKPOINT_INTERVAL):
        write_partition(lake, "imu", f"ep-{i}", {"t_ns": [i], "topic": ["/imu"]})
    # Loading the table reads the checkpoint, then parses only the commits after it.
    last_checkpoint = json.loads((lake / "imu" / "_delta_log" / "_last_checkpoint").read_text())
    assert last_checkpoint["version"] == CHECKPOINT_INTERVAL - 1


def test_ingest_compacts_once_small_files_pile_up(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for i in range(AUTO_COMPACT_SMALL_FILES - 1):
        # In the partition of the recording below: its site, and the day it starts.
        write_partition(lake, "tf", f"ep-{i}", {"t_ns": [i], "topic": ["/tf"], "site": ["office-3"], "start_ns": [T0]})
    summary = ingest([record_episode(tmp_path / "logs" / "episode.mcap", steps=10)], lake, progress=False)
    assert summary.episodes == 1 and "tf" in summary.compacted and "imu" not in summary.compacted
    assert len(DeltaTable(lake / "tf").file_uris()) < AUTO_COMPACT_SMALL_FILES
    assert summary.lake_version == DeltaTable(lake / "episodes").version()


# --- compaction and vacuum --------------------------------------------------------------------------------------


def test_compaction_merges_a_partition_into_one_file_and_keeps_old_versions_readable(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for i in range(4):
        _commit(lake, f"ep-{i}", rows=i + 1)
    _commit(lake, "ep-other-day", start_ns=T0 + 86_400 * 10**9)
    before = Lake(lake)
    query = "SELECT episode_id, day, count(*) AS n, sum(t_ns) AS t FROM imu GROUP BY ALL ORDER BY ALL"
    expected = before.sql(query)
    assert len(DeltaTable(lake / "imu").file_uris()) == 5

    done = compact(lake)
    assert done["imu"] == {"files_removed": 4, "files_added": 1}  # the lone file of the other day stays
    # Checkpointed at the compaction: loading the table does not parse its commit, which names every merged file.
    last_checkpoint = json.loads((lake / "imu" / "_delta_log" / "_last_checkpoint").read_text())
    assert last_checkpoint["version"] == DeltaTable(lake / "imu").version()
    assert len(DeltaTable(lake / "imu").file_uris()) == 2
    after = Lake(lake)
    assert after.version == before.version + 1 and after.sql(query).equals(expected)
    assert Lake(lake, version=before.version).sql(query).equals(expected)
    assert compact(lake) == {}  # nothing small is left to merge


def test_vacuum_deletes_replaced_files_and_the_versions_that_read_them(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for i in range(3):
        _commit(lake, f"ep-{i}")
    old = Lake(lake).version
    compact(lake)
    assert vacuum(lake)["imu"] == 0  # the default retention keeps a week of versions
    assert Lake(lake, version=old).sql("SELECT count(*) FROM imu").item() == 9
    assert vacuum(lake, retention_hours=0)["imu"] == 3
    assert Lake(lake).sql("SELECT count(*) FROM imu").item() == 9
    with pytest.raises(LakeError, match=f"version {old} of the lake is gone: `astra lake vacuum` removed"):
        Lake(lake, version=old)
    with pytest.raises(LakeError, match="retention hours must be 0 or more"):
        vacuum(lake, retention_hours=-1)


# --- time travel --------------------------------------------------------------------------------------------------


def test_each_lake_version_reads_the_episodes_committed_by_then(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    versions = [_commit(lake, f"ep-{i}", rows=10 * (i + 1))["episodes"] for i in range(3)]
    assert versions == [1, 2, 3]
    for count, version in enumerate(versions, start=1):
        db = Lake(lake, version=version)
        assert db.version == version
        assert db.sql("SELECT count(*) FROM episodes").item() == count
        assert db.sql("SELECT count(*) FROM imu").item() == sum(10 * (i + 1) for i in range(count))
        assert db.table("odometry").collect().height == db.sql("SELECT count(*) FROM odometry").item()
    assert Lake(lake, version=0).tables() == ["episodes"]  # the empty table, before any episode

    as_of = _astra("sql", "SELECT count(*) AS n FROM imu", "--lake", str(lake), "--format", "json", "--as-of", "1")
    assert as_of.returncode == 0 and json.loads(as_of.stdout) == [{"n": 10}]
    latest = _astra("sql", "SELECT count(*) AS n FROM imu", "--lake", str(lake), "--format", "json")
    assert json.loads(latest.stdout) == [{"n": 60}]
    future = _astra("sql", "SELECT 1", "--lake", str(lake), "--as-of", "4")
    assert future.returncode == 2 and "has versions 0 to 3, not 4" in future.stderr
    refused = _astra("sql", "DROP VIEW imu", "--lake", str(lake), "--as-of", "1")
    assert refused.returncode == 2 and "read-only" in refused.stderr


# --- migration from the layout before Delta Lake ----------------------------------------------------------------


def _write_legacy(lake: Path, table: str, episode_id: str, columns: dict[str, list]) -> None:
    """A partition as lakes before Delta Lake stored it: `<table>/episode_id=<id>/part-0.parquet`, no id column and
    no `since_previous_ns`."""
    rows = len(next(iter(columns.values())))
    schema = pa.schema([f for f in TABLES[table] if f != SINCE_PREVIOUS])
    data = pa.Table.from_pydict({f.name: columns.get(f.name, [None] * rows) for f in schema}, schema=schema)
    (lake / table / f"episode_id={episode_id}").mkdir(parents=True)
    pq.write_table(data, lake / table / f"episode_id={episode_id}" / "part-0.parquet")


def test_migrate_converts_a_lake_of_folders_per_episode(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    for i, site in enumerate(("office-0", "warehouse-1")):
        _write_legacy(lake, "imu", f"ep-{i}", {"t_ns": [1, 2, 3][: i + 2], "topic": ["/imu"] * (i + 2)})
        _write_legacy(lake, "episodes", f"ep-{i}", {"site": [site], "start_ns": [T0], "collisions": [i]})
    # Frames out of time order, the last 300 ms after the one before it.
    frames = [T0 + 500_000_000, T0, T0 + 100_000_000, T0 + 200_000_000]
    _write_legacy(lake, "images", "ep-0", {"t_ns": frames, "topic": [FRONT] * 4})
    with pytest.raises(LakeError, match=r"stores episodes, images, imu in the layout before Delta.*astra lake migrate"):
        Lake(lake)
    with pytest.raises(LakeError, match="astra lake migrate"):
        ingest([record_episode(tmp_path / "logs" / "episode.mcap", steps=5)], lake, progress=False)

    result = _astra("lake", "migrate", "--lake", str(lake))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["migrated_rows"] == {"episodes": 2, "images": 4, "imu": 5}
    db = Lake(lake)
    query = "SELECT episode_id, site, count(*) AS n FROM imu GROUP BY ALL ORDER BY 1"
    assert db.sql(query).rows() == [("ep-0", "office-0", 2), ("ep-1", "warehouse-1", 3)]
    assert db.sql("SELECT episode_id, collisions FROM episodes ORDER BY 1").rows() == [("ep-0", 0), ("ep-1", 1)]
    assert db.sql(GAPS_QUERY).rows() == db.sql(WINDOW_GAPS_QUERY).rows() == [("ep-0", FRONT, frames[0], 300.0)]
    assert all(committed_episodes(lake, t)(f"ep-{i}") for t in ("imu", "episodes") for i in range(2))
    assert not list(lake.glob("*/episode_id=*")) and not list(lake.glob(".*"))
    assert migrate(lake) == {}  # nothing left to convert


def test_a_delta_lake_without_since_previous_takes_no_commits_until_migrated(tmp_path: Path) -> None:
    lake, logs = tmp_path / "lake", tmp_path / "logs"
    first = record_episode(logs / "first.mcap", steps=30, dropped={"image_front": {2}})
    other = record_episode(logs / "other.mcap", steps=30, dropped={"depth_front": {1}})  # in first's partition
    ingest([first, other], lake, progress=False)
    # The images table as an Astra before `since_previous_ns` left it: the same rows and transaction ids, no column.
    old = DeltaTable(lake / "images").to_pyarrow_table().drop_columns([SINCE_PREVIOUS.name])
    write_deltalake(lake / "images", old, mode="overwrite", schema_mode="overwrite", partition_by=PARTITIONS.names)
    second = record_episode(logs / "second.mcap", steps=30, dropped={"depth_front": {3, 4}})
    refused = r"the images table .* without since_previous_ns: run `astra lake migrate --lake .*` once"
    with pytest.raises(LakeError, match=refused):
        ingest([second], lake, progress=False)
    with pytest.raises(LakeError, match=refused):
        write_partition(lake, "images", "ep-x", {"t_ns": [T0], "topic": [FRONT]})
    assert len(Lake(lake).sql("SELECT * FROM images")) == old.num_rows  # reading needs no migration
    with pytest.raises(LakeError, match=r"images lacks since_previous_ns\): run `astra lake migrate --lake "):
        Lake(lake).sql("SELECT since_previous_ns FROM images")

    result = _astra("lake", "migrate", "--lake", str(lake))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["migrated_rows"] == {"images": old.num_rows}
    summary = ingest([logs], lake, progress=False)
    assert summary.episodes == 1 and summary.skipped == dict.fromkeys(map(str, (first, other)), "already in the lake")
    expected = {("first.mcap", FRONT, 3, 200.0), ("other.mcap", DEPTH, 2, 200.0), ("second.mcap", DEPTH, 5, 300.0)}
    assert frame_gaps(lake) == expected
    assert migrate(lake) == {}


def test_migrate_gives_older_tables_the_checkpoint_interval(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_partition(lake, "imu", "ep-0", {"t_ns": [T0], "topic": ["/imu"]})
    # As an Astra before CHECKPOINT_INTERVAL created its tables: Delta's default of a checkpoint every 100 commits.
    old = DeltaTable(lake / "imu").to_pyarrow_table()
    shutil.rmtree(lake / "imu")
    write_deltalake(lake / "imu", old, partition_by=PARTITIONS.names)
    assert "delta.checkpointInterval" not in DeltaTable(lake / "imu").metadata().configuration
    assert migrate(lake) == {}
    assert DeltaTable(lake / "imu").metadata().configuration["delta.checkpointInterval"] == str(CHECKPOINT_INTERVAL)
    assert len(Lake(lake).sql("SELECT * FROM imu")) == 1


def test_lake_commands_refuse_what_is_not_a_lake(tmp_path: Path) -> None:
    for command in ("compact", "vacuum", "migrate"):
        result = _astra("lake", command, "--lake", str(tmp_path / "nowhere"))
        assert result.returncode == 2 and "no lake at" in result.stderr
    negative = _astra("lake", "vacuum", "--lake", str(tmp_path), "--retention-hours", "-1")
    assert negative.returncode == 2 and "retention hours must be 0 or more" in negative.stderr
    assert "--retention-hours" in _astra("lake", "vacuum", "--help").stdout


def test_a_writer_that_loses_a_race_commits_only_what_the_winner_did_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two ingests of overlapping logs commit at the same moment: the one that loses reads the table again, drops
    the episodes the winner committed (and their files) and commits the rest, each episode's rows once."""
    lake, staged = tmp_path / "lake", tmp_path / "staged"
    write_partition(lake, "imu", "ep-0", {"t_ns": [0], "topic": ["/imu"]})  # the table exists for both writers
    partition = partition_values("office-0", T0)
    real_commit = DeltaTable.create_write_transaction
    raced = []

    def racing_writer_first(self: DeltaTable, *args: object, **kwargs: object) -> object:
        if not raced:  # a second writer commits ep-1 between this writer's look at the table and its commit
            raced.append(True)
            commit_files(lake, "imu", {"ep-1": ([_staged(tmp_path / "racer", "imu", "ep-1", 5)], partition)})
        return real_commit(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", racing_writer_first)
    files = {e: ([_staged(staged, "imu", e, 3)], partition) for e in ("ep-1", "ep-2")}
    version = commit_files(lake, "imu", files)
    assert raced and version == DeltaTable(lake / "imu").version() == 3  # created, ep-0, the racer, the loser
    rows = Lake(lake).sql("SELECT episode_id, count(*) FROM imu GROUP BY 1 ORDER BY 1").rows()
    assert rows == [("ep-0", 1), ("ep-1", 5), ("ep-2", 3)]  # ep-1 as the winner wrote it, once
    assert len(DeltaTable(lake / "imu").file_uris()) == 3
    on_disk = [p for p in (lake / "imu").rglob("*.parquet") if "_delta_log" not in p.parts]
    assert len(on_disk) == 3, "the loser's copy of ep-1 is deleted, not left beside the table"
