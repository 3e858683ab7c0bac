"""The lake's Delta Lake tables (layout: schemas.lake): committing episodes, time travel, compaction, vacuum,
migration from the layout before Delta Lake, and reading as polars frames, DuckDB SQL and the text `astra sql` prints.

A `Lake` reads one version of the lake, fixed when it is opened: the latest, or the one asked for. SQL comes from
users, so it is kept read-only twice over. DuckDB's own parser must classify a query as one SELECT (DESCRIBE, SHOW
and SUMMARIZE count as SELECTs) before `Lake.sql` or `run_query` runs it. And every connection, from the moment its
views exist, can open no file outside the lake, load no extension and change no setting. The second guard alone
would still let `COPY ... TO` overwrite files inside the lake, which is why code that hands user SQL to a raw
`Lake.connect()` connection must check it with `check_read_only` first.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.transaction import AddAction

from schemas.lake import (
    DEFAULT_RETENTION_HOURS,
    EPISODE_ID,
    INGEST_TXN_VERSION,
    LEGACY_PARTITION_GLOB,
    PARQUET_COMPRESSION,
    PARTITIONS,
    STAGING_DIR,
    TABLE_VERSIONS,
    file_schema,
    lake_schema,
    partition_path,
    partition_values,
)

Format = Literal["table", "csv", "json"]
FORMATS: tuple[Format, ...] = ("table", "csv", "json")
TABLE_MAX_ROWS = 100  # a human table longer than this is better read with LIMIT, or as CSV or JSON
TABLE_MAX_CELL = 40

# The README's example queries: tests check their answers, benchmarks/lake_queries.py times them.
EXAMPLE_QUERIES: dict[str, str] = {
    "IMU rate per episode": """
SELECT episode_id, count(*) AS samples,
       round((count(*) - 1) / ((max(t_ns) - min(t_ns)) / 1e9), 2) AS rate_hz
FROM imu
GROUP BY episode_id
ORDER BY rate_hz, episode_id""",
    "Collisions per site": """
SELECT site, count(*) AS episodes, sum(collisions) AS collisions, round(sum(distance_m), 1) AS distance_m,
       round(100 * sum(collisions) / nullif(sum(distance_m), 0), 2) AS collisions_per_100m
FROM episodes
GROUP BY site
ORDER BY collisions DESC, site""",
    "Distance per robot per day (UTC)": """
SELECT robot_id, day, count(*) AS episodes, round(sum(distance_m), 1) AS distance_m
FROM episodes
GROUP BY robot_id, day
ORDER BY robot_id, day""",
    "Gaps in camera frames (over 1.5 x the nominal 100 ms)": """
SELECT episode_id, topic, t_ns, (t_ns - lag(t_ns) OVER w) / 1e6 AS gap_ms
FROM images
WINDOW w AS (PARTITION BY episode_id, topic ORDER BY t_ns)
QUALIFY gap_ms > 150
ORDER BY gap_ms DESC, episode_id, topic""",
    "Slowest episodes": """
SELECT episode_id, robot_id, site, duration_s, distance_m,
       round(distance_m / nullif(duration_s, 0), 3) AS mean_speed_mps
FROM episodes
ORDER BY mean_speed_mps, episode_id
LIMIT 10""",
}

# Errors in the query itself, or in what it asks of the data; other DuckDB errors (I/O, internal) are ours.
_QUERY_ERRORS = (duckdb.ProgrammingError, duckdb.DataError, duckdb.PermissionException)
_T = TypeVar("_T")


class LakeError(ValueError):
    """Something the user can fix: no lake at the path, an unknown table, a refused or failing query."""


def check_read_only(query: str) -> None:
    """Raise LakeError unless DuckDB's parser reads `query` as exactly one SELECT statement.

    SQL that does not parse raises duckdb.ParserException.
    """
    statements = duckdb.extract_statements(query)
    if len(statements) != 1:
        raise LakeError(f"expected one SQL statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise LakeError(
            f"the lake is read-only: {kind.name} statements are refused; "
            "run a SELECT (DESCRIBE, SHOW and SUMMARIZE work too)"
        )


# Compaction: ingest compacts a table by itself once this many of its files are under the target size.
AUTO_COMPACT_SMALL_FILES = 64
COMPACT_TARGET_BYTES = 128 << 20
_WRITER = WriterProperties(compression=PARQUET_COMPRESSION.upper())
_DUCKDB_TYPES = {pa.string(): "VARCHAR", pa.date32(): "DATE"}  # of the partition columns
_HIVE_TYPES = "{" + ", ".join(f"'{f.name}': {_DUCKDB_TYPES[f.type]}" for f in PARTITIONS) + "}"


class Lake:
    """One version of a lake on disk, its tables as polars LazyFrames or as views in DuckDB.

    `version`: the lake version to read (that of its `episodes` table); None reads the latest, as of now.
    """

    def __init__(self, path: Path | str, version: int | None = None) -> None:
        self.path = Path(path).resolve()
        if not self.path.is_dir():
            raise LakeError(f"no lake at {path}: `astra ingest` creates one")
        check_layout(self.path)
        self.versions = _table_versions(self.path, version)  # table -> the version of it read
        if not self.versions:
            raise LakeError(f"the lake at {path} has no tables yet: `astra ingest` fills it")
        self.version = self.versions.get("episodes")
        self._tables = sorted(self.versions)
        self._deltas: dict[str, DeltaTable] = {}
        self._connection: duckdb.DuckDBPyConnection | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Neither DuckDB connections nor Delta tables pickle (torch DataLoader workers pickle their Dataset):
        # reopened lazily, at the same versions.
        return {**self.__dict__, "_connection": None, "_deltas": {}}

    def tables(self) -> list[str]:
        """Names of the tables that have at least one episode."""
        return list(self._tables)

    def columns(self, table: str) -> dict[str, str]:
        """Column name -> DuckDB type of `table`: its own columns, `episode_id`, then the partitions."""
        self._delta(table)
        return dict(
            self._con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position",
                [table],
            ).fetchall()
        )

    def describe(self) -> str:
        """Every table with its columns and their types, one line per table."""
        lines = (f"  {t}: {', '.join(f'{c} {kind}' for c, kind in self.columns(t).items())}" for t in self._tables)
        return f"tables in {self.path} (version {self.version}):\n" + "\n".join(lines)

    def table(self, name: str) -> pl.LazyFrame:
        """A lazy scan of one table across all episodes."""
        return pl.scan_delta(self._delta(name))

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A new in-memory DuckDB with one view per table, confined to the lake (see the module doc)."""
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        con.execute("SET enable_progress_bar = false")  # it would write into `astra sql` output
        for name in self._tables:
            delta = self._delta(name)
            files = delta.file_uris()
            if not files:  # a table before its first commit
                con.register(name, delta.to_pyarrow_dataset())
                continue
            # DuckDB's own Parquet reader over the files of this version: it reads the partition columns from the
            # Hive-style folders Delta Lake writers use (escapes and nulls included), and caches file footers.
            columns = ", ".join(_identifier(f.name) for f in delta.schema().to_arrow())
            paths = ", ".join(map(_literal, files))
            con.execute(
                f"CREATE VIEW {_identifier(name)} AS SELECT {columns} FROM read_parquet([{paths}], "
                f"hive_partitioning = true, hive_types = {_HIVE_TYPES})"
            )
        con.execute("SET parquet_metadata_cache = true")  # footers read once per file: warm queries skip them
        con.execute(f"SET allowed_directories = [{_literal(f'{self.path}/')}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    def sql(self, query: str) -> pl.DataFrame:
        """The result of one read-only query; LakeError (with the tables and columns) if it fails."""
        return self._run(query, lambda relation: relation.pl())

    def _run(self, query: str, fetch: Callable[[duckdb.DuckDBPyRelation], _T]) -> _T:
        try:
            check_read_only(query)
            return fetch(self._con.sql(query))
        except _QUERY_ERRORS as exc:
            raise LakeError(f"{exc}\n\n{self.describe()}") from exc

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        if self._connection is None:
            self._connection = self.connect()
        return self._connection

    def _delta(self, table: str) -> DeltaTable:
        if table not in self.versions:
            raise LakeError(f"no table {table!r} in the lake at {self.path}; tables: {', '.join(self._tables)}")
        if table not in self._deltas:
            self._deltas[table] = DeltaTable(self.path / table, version=self.versions[table])
        return self._deltas[table]


def _delta_tables(lake: Path) -> list[str]:
    return sorted(
        d.name
        for d in lake.iterdir()
        if d.is_dir() and not d.name.startswith(("_", ".")) and DeltaTable.is_deltatable(str(d))
    )


def _table_versions(lake: Path, version: int | None) -> dict[str, int]:
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


# --- writing: one commit per table per episode ---------------------------------------------------------------


def lake_version(lake: Path) -> int | None:
    """The lake's latest version (that of `episodes`), None if it has no episodes yet."""
    path = Path(lake) / "episodes"
    return DeltaTable(path).version() if DeltaTable.is_deltatable(str(path)) else None


def is_committed(lake: Path, table: str, episode_id: str) -> bool:
    """Whether an episode's rows of `table` are committed, from the table's application transactions."""
    path = lake / table
    return DeltaTable.is_deltatable(str(path)) and DeltaTable(path).transaction_version(episode_id) is not None


def commit_episode_file(
    lake: Path, table: str, episode_id: str, files: Path | Sequence[Path], partition: Mapping[str, Any]
) -> int:
    """Commit one episode's rows of `table`, written to `files` (Parquet in `file_schema(table)`, on the lake's
    filesystem, in row order), as one Delta commit carrying the episode's application transaction. The files are
    moved into their partition first, named in order; readers see them only once committed. Returns the table's
    version after the commit.

    If an earlier run committed this episode's rows already (the transaction says so), the files are deleted and
    nothing is committed.
    """
    files = [files] if isinstance(files, Path) else list(files)
    path = lake / table
    schema = lake_schema(table)
    delta = DeltaTable.create(path, schema, partition_by=PARTITIONS.names, mode="ignore")
    if delta.transaction_version(episode_id) is not None:
        for file in files:
            file.unlink()
        return delta.version()
    run = uuid.uuid4().hex[:8]
    adds = []
    for index, file in enumerate(files):
        relative = f"{partition_path(partition)}/{episode_id}-{run}-{index:05d}.parquet"
        (path / relative).parent.mkdir(parents=True, exist_ok=True)
        os.rename(file, path / relative)
        rows = pq.read_metadata(path / relative).num_rows
        stats = json.dumps({"numRecords": rows})
        adds.append(
            AddAction(
                relative, (path / relative).stat().st_size, dict(partition), time.time_ns() // 1_000_000, True, stats
            )
        )
    delta.create_write_transaction(
        adds,
        "append",
        schema,
        partition_by=PARTITIONS.names,
        commit_properties=CommitProperties(app_transactions=[Transaction(episode_id, INGEST_TXN_VERSION)]),
    )
    delta.update_incremental()
    return delta.version()


def commit_episode(
    lake: Path, episode_id: str, files: Mapping[str, Path | Sequence[Path]], episode: pa.Table
) -> dict[str, int]:
    """Commit an episode: each table's files of its rows (see `commit_episode_file`), then its one-row `episodes`
    table (in `TABLES["episodes"]`), which records the versions they landed in. Returns table -> version."""
    row = episode.to_pylist()[0]
    partition = partition_values(row["site"], row["start_ns"])
    versions = {t: commit_episode_file(lake, t, episode_id, files[t], partition) for t in sorted(files)}
    row |= {EPISODE_ID: episode_id, TABLE_VERSIONS.name: list(versions.items())}
    versions["episodes"] = _commit_columns(lake, "episodes", episode_id, {k: [v] for k, v in row.items()}, partition)
    return versions


def write_partition(lake: Path, table: str, episode_id: str, columns: Mapping[str, Sequence[Any]]) -> None:
    """Commit one episode's rows of a table; columns left out are null. The partition is the one `columns` name
    (`site`, `start_ns`), else null.

    For fixtures and synthetic lakes: `astra ingest` commits whole episodes, `episodes` last (`commit_episode`).
    """
    rows = len(next(iter(columns.values())))
    site, start = (columns.get(k, [None])[0] for k in ("site", "start_ns"))
    partition = partition_values(site, start)
    _commit_columns(lake, table, episode_id, {**columns, EPISODE_ID: [episode_id] * rows}, partition)


def _commit_columns(
    lake: Path, table: str, episode_id: str, columns: Mapping[str, Sequence[Any]], partition: Mapping[str, Any]
) -> int:
    """`commit_episode_file` of a file written from columns (those left out are null) under the lake's staging."""
    staged = lake / STAGING_DIR / f"{episode_id}-{uuid.uuid4().hex[:8]}.parquet"
    staged.parent.mkdir(parents=True, exist_ok=True)
    rows = len(next(iter(columns.values())))
    schema = file_schema(table)
    data = pa.Table.from_pydict({f.name: columns.get(f.name, [None] * rows) for f in schema}, schema=schema)
    pq.write_table(data, staged, compression=PARQUET_COMPRESSION)
    return commit_episode_file(lake, table, episode_id, staged, partition)


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
        files = pl.DataFrame(pa.table(delta.get_add_actions(flatten=True)))
        small = files.filter(pl.col("size_bytes") < COMPACT_TARGET_BYTES)
        per_partition = small.group_by([f"partition.{name}" for name in PARTITIONS.names]).len()
        mergeable = per_partition.filter(pl.col("len") > 1)["len"].sum()
        if mergeable < min_small_files:
            continue
        metrics = delta.optimize.compact(target_size=COMPACT_TARGET_BYTES, writer_properties=_WRITER)
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
    file commits nothing. Returns table -> rows converted."""
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
            writer_properties=_WRITER,
            commit_properties=CommitProperties(app_transactions=[Transaction(i, INGEST_TXN_VERSION) for i in ids]),
        )
        converted[name] = DeltaTable(new).count()
        versions[name] = DeltaTable(new).version()
        aside = lake / f".{name}.legacy"
        os.rename(old[name], aside)
        os.rename(new, lake / name)
        shutil.rmtree(aside)
    return converted


def _legacy_batches(
    table: str,
    episode_dirs: list[Path],
    ids: list[str],
    partitions: Mapping[str, Mapping[str, Any]],
    versions: Mapping[str, int],
) -> Iterator[pa.RecordBatch]:
    """One old table's rows in the lake schema, file by file; columns older lakes lack are null."""
    schema = lake_schema(table)
    for directory, episode_id in zip(episode_dirs, ids, strict=True):
        part = partitions.get(episode_id, {"site": None, "day": None})
        for file in sorted(directory.glob("*.parquet")):
            data = pq.read_table(file)
            added = {
                EPISODE_ID: episode_id,
                "site": part["site"],
                "day": None if part["day"] is None else dt.date.fromisoformat(part["day"]),
                TABLE_VERSIONS.name: list(versions.items()),
            }
            columns = [
                pa.array([added[f.name]] * data.num_rows, f.type)
                if f.name in added
                else data[f.name].cast(f.type)
                if f.name in data.column_names
                else pa.nulls(data.num_rows, f.type)
                for f in schema
            ]
            yield from pa.Table.from_arrays(columns, schema=schema).to_batches()


def run_query(lake: Path, query: str, fmt: Format = "table", version: int | None = None) -> str:
    """What `astra sql` prints for one read-only query (no trailing newline), over the lake at `version`
    (None: the latest).

    - `table`: aligned columns, at most TABLE_MAX_ROWS rows, cells cut to TABLE_MAX_CELL characters,
      NULL as `NULL` and binary values as `<N bytes>`.
    - `csv`: a header, then every row; NULL is an empty cell.
    - `json`: one array of row objects.
    In CSV and JSON, binary values are base64 text, maps JSON objects, lists JSON arrays, times ISO 8601,
    and in JSON NaN and infinities are null. Raises LakeError for anything the user can fix.
    """
    if fmt not in FORMATS:
        raise LakeError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    limit = TABLE_MAX_ROWS + 1 if fmt == "table" else None
    names, rows = Lake(lake, version)._run(
        query, lambda r: (r.columns, (r if limit is None else r.limit(limit)).fetchall())
    )
    if fmt == "json":
        return json.dumps([{name: _jsonable(v) for name, v in zip(names, row, strict=True)} for row in rows])
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([_cell(v) for v in row] for row in rows)
        return out.getvalue().rstrip("\n")
    return _table(names, rows)


def _table(names: list[str], rows: list[tuple]) -> str:
    shown = rows[:TABLE_MAX_ROWS]
    cells = [[_shorten(_display(v)) for v in row] for row in shown]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(names)]
    numeric = [
        bool(shown) and all(_is_number(row[i]) for row in shown if row[i] is not None) for i in range(len(names))
    ]

    def line(values: Sequence[str]) -> str:
        padded = (v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))
        return "  ".join(padded).rstrip()

    if len(rows) > TABLE_MAX_ROWS:
        footer = f"(first {TABLE_MAX_ROWS} rows shown: add a LIMIT, or use --format csv or json for all)"
    else:
        footer = f"({len(rows)} row{'' if len(rows) == 1 else 's'})"
    return "\n".join([line(names), line(["-" * w for w in widths]), *map(line, cells), footer])


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _jsonable(value: Any) -> Any:
    """A JSON-ready copy of a DuckDB value: bytes as base64, maps as objects, times as ISO 8601."""
    match value:
        case None | bool() | int() | str():
            return value
        case float():
            return value if math.isfinite(value) else None
        case bytes():
            return base64.b64encode(value).decode("ascii")
        case dict():
            return {str(k): _jsonable(v) for k, v in value.items()}
        case list() | tuple():
            return [_jsonable(v) for v in value]
        case Decimal():
            return float(value)
        case dt.date() | dt.time():
            return value.isoformat()
        case _:
            return str(value)  # UUID, interval (timedelta) and the like


def _cell(value: Any) -> str:
    """One CSV cell: empty for NULL, JSON text for maps and lists."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # keeps nan and inf, which JSON cannot
    jsonable = _jsonable(value)
    return jsonable if isinstance(jsonable, str) else json.dumps(jsonable)


def _display(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return _cell(value).replace("\n", "\\n")


def _shorten(text: str) -> str:
    return text if len(text) <= TABLE_MAX_CELL else text[: TABLE_MAX_CELL - 1] + "…"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
