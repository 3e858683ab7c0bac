"""DuckDB latency of the README's example queries (datasets.lake.EXAMPLE_QUERIES) against the number of episodes.

REAL recordings (`astra record`, SECONDS each, one per building kind, two robots, small cameras) are made once
and reused from `<workdir>/logs`, and ingested with `astra ingest`'s pipeline. Their rows of the tables the
queries read (`episodes`, `imu`, `images`) are then replicated under new episode ids into one lake that grows
through CURVE: a fleet of 100 robots, EPISODES_PER_DAY episodes a day, each replica shifted to its own start
time. Image payloads are left out of the replicas (null `data`): the queries never read them, and at 64x48 the
RGB and depth bytes of 100,000 copies would not fit on the disk. The replicas are committed BATCH episodes at a
time, each commit carrying its episodes' transaction ids as ingest's commits do. At each point of the curve the
lake is compacted, then every query is timed on a fresh `Lake` (first: what one `astra sql` pays, opening the
tables included) and RUNS times more (warm median).

ASTRA_BENCH_LAKE_EPISODES="100,1000" measures a shorter curve.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake

from datasets.lake import EXAMPLE_QUERIES, Lake
from datasets.lake_tables import compact
from pipelines.ingest import ingest
from schemas.lake import INGEST_TXN_VERSION, PARTITIONS, TABLE_VERSIONS, lake_schema
from schemas.world import WORLD_KINDS
from sim.world import generate_world, write_world

REAL, SECONDS = len(WORLD_KINDS), 10
ROBOTS = ("astra-sim-01", "astra-sim-02")
CURVE = tuple(int(n) for n in os.environ.get("ASTRA_BENCH_LAKE_EPISODES", "100,1000,10000,100000").split(","))
EPISODES_PER_DAY = 1_900  # 100 robots, about 700,000 episodes a year
FLEET = 100
BATCH = 1_000
TABLES = ("imu", "images", "episodes")  # what the README queries read; `episodes` last, as ingest commits
RUNS = 10
DAY_NS = 86_400 * 10**9
MIN_FREE_BYTES = 4 << 30


def _record(workdir: Path) -> list[Path]:
    logs = workdir / "logs"
    missing = REAL - len(list(logs.glob("*.mcap")))
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
    return sorted(logs.glob("*.mcap"))[:REAL]


def _time_queries(lake: Path) -> dict[str, dict[str, float]]:
    times = {}
    for title, query in EXAMPLE_QUERIES.items():
        started = time.perf_counter()
        fresh = Lake(lake)
        rows = fresh.sql(query).height
        first_ms = (time.perf_counter() - started) * 1e3
        warm = []
        for _ in range(RUNS):
            started = time.perf_counter()
            fresh.sql(query)
            warm.append((time.perf_counter() - started) * 1e3)
        times[title] = {"first_ms": round(first_ms, 1), "median_ms": round(statistics.median(warm), 1), "rows": rows}
    return times


class Replicator:
    """The recorded episodes' rows, copied under new ids into a lake of Delta Lake tables, BATCH per commit."""

    def __init__(self, recorded: Path, lake: Path) -> None:
        self.lake = lake
        self.base = {
            t: DeltaTable(recorded / t).to_pyarrow_table().sort_by([("episode_id", "ascending"), ("t_ns", "ascending")])
            for t in TABLES
        }
        self.base["images"] = self.base["images"].set_column(
            self.base["images"].schema.get_field_index("data"), "data", pa.nulls(self.base["images"].num_rows)
        )
        episodes = self.base["episodes"]
        self.ids = episodes["episode_id"].to_pylist()
        self.starts = episodes["start_ns"].to_numpy()
        self.members = {  # table -> its row numbers of each recorded episode
            t: [np.flatnonzero(pc.equal(rows["episode_id"], i).to_numpy(zero_copy_only=False)) for i in self.ids]
            for t, rows in self.base.items()
        }
        self.day0 = int(self.starts.min()) // DAY_NS * DAY_NS
        self.count = 0

    def grow(self, episodes: int) -> None:
        while self.count < episodes:
            size = min(BATCH, episodes - self.count)
            self._commit(np.arange(self.count, self.count + size))
            self.count += size

    def _commit(self, numbers: np.ndarray) -> None:
        ids = [f"{n:016x}" for n in numbers]
        base = numbers % len(self.ids)  # replica n copies recorded episode n mod REAL
        starts = self.day0 + numbers // EPISODES_PER_DAY * DAY_NS + numbers % EPISODES_PER_DAY * 45 * 10**9
        commit = CommitProperties(app_transactions=[Transaction(i, INGEST_TXN_VERSION) for i in ids])
        versions = {}
        for table in TABLES:
            data = self._replicas(table, base, ids, starts)
            if table == "episodes":
                data = data.set_column(
                    data.schema.get_field_index(TABLE_VERSIONS.name),
                    TABLE_VERSIONS,
                    pa.array([list(versions.items())] * len(ids), TABLE_VERSIONS.type),
                )
            write_deltalake(
                self.lake / table,
                data,
                mode="append",
                partition_by=PARTITIONS.names,
                writer_properties=WriterProperties(compression="ZSTD"),
                commit_properties=commit,
            )
            versions[table] = DeltaTable(self.lake / table).version()

    def _replicas(self, table: str, base: np.ndarray, ids: list[str], starts: np.ndarray) -> pa.Table:
        """Rows of recorded episode base[i] as episode ids[i], shifted to start at starts[i]."""
        rows, members = self.base[table], self.members[table]
        counts = np.array([len(members[b]) for b in base])
        copies = rows.take(np.concatenate([members[b] for b in base]))
        shifts = starts - self.starts[base]
        replaced = {
            "episode_id": pa.array(np.repeat(ids, counts)),
            "t_ns": pa.array(copies["t_ns"].to_numpy() + np.repeat(shifts, counts)),
            "day": pa.array(np.repeat((starts // DAY_NS).astype("datetime64[D]"), counts)),
        }
        if table == "episodes":
            replaced |= {
                "robot_id": pa.array([f"robot-{n:03d}" for n in np.arange(len(ids)) % FLEET]),
                "start_ns": pa.array(starts),
                "end_ns": pa.array(copies["end_ns"].to_numpy() + shifts),
            }
        schema = lake_schema(table)
        columns = [replaced[f.name] if f.name in replaced else copies[f.name] for f in schema]
        return pa.Table.from_arrays([c.cast(f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


def run(workdir: Path) -> dict:
    recordings = _record(workdir)
    recorded_lake, lake = workdir / "recorded", workdir / "lake"
    shutil.rmtree(recorded_lake, ignore_errors=True)
    shutil.rmtree(lake, ignore_errors=True)
    ingest(recordings, recorded_lake, progress=False)
    recorded = Lake(recorded_lake)
    rows = {t: recorded.sql(f'SELECT count(*) FROM "{t}"').item() for t in ("imu", "images")}
    print(f"{len(recordings)} recordings of {SECONDS} s, replicated; their rows: {rows}")
    replicator = Replicator(recorded_lake, lake)
    curve = {}
    titles = list(EXAMPLE_QUERIES)
    print(f"{'episodes':>9} {'build s':>8} {'compact s':>9} " + " ".join(f"{'q' + str(i + 1):>13}" for i in range(5)))
    for episodes in CURVE:
        free = shutil.disk_usage(workdir).free
        if free < MIN_FREE_BYTES:
            print(f"stopped before {episodes} episodes: {free >> 30} GB free")
            break
        started = time.perf_counter()
        replicator.grow(episodes)
        built = time.perf_counter() - started
        started = time.perf_counter()
        compact(lake)
        compacted = time.perf_counter() - started
        queries = _time_queries(lake)
        files = {t: len(DeltaTable(lake / t).file_uris()) for t in TABLES}
        curve[episodes] = {"build_s": round(built, 1), "compact_s": round(compacted, 1), "files": files, **queries}
        cells = " ".join(f"{queries[t]['median_ms']:>6.0f}/{queries[t]['first_ms']:<6.0f}" for t in titles)
        print(f"{episodes:>9} {built:>8.1f} {compacted:>9.1f} {cells}", flush=True)
    print("cells: warm median ms / first ms (a fresh Lake); queries: " + "; ".join(
        f"q{i + 1} {t}" for i, t in enumerate(titles)))  # fmt: skip
    return {"recordings": len(recordings), "seconds": SECONDS, "recorded_rows": rows, "runs": RUNS,
            "curve": curve}  # fmt: skip
