"""`astra ingest`: MCAP recordings into the Parquet lake (`schemas.lake`), as one Apache Beam pipeline.

    ListMcapFiles        paths -> every *.mcap file under them
    IdentifyEpisodes     file -> Source, whose episode id is a hash of the file's bytes
    SkipIngested         drops episodes the lake already has
    ReadEpisodes         Source -> one EpisodeTable (Arrow) per lake table the file has rows for
    WriteLakePartitions  EpisodeTable -> Parquet under <lake>/_staging/<run>/<file>/
    PublishEpisodes      groups by episode, renames each partition into the lake, `episodes` last;
                         of files with the same bytes, the first path is published

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
import os
import shutil
import socket
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
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

from datasets.mcap_reader import SalvagingReader
from pipelines.progress import marker_progress
from schemas.episode import EPISODE_METADATA_NAME
from schemas.lake import (
    OUTCOME_OK,
    OUTCOME_REJECTED,
    OUTCOME_SALVAGED,
    PARQUET_COMPRESSION,
    PART_FILE,
    QUARANTINE_DIR,
    ROS2_TABLES,
    STAGING_DIR,
    episode_id_of,
    partition_dir,
    table_from_rows,
)
from schemas.ros2_rows import CONVERTERS, Row
from schemas.topics import GROUND_TRUTH_TOPIC

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
RUNNERS = ("direct", "dask")
ROW_GROUP_BYTES = 128 << 20
MAX_PENDING_WRITES = 32
_PROGRESS_DIR, _REPORTS_DIR, _QUARANTINE_COPY = "progress", "reports", "source.mcap"


# --- reading one file into lake tables (pure) ------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One input file, named by its content."""

    path: str
    size: int
    sha256: str

    @property
    def episode_id(self) -> str:
        return episode_id_of(self.sha256)


def list_mcap_files(paths: Iterable[Path]) -> list[Path]:
    """Files given by name, and every `*.mcap` file under the directories given, each once, sorted."""
    files: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            files.update(p.resolve() for p in path.rglob("*.mcap") if p.is_file())
        elif path.is_file():
            files.add(path.resolve())
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return sorted(files)


def identify_source(path: str) -> Source:
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return Source(path, os.path.getsize(path), digest)


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


def _channel_rows(
    channel: Channel | None, schema: Schema | None, messages: list[Message], rows: dict[str, list[Row]]
) -> list[str]:
    """Add one channel's messages to `rows`: typed where the ROS 2 type has a table, else raw.

    Returns the problems met: payloads (or a schema) that did not decode land raw in `messages`.
    """
    typed = (
        channel is not None
        and schema is not None
        and channel.message_encoding == MessageEncoding.CDR
        and schema.encoding == SchemaEncoding.ROS2
    )
    table = ROS2_TABLES.get(schema.name) if typed else None
    if table is None:
        rows["messages"].extend(_raw_row(m, channel, schema) for m in messages)
        return []
    topic = channel.topic
    try:
        decode = _ros2_decoder(schema.name, schema.data)
    except Exception as e:  # a definition mcap-ros2-support cannot parse: keep every payload raw
        rows["messages"].extend(_raw_row(m, channel, schema) for m in messages)
        return [f"undecodable: schema {schema.name} of {topic}: {type(e).__name__}: {e}"]
    convert, out = CONVERTERS[schema.name], rows[table]
    failed, first_error = [], None
    for m in messages:
        try:
            out.extend(convert(m.log_time, topic, decode(m.data)))
        except Exception as e:  # whatever a bad payload raises inside the CDR decoder
            failed.append(m)
            first_error = first_error or e
    if not failed:
        return []
    rows["messages"].extend(_raw_row(m, channel, schema) for m in failed)
    return [
        f"undecodable: {len(failed)} of {len(messages)} {schema.name} messages on {topic}, "
        f"first: {type(first_error).__name__}: {first_error}"
    ]


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


def _episode_row(
    source: Source,
    tables: dict[str, pa.Table],
    counts: dict[str, int],
    log_times: list[int],
    metadata: list[Row],
    problems: list[str],
) -> Row:
    ours = next((record for name, record in metadata if name == EPISODE_METADATA_NAME), {})
    merged: dict[str, str] = {}  # every record's entries, the first of a repeated key winning
    for _, record in metadata:
        for key, value in record.items():
            merged.setdefault(key, value)
    start, end = (min(log_times), max(log_times)) if log_times else (None, None)
    salvaged = bool(problems) and any(name != "channels" for name in tables)
    outcome = OUTCOME_OK if not problems else OUTCOME_SALVAGED if salvaged else OUTCOME_REJECTED
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
        len(log_times),
        counts,
        odometry_distance(tables.get("odometry")),
        _collisions(tables.get("events")),
        outcome,
        salvaged,
        problems,
        merged,
        time.time_ns(),
    )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC. An episode is many objects in no cycles, and each collection would walk them all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_gc_paused()
def read_episode(source: Source) -> dict[str, pa.Table]:
    """Every lake table the file has rows for, plus its one-row `episodes` table.

    Damage never raises: what can be read is returned, and the damage is listed in
    `episodes.problems` with the outcome "salvaged" (or "rejected" if nothing was readable).
    """
    rows: dict[str, list[Row]] = defaultdict(list)
    by_channel: dict[int, list[Message]] = defaultdict(list)
    with open(source.path, "rb") as f:
        reader = SalvagingReader(f)
        for record in reader.records():
            if isinstance(record, Message):
                by_channel[record.channel_id].append(record)
            elif isinstance(record, Attachment):
                rows["attachments"].append(
                    (record.log_time, record.create_time, record.name, record.media_type, record.data)
                )
            else:
                rows["metadata"].append((record.name, record.metadata))
    per_channel = {channel_id: len(messages) for channel_id, messages in by_channel.items()}
    log_times = [m.log_time for messages in by_channel.values() for m in messages]
    problems = [str(d) for d in reader.damage]
    counts: Counter[str] = Counter()
    for channel_id in list(by_channel):
        messages = by_channel.pop(channel_id)  # frees each channel's payloads once its rows are built
        channel = reader.channels.get(channel_id)
        schema = reader.schemas.get(channel.schema_id) if channel else None
        problems += _channel_rows(channel, schema, messages, rows)
        counts[channel.topic if channel else f"<lost channel {channel_id}>"] += len(messages)
    for channel in reader.channels.values():
        schema = reader.schemas.get(channel.schema_id)
        rows["channels"].append(
            (
                channel.id,
                channel.topic,
                channel.message_encoding,
                channel.metadata,
                channel.schema_id,
                schema and schema.name,
                schema and schema.encoding,
                schema and schema.data,
                per_channel.get(channel.id, 0),
            )
        )
    metadata = rows.get("metadata", [])
    tables = {name: table_from_rows(name, rows.pop(name)) for name in sorted(rows) if rows[name]}
    row = _episode_row(source, tables, dict(counts), log_times, metadata, problems)
    tables["episodes"] = table_from_rows("episodes", [row])
    return tables


# --- the pipeline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeTable:
    """One episode's rows of one lake table, read from one file: the unit that moves through the pipeline."""

    episode_id: str
    source_path: str
    table: str
    data: pa.Table


@dataclass(frozen=True)
class StagedPartition:
    """A partition written under `root`, the staging folder of the file it was read from."""

    source_path: str
    root: str
    table: str
    rows: int


class ListMcapFiles(beam.PTransform):
    """The input files (listed when the pipeline is built, so their count and size are known up front)."""

    def __init__(self, paths: Iterable[Path]) -> None:
        super().__init__()
        self.files = [str(p) for p in list_mcap_files(paths)]

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[str]:
        return pbegin | beam.Create(self.files)


def is_published(lake: Path, episode_id: str) -> bool:
    """Whether an episode is in the lake: its `episodes` row is published last."""
    return partition_dir(lake, "episodes", episode_id).is_dir()


def _is_new(source: Source, lake: str) -> bool:
    return not is_published(Path(lake), source.episode_id)


def _episode_tables(source: Source, progress_dir: str | None) -> Iterator[EpisodeTable]:
    tables = read_episode(source)
    if progress_dir is not None:
        _write_atomically(Path(progress_dir, source.episode_id), str(source.size))
    for name, table in tables.items():
        yield EpisodeTable(source.episode_id, source.path, name, table)


class ReadEpisodes(beam.PTransform):
    """Source -> EpisodeTable per lake table; notes each file read in `progress_dir`, if given."""

    def __init__(self, progress_dir: Path | None = None) -> None:
        super().__init__()
        self.progress_dir = None if progress_dir is None else str(progress_dir)

    def expand(self, sources: beam.PCollection[Source]) -> beam.PCollection[EpisodeTable]:
        return sources | beam.FlatMap(_episode_tables, self.progress_dir)


def write_partition(table: pa.Table, directory: Path) -> None:
    """Write one partition as `<directory>/part-0.parquet`."""
    directory.mkdir(parents=True, exist_ok=True)
    rows = table.num_rows
    row_group = max(1, min(rows, ROW_GROUP_BYTES * rows // max(table.nbytes, 1)))
    # Payload columns are neither dictionary-encoded nor given min/max statistics: both cost and serve nothing.
    plain = [f.name for f in table.schema if not pa.types.is_large_binary(f.type)]
    pq.write_table(
        table,
        directory / PART_FILE,
        compression=PARQUET_COMPRESSION,
        row_group_size=row_group,
        use_dictionary=plain,
        write_statistics=plain,
    )


def _staging_root(staging: str, source_path: str) -> str:
    """One staging folder per input file, so that two files with the same bytes never write to one place."""
    return str(Path(staging, hashlib.sha256(source_path.encode()).hexdigest()[:16]))


class _WritePartitionsFn(beam.DoFn):
    """Writes on a background thread, where Arrow runs without the GIL while the next file decodes.

    A partition's element is emitted as its write is queued; the bundle, and with it the elements,
    completes only once `finish_bundle` has seen every write succeed.
    """

    def __init__(self, staging: str) -> None:
        self.staging = staging

    def start_bundle(self) -> None:
        self._writer = ThreadPoolExecutor(max_workers=1)
        self._pending: deque[Future] = deque()

    def process(self, part: EpisodeTable) -> Iterator[tuple[str, StagedPartition]]:
        while len(self._pending) >= MAX_PENDING_WRITES:  # bounds the decoded tables held in memory
            self._pending.popleft().result()
        root = _staging_root(self.staging, part.source_path)
        directory = partition_dir(Path(root), part.table, part.episode_id)
        self._pending.append(self._writer.submit(write_partition, part.data, directory))
        yield part.episode_id, StagedPartition(part.source_path, root, part.table, part.data.num_rows)

    def finish_bundle(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._writer.shutdown()


class WriteLakePartitions(beam.PTransform):
    """EpisodeTable -> (episode_id, StagedPartition), written under the staging root."""

    def __init__(self, staging: Path) -> None:
        super().__init__()
        self.staging = str(staging)

    def expand(self, parts: beam.PCollection[EpisodeTable]) -> beam.PCollection[tuple[str, StagedPartition]]:
        return parts | beam.ParDo(_WritePartitionsFn(self.staging))


def _move_into_place(src: Path, dst: Path) -> None:
    """Rename a finished directory into place, replacing one a killed ingest may have left."""
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


def publish_episode(episode_id: str, staged: Iterable[StagedPartition], lake: Path, reports: Path) -> dict:
    """Move an episode's staged partitions into the lake, `episodes` last, quarantining it if damaged.

    Files with the same bytes are the same episode: the first path's partitions are published. The
    report (also written to `reports/<episode_id>.json`) names the others as duplicates.
    """
    staged = list(staged)
    source = min(p.source_path for p in staged)
    parts = {p.table: p for p in staged if p.source_path == source}
    root = Path(parts["episodes"].root)
    for table in sorted(parts.keys() - {"episodes"}):
        _move_into_place(partition_dir(root, table, episode_id), partition_dir(lake, table, episode_id))
    episodes = partition_dir(root, "episodes", episode_id)
    episode = pq.read_table(episodes / PART_FILE).to_pylist()[0]
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
        shutil.copyfile(source, held / _QUARANTINE_COPY)
        reason = {**report, "sha256": episode["source_sha256"], "copy": _QUARANTINE_COPY}
        _write_atomically(held / "reason.json", json.dumps(reason, indent=1))
        _move_into_place(held, lake / QUARANTINE_DIR / episode_id)
    _move_into_place(episodes, partition_dir(lake, "episodes", episode_id))
    _write_atomically(reports / f"{episode_id}.json", json.dumps(report))
    return report


class PublishEpisodes(beam.PTransform):
    """Group staged partitions by episode and publish each episode; yields one report per episode."""

    def __init__(self, lake: Path, reports: Path) -> None:
        super().__init__()
        self.lake, self.reports = str(lake), str(reports)

    def expand(self, staged: beam.PCollection[tuple[str, StagedPartition]]) -> beam.PCollection[dict]:
        lake, reports = Path(self.lake), Path(self.reports)
        return (
            staged
            | "GroupByEpisode" >> beam.GroupByKey()
            | "Publish" >> beam.MapTuple(lambda episode_id, parts: publish_episode(episode_id, parts, lake, reports))
        )


# --- running it ------------------------------------------------------------------------------------


@dataclass
class IngestSummary:
    """What one `ingest` did. `quarantined` lists the source files that went to `_quarantine`."""

    lake: str
    runner: str
    files: int
    bytes: int
    episodes: int  # newly published
    skipped: int  # already in the lake, or the same bytes as another input
    rows: dict[str, int]
    quarantined: list[str]
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
) -> None:
    """Build a pipeline with `build` and run it to completion on the DirectRunner or on Dask.

    For Dask, `dask_address` is a scheduler address; without one, a local cluster of `workers`
    processes (default: one per core) is started for the run.
    """
    check_runner(runner, dask_address, workers)
    if runner == "direct":
        # The in-process FnApiRunner, named: Beam's DirectRunner would first try to download the Prism runner
        # binary from the internet, and fall back to this runner only once that fails. Explicit flags:
        # PipelineOptions would otherwise parse the command line of whoever calls us.
        with beam.Pipeline(options=PipelineOptions(flags=[], runner="FnApiRunner")) as pipeline:
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
) -> IngestSummary:
    """Ingest MCAP files, and the `*.mcap` files under directories, into the lake at `lake`.

    Raises FileNotFoundError for a path that does not exist and ValueError for bad runner settings;
    damaged files never raise (see `IngestSummary.quarantined`). On a remote Dask cluster the inputs
    and the lake must be on a filesystem every worker sees at the same paths.
    """
    started = time.perf_counter()
    check_runner(runner, dask_address, workers)
    lake = Path(lake).resolve()
    listing = ListMcapFiles(paths)
    total_bytes = sum(os.path.getsize(f) for f in listing.files)
    _remove_abandoned_staging(lake / STAGING_DIR)
    staging = lake / STAGING_DIR / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    progress_dir, reports_dir = staging / _PROGRESS_DIR, staging / _REPORTS_DIR
    progress_dir.mkdir(parents=True)
    reports_dir.mkdir()

    def build(pipeline: beam.Pipeline) -> None:
        (
            pipeline
            | "ListMcapFiles" >> listing
            | "IdentifyEpisodes" >> beam.Map(identify_source)
            | "SkipIngested" >> beam.Filter(_is_new, str(lake))
            | "ReadEpisodes" >> ReadEpisodes(progress_dir)
            | "WriteLakePartitions" >> WriteLakePartitions(staging)
            | "PublishEpisodes" >> PublishEpisodes(lake, reports_dir)
        )

    try:
        with marker_progress(
            progress_dir,
            total_bytes,
            "ingest",
            progress,
            weight=lambda m: int(m.read_text()),
            unit="B",
            unit_scale=True,
        ):
            run_pipeline(build, runner, dask_address, workers)
        reports = [json.loads(p.read_text()) for p in sorted(reports_dir.glob("*.json"))]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    rows: Counter[str] = Counter()
    for report in reports:
        rows.update(report["rows"])
    return IngestSummary(
        lake=str(lake),
        runner=runner,
        files=len(listing.files),
        bytes=total_bytes,
        episodes=len(reports),
        skipped=len(listing.files) - len(reports),
        rows=dict(sorted(rows.items())),
        quarantined=sorted(r["source_path"] for r in reports if r["outcome"] != OUTCOME_OK),
        seconds=time.perf_counter() - started,
    )
