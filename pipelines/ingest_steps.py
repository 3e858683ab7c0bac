"""The steps of `astra ingest` as Apache Beam transforms (`pipelines.ingest` runs them):

    ListLogs             the logs `ingest` listed (files, and rosbag2 directories)
    StageLogs            log -> one Parquet file per lake table part under <lake>/_staging/<run>/<log>/, the log
                         identified by the hash of its bytes, skipped if the lake has its episode, else read once
                         and decoded in bounded batches (`pipelines.staging`); on the direct runner in processes
                         forked before Beam was imported
    PublishEpisodes      groups episodes into batches (`COMMIT_BATCH_EPISODES`) and commits each: one
                         Delta commit per table, `episodes` last, carrying every episode's transaction id
                         (`datasets.lake_tables.commit_episodes`); of logs with the same bytes, the first
                         path is published

Each log goes from its name to staged Parquet in one step, so logs spread evenly over workers and decoded tables
never cross a shuffle: only names and row counts are grouped. The pipeline is the same on the DirectRunner and on
Dask.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq

from datasets.lake_tables import COMMIT_BATCH_EPISODES, EpisodeFiles, commit_episodes
from datasets.log_files import log_suffix
from pipelines.staging import StagedPartition, Stager, StagingRun, active_processes, staged_files, write_atomically
from schemas.lake import OUTCOME_OK, QUARANTINE_DIR


class ListLogs(beam.PTransform):
    """The logs to ingest, listed before the pipeline is built (`datasets.log_files.list_logs`)."""

    def __init__(self, files: list[str]) -> None:
        super().__init__()
        self.files = files

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[str]:
        return pbegin | beam.Create(self.files)


class _StageLogsFn(beam.DoFn):
    """log path -> (episode_id, StagedPartition) per lake table, by the run's staging processes if it has them, else
    in this worker (`pipelines.staging.Stager`)."""

    def __init__(self, run: StagingRun) -> None:
        self.run = run

    def setup(self) -> None:
        self.stager = active_processes() or Stager(self.run)

    def process(self, path: str) -> Iterator[tuple[str, StagedPartition]]:
        staged = self.stager.staged(path)
        for partition in staged.partitions():
            yield staged.source.episode_id, partition


class StageLogs(beam.PTransform):
    """log path -> (episode_id, StagedPartition) per lake table, for the logs whose episodes the lake lacks."""

    def __init__(self, run: StagingRun) -> None:
        super().__init__()
        self.run = run

    def expand(self, paths: beam.PCollection[str]) -> beam.PCollection[tuple[str, StagedPartition]]:
        return paths | beam.ParDo(_StageLogsFn(self.run))


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
        write_atomically(reports / f"{report['episode_id']}.json", json.dumps(report))
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
        write_atomically(held / "reason.json", json.dumps(reason, indent=1))
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


def build_ingest(pipeline: beam.Pipeline, files: list[str], run: StagingRun, reports: Path) -> None:
    """The ingest pipeline of `files`, staged as `run` says, its reports written to `reports`."""
    (
        pipeline
        | "ListLogs" >> ListLogs(files)
        | "StageLogs" >> StageLogs(run)
        | "PublishEpisodes" >> PublishEpisodes(Path(run.lake), reports, len(files))
    )
