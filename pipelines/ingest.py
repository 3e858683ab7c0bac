"""`astra ingest`: robot logs into the Delta Lake tables of the lake (`schemas.lake`), as one Apache Beam pipeline.

    ListLogs             paths -> every log under them (`datasets.log_files`: MCAP, also compressed whole,
                         rosbag2 SQLite files and directories, ROS 1 bags); the other files are reported
    IdentifyEpisodes     log -> Source, whose episode id is a hash of the log's bytes
    SkipIngested         drops episodes the lake already has (its `episodes` transaction ids)
    StageEpisodes        Source -> one Parquet file under <lake>/_staging/<run>/<file>/ per lake table
                         the log has rows for: the log is read once, and its messages are decoded
                         and written in bounded batches (`BatchBounds`), so memory does not grow
                         with the log
    PublishEpisodes      groups episodes into batches (`COMMIT_BATCH_EPISODES`) and commits each: one
                         Delta commit per table, `episodes` last, carrying every episode's transaction id
                         (`datasets.lake_tables.commit_episodes`); of logs with the same bytes, the first
                         path is published

Once published, tables with many small files are compacted (`datasets.lake_tables.compact`).

Each file goes from its name to staged Parquet in one fused stage, so files spread evenly over
workers and decoded tables never cross a shuffle: only names and row counts are grouped. The
pipeline is the same on the DirectRunner and on Dask.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import math
import multiprocessing
import multiprocessing.pool
import os
import shutil
import socket
import time
import uuid
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions
from mcap.records import Attachment, Channel, Message, Schema
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap_ros2.decoder import DecoderFactory

from datasets.lake_tables import (
    AUTO_COMPACT_SMALL_FILES,
    COMMIT_BATCH_EPISODES,
    EpisodeFiles,
    check_columns,
    check_layout,
    commit_episodes,
    committed_episodes,
    compact,
    lake_version,
    since_previous_in_files,
)
from datasets.log_files import LogReader, list_logs, log_members, log_suffix, open_log
from pipelines.progress import marker_progress
from schemas import cdr_bulk
from schemas.episode import EPISODE_METADATA_NAME
from schemas.lake import (
    EPISODE_ID,
    OUTCOME_OK,
    OUTCOME_REJECTED,
    OUTCOME_SALVAGED,
    PARQUET_COMPRESSION,
    QUARANTINE_DIR,
    ROS2_TABLES,
    SINCE_PREVIOUS,
    STAGING_DIR,
    TABLES,
    episode_id_of,
    file_schema,
    since_previous,
    table_from_rows,
)
from schemas.ros2_rows import CONVERTERS, Row
from schemas.topics import GROUND_TRUTH_TOPIC

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
RUNNERS = ("direct", "dask")
ROW_GROUP_BYTES = 128 << 20
MAX_PENDING_WRITES = 4
_PROGRESS_DIR, _REPORTS_DIR = "progress", "reports"


# --- reading one file into lake tables, in bounded batches (no writes) -----------------------------


@dataclass(frozen=True)
class Source:
    """One log (a file, or a rosbag2 directory), named by its content."""

    path: str
    size: int
    sha256: str

    @property
    def episode_id(self) -> str:
        return episode_id_of(self.sha256)


@dataclass(frozen=True)
class BatchBounds:
    """How much of a file waits in memory to be decoded, so that memory does not grow with the file.

    A channel's buffered messages are decoded and written once they pass `messages` or `payload_bytes`,
    and the biggest buffers whenever all buffers together pass `total_payload_bytes`.
    """

    messages: int = 4096
    payload_bytes: int = 16 << 20
    total_payload_bytes: int = 64 << 20


@dataclass(frozen=True)
class Batch:
    """Rows of one lake table. A table's rows are its parts in ascending order, each part's batches in
    the order they came: a part is one channel (numbered by its first message in the file), so the
    rows are in the order of a file read whole, channel by channel."""

    table: str
    part: int
    data: pa.Table


def identify_source(path: str) -> Source:
    """A log named by the hash of its bytes: of a rosbag2 directory's files in order, each after its name."""
    members = log_members(Path(path))
    if Path(path).is_dir():
        sha = hashlib.sha256()
        for member in members:
            sha.update(member.name.encode() + b"\0")
            with open(member, "rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
        digest = sha.hexdigest()
    else:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    return Source(path, sum(os.path.getsize(m) for m in members), digest)


@cache
def _ros2_decoder(name: str, definition: bytes) -> Callable[[bytes], Any]:
    """One decoder per distinct schema text; schema ids are only unique within one file."""
    schema = Schema(id=0, name=name, encoding=SchemaEncoding.ROS2, data=definition)
    return DecoderFactory().decoder_for(MessageEncoding.CDR, schema)


def _raw_row(message: Message, channel: Channel | None, schema: Schema | None) -> Row:
    return (
        message.log_time,
        channel and channel.topic,
        message.publish_time,
        message.sequence,
        message.channel_id,
        channel and channel.message_encoding,
        schema and schema.name,
        schema and schema.encoding,
        message.data,
    )


@dataclass(frozen=True)
class DecodedBatch:
    """A batch of one channel's messages as lake rows: typed where the ROS 2 type has a table, else raw.

    `error`: the first failure, of the schema (then every message is raw) or of a payload.
    """

    table: str | None
    typed: pa.Table | None
    raw: list[Message]
    error: Exception | None = None
    schema_failed: bool = False
    bulk: bool = False


def decode_channel_batch(
    channel: Channel | None, schema: Schema | None, messages: list[Message], bulk: bool = True
) -> DecodedBatch:
    """Decode a batch of one channel's messages: all at once with `schemas.cdr_bulk` if `bulk` and it can,
    else message by message; payloads (or a schema) that do not decode are kept raw."""
    typed = (
        channel is not None
        and schema is not None
        and channel.message_encoding == MessageEncoding.CDR
        and schema.encoding == SchemaEncoding.ROS2
    )
    table = ROS2_TABLES.get(schema.name) if typed else None
    if table is None:
        return DecodedBatch(None, None, messages)
    try:  # first, so that a schema mcap-ros2-support cannot parse is reported whichever path decodes
        decode = _ros2_decoder(schema.name, schema.data)
    except Exception as e:  # a definition mcap-ros2-support cannot parse: keep every payload raw
        return DecodedBatch(table, None, messages, e, schema_failed=True)
    topic = channel.topic
    if bulk and schema.name in cdr_bulk.SUPPORTED:
        log_times = np.fromiter((m.log_time for m in messages), np.uint64, len(messages))
        rows = cdr_bulk.decode_table(schema.name, topic, log_times, [m.data for m in messages], schema.data)
        if rows is not None:
            return DecodedBatch(table, rows, [], bulk=True)
    convert, out = CONVERTERS[schema.name], []
    failed, first_error = [], None
    for m in messages:
        try:
            out.extend(convert(m.log_time, topic, decode(m.data)))
        except Exception as e:  # whatever a bad payload raises inside the CDR decoder
            failed.append(m)
            first_error = first_error or e
    return DecodedBatch(table, table_from_rows(table, out), failed, first_error)


def odometry_distance(odometry: pa.Table | None) -> float | None:
    """Planar path length of the ground-truth odometry if recorded, else of the busiest Odometry topic."""
    if odometry is None:
        return None
    counts = {c["values"]: c["counts"] for c in pc.value_counts(odometry["topic"]).to_pylist()}
    topic = GROUND_TRUTH_TOPIC if GROUND_TRUTH_TOPIC in counts else max(sorted(counts), key=counts.__getitem__)
    track = odometry.filter(pc.equal(odometry["topic"], topic)).sort_by("t_ns")
    x, y = track["position_x"].to_numpy(), track["position_y"].to_numpy()
    return float(np.hypot(np.diff(x), np.diff(y)).sum())


def _collisions(events: pa.Table | None) -> int | None:
    return None if events is None else pc.sum(pc.equal(events["kind"], "collision")).as_py()


# The columns of these tables that the `episodes` row is computed from, kept as the file streams by.
_EPISODE_COLUMNS = {"odometry": ["t_ns", "topic", "position_x", "position_y"], "events": ["kind"]}


@dataclass
class _ChannelState:
    """One channel while its file is read: the messages waiting to be decoded, and what its batches added up to."""

    part: int
    waiting: list[Message] = field(default_factory=list)
    waiting_bytes: int = 0
    messages: int = 0
    failed: int = 0
    error: Exception | None = None
    schema_failed: bool = False


def _problem(state: _ChannelState, channel: Channel, schema: Schema) -> str | None:
    e = state.error
    if state.schema_failed:
        return f"undecodable: schema {schema.name} of {channel.topic}: {type(e).__name__}: {e}"
    if state.failed:
        return (
            f"undecodable: {state.failed} of {state.messages} {schema.name} messages on {channel.topic}, "
            f"first: {type(e).__name__}: {e}"
        )
    return None


def _is_described(reader: LogReader, channel_id: int) -> bool:
    """Whether a channel's record, and its schema's, have been read. In a damaged file they may come only
    after its messages (from the summary section), so a channel waits for them: past its own bound, and
    until the global bound forces it out raw."""
    channel = reader.channels.get(channel_id)
    return channel is not None and (channel.schema_id == 0 or channel.schema_id in reader.schemas)


def _with_since_previous(images: pa.Table, values: pa.Array) -> pa.Table:
    return images.set_column(images.schema.get_field_index(SINCE_PREVIOUS.name), SINCE_PREVIOUS, values)


def _concat_parts(batches: list[Batch]) -> pa.Table:
    """One table's batches in lake order: by part, and in arrival order within a part."""
    return pa.concat_tables(b.data for b in sorted(batches, key=lambda b: b.part))


class EpisodeStream:
    """One file's lake tables, yielded in bounded batches as the file is read, its one-row `episodes` table
    last. Each stream reads its file once: call `batches` (or `tables`) once.

    Damage never raises: what can be read is yielded, and the damage is listed in `episodes.problems`
    with the outcome "salvaged" (or "rejected" if nothing was readable). `bulk_decoded` counts the
    messages decoded in bulk with `schemas.cdr_bulk`, per ROS 2 type.

    Images get `since_previous_ns` as they stream by, from the frame of their topic that came before them: a
    channel's batches come in file order, which is time order in recordings (and in a rosbag2 directory, whose
    files are read in recording order, a topic is one channel). Where a topic's frames come out of time order (an
    MCAP whose chunks overlap in time, a ROS 1 bag written with header stamps, a topic on two channels), that
    value is wrong: the topic is named in `unordered_topics`, and `tables` and ingest's staging compute the column
    again over the whole episode (`since_previous_in_files`). So the column is always exact, and only such files
    pay for rewriting their images.
    """

    def __init__(self, source: Source, bounds: BatchBounds = BatchBounds(), bulk: bool = True) -> None:
        self.source, self.bounds, self.bulk = source, bounds, bulk
        self.bulk_decoded: Counter[str] = Counter()
        self._channels: dict[int, _ChannelState] = {}  # in the order of their first message
        self._waiting_bytes = 0
        self._attachments: list[Row] = []
        self._attachment_bytes = 0
        self._metadata: list[Row] = []
        self._log_times: tuple[int, int] | None = None
        self._tables: set[str] = set()  # those with rows
        self._kept: dict[str, list[Batch]] = defaultdict(list)  # _EPISODE_COLUMNS of their tables
        self._last_frame: dict[str, int] = {}  # image topic -> t_ns of its frame read last
        self.unordered_topics: set[str] = set()  # image topics whose frames came out of time order

    def batches(self) -> Iterator[Batch]:
        with open_log(Path(self.source.path)) as reader:
            for record in reader.records():
                if isinstance(record, Message):
                    yield from self._add_message(reader, record)
                elif isinstance(record, Attachment):
                    yield from self._add_attachment(record)
                else:
                    self._metadata.append((record.name, record.metadata))
            for channel_id in list(self._channels):
                yield from self._flush_channel(reader, channel_id)
            yield from self._flush_attachments()
            yield from self._emit("metadata", table_from_rows("metadata", self._metadata))
            yield from self._emit("channels", self._channels_table(reader))
            yield Batch("episodes", 0, table_from_rows("episodes", [self._episode_row(reader)]))

    def tables(self) -> dict[str, pa.Table]:
        """Every lake table the file has rows for, plus its one-row `episodes` table, whole in memory (ingest
        writes the batches to Parquet as they come instead)."""
        by_table: dict[str, list[Batch]] = defaultdict(list)
        for batch in self.batches():
            by_table[batch.table].append(batch)
        episodes = by_table.pop("episodes")
        tables = {name: _concat_parts(by_table[name]) for name in sorted(by_table)}
        if self.unordered_topics:
            images = tables["images"]
            tables["images"] = _with_since_previous(images, since_previous(images["t_ns"], images["topic"]))
        return {**tables, "episodes": episodes[0].data}

    def _emit(self, table: str, data: pa.Table, part: int = 0) -> Iterator[Batch]:
        if not data.num_rows:
            return
        self._tables.add(table)
        if table in _EPISODE_COLUMNS:
            self._kept[table].append(Batch(table, part, data.select(_EPISODE_COLUMNS[table])))
        yield Batch(table, part, data)

    def _add_message(self, reader: LogReader, message: Message) -> Iterator[Batch]:
        state = self._channels.get(message.channel_id)
        if state is None:
            state = self._channels[message.channel_id] = _ChannelState(part=len(self._channels))
        size = len(message.data)
        state.waiting.append(message)
        state.waiting_bytes += size
        self._waiting_bytes += size
        bounds = self.bounds
        full = len(state.waiting) >= bounds.messages or state.waiting_bytes >= bounds.payload_bytes
        if full and _is_described(reader, message.channel_id):
            yield from self._flush_channel(reader, message.channel_id)
        if self._waiting_bytes >= bounds.total_payload_bytes:  # many channels, each under its bound, add up
            while self._waiting_bytes > bounds.total_payload_bytes // 2:
                waiting = {c: s.waiting_bytes for c, s in self._channels.items() if s.waiting_bytes}
                biggest = max(waiting, key=lambda c: (_is_described(reader, c), waiting[c]))
                yield from self._flush_channel(reader, biggest)

    def _flush_channel(self, reader: LogReader, channel_id: int) -> Iterator[Batch]:
        state = self._channels[channel_id]
        messages, state.waiting = state.waiting, []
        self._waiting_bytes -= state.waiting_bytes
        state.waiting_bytes = 0
        if not messages:
            return
        state.messages += len(messages)
        times = [m.log_time for m in messages]
        low, high = min(times), max(times)
        if self._log_times is not None:
            low, high = min(low, self._log_times[0]), max(high, self._log_times[1])
        self._log_times = low, high
        channel = reader.channels.get(channel_id)
        schema = reader.schemas.get(channel.schema_id) if channel else None
        decoded = decode_channel_batch(channel, schema, messages, self.bulk)
        if decoded.bulk:
            self.bulk_decoded[schema.name] += len(messages)
        if decoded.error is not None:
            state.error = state.error or decoded.error
            state.schema_failed = decoded.schema_failed
            state.failed += len(decoded.raw)
        if decoded.typed is not None:
            typed = self._since_previous(channel.topic, decoded.typed) if decoded.table == "images" else decoded.typed
            yield from self._emit(decoded.table, typed, state.part)
        if decoded.raw:
            raw = table_from_rows("messages", [_raw_row(m, channel, schema) for m in decoded.raw])
            yield from self._emit("messages", raw, state.part)

    def _since_previous(self, topic: str, images: pa.Table) -> pa.Table:
        """One batch of a topic's images with `since_previous_ns`, from the frame read before each (see the class)."""
        if not images.num_rows:
            return images
        t_ns = images["t_ns"].to_numpy()
        last = self._last_frame.get(topic)
        since = np.diff(t_ns, prepend=t_ns[0] if last is None else last)
        if since.min() < 0:
            self.unordered_topics.add(topic)
        self._last_frame[topic] = int(t_ns[-1])
        first = np.arange(len(since)) == 0 if last is None else None  # the topic's first frame: nothing before it
        return _with_since_previous(images, pa.array(since, SINCE_PREVIOUS.type, mask=first))

    def _add_attachment(self, record: Attachment) -> Iterator[Batch]:
        self._attachments.append((record.log_time, record.create_time, record.name, record.media_type, record.data))
        self._attachment_bytes += len(record.data)
        if len(self._attachments) >= self.bounds.messages or self._attachment_bytes >= self.bounds.payload_bytes:
            yield from self._flush_attachments()

    def _flush_attachments(self) -> Iterator[Batch]:
        rows, self._attachments, self._attachment_bytes = self._attachments, [], 0
        yield from self._emit("attachments", table_from_rows("attachments", rows))

    def _channels_table(self, reader: LogReader) -> pa.Table:
        rows = []
        for channel in reader.channels.values():
            schema = reader.schemas.get(channel.schema_id)
            state = self._channels.get(channel.id)
            rows.append(
                (
                    channel.id,
                    channel.topic,
                    channel.message_encoding,
                    channel.metadata,
                    channel.schema_id,
                    schema and schema.name,
                    schema and schema.encoding,
                    schema and schema.data,
                    state.messages if state else 0,
                )
            )
        return table_from_rows("channels", rows)

    def _episode_row(self, reader: LogReader) -> Row:
        problems = [str(d) for d in reader.damage]
        counts: Counter[str] = Counter()
        for channel_id, state in self._channels.items():
            channel = reader.channels.get(channel_id)
            schema = reader.schemas.get(channel.schema_id) if channel else None
            if channel is not None and (problem := _problem(state, channel, schema)):
                problems.append(problem)
            counts[channel.topic if channel else f"<lost channel {channel_id}>"] += state.messages
        metadata = self._metadata
        ours = next((record for name, record in metadata if name == EPISODE_METADATA_NAME), {})
        merged: dict[str, str] = {}  # every record's entries, the first of a repeated key winning
        for _, record in metadata:
            for key, value in record.items():
                merged.setdefault(key, value)
        start, end = self._log_times or (None, None)
        kept = {table: _concat_parts(batches) for table, batches in self._kept.items()}
        salvaged = bool(problems) and any(name != "channels" for name in self._tables)
        outcome = OUTCOME_OK if not problems else OUTCOME_SALVAGED if salvaged else OUTCOME_REJECTED
        source = self.source
        return (
            source.path,
            source.size,
            source.sha256,
            ours.get("robot_id"),
            ours.get("site"),
            ours.get("world_kind"),
            start,
            start,
            end,
            None if start is None else (end - start) * 1e-9,
            counts.total(),
            dict(counts),
            odometry_distance(kept.get("odometry")),
            _collisions(kept.get("events")),
            outcome,
            salvaged,
            problems,
            merged,
            time.time_ns(),
        )


def read_episode(source: Source, bounds: BatchBounds = BatchBounds(), bulk: bool = True) -> dict[str, pa.Table]:
    """`EpisodeStream(...).tables()`: the file's lake tables whole in memory, for small files and tests."""
    return EpisodeStream(source, bounds, bulk).tables()


# --- the pipeline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StagedPartition:
    """A table's rows of one file written under `root`, the staging folder of the file (`staged_files`)."""

    source_path: str
    root: str
    table: str
    rows: int


class ListLogs(beam.PTransform):
    """The input logs (listed when the pipeline is built, so their count and size are known up front), and in
    `skipped` the files found that are not logs or are empty, with the reason."""

    def __init__(self, paths: Iterable[Path]) -> None:
        super().__init__()
        listing = list_logs(paths)
        self.files, self.skipped = [str(p) for p in listing.logs], listing.skipped

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[str]:
        return pbegin | beam.Create(self.files)


class _SkipIngestedFn(beam.DoFn):
    """Drops episodes the lake has already: their `episodes` row, committed last, carries their transaction. The
    table is loaded once per worker, not once per file: loading it reads the entry of every file it holds."""

    def __init__(self, lake: str) -> None:
        self.lake = lake

    def setup(self) -> None:
        self.committed = committed_episodes(Path(self.lake), "episodes")

    def process(self, source: Source) -> Iterator[Source]:
        if not self.committed(source.episode_id):
            yield source


def _parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    # Payload columns are neither dictionary-encoded nor given min/max statistics: both cost and serve nothing.
    plain = [f.name for f in schema if not pa.types.is_large_binary(f.type)]
    return pq.ParquetWriter(path, schema, compression=PARQUET_COMPRESSION, use_dictionary=plain, write_statistics=plain)


def _write_row_groups(writer: pq.ParquetWriter, table: pa.Table) -> None:
    rows = table.num_rows
    writer.write_table(table, row_group_size=max(1, min(rows, ROW_GROUP_BYTES * rows // max(table.nbytes, 1))))


class StagedEpisode:
    """One episode's tables written as Parquet files under a staging root, batch by batch, ready to commit.

    Writes run on a background thread, where Arrow encodes and compresses without the GIL while the
    next batch decodes. Each part of a table (see `Batch`) goes to a file of its own as it comes, and a table's
    files, in part order, are committed together (`staged_files`): nothing is rewritten. Message tables get
    their lake columns (`file_schema`), and the one-row `episodes` table stays as read, for `commit_episode`.
    `rows`: rows written per table.
    """

    def __init__(self, root: Path, episode_id: str) -> None:
        self.root, self.episode_id = root, episode_id
        self._writers: dict[tuple[str, int], pq.ParquetWriter] = {}
        self.rows: Counter[str] = Counter()
        self._thread = ThreadPoolExecutor(max_workers=1)
        self._pending: deque[Future] = deque()

    def write(self, batch: Batch) -> None:
        while len(self._pending) >= MAX_PENDING_WRITES:  # bounds the decoded batches held in memory
            self._pending.popleft().result()
        self.rows[batch.table] += batch.data.num_rows
        self._pending.append(self._thread.submit(self._write, batch))

    def _schema(self, table: str) -> pa.Schema:
        return TABLES[table] if table == "episodes" else file_schema(table)

    def _write(self, batch: Batch) -> None:
        key = batch.table, batch.part
        if key not in self._writers:
            path = self.root / batch.table / _STAGED_FILE.format(part=batch.part)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writers[key] = _parquet_writer(path, self._schema(batch.table))
        data = batch.data
        if batch.table != "episodes":
            column = pa.array([self.episode_id] * data.num_rows, pa.string())
            data = data.append_column(self._schema(batch.table).field(EPISODE_ID), column)
        _write_row_groups(self._writers[key], data)

    def __enter__(self) -> StagedEpisode:
        return self

    def __exit__(self, error_type: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        try:
            while self._pending and error is None:
                self._pending.popleft().result()
        finally:
            self._thread.shutdown(cancel_futures=True)
            for writer in self._writers.values():
                writer.close()


_STAGED_FILE, _STAGED_GLOB = "rows-{part:05d}.parquet", "rows-*.parquet"


def staged_files(root: Path, table: str) -> list[Path]:
    """The files of a table's rows of one episode under its staging root, in part order."""
    return sorted((root / table).glob(_STAGED_GLOB))


def _restage_since_previous(files: list[Path]) -> None:
    """Compute `since_previous_ns` of an episode's staged images again over all their rows (`EpisodeStream` says
    when), and rewrite the files whose values change, row group by row group."""
    for file, exact in zip(files, since_previous_in_files(files, ["topic"]), strict=True):
        rewritten = file.with_name(f".{file.name}.tmp")
        with pq.ParquetFile(file) as staged:
            if staged.read(columns=[SINCE_PREVIOUS.name]).column(0).combine_chunks().equals(exact):
                continue
            with _parquet_writer(rewritten, file_schema("images")) as writer:
                offset = 0
                for group in range(staged.num_row_groups):
                    data = staged.read_row_group(group)
                    _write_row_groups(writer, _with_since_previous(data, exact.slice(offset, data.num_rows)))
                    offset += data.num_rows
        os.replace(rewritten, file)


def _staging_root(staging: str, source_path: str) -> str:
    """One staging folder per input file, so that two files with the same bytes never write to one place."""
    return str(Path(staging, hashlib.sha256(source_path.encode()).hexdigest()[:16]))


def stage_file(source: Source, root: str, bounds: BatchBounds) -> dict[str, int]:
    """Read, decode and write one file's tables under `root`, batch by batch; rows written per table."""
    stream = EpisodeStream(source, bounds)
    with StagedEpisode(Path(root), source.episode_id) as staged:
        for batch in stream.batches():
            staged.write(batch)
    if stream.unordered_topics:
        _restage_since_previous(staged_files(Path(root), "images"))
    return dict(staged.rows)


# Processes that stage files for the direct runner's threads (see `_staging_processes`); None: stage in-process.
_forked_stagers: multiprocessing.pool.Pool | None = None


@contextlib.contextmanager
def _staging_processes(count: int) -> Iterator[None]:
    """Fork `count` processes that stage files while the pipeline runs, when count > 1.

    Decoding is Python for the most part, so threads share one core; forked before the pipeline starts its
    threads, a process starts in milliseconds with everything imported, where one Beam starts imports Beam
    again (its multi-processing mode took twice as long as threads on 4 files). Dask workers stage in-process.
    """
    global _forked_stagers
    if count < 2:
        yield
        return
    # As the gc docs advise before a fork: what exists now is never collected, so the children's collections do not
    # copy the pages they share with this process (and neither does the collection at exit, 0.2 s with Beam loaded).
    gc.freeze()
    pool = multiprocessing.get_context("fork").Pool(count)
    _forked_stagers = pool
    try:
        yield
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()  # the workers exit by themselves: a signal would wake whatever handlers a library installed
    finally:
        _forked_stagers = None
        pool.join()


class _StageEpisodesFn(beam.DoFn):
    """Source -> (episode_id, StagedPartition) per lake table, the file read, decoded and written batch by batch."""

    def __init__(self, staging: str, progress_dir: str | None, bounds: BatchBounds) -> None:
        self.staging, self.progress_dir, self.bounds = staging, progress_dir, bounds

    def process(self, source: Source) -> Iterator[tuple[str, StagedPartition]]:
        root = _staging_root(self.staging, source.path)
        pool = _forked_stagers
        job = (source, root, self.bounds)
        rows = stage_file(*job) if pool is None else pool.apply(stage_file, job)
        if self.progress_dir is not None:
            _write_atomically(Path(self.progress_dir, source.episode_id), str(source.size))
        for table, count in rows.items():
            yield source.episode_id, StagedPartition(source.path, root, table, count)


class StageEpisodes(beam.PTransform):
    """Source -> (episode_id, StagedPartition) per lake table, staged under `staging`; notes each file
    staged in `progress_dir`, if given."""

    def __init__(self, staging: Path, progress_dir: Path | None = None, bounds: BatchBounds = BatchBounds()) -> None:
        super().__init__()
        self.staging, self.bounds = str(staging), bounds
        self.progress_dir = None if progress_dir is None else str(progress_dir)

    def expand(self, sources: beam.PCollection[Source]) -> beam.PCollection[tuple[str, StagedPartition]]:
        return sources | beam.ParDo(_StageEpisodesFn(self.staging, self.progress_dir, self.bounds))


def _move_into_place(src: Path, dst: Path) -> None:
    """Rename a finished quarantine directory into place, replacing one a killed ingest may have left."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        old = src.with_name(f"{src.name}.replaced")
        os.rename(dst, old)
        os.rename(src, dst)
        shutil.rmtree(old)
    else:
        os.rename(src, dst)


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the whole file or none; the temporary name starts with a dot."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


def _quarantine_copy(source: Path, held: Path) -> str:
    """Copy a damaged log into `held` as `source` plus its log suffix (a rosbag2 directory as a folder);
    returns the copy's name."""
    if source.is_dir():
        shutil.copytree(source, held / "source")
        return "source"
    name = "source" + (log_suffix(source) or source.suffix)
    shutil.copyfile(source, held / name)
    return name


def publish_episodes(staged: Iterable[tuple[str, StagedPartition]], lake: Path, reports: Path) -> list[dict]:
    """Commit a batch of episodes' staged tables to the lake (`commit_episodes`: one commit per table, `episodes`
    last), quarantining the damaged ones first. Returns a report per episode, each also written to
    `reports/<episode_id>.json` once committed.

    Files with the same bytes are the same episode: the first path's tables are committed. The report names the
    others as duplicates.
    """
    by_episode: defaultdict[str, list[StagedPartition]] = defaultdict(list)
    for episode_id, part in staged:
        by_episode[episode_id].append(part)
    published = [_prepared(episode_id, parts, lake) for episode_id, parts in sorted(by_episode.items())]
    commit_episodes(lake, [episode for _, episode in published])
    for report, _ in published:
        _write_atomically(reports / f"{report['episode_id']}.json", json.dumps(report))
    return [report for report, _ in published]


def _prepared(episode_id: str, staged: list[StagedPartition], lake: Path) -> tuple[dict, EpisodeFiles]:
    """An episode's report and its files to commit, quarantined first if damaged."""
    source = min(p.source_path for p in staged)
    parts = {p.table: p for p in staged if p.source_path == source}
    root = Path(parts["episodes"].root)
    [episode_file] = staged_files(root, "episodes")
    episode_table = pq.read_table(episode_file)
    episode = episode_table.to_pylist()[0]
    report = {
        "episode_id": episode_id,
        "source_path": source,
        "size": episode["source_size"],
        "duplicates": sorted({p.source_path for p in staged} - {source}),
        "outcome": episode["outcome"],
        "problems": episode["problems"],
        "rows": {table: p.rows for table, p in sorted(parts.items())},
    }
    if episode["outcome"] != OUTCOME_OK:
        held = root / QUARANTINE_DIR / episode_id
        held.mkdir(parents=True)
        copy = _quarantine_copy(Path(source), held)
        reason = {**report, "sha256": episode["source_sha256"], "copy": copy}
        _write_atomically(held / "reason.json", json.dumps(reason, indent=1))
        _move_into_place(held, lake / QUARANTINE_DIR / episode_id)
    files = {table: staged_files(root, table) for table in parts.keys() - {"episodes"}}
    return report, EpisodeFiles(episode_id, files, episode_table)


class PublishEpisodes(beam.PTransform):
    """Group staged partitions into batches of episodes and publish each batch (`publish_episodes`); yields one report
    per episode. An episode's batch is a hash of its id, out of as many batches as the `files` listed make batches of
    COMMIT_BATCH_EPISODES: that needs no state, so it works alike on every runner, and files the lake has already
    only leave their batches smaller."""

    def __init__(self, lake: Path, reports: Path, files: int) -> None:
        super().__init__()
        self.lake, self.reports = str(lake), str(reports)
        self.batches = max(1, math.ceil(files / COMMIT_BATCH_EPISODES))

    def expand(self, staged: beam.PCollection[tuple[str, StagedPartition]]) -> beam.PCollection[dict]:
        lake, reports, batches = Path(self.lake), Path(self.reports), self.batches
        return (
            staged
            | "KeyByBatch" >> beam.Map(lambda part: (zlib.crc32(part[0].encode()) % batches, part))
            | "GroupByBatch" >> beam.GroupByKey()
            | "Publish" >> beam.FlatMapTuple(lambda _, parts: publish_episodes(parts, lake, reports))
        )


# --- running it ------------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    """What one `ingest` did. `quarantined` lists the logs that went to `_quarantine`; `skipped` maps every input
    file or log not ingested to the reason: unsupported format, empty, duplicate content, or already in the lake."""

    lake: str
    runner: str
    files: int  # logs read: files, and rosbag2 directories
    bytes: int
    episodes: int  # newly published
    skipped: dict[str, str]
    rows: dict[str, int]
    quarantined: list[str]
    lake_version: int | None  # of the lake once published, None if it has no episodes yet
    compacted: list[str]  # tables compacted after publishing, as small files had piled up
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


@contextlib.contextmanager
def _local_dask_cluster(workers: int | None) -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=workers or os.cpu_count(),
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        yield cluster.scheduler_address


def check_runner(runner: str, dask_address: str | None = None, workers: int | None = None) -> None:
    """Raise ValueError for an unknown runner, or Dask settings given to another runner."""
    if runner not in RUNNERS:
        raise ValueError(f"unknown runner {runner!r}; choose one of {', '.join(RUNNERS)}")
    if runner != "dask" and (dask_address is not None or workers is not None):
        raise ValueError("a Dask address and a worker count only apply to the dask runner")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")


def run_pipeline(
    build: Callable[[beam.Pipeline], object],
    runner: str = "direct",
    dask_address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
) -> None:
    """Build a pipeline with `build` and run it to completion on the DirectRunner or on Dask.

    For Dask, `dask_address` is a scheduler address; without one, a local cluster of `workers`
    processes (default: one per core) is started for the run. The direct runner runs bundles on
    `threads` threads.
    """
    check_runner(runner, dask_address, workers)
    if runner == "direct":
        # The in-process FnApiRunner, named: Beam's DirectRunner would first try to download the Prism runner
        # binary from the internet, and fall back to this runner only once that fails. Explicit flags:
        # PipelineOptions would otherwise parse the command line of whoever calls us.
        parallel = {"direct_num_workers": threads, "direct_running_mode": "multi_threading"} if threads > 1 else {}
        with beam.Pipeline(options=PipelineOptions(flags=[], runner="FnApiRunner", **parallel)) as pipeline:
            build(pipeline)
        return
    with contextlib.ExitStack() as stack:
        address = dask_address or stack.enter_context(_local_dask_cluster(workers))
        # One file per Dask partition, so that files spread over the workers.
        options = PipelineOptions(
            flags=[f"--dask_client_address={address}", "--dask_partition_size=1"], runner=DASK_RUNNER
        )
        pipeline = beam.Pipeline(options=options)
        build(pipeline)
        result = pipeline.run()
        try:
            result.wait_until_finish()
        finally:
            result.client.close()


def _remove_abandoned_staging(staging: Path) -> None:
    """Remove what killed ingests on this host left in staging: run folders whose process is gone."""
    host = socket.gethostname()
    for run in staging.glob(f"{host}-*-*"):
        pid = run.name.removeprefix(f"{host}-").split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(run, ignore_errors=True)
        except (ValueError, PermissionError):  # not a run folder of ours, or another user's live process
            continue


def ingest(
    paths: list[Path],
    lake: Path,
    runner: str = "direct",
    dask_address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    bounds: BatchBounds = BatchBounds(),
) -> IngestSummary:
    """Ingest logs, and the logs under directories (see `datasets.log_files`), into the lake at `lake`.

    Raises FileNotFoundError for a path that does not exist, ValueError for bad runner settings and LakeError
    (a ValueError) for a lake in the layout before Delta Lake, which `astra lake migrate` converts;
    damaged files never raise (see `IngestSummary.quarantined`). On a remote Dask cluster the inputs
    and the lake must be on a filesystem every worker sees at the same paths.
    """
    started = time.perf_counter()
    check_runner(runner, dask_address, workers)
    lake = Path(lake).resolve()
    if lake.is_dir():
        check_layout(lake)
        check_columns(lake)
    listing = ListLogs(paths)
    total_bytes = sum(os.path.getsize(m) for f in listing.files for m in log_members(Path(f)))
    _remove_abandoned_staging(lake / STAGING_DIR)
    staging = lake / STAGING_DIR / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    progress_dir, reports_dir = staging / _PROGRESS_DIR, staging / _REPORTS_DIR
    progress_dir.mkdir(parents=True)
    reports_dir.mkdir()

    def build(pipeline: beam.Pipeline) -> None:
        (
            pipeline
            | "ListLogs" >> listing
            | "IdentifyEpisodes" >> beam.Map(identify_source)
            | "SkipIngested" >> beam.ParDo(_SkipIngestedFn(str(lake)))
            | "StageEpisodes" >> StageEpisodes(staging, progress_dir, bounds)
            | "PublishEpisodes" >> PublishEpisodes(lake, reports_dir, len(listing.files))
        )

    cores = os.cpu_count() or 1
    stagers = min(cores, len(listing.files)) if runner == "direct" else 1
    try:
        with (
            _staging_processes(stagers),
            marker_progress(
                progress_dir,
                total_bytes,
                "ingest",
                progress,
                weight=lambda m: int(m.read_text()),
                unit="B",
                unit_scale=True,
            ),
        ):
            run_pipeline(build, runner, dask_address, workers, threads=cores)
        reports = [json.loads(p.read_text()) for p in sorted(reports_dir.glob("*.json"))]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    compacted = compact(lake, AUTO_COMPACT_SMALL_FILES) if reports else {}
    rows: Counter[str] = Counter()
    skipped = dict(listing.skipped)
    for report in reports:
        rows.update(report["rows"])
        skipped.update(
            dict.fromkeys(report["duplicates"], f"duplicate content: the same bytes as {report['source_path']}")
        )
    published = {r["source_path"] for r in reports}
    skipped.update({f: "already in the lake" for f in listing.files if f not in published and f not in skipped})
    return IngestSummary(
        lake=str(lake),
        runner=runner,
        files=len(listing.files),
        bytes=total_bytes,
        episodes=len(reports),
        skipped=dict(sorted(skipped.items())),
        rows=dict(sorted(rows.items())),
        quarantined=sorted(r["source_path"] for r in reports if r["outcome"] != OUTCOME_OK),
        lake_version=lake_version(lake),
        compacted=sorted(compacted),
        seconds=time.perf_counter() - started,
    )
