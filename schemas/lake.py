"""The lake: one Delta Lake table per kind of data, partitioned by site and day.

Layout: `<lake>/<table>/` is a Delta table (`_delta_log/` plus Parquet files, zstd) partitioned by
`site=<site>/day=<YYYY-MM-DD>/`, the episode's site and the UTC day it started; compaction merges an
episode's small files with the others of its partition. Every row carries `episode_id` and the
partition columns `site` and `day`, and every row of a message table `t_ns`, the MCAP log time in
nanoseconds, which is the one clock all tables share. Message header stamps are kept as `stamp_ns`:
recordings from simulation or from other robots often stamp headers on another clock than they log.

`episode_id` is the first 16 hex digits of the file's SHA-256, so the same bytes are the same
episode wherever they are found, and a file changed in place is a new one.

Publishing is one Delta commit per table per batch of episodes, `episodes` last, so an `episodes` row marks
its episode complete: an episode's rows of a table are all in one commit. Each commit carries the application
transaction `(episode_id, INGEST_TXN_VERSION)` of every episode in it, so a re-run commits nothing twice.
Files are written under `<lake>/_staging/<run>/` and moved into their partition just before their commit:
until then no reader sees them, and `astra lake vacuum` removes those a killed ingest left behind.

Every commit is a version of its table; the lake's version is that of `episodes`. Each `episodes` row
records in `table_versions` the version of every table once its episode had landed, so the lake as of
a version V reads each table at the greatest version its `episodes` rows at V name.

Files that cannot be read whole go to `<lake>/_quarantine/<episode_id>/` with `reason.json` and a
copy of the file; whatever was salvaged from them lands in the tables as usual, with
`episodes.salvaged = true` and the damage listed in `episodes.problems`.

Lakes written before Delta Lake (`<table>/episode_id=<id>/part-0.parquet`) are converted by
`astra lake migrate`, which also adds to Delta tables the columns they were written without (`since_previous_ns`
of images): until then ingest commits nothing to them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EPISODE_ID = "episode_id"
DEFAULT_LAKE = Path("data/lake")  # relative to the working directory
QUARANTINE_DIR = "_quarantine"
STAGING_DIR = "_staging"
PARQUET_COMPRESSION = "zstd"
LEGACY_PARTITION_GLOB = f"{EPISODE_ID}=*"  # one folder per episode: the layout before Delta Lake
DEFAULT_RETENTION_HOURS = 168  # Delta Lake's default: `astra lake vacuum` keeps a week of versions readable
INGEST_TXN_VERSION = 0  # the version of an episode's application transaction: it is committed once
EPISODE_ID_HEX_DIGITS = 16
# `episodes.outcome`: read whole; damaged but something salvaged; nothing readable.
OUTCOME_OK, OUTCOME_SALVAGED, OUTCOME_REJECTED = "ok", "salvaged", "rejected"

_f64, _i64, _str = pa.float64(), pa.int64(), pa.string()


def _vec(prefix: str, names: str = "xyz") -> list[pa.Field]:
    return [pa.field(f"{prefix}_{n}", _f64) for n in names]


# Columns every message table starts with; the lake adds `episode_id` and the partitions (`lake_schema`).
_MESSAGE_KEYS = [pa.field("t_ns", _i64, nullable=False), pa.field("topic", _str, nullable=False)]
_STAMPED = [*_MESSAGE_KEYS, pa.field("stamp_ns", _i64), pa.field("frame_id", _str)]
# `images`: nanoseconds from the frame before this one of its topic in its episode, in `t_ns` order (null for the
# first), as `t_ns - lag(t_ns) OVER (PARTITION BY episode_id, topic ORDER BY t_ns)`: stored when the rows are
# written (`since_previous`), so that finding dropped frames filters one column instead of sorting every image row.
SINCE_PREVIOUS = pa.field("since_previous_ns", _i64)

TABLES: dict[str, pa.Schema] = {
    # One row per file. `outcome`: see OUTCOME_*; `problems`: the damage found, if any; `metadata`: the
    # entries of all MCAP metadata records merged (whole records are in `metadata`); `distance_m` and
    # `collisions` are null where the file has no odometry or no events.
    "episodes": pa.schema(
        [
            pa.field("source_path", _str),
            pa.field("source_size", _i64),
            pa.field("source_sha256", _str),
            pa.field("robot_id", _str),
            pa.field("site", _str),
            pa.field("world_kind", _str),
            pa.field("t_ns", _i64),
            pa.field("start_ns", _i64),
            pa.field("end_ns", _i64),
            pa.field("duration_s", _f64),
            pa.field("message_count", _i64),
            pa.field("message_counts", pa.map_(_str, _i64)),
            pa.field("distance_m", _f64),
            pa.field("collisions", _i64),
            pa.field("outcome", _str),
            pa.field("salvaged", pa.bool_()),
            pa.field("problems", pa.list_(_str)),
            pa.field("metadata", pa.map_(_str, _str)),
            pa.field("ingested_at_ns", _i64),
        ]
    ),
    "images": pa.schema(
        [
            *_STAMPED,
            SINCE_PREVIOUS,
            pa.field("format", _str),
            pa.field("encoding", _str),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("is_bigendian", pa.bool_()),
            pa.field("step", pa.int32()),
            pa.field("data", pa.large_binary()),
        ]
    ),
    "imu": pa.schema(
        [*_STAMPED, *_vec("orientation", "xyzw"), *_vec("angular_velocity"), *_vec("linear_acceleration")]
    ),
    "wheels": pa.schema(
        [
            *_STAMPED,
            pa.field("name", pa.list_(_str)),
            pa.field("position", pa.list_(_f64)),
            pa.field("velocity", pa.list_(_f64)),
            pa.field("effort", pa.list_(_f64)),
        ]
    ),
    "odometry": pa.schema(
        [
            *_STAMPED,
            pa.field("child_frame_id", _str),
            *_vec("position"),
            *_vec("orientation", "xyzw"),
            *_vec("linear"),
            *_vec("angular"),
        ]
    ),
    "commands": pa.schema([*_MESSAGE_KEYS, *_vec("linear"), *_vec("angular")]),
    "tf": pa.schema(
        [
            *_STAMPED,
            pa.field("child_frame_id", _str),
            *_vec("translation"),
            *_vec("rotation", "xyzw"),
            pa.field("static", pa.bool_()),
        ]
    ),
    "camera_info": pa.schema(
        [
            *_STAMPED,
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("distortion_model", _str),
            pa.field("d", pa.list_(_f64)),
            pa.field("k", pa.list_(_f64)),
            pa.field("r", pa.list_(_f64)),
            pa.field("p", pa.list_(_f64)),
        ]
    ),
    "navsatfix": pa.schema(
        [
            *_STAMPED,
            pa.field("status", pa.int8()),
            pa.field("service", pa.int32()),
            pa.field("latitude", _f64),
            pa.field("longitude", _f64),
            pa.field("altitude", _f64),
            pa.field("position_covariance", pa.list_(_f64)),
            pa.field("position_covariance_type", pa.int8()),
        ]
    ),
    "laser_scans": pa.schema(
        [
            *_STAMPED,
            pa.field("angle_min", _f64),
            pa.field("angle_max", _f64),
            pa.field("angle_increment", _f64),
            pa.field("time_increment", _f64),
            pa.field("scan_time", _f64),
            pa.field("range_min", _f64),
            pa.field("range_max", _f64),
            pa.field("ranges", pa.list_(pa.float32())),
            pa.field("intensities", pa.list_(pa.float32())),
        ]
    ),
    "poses": pa.schema(
        [*_STAMPED, *_vec("position"), *_vec("orientation", "xyzw"), pa.field("covariance", pa.list_(_f64))]
    ),
    "events": pa.schema(
        [*_STAMPED, pa.field("kind", _str), pa.field("source", _str), pa.field("detail", _str), pa.field("value", _f64)]
    ),
    # nav_msgs/Path, planar: one list per coordinate, yaw from each pose's orientation.
    "plans": pa.schema(
        [
            *_STAMPED,
            pa.field("x", pa.list_(_f64)),
            pa.field("y", pa.list_(_f64)),
            pa.field("z", pa.list_(_f64)),
            pa.field("yaw", pa.list_(_f64)),
        ]
    ),
    "goals": pa.schema([*_STAMPED, *_vec("position"), *_vec("orientation", "xyzw")]),
    "costmaps": pa.schema(
        [
            *_STAMPED,
            pa.field("resolution", _f64),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            *_vec("origin"),
            pa.field("data", pa.large_binary()),  # int8 cells, row-major: -1 unknown, 0 free, 100 occupied
        ]
    ),
    "localization": pa.schema(
        [
            *_STAMPED,
            pa.field("success", pa.bool_()),
            *_vec("position"),
            *_vec("orientation", "xyzw"),
            pa.field("covariance", pa.list_(_f64)),
            pa.field("confidence", _f64),
            pa.field("inliers", pa.int32()),
            pa.field("candidates", pa.list_(_str)),
            pa.field("latency_s", _f64),
            pa.field("trigger", _str),
            pa.field("reason", _str),
        ]
    ),
    "mission_goals": pa.schema([*_STAMPED, pa.field("mission_id", _str), pa.field("text", _str)]),
    "mission_status": pa.schema(
        [
            *_STAMPED,
            pa.field("mission_id", _str),
            pa.field("state", _str),
            pa.field("goal_text", _str),
            pa.field("goal_node", _str),
            pa.field("goal_label", _str),
            pa.field("goal_room", _str),
            pa.field("distance_remaining_m", _f64),
            pa.field("candidates", pa.list_(_str)),
            pa.field("detail", _str),
        ]
    ),
    # astra_msgs/CandidatePaths: path i is the lengths[i] points of x, y after the first sum(lengths[:i]).
    "candidate_paths": pa.schema(
        [
            *_STAMPED,
            pa.field("x", pa.list_(_f64)),
            pa.field("y", pa.list_(_f64)),
            pa.field("lengths", pa.list_(pa.int32())),
            pa.field("costs", pa.list_(_f64)),
            pa.field("chosen", pa.int32()),
        ]
    ),
    "obstacles": pa.schema(
        [
            *_STAMPED,
            pa.field("ids", pa.list_(_str)),
            pa.field("x", pa.list_(_f64)),
            pa.field("y", pa.list_(_f64)),
            pa.field("vx", pa.list_(_f64)),
            pa.field("vy", pa.list_(_f64)),
            pa.field("radius", pa.list_(_f64)),
        ]
    ),
    # Anything without a typed table, byte for byte: other encodings, unknown schemas, no schema,
    # and payloads that failed to decode. `topic` is null only where damage lost the channel record.
    "messages": pa.schema(
        [
            pa.field("t_ns", _i64, nullable=False),
            pa.field("topic", _str),
            pa.field("publish_time_ns", _i64),
            pa.field("sequence", pa.int64()),
            pa.field("channel_id", pa.int32()),
            pa.field("message_encoding", _str),
            pa.field("schema_name", _str),
            pa.field("schema_encoding", _str),
            pa.field("data", pa.large_binary()),
        ]
    ),
    "attachments": pa.schema(
        [
            pa.field("t_ns", _i64),
            pa.field("create_time_ns", _i64),
            pa.field("name", _str),
            pa.field("media_type", _str),
            pa.field("data", pa.large_binary()),
        ]
    ),
    "metadata": pa.schema([pa.field("name", _str), pa.field("metadata", pa.map_(_str, _str))]),
    # Every channel with its schema, so that `messages` rows can be decoded later.
    "channels": pa.schema(
        [
            pa.field("channel_id", pa.int32()),
            pa.field("topic", _str),
            pa.field("message_encoding", _str),
            pa.field("metadata", pa.map_(_str, _str)),
            pa.field("schema_id", pa.int32()),
            pa.field("schema_name", _str),
            pa.field("schema_encoding", _str),
            pa.field("schema_data", pa.large_binary()),
            pa.field("message_count", _i64),
        ]
    ),
}

# ROS 2 type -> typed table. Types not listed here land in `messages`.
ROS2_TABLES: dict[str, str] = {
    "sensor_msgs/msg/CompressedImage": "images",
    "sensor_msgs/msg/Image": "images",
    "sensor_msgs/msg/Imu": "imu",
    "sensor_msgs/msg/JointState": "wheels",
    "nav_msgs/msg/Odometry": "odometry",
    "geometry_msgs/msg/Twist": "commands",
    "tf2_msgs/msg/TFMessage": "tf",
    "sensor_msgs/msg/CameraInfo": "camera_info",
    "sensor_msgs/msg/NavSatFix": "navsatfix",
    "sensor_msgs/msg/LaserScan": "laser_scans",
    "geometry_msgs/msg/PoseWithCovarianceStamped": "poses",
    "astra_msgs/msg/Event": "events",
    "astra_msgs/msg/DynamicObstacles": "obstacles",
    "nav_msgs/msg/Path": "plans",
    "geometry_msgs/msg/PoseStamped": "goals",
    "nav_msgs/msg/OccupancyGrid": "costmaps",
    "astra_msgs/msg/LocalizationResult": "localization",
    "astra_msgs/msg/MissionGoal": "mission_goals",
    "astra_msgs/msg/MissionStatus": "mission_status",
    "astra_msgs/msg/CandidatePaths": "candidate_paths",
}


def episode_id_of(sha256_hex: str) -> str:
    """The episode id of a file, from the hex SHA-256 of its bytes."""
    return sha256_hex[:EPISODE_ID_HEX_DIGITS]


# What the lake adds to every table of TABLES. The partition columns live in the Delta log, not in the files.
PARTITIONS = pa.schema([pa.field("site", _str), pa.field("day", pa.date32())])
TABLE_VERSIONS = pa.field("table_versions", pa.map_(_str, _i64))  # `episodes` only: see the module doc
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def file_schema(table: str) -> pa.Schema:
    """The columns of a table's Parquet files in the lake: its TABLES columns but the partitions, `episode_id`,
    and for `episodes` its `table_versions`."""
    fields = [f for f in TABLES[table] if f.name not in PARTITIONS.names]
    fields.append(pa.field(EPISODE_ID, _str, nullable=False))
    if table == "episodes":
        fields.append(TABLE_VERSIONS)
    return pa.schema(fields)


def lake_schema(table: str) -> pa.Schema:
    """A lake table's schema: its file columns, then the partition columns."""
    return pa.schema([*file_schema(table), *PARTITIONS])


def partition_values(site: str | None, start_ns: int | None) -> dict[str, str | None]:
    """An episode's partition as Delta writes it: its site, and the UTC day it started (null if unknown)."""
    day = None if start_ns is None else dt.datetime.fromtimestamp(start_ns / 1e9, dt.UTC).date().isoformat()
    return {"site": site, "day": day}


def partition_path(values: Mapping[str, str | None]) -> str:
    """The folder of a partition inside its table, Hive-style and escaped as Delta Lake writers do."""
    return "/".join(f"{k}={_HIVE_NULL if v is None else quote(v, safe='')}" for k, v in values.items())


def since_previous(t_ns: pa.Array | pa.ChunkedArray, *keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    """`since_previous_ns` of rows, in their order: a row's `t_ns` minus that of the row before it in time among the
    rows with its `keys` (an episode's `topic`; `episode_id` and `topic` where episodes mix), null for the first.
    Rows at the same time are 0 apart, as the window has them."""
    t = np.asarray(t_ns, np.int64)
    codes = [pc.dictionary_encode(_combined(k)).indices.to_numpy() for k in keys]
    order = np.lexsort([t, *reversed(codes)])  # stable: by keys, then time
    gaps, first = np.zeros(len(t), np.int64), np.ones(len(t), bool)
    gaps[order[1:]] = np.diff(t[order])
    first[order[1:]] = np.logical_or.reduce([c[order[1:]] != c[order[:-1]] for c in codes], initial=False)
    return pa.array(gaps, _i64, mask=first)


def _combined(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _array(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    if pa.types.is_large_binary(type_) and None not in values:
        # Images and raw payloads: one join and an offsets cumsum run ~3x faster than pa.array's appends.
        offsets = np.zeros(len(values) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, values), np.int64, len(values)), out=offsets[1:])
        return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))])
    return pa.array(values, type=type_)


def table_from_rows(name: str, rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Rows (tuples in the order of `TABLES[name]`) as an Arrow table of that schema."""
    schema = TABLES[name]
    columns = zip(*rows, strict=True) if rows else ([] for _ in schema)
    return pa.Table.from_arrays([_array(c, f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)
