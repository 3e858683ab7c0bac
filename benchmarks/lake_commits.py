"""The cost of committing episodes against the number of episodes the lake already holds.

Ingest commits episodes in batches of COMMIT_BATCH_EPISODES, one Delta commit per table per batch carrying every
episode's transaction id (`datasets.lake_tables.commit_episodes`). Each synthetic episode here has IMU_ROWS rows of
`imu` and its `episodes` row, staged as Parquet files the way ingest stages them, and the lake grows batch by batch.
Reported at each point of the curve: the mean milliseconds per episode over the last WINDOW batches (a batch's
commits divided by its episodes; WINDOW is the tables' checkpoint interval, so that a checkpoint's cost is spread
over the commits it serves), what one batch's commits take, what one episode committed alone takes (one commit per
table: `write_partition`, the fixtures' path), what opening the `episodes` table costs, and its log files. The same
after compacting the lake.

ASTRA_BENCH_COMMITS="100,1000" measures a shorter curve (episodes, rounded up to whole batches).
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from datasets.lake_tables import (
    CHECKPOINT_INTERVAL,
    COMMIT_BATCH_EPISODES,
    EpisodeFiles,
    commit_episodes,
    compact,
    write_partition,
)
from schemas.lake import TABLE_VERSIONS, TABLES, file_schema, table_from_rows

CURVE = tuple(int(n) for n in os.environ.get("ASTRA_BENCH_COMMITS", "100,1000,3000,10000").split(","))
WINDOW = CHECKPOINT_INTERVAL
IMU_ROWS = 100


def _staged(lake: Path, index: int) -> EpisodeFiles:
    """Episode `index`, 10 s after the one before, staged under the lake's staging folder."""
    episode_id, start = f"e{index:06d}", index * 10**10
    schema = file_schema("imu")
    imu = {
        "t_ns": start + np.arange(IMU_ROWS) * 10**7,
        "topic": ["/imu"] * IMU_ROWS,
        "episode_id": [episode_id] * IMU_ROWS,
    }
    staged = lake / "_staging" / f"{episode_id}-imu.parquet"
    staged.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict({f.name: imu.get(f.name, [None] * IMU_ROWS) for f in schema}, schema), staged)
    values = {"robot_id": "r1", "site": "site-0", "start_ns": start, "t_ns": start}
    episode = table_from_rows("episodes", [tuple(values.get(f.name) for f in TABLES["episodes"])])
    return EpisodeFiles(episode_id, {"imu": [staged]}, episode)


def _commit_batch(lake: Path, first: int) -> float:
    """Seconds to commit the batch of episodes from `first` on, staging left out."""
    batch = [_staged(lake, i) for i in range(first, first + COMMIT_BATCH_EPISODES)]
    started = time.perf_counter()
    commit_episodes(lake, batch)
    return time.perf_counter() - started


def _alone(lake: Path, index: int) -> float:
    """Seconds to commit one episode by itself, `imu` then `episodes`, as `write_partition` does."""
    start = index * 10**10
    started = time.perf_counter()
    imu = write_partition(
        lake, "imu", f"e{index:06d}", {"t_ns": start + np.arange(IMU_ROWS) * 10**7, "topic": ["/imu"] * IMU_ROWS}
    )
    row = {"robot_id": ["r1"], "site": ["site-0"], "start_ns": [start], "t_ns": [start]}
    write_partition(lake, "episodes", f"e{index:06d}", row | {TABLE_VERSIONS.name: [[("imu", imu)]]})
    return time.perf_counter() - started


def _point(lake: Path, done: int, seconds: list[float]) -> dict:
    window = statistics.fmean(seconds[-WINDOW:])
    alone = _alone(lake, done)
    started = time.perf_counter()
    DeltaTable(lake / "episodes")
    return {
        "episodes": done,
        "ms_per_episode": round(window * 1e3 / COMMIT_BATCH_EPISODES, 1),
        "ms_per_batch": round(window * 1e3),
        "ms_one_episode_alone": round(alone * 1e3, 1),
        "open_episodes_ms": round((time.perf_counter() - started) * 1e3, 1),
        "log_files": len(list((lake / "episodes" / "_delta_log").glob("*.json"))),
    }


def run(workdir: Path) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    lake = workdir / "lake"
    lake.mkdir(parents=True)
    points, seconds, done = [], [], 0
    for target in sorted(CURVE):
        while done < target:
            seconds.append(_commit_batch(lake, done))
            done += COMMIT_BATCH_EPISODES
        points.append(_point(lake, done, seconds))
        done += 1  # the episode committed alone
        print(points[-1], flush=True)
    started = time.perf_counter()
    compact(lake)
    compact_s = time.perf_counter() - started
    for _ in range(WINDOW):
        seconds.append(_commit_batch(lake, done))
        done += COMMIT_BATCH_EPISODES
    compacted = {"compact_s": round(compact_s, 2)} | _point(lake, done, seconds)
    print(compacted, flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    return {"curve": points, "compacted": compacted, "batch": COMMIT_BATCH_EPISODES, "imu_rows": IMU_ROWS}
