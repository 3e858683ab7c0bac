"""The cost of one episode's commit against the number of episodes the lake already holds.

Ingest commits every episode on its own (one Delta commit per table, with the episode's transaction id), so a
fleet's lake takes hundreds of thousands of small commits. Each synthetic episode here commits IMU_ROWS rows of
`imu` and then its `episodes` row, as `astra ingest` does (`datasets.lake_tables.write_partition`, the fixtures'
path through `commit_episode_file`). Reported at each point of the curve: the median milliseconds per episode over
the last WINDOW episodes, and what opening the `episodes` table costs (Delta checkpoints every 100 commits keep it
from replaying the whole log).

ASTRA_BENCH_COMMITS="100,1000" measures a shorter curve.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from deltalake import DeltaTable

from datasets.lake_tables import compact, write_partition
from schemas.lake import TABLE_VERSIONS

CURVE = tuple(int(n) for n in os.environ.get("ASTRA_BENCH_COMMITS", "100,1000,3000").split(","))
WINDOW = 50
IMU_ROWS = 100


def _commit_episode(lake: Path, index: int) -> None:
    start = index * 10**10
    t_ns = start + np.arange(IMU_ROWS) * 10**7
    imu = write_partition(lake, "imu", f"e{index:06d}", {"t_ns": t_ns, "topic": ["/imu"] * IMU_ROWS})
    row = {"robot_id": ["r1"], "site": ["site-0"], "start_ns": [start], "t_ns": [start]}
    write_partition(lake, "episodes", f"e{index:06d}", row | {TABLE_VERSIONS.name: [[("imu", imu)]]})


def run(workdir: Path) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    lake = workdir / "lake"
    lake.mkdir(parents=True)
    points, seconds, done = [], [], 0
    for target in sorted(CURVE):
        while done < target:
            started = time.perf_counter()
            _commit_episode(lake, done)
            seconds.append(time.perf_counter() - started)
            done += 1
        started = time.perf_counter()
        DeltaTable(lake / "episodes")
        open_ms = (time.perf_counter() - started) * 1e3
        point = {
            "episodes": done,
            "ms_per_episode": round(statistics.median(seconds[-WINDOW:]) * 1e3, 1),
            "open_episodes_ms": round(open_ms, 1),
            "log_files": len(list((lake / "episodes" / "_delta_log").glob("*.json"))),
        }
        points.append(point)
        print(point, flush=True)
    started = time.perf_counter()
    compact(lake)
    compacted = {"compact_s": round(time.perf_counter() - started, 2)}
    for index in range(done, done + WINDOW):
        started = time.perf_counter()
        _commit_episode(lake, index)
        seconds.append(time.perf_counter() - started)
    compacted["ms_per_episode_after"] = round(statistics.median(seconds[-WINDOW:]) * 1e3, 1)
    print(compacted, flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    return {"curve": points, "compacted": compacted, "window": WINDOW, "imu_rows": IMU_ROWS}
