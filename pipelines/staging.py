"""Staging, the heart of `astra ingest`: one robot log read once, its messages decoded and written as Parquet in
bounded batches (`BatchBounds`), ready to commit to the lake's tables, so that memory does not grow with the log.

    identify_source      a log named by the hash of its bytes (`Source`)
    EpisodeStream        a log's lake tables as bounded batches (`read_episode`: whole, in memory)
    StagedEpisode        those batches written as one Parquet file per table part, on a background thread
    Stager               identify, skip the episodes the lake has already, stage: in this process
    StagingProcesses     the same in processes forked before Beam is imported, which start on the first logs at once

Nothing here imports Beam: `pipelines.ingest_steps` wraps it into the pipeline.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import multiprocessing
import multiprocessing.pool
import os
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from mcap.records import Attachment, Channel, Message, Schema
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap_ros2.decoder import DecoderFactory

from datasets.lake_tables import committed_episodes, since_previous_in_files
from datasets.log_files import LogReader, log_members, open_log
from schemas import cdr_bulk
from schemas.episode import EPISODE_METADATA_NAME
from schemas.lake import (
    EPISODE_ID,
    OUTCOME_OK,
    OUTCOME_REJECTED,
    OUTCOME_SALVAGED,
    PARQUET_COMPRESSION,
    ROS2_TABLES,
    SINCE_PREVIOUS,
    TABLES,
    episode_id_of,
    file_schema,
    since_previous,
    table_from_rows,
)
from schemas.ros2_rows import CONVERTERS, Row
from schemas.topics import GROUND_TRUTH_TOPIC

ROW_GROUP_BYTES = 128 << 20
MAX_PENDING_WRITES = 4


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
def ros2_decoder(name: str, definition: bytes) -> Callable[[bytes], Any]:
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
        decode = ros2_decoder(schema.name, schema.data)
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


# --- writing one file's tables for the lake, batch by batch --------------------------------------


@dataclass(frozen=True)
class StagedPartition:
    """A table's rows of one file written under `root`, the staging folder of the file (`staged_files`)."""

    source_path: str
    root: str
    table: str
    rows: int


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


def stage_file(source: Source, root: str, bounds: BatchBounds) -> dict[str, int]:
    """Read, decode and write one file's tables under `root`, batch by batch; rows written per table."""
    stream = EpisodeStream(source, bounds)
    with StagedEpisode(Path(root), source.episode_id) as staged:
        for batch in stream.batches():
            staged.write(batch)
    if stream.unordered_topics:
        _restage_since_previous(staged_files(Path(root), "images"))
    return dict(staged.rows)


def write_atomically(path: Path, text: str) -> None:
    """Readers see the whole file or none; the temporary name starts with a dot."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


# --- staging a run's logs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StagingRun:
    """Where one ingest run stages its logs: a folder per log under `staging`, and a marker per log staged in
    `progress_dir` (its size in bytes, for the progress bar), if given."""

    lake: str
    staging: str
    bounds: BatchBounds = BatchBounds()
    progress_dir: str | None = None

    def root(self, path: str) -> str:
        """One staging folder per input log, so that two logs with the same bytes never write to one place."""
        return str(Path(self.staging, hashlib.sha256(path.encode()).hexdigest()[:16]))


@dataclass(frozen=True)
class StagedLog:
    """A log identified, and staged under `root` unless the lake has its episode already (`rows` None)."""

    source: Source
    root: str
    rows: dict[str, int] | None  # rows staged per table

    def partitions(self) -> list[StagedPartition]:
        return [StagedPartition(self.source.path, self.root, t, n) for t, n in (self.rows or {}).items()]


def _stage_identified(source: Source, run: StagingRun) -> StagedLog:
    root = run.root(source.path)
    rows = stage_file(source, root, run.bounds)
    if run.progress_dir is not None:  # one marker per input log: logs with the same bytes are staged apart
        write_atomically(Path(run.progress_dir, Path(root).name), str(source.size))
    return StagedLog(source, root, rows)


class Stager:
    """Stages logs in this process: identifies each, skips it if the lake has its episode, else stages it.

    The lake's `episodes` table is loaded once, here: loading it reads the entry of every file it holds.
    """

    def __init__(self, run: StagingRun) -> None:
        self.run = run
        self._committed = committed_episodes(Path(run.lake), "episodes")

    def staged(self, path: str) -> StagedLog:
        source = identify_source(path)
        if self._committed(source.episode_id):
            return StagedLog(source, self.run.root(path), None)
        return _stage_identified(source, self.run)


class StagingProcesses:
    """Stages a run's logs in `count` processes forked at once, which start on the first logs while the
    parent imports Beam and builds the pipeline (about 0.7 s): `staged(path)` waits for a log's outcome.

    Why processes: decoding is Python for the most part, so threads share one core; a forked process starts in
    milliseconds with everything imported, where Beam's multi-processing mode starts processes that import Beam
    again (it took twice as long as threads on 4 files). The children identify and stage; the parent, in the
    pool's result thread, skips episodes the lake has already and queues the rest: deltalake's runtime does not
    survive a fork, so only the parent reads the lake. Identification runs `count` logs ahead of staging, so
    that hashing a directory of logs does not hold staging back.
    """

    def __init__(self, count: int, paths: list[str], run: StagingRun) -> None:
        self.run = run
        # As the gc docs advise before a fork: what exists now is never collected, so the children's collections do
        # not copy the pages they share with this process (and neither does the collection at exit).
        gc.freeze()
        self._pool = multiprocessing.get_context("fork").Pool(count)
        self._committed = committed_episodes(Path(run.lake), "episodes")
        self._outcomes: dict[str, Future[StagedLog]] = {path: Future() for path in paths}
        self._to_identify = iter(paths)
        self._lock = threading.Lock()  # the pool's result thread and this one both queue jobs
        self._closing = False
        for _ in range(2 * count):
            self._identify_next()

    def staged(self, path: str) -> StagedLog:
        return self._outcomes[path].result()

    def _identify_next(self) -> None:
        with self._lock:
            path = None if self._closing else next(self._to_identify, None)
            if path is None:
                return
            outcome = self._outcomes[path]

            def failed(error: BaseException) -> None:
                outcome.set_exception(error)
                self._identify_next()

            self._pool.apply_async(identify_source, (path,), callback=self._identified, error_callback=failed)

    def _identified(self, source: Source) -> None:
        outcome = self._outcomes[source.path]
        try:
            if self._committed(source.episode_id):
                outcome.set_result(StagedLog(source, self.run.root(source.path), None))
            else:
                with self._lock:
                    if not self._closing:
                        self._pool.apply_async(
                            _stage_identified,
                            (source, self.run),
                            callback=outcome.set_result,
                            error_callback=outcome.set_exception,
                        )
        except Exception as e:  # reading the lake failed: the pipeline raises it from `staged`
            outcome.set_exception(e)
        self._identify_next()

    def close(self, error: BaseException | None) -> None:
        with self._lock:
            self._closing = True
        if error is None:
            self._pool.close()  # workers exit by themselves: a signal would wake whatever handlers a library installed
        else:
            self._pool.terminate()
        self._pool.join()


_active: StagingProcesses | None = None  # those of the run in progress, which its pipeline's threads stage with


@contextlib.contextmanager
def staging_processes(count: int, paths: list[str], run: StagingRun) -> Iterator[StagingProcesses | None]:
    """`StagingProcesses` for the run while the block runs (`active_processes`), if count > 0."""
    global _active
    if count < 1:
        yield None
        return
    processes = _active = StagingProcesses(count, paths, run)
    error: BaseException | None = None
    try:
        yield processes
    except BaseException as e:
        error = e
        raise
    finally:
        _active = None
        processes.close(error)


def active_processes() -> StagingProcesses | None:
    return _active
