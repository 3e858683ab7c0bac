"""Reading the lake's Delta Lake tables (layout: schemas.lake; writing them: datasets.lake_tables) at one version, as
polars frames, DuckDB SQL and the text `astra sql` prints.

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
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

import duckdb
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

from datasets.lake_tables import LakeError, check_layout, table_versions
from schemas.lake import PARTITIONS, TABLES, lake_schema

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
SELECT episode_id, topic, t_ns, since_previous_ns / 1e6 AS gap_ms
FROM images
WHERE since_previous_ns > 150_000_000
ORDER BY gap_ms DESC, episode_id, topic, t_ns""",
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
        self.versions = table_versions(self.path, version)  # table -> the version of it read
        self._latest = version is None
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
            raise LakeError(f"{exc}\n\n{self.describe()}{self._migration_hint()}") from exc

    def _migration_hint(self) -> str:
        """Why a query may lack columns: tables an older Astra wrote, until `astra lake migrate` adds them."""
        if not self._latest:  # an old version stays as it was written, migrated or not
            return ""
        lacking = []
        for table in self._tables:
            have = {f.name for f in self._delta(table).schema().fields}
            missing = [f.name for f in lake_schema(table) if f.name not in have] if table in TABLES else []
            lacking += [f"{table} lacks {', '.join(missing)}"] if missing else []
        if not lacking:
            return ""
        return f"\n\nan older Astra wrote this lake ({'; '.join(lacking)}): run `astra lake migrate --lake {self.path}`"

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
