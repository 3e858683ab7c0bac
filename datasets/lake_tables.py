"""The lake's Delta Lake tables on disk (layout: schemas.lake): which versions a lake version reads, committing
batches of episodes (one commit per table per batch, `episodes` last, idempotent by the episodes' transaction ids),
compaction, vacuum, and migration from the layout before Delta Lake. Reading them is `datasets.lake`'s; ingest
needs only this module.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import random
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction

from schemas.lake import (
    DEFAULT_RETENTION_HOURS,
    EPISODE_ID,
    INGEST_TXN_VERSION,
    LEGACY_PARTITION_GLOB,
    PARQUET_COMPRESSION,
    PARTITIONS,
    SINCE_PREVIOUS,
    STAGING_DIR,
    TABLE_VERSIONS,
    TABLES,
    file_schema,
    lake_schema,
    partition_path,
    partition_values,
    since_previous,
)


class LakeError(ValueError):
    """Something the user can fix: no lake at the path, an unknown table, a refused or failing query."""


# Ingest's threads and Dask workers commit to the same tables at once: a commit that loses a race is retried.
COMMIT_ATTEMPTS = 20
# Ingest commits episodes in batches of about this many, one commit per table per batch. A Delta commit costs time
# that grows with its table (delta-rs lists `_delta_log` and rebuilds the table's list of live files for it): one
# commit per episode made every episode pay it, where a batch pays it once and grows the log this many times slower.
COMMIT_BATCH_EPISODES = 64
COMMIT_THREADS = 4  # a batch's tables are committed this many at a time
# Compaction: ingest compacts a table by itself once this many of its files are under the target size.
AUTO_COMPACT_SMALL_FILES = 64
COMPACT_TARGET_BYTES = 128 << 20
_WRITER = WriterProperties(compression=PARQUET_COMPRESSION.upper())
# A checkpoint every 10 commits rather than Delta's 100: between checkpoints, every load of a table and every lookup
# of a transaction id parses each commit since the last one, and a batch's commit is large.
CHECKPOINT_INTERVAL = 10
_PROPERTIES = {"delta.checkpointInterval": str(CHECKPOINT_INTERVAL)}  # the tables' Delta properties


def _delta_tables(lake: Path) -> list[str]:
    return sorted(
        d.name
        for d in lake.iterdir()
        if d.is_dir() and not d.name.startswith(("_", ".")) and DeltaTable.is_deltatable(str(d))
    )


def table_versions(lake: Path, version: int | None) -> dict[str, int]:
    """table -> the version of it that the lake at `version` (None: now) reads."""
    tables = _delta_tables(lake)
    if version is None:
        return {table: DeltaTable(lake / table).version() for table in tables}
    if "episodes" not in tables:
        raise LakeError(f"the lake at {lake} has no episodes table, so no versions to read")
    latest = DeltaTable(lake / "episodes").version()
    if not 0 <= version <= latest:
        raise LakeError(f"the lake at {lake} has versions 0 to {latest}, not {version}")
    episodes = _readable(lake, "episodes", version, version)
    named = episodes.to_pyarrow_dataset().to_table(columns=[TABLE_VERSIONS.name]).column(0).combine_chunks()
    latest_named = (
        pa.table({"table": named.keys, "version": named.items}).group_by("table").aggregate([("version", "max")])
    )
    versions = {"episodes": version, **dict(zip(*latest_named.to_pydict().values(), strict=True))}
    for table, v in versions.items():
        _readable(lake, table, v, version)
    return versions


def _readable(lake: Path, table: str, version: int, lake_version: int) -> DeltaTable:
    """A table at a version, if `astra lake vacuum` left all its files; else LakeError."""
    delta = DeltaTable(lake / table, version=version)
    missing = next((f for f in delta.file_uris() if not os.path.exists(f)), None)
    if missing is not None:
        raise LakeError(
            f"version {lake_version} of the lake is gone: `astra lake vacuum` removed {missing} of table {table}"
        )
    return delta


def check_layout(lake: Path) -> None:
    """Raise LakeError if the lake at `lake` is in the layout before Delta Lake, one folder per episode."""
    old = sorted(
        d.name
        for d in lake.iterdir()
        if d.is_dir() and not (d / "_delta_log").is_dir() and any(d.glob(LEGACY_PARTITION_GLOB))
    )
    if old:
        raise LakeError(
            f"the lake at {lake} stores {', '.join(old)} in the layout before Delta Lake (a folder per episode): "
            f"run `astra lake migrate --lake {lake}` once to convert it"
        )


def check_columns(lake: Path) -> None:
    """Raise LakeError if a table of the lake lacks columns this version of Astra writes: `astra lake migrate`
    adds them."""
    for table in _tables_lacking_columns(lake):
        _check_columns(lake, table, DeltaTable(lake / table))


def _tables_lacking_columns(lake: Path) -> list[str]:
    return [t for t in _delta_tables(lake) if t in TABLES and _missing_columns(t, DeltaTable(lake / t))]


def _missing_columns(table: str, delta: DeltaTable) -> list[str]:
    have = {f.name for f in delta.schema().fields}
    return [f.name for f in lake_schema(table) if f.name not in have]


def _check_columns(lake: Path, table: str, delta: DeltaTable) -> None:
    # Committing files with a column the table's schema lacks would succeed, and readers would never see the column.
    missing = _missing_columns(table, delta)
    if missing:
        raise LakeError(
            f"the {table} table of the lake at {lake} was written by an older Astra, without {', '.join(missing)}: "
            f"run `astra lake migrate --lake {lake}` once to add it"
        )


# --- writing: one commit per table per batch of episodes -----------------------------------------------------


def lake_version(lake: Path) -> int | None:
    """The lake's latest version (that of `episodes`), None if it has no episodes yet."""
    path = Path(lake) / "episodes"
    return DeltaTable(path).version() if DeltaTable.is_deltatable(str(path)) else None


def committed_episodes(lake: Path, table: str) -> Callable[[str], bool]:
    """Whether an episode's rows of `table` are committed, from the table's application transactions, as a test to
    ask of many episodes: loading the table, done once here, reads the entry of every file it holds, while each
    answer reads only its transactions."""
    path = lake / table
    if not DeltaTable.is_deltatable(str(path)):
        return lambda episode_id: False
    delta = DeltaTable(path)
    return lambda episode_id: delta.transaction_version(episode_id) is not None


@dataclass(frozen=True)
class EpisodeFiles:
    """An episode staged for `commit_episodes`: table -> the Parquet files of its rows (in `file_schema(table)`, on
    the lake's filesystem, in row order), and its one-row `episodes` table (in `TABLES["episodes"]`)."""

    episode_id: str
    files: Mapping[str, Sequence[Path]]
    episode: pa.Table


def commit_episodes(lake: Path, episodes: Sequence[EpisodeFiles]) -> dict[str, int]:
    """Commit a batch of episodes: per table, all their files of its rows in one commit (`commit_files`), then all
    their `episodes` rows in one commit, each row recording the versions its episode's rows landed in. Returns
    table -> version."""
    rows = [e.episode.to_pylist()[0] for e in episodes]
    partitions = {e.episode_id: partition_values(r["site"], r["start_ns"]) for e, r in zip(episodes, rows, strict=True)}
    tables = sorted({t for e in episodes for t in e.files})

    def commit_table(table: str) -> int:
        files = {e.episode_id: (e.files[table], partitions[e.episode_id]) for e in episodes if table in e.files}
        return commit_files(lake, table, files)

    # The tables are independent, and delta-rs does its work without the GIL: commit them side by side.
    with ThreadPoolExecutor(max_workers=min(len(tables), COMMIT_THREADS) or 1) as pool:
        versions = dict(zip(tables, pool.map(commit_table, tables), strict=True))
    staged = {}
    for e, row in zip(episodes, rows, strict=True):
        row |= {EPISODE_ID: e.episode_id, TABLE_VERSIONS.name: [(t, versions[t]) for t in sorted(e.files)]}
        staged[e.episode_id] = (
            [_staged_file(lake, "episodes", e.episode_id, {k: [v] for k, v in row.items()})],
            partitions[e.episode_id],
        )
    return versions | {"episodes": commit_files(lake, "episodes", staged)}


def commit_files(lake: Path, table: str, episodes: Mapping[str, tuple[Sequence[Path], Mapping[str, Any]]]) -> int:
    """Commit episodes' rows of `table` as one Delta commit that carries each episode's application transaction:
    episode id -> (its files, in `file_schema(table)` on the lake's filesystem in row order; its partition). The
    files are moved into their partition first, named in order; readers see them only once committed. Returns the
    table's version after the commit.

    Episodes whose rows an earlier run or a racing writer committed already (their transactions say so) are left
    out and their files deleted; if that leaves none, nothing is committed.
    """
    path = lake / table
    schema = lake_schema(table)
    delta = _created(path, schema)
    _check_columns(lake, table, delta)
    run = uuid.uuid4().hex[:8]
    adds: dict[str, list[AddAction]] = {}
    for episode_id, (files, partition) in episodes.items():
        if delta.transaction_version(episode_id) is not None:
            for file in files:
                file.unlink()
            continue
        adds[episode_id] = []
        for index, file in enumerate(files):
            relative = f"{partition_path(partition)}/{episode_id}-{run}-{index:05d}.parquet"
            (path / relative).parent.mkdir(parents=True, exist_ok=True)
            os.rename(file, path / relative)
            rows = pq.read_metadata(path / relative).num_rows
            size, now_ms = (path / relative).stat().st_size, time.time_ns() // 1_000_000
            stats = json.dumps({"numRecords": rows})
            adds[episode_id].append(AddAction(relative, size, dict(partition), now_ms, True, stats))

    for attempt in range(COMMIT_ATTEMPTS):
        if not adds:
            break
        try:
            delta.create_write_transaction(
                [add for episode in adds.values() for add in episode],
                "append",
                schema,
                partition_by=PARTITIONS.names,
                commit_properties=CommitProperties(app_transactions=[Transaction(e, INGEST_TXN_VERSION) for e in adds]),
            )
            break
        except CommitFailedError:  # another writer committed first, or created the table: re-read it, try again
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            _back_off(attempt)
            delta = DeltaTable(path)
            # A racing writer may have committed some of these episodes (their transactions conflict): not twice.
            for episode_id in [e for e in adds if delta.transaction_version(e) is not None]:
                for add in adds.pop(episode_id):
                    (path / add.path).unlink()
    delta.update_incremental()
    return delta.version()


def _created(path: Path, schema: pa.Schema) -> DeltaTable:
    """The table at `path`, created if it does not exist yet, by this writer or by one racing it."""
    for attempt in range(COMMIT_ATTEMPTS - 1):
        if DeltaTable.is_deltatable(str(path)):
            return DeltaTable(path)  # half the cost of create(mode="ignore"), which loads the log as well
        try:
            return _create(path, schema)
        except DeltaError:  # another writer created it at the same moment
            _back_off(attempt)
    return _create(path, schema)


def _create(path: Path, schema: pa.Schema) -> DeltaTable:
    return DeltaTable.create(path, schema, partition_by=PARTITIONS.names, mode="ignore", configuration=_PROPERTIES)


def _back_off(attempt: int) -> None:
    time.sleep(random.uniform(0.0, 0.05 * (attempt + 1)))  # random, so that racing writers part


def write_partition(lake: Path, table: str, episode_id: str, columns: Mapping[str, Sequence[Any]]) -> int:
    """Commit one episode's rows of a table; columns left out are null, but the `since_previous_ns` of images, which
    is computed from their `t_ns` and `topic`. The partition is the one `columns` name (`site`, `start_ns`), else null.

    For fixtures and synthetic lakes: `astra ingest` commits whole episodes, `episodes` last (`commit_episodes`).
    Returns the table's version after the commit.
    """
    if SINCE_PREVIOUS.name in TABLES[table].names and SINCE_PREVIOUS.name not in columns:
        t_ns, topic = pa.array(columns["t_ns"], pa.int64()), pa.array(columns["topic"], pa.string())
        columns = {**columns, SINCE_PREVIOUS.name: since_previous(t_ns, topic)}
    rows = len(next(iter(columns.values())))
    site, start = (columns.get(k, [None])[0] for k in ("site", "start_ns"))
    staged = _staged_file(lake, table, episode_id, {**columns, EPISODE_ID: [episode_id] * rows})
    return commit_files(lake, table, {episode_id: ([staged], partition_values(site, start))})


def _staged_file(lake: Path, table: str, episode_id: str, columns: Mapping[str, Sequence[Any]]) -> Path:
    """A file of `table`'s rows written from columns (those left out are null) under the lake's staging."""
    staged = lake / STAGING_DIR / f"{episode_id}-{uuid.uuid4().hex[:8]}.parquet"
    staged.parent.mkdir(parents=True, exist_ok=True)
    rows = len(next(iter(columns.values())))
    schema = file_schema(table)
    data = pa.Table.from_pydict({f.name: columns.get(f.name, [None] * rows) for f in schema}, schema=schema)
    pq.write_table(data, staged, compression=PARQUET_COMPRESSION)
    return staged


# --- maintenance: compaction, vacuum, migration -----------------------------------------------------------------


def _lake_tables(lake: Path) -> list[str]:
    lake = Path(lake)
    if not lake.is_dir():
        raise LakeError(f"no lake at {lake}: `astra ingest` creates one")
    check_layout(lake)
    return _delta_tables(lake)


def compact(lake: Path, min_small_files: int = 2) -> dict[str, dict[str, int]]:
    """Merge the small files of each table's partitions into files of about COMPACT_TARGET_BYTES, one commit per
    table with at least `min_small_files` small files in partitions that have more than one. Returns table ->
    files removed and added."""
    done = {}
    for table in _lake_tables(lake):
        delta = DeltaTable(Path(lake) / table)
        files = pa.table(delta.get_add_actions(flatten=True))
        small = files.filter(pc.less(files["size_bytes"], COMPACT_TARGET_BYTES))
        partition = [f"partition.{name}" for name in PARTITIONS.names]
        per_partition = small.group_by(partition).aggregate([([], "count_all")])["count_all"].to_numpy()
        mergeable = int(per_partition[per_partition > 1].sum())
        if mergeable < min_small_files:
            continue
        metrics = delta.optimize.compact(target_size=COMPACT_TARGET_BYTES, writer_properties=_WRITER)
        # Checkpointed at once: until the next checkpoint, every load of the table and every lookup of a transaction
        # id would parse this commit, which removes each merged file by name.
        delta.create_checkpoint()
        done[table] = {"files_removed": metrics["numFilesRemoved"], "files_added": metrics["numFilesAdded"]}
    return done


def vacuum(lake: Path, retention_hours: int = DEFAULT_RETENTION_HOURS) -> dict[str, int]:
    """Delete the files no version younger than `retention_hours` reads: those compaction replaced, and those a
    killed ingest left uncommitted. Older versions can no longer be read. Returns table -> files deleted."""
    if retention_hours < 0:
        raise LakeError(f"retention hours must be 0 or more, not {retention_hours}")
    return {
        table: len(
            DeltaTable(Path(lake) / table).vacuum(
                retention_hours, dry_run=False, enforce_retention_duration=False, full=True
            )
        )
        for table in _lake_tables(lake)
    }


def migrate(lake: Path) -> dict[str, int]:
    """Convert a lake in the layout before Delta Lake (`<table>/episode_id=<id>/*.parquet`) in place, table by
    table, `episodes` last; tables converted already are left alone, so an interrupted migration can be run again.
    Each table is written in one commit that carries every episode's transaction, so re-ingesting a migrated
    file commits nothing. Then Delta tables written without some of this version's columns are rewritten with them
    (`_add_missing_columns`), and tables without this version's Delta properties get them. Returns table -> rows
    converted or rewritten."""
    lake = Path(lake).resolve()
    if not lake.is_dir():
        raise LakeError(f"no lake at {lake}")
    old = {d.name: d for d in lake.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))}
    old = {name: d for name, d in old.items() if not (d / "_delta_log").is_dir() and any(d.glob(LEGACY_PARTITION_GLOB))}
    if "episodes" in old:
        episodes = pads.dataset(old["episodes"], format="parquet", partitioning="hive").to_table(
            columns=["site", "start_ns", EPISODE_ID]
        )
        partitions = {row[EPISODE_ID]: partition_values(row["site"], row["start_ns"]) for row in episodes.to_pylist()}
    else:
        partitions = {}
    converted, versions = {}, {}
    for name in sorted(old, key=lambda n: (n == "episodes", n)):
        new = lake / f".{name}.migrating"
        shutil.rmtree(new, ignore_errors=True)
        episode_dirs = sorted(old[name].glob(LEGACY_PARTITION_GLOB))
        ids = [d.name.split("=", 1)[1] for d in episode_dirs]
        schema = lake_schema(name)
        batches = _legacy_batches(name, episode_dirs, ids, partitions, versions)
        write_deltalake(
            new,
            pa.RecordBatchReader.from_batches(schema, batches),
            partition_by=PARTITIONS.names,
            configuration=_PROPERTIES,
            writer_properties=_WRITER,
            commit_properties=CommitProperties(app_transactions=[Transaction(i, INGEST_TXN_VERSION) for i in ids]),
        )
        converted[name] = DeltaTable(new).count()
        versions[name] = DeltaTable(new).version()
        aside = lake / f".{name}.legacy"
        os.rename(old[name], aside)
        os.rename(new, lake / name)
        shutil.rmtree(aside)
    for name in _tables_lacking_columns(lake):
        converted[name] = _add_missing_columns(lake / name, name)
    for name in _delta_tables(lake):  # tables created before they checkpointed every CHECKPOINT_INTERVAL commits
        delta = DeltaTable(lake / name)
        if any(delta.metadata().configuration.get(k) != v for k, v in _PROPERTIES.items()):
            delta.alter.set_table_properties(_PROPERTIES)
    return converted


def _add_missing_columns(path: Path, table: str) -> int:
    """Rewrite a Delta table written before some of this version's columns, in one overwrite commit, which keeps its
    transaction ids and leaves its older versions readable until vacuumed. `since_previous_ns` is computed partition
    by partition, as an episode's rows never leave theirs: memory holds one partition's (`episode_id`, `topic`,
    `t_ns`) and one row group. Other new columns are null. Returns the table's rows."""
    partitions: dict[tuple, list[Path]] = defaultdict(list)
    for fragment in DeltaTable(path).to_pyarrow_dataset().get_fragments():
        values = pads.get_partition_keys(fragment.partition_expression)
        partitions[tuple(values.get(name) for name in PARTITIONS.names)].append(path / fragment.path)

    def batches() -> Iterator[pa.RecordBatch]:
        for key, files in partitions.items():
            constants = dict(zip(PARTITIONS.names, key, strict=True))
            for file, derived in zip(files, _derived(table, files, [EPISODE_ID, "topic"]), strict=True):
                parquet, offset = pq.ParquetFile(file), 0
                for group in range(parquet.num_row_groups):
                    data = parquet.read_row_group(group)
                    sliced = {name: column.slice(offset, data.num_rows) for name, column in derived.items()}
                    offset += data.num_rows
                    yield from _in_lake_schema(table, data, constants, sliced)

    write_deltalake(
        path,
        pa.RecordBatchReader.from_batches(lake_schema(table), batches()),
        mode="overwrite",
        schema_mode="overwrite",
        partition_by=PARTITIONS.names,
        writer_properties=_WRITER,
    )
    return DeltaTable(path).count()


def _derived(table: str, files: Sequence[Path], keys: Sequence[str]) -> list[dict[str, pa.Array]]:
    """Per file, the columns computed from rows rather than read: `since_previous_ns` of images, over all the files
    together, rows grouped by the columns `keys`."""
    if SINCE_PREVIOUS.name not in TABLES[table].names:
        return [{} for _ in files]
    return [{SINCE_PREVIOUS.name: values} for values in since_previous_in_files(files, keys)]


def since_previous_in_files(files: Sequence[Path], keys: Sequence[str]) -> list[pa.Array]:
    """`since_previous_ns` (`schemas.lake.since_previous`) of the image rows in Parquet `files`, file by file,
    computed over all of them together with rows grouped by the columns `keys`. Only those and `t_ns` are read:
    memory grows with the rows, not with their images."""
    stamps = [pq.read_table(file, columns=[*keys, "t_ns"]) for file in files]
    if not stamps:
        return []
    whole = pa.concat_tables(stamps)
    values = since_previous(whole["t_ns"], *(whole[key] for key in keys))
    ends = itertools.accumulate(part.num_rows for part in stamps)
    return [values.slice(end - part.num_rows, part.num_rows) for end, part in zip(ends, stamps, strict=True)]


def _legacy_batches(
    table: str,
    episode_dirs: list[Path],
    ids: list[str],
    partitions: Mapping[str, Mapping[str, Any]],
    versions: Mapping[str, int],
) -> Iterator[pa.RecordBatch]:
    """One old table's rows in the lake schema, file by file; `since_previous_ns` is computed over each episode's
    files (its folder), and other columns older lakes lack are null."""
    for directory, episode_id in zip(episode_dirs, ids, strict=True):
        part = partitions.get(episode_id, {"site": None, "day": None})
        added = {
            EPISODE_ID: episode_id,
            "site": part["site"],
            "day": None if part["day"] is None else dt.date.fromisoformat(part["day"]),
            TABLE_VERSIONS.name: list(versions.items()),
        }
        files = sorted(directory.glob("*.parquet"))
        for file, derived in zip(files, _derived(table, files, ["topic"]), strict=True):
            yield from _in_lake_schema(table, pq.read_table(file), added, derived)


def _in_lake_schema(
    table: str, data: pa.Table, constants: Mapping[str, Any], derived: Mapping[str, pa.Array]
) -> Iterator[pa.RecordBatch]:
    """Rows of a table written by an older Astra in its lake schema: the `derived` columns, the `constants`, its own
    columns, and nulls for the rest."""
    rows, schema = data.num_rows, lake_schema(table)
    columns = [
        derived[f.name]
        if f.name in derived
        else pa.array([constants[f.name]] * rows, f.type)
        if f.name in constants
        else data[f.name].cast(f.type)
        if f.name in data.column_names
        else pa.nulls(rows, f.type)
        for f in schema
    ]
    yield from pa.Table.from_arrays(columns, schema=schema).to_batches()
