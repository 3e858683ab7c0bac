"""DuckDB latency of the README's example queries (datasets.lake.EXAMPLE_QUERIES) on a lake of recorded episodes.

The lake holds EPISODES real `astra record` runs: SECONDS each, four building kinds, two robots,
small cameras (row counts per second are those of any recording; only image bytes are smaller).
Recordings are made once and reused from `<workdir>/logs`; the lake is rebuilt with `astra ingest`'s
pipeline every run.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from datasets.lake import EXAMPLE_QUERIES, Lake
from pipelines.ingest import ingest
from schemas.world import WORLD_KINDS
from sim.world import generate_world, write_world

EPISODES, SECONDS = 52, 10
ROBOTS = ("astra-sim-01", "astra-sim-02")
RUNS = 10


def _record(workdir: Path) -> list[Path]:
    logs = workdir / "logs"
    missing = EPISODES - len(list(logs.glob("*.mcap")))
    astra = Path(sys.executable).parent / "astra"
    for index in range(max(0, missing)):
        kind = WORLD_KINDS[index % len(WORLD_KINDS)]
        world = workdir / "worlds" / f"{kind}-1"
        if not world.exists():
            write_world(generate_world(kind, 1), world)
        subprocess.run(
            [str(astra), "record", "--world", str(world), "--episodes", "1", "--seconds", str(SECONDS),
             "--seed", str(index), "--robot-id", ROBOTS[index % len(ROBOTS)],
             "--camera-width", "64", "--camera-height", "48", "--out", str(logs)],
            stdout=subprocess.DEVNULL, check=True,
        )  # fmt: skip
    return sorted(logs.glob("*.mcap"))


def run(workdir: Path) -> dict:
    recordings = _record(workdir)
    lake = workdir / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    ingest(recordings, lake, progress=False)
    db = Lake(lake)
    episodes = db.sql("SELECT count(*) AS n, count(DISTINCT site) AS sites, sum(duration_s) AS s FROM episodes")
    rows = {t: db.sql(f'SELECT count(*) FROM "{t}"').item() for t in ("imu", "images", "odometry", "commands")}
    info = episodes.row(0, named=True)
    print(f"lake: {info['n']} recorded episodes, {info['sites']} sites, {info['s']:.0f} s in all; rows {rows}")
    print(f"{'query':56} {'first ms':>9} {'median ms':>10} {'rows':>5}")
    queries = {}
    for title, query in EXAMPLE_QUERIES.items():
        started = time.perf_counter()
        fresh = Lake(lake)  # a fresh connection: what one `astra sql` pays, views included
        result = fresh.sql(query)
        first_ms = (time.perf_counter() - started) * 1e3
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            fresh.sql(query)
            times.append((time.perf_counter() - started) * 1e3)
        queries[title] = {
            "first_ms": round(first_ms, 2),
            "median_ms": round(statistics.median(times), 2),
            "result_rows": result.height,
        }
        print(f"{title:56} {first_ms:>9.1f} {statistics.median(times):>10.1f} {result.height:>5}")
    return {
        "episodes": info["n"],
        "sites": info["sites"],
        "recorded_seconds": info["s"],
        "rows": rows,
        "runs": RUNS,
        "queries": queries,
    }
