"""DuckDB latency of the README's example queries (datasets.lake.EXAMPLE_QUERIES) on a lake of 50 episodes.

The lake mixes real and synthetic episodes, and the result says how many of each. Real ones are
`astra record` runs of an office, ingested by pipelines.ingest. Synthetic ones are partitions written
directly, with every topic at its nominal rate (schemas.topics) for SYNTHETIC_SECONDS, so row counts
are those of real episodes that long; their image bytes are placeholders, which no example query reads.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from datasets.lake import EXAMPLE_QUERIES, Lake, write_partition
from pipelines.ingest import ingest
from schemas.lake import OUTCOME_OK
from schemas.topics import BY_OUTPUT, CAMERAS
from sim.world import generate_world, write_world

EPISODES = 50
REAL_EPISODES, REAL_SECONDS = 2, 30
SYNTHETIC_SECONDS = 90
RUNS = 10
ROBOTS = ("astra-sim-01", "astra-sim-02", "astra-sim-03")
SITES = ("office-0", "warehouse-1", "home-2", "hospital-3")
DAY_NS = 86_400 * 10**9
SYNTHETIC_T0 = 1_790_000_000 * 10**9  # 2026-09-21


def run(workdir: Path) -> dict:
    lake = workdir / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    _record_and_ingest(workdir, lake)
    rng = np.random.default_rng(0)
    for index in range(EPISODES - REAL_EPISODES):
        _synthetic_episode(lake, index, rng)

    sizes = Lake(lake).sql("SELECT count(*) AS episodes, count(source_path) AS real FROM episodes").row(0, named=True)
    rows = {t: Lake(lake).sql(f'SELECT count(*) FROM "{t}"').item() for t in ("imu", "images", "odometry", "commands")}
    print(
        f"lake: {sizes['episodes']} episodes ({sizes['real']} real, {sizes['episodes'] - sizes['real']} synthetic "
        f"of {SYNTHETIC_SECONDS} s); rows {rows}"
    )
    print(f"{'query':56} {'first ms':>9} {'median ms':>10} {'rows':>5}")
    queries = {}
    for title, query in EXAMPLE_QUERIES.items():
        started = time.perf_counter()
        db = Lake(lake)  # a fresh connection: what one `astra sql` pays, views included
        result = db.sql(query)
        first_ms = (time.perf_counter() - started) * 1e3
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            db.sql(query)
            times.append((time.perf_counter() - started) * 1e3)
        queries[title] = {
            "first_ms": round(first_ms, 2),
            "median_ms": round(statistics.median(times), 2),
            "result_rows": result.height,
        }
        print(f"{title:56} {first_ms:>9.1f} {statistics.median(times):>10.1f} {result.height:>5}")
    return {
        "episodes": sizes["episodes"],
        "real_episodes": sizes["real"],
        "real_seconds": REAL_SECONDS,
        "synthetic_episodes": sizes["episodes"] - sizes["real"],
        "synthetic_seconds": SYNTHETIC_SECONDS,
        "rows": rows,
        "runs": RUNS,
        "queries": queries,
    }


def _record_and_ingest(workdir: Path, lake: Path) -> None:
    world, logs = workdir / "office-0", workdir / "logs"
    write_world(generate_world("office", 0), world)
    shutil.rmtree(logs, ignore_errors=True)
    astra = Path(sys.executable).parent / "astra"
    proc = subprocess.run(
        [str(astra), "record", "--world", str(world), "--episodes", str(REAL_EPISODES), "--seconds", str(REAL_SECONDS),
         "--camera-width", "96", "--camera-height", "72", "--out", str(logs)],
        stdout=subprocess.PIPE, text=True, check=True,
    )  # fmt: skip
    json.loads(proc.stdout.strip().splitlines()[-1])  # the recorder's summary line: it finished
    ingest([logs], lake, progress=False)


def _synthetic_episode(lake: Path, index: int, rng: np.random.Generator) -> None:
    """One episode of SYNTHETIC_SECONDS: a robot on a site on one of five days, topics at nominal rates."""
    episode_id = f"synthetic-{index:04d}"
    start_ns = SYNTHETIC_T0 + int(index % 5) * DAY_NS + int(rng.integers(0, DAY_NS // 2))

    def times(output_id: str, drop: float = 0.0) -> np.ndarray:
        period_ns = 1e9 / BY_OUTPUT[output_id].rate_hz
        t = start_ns + np.round(np.arange(int(SYNTHETIC_SECONDS * 1e9 / period_ns)) * period_ns).astype(np.int64)
        return t[rng.random(len(t)) >= drop]

    def message_rows(output_ids: tuple[str, ...], drop: float = 0.0) -> dict[str, list]:
        t = [times(o, drop) for o in output_ids]
        return {
            "t_ns": np.concatenate(t),
            "topic": [BY_OUTPUT[o].ros_topic for o, ts in zip(output_ids, t, strict=True) for _ in ts],
        }

    def noise(columns: list[str], n: int) -> dict[str, np.ndarray]:
        return {c: rng.normal(size=n) for c in columns}

    axes = [f"{v}_{a}" for v in ("angular_velocity", "linear_acceleration") for a in "xyz"]
    imu = message_rows(("imu",))
    write_partition(lake, "imu", episode_id, imu | noise(axes, len(imu["t_ns"])))
    wheels = message_rows(("wheels",))
    pairs = rng.normal(size=(len(wheels["t_ns"]), 2)).tolist()
    write_partition(lake, "wheels", episode_id, wheels | {"position": pairs, "velocity": pairs})
    odometry = message_rows(("odom", "ground_truth"))
    pose = [f"position_{a}" for a in "xyz"] + [f"orientation_{a}" for a in "xyzw"] + ["linear_x", "angular_z"]
    write_partition(lake, "odometry", episode_id, odometry | noise(pose, len(odometry["t_ns"])))
    commands = message_rows(("cmd_vel", "expert_cmd_vel"))
    write_partition(lake, "commands", episode_id, commands | noise(["linear_x", "angular_z"], len(commands["t_ns"])))
    write_partition(lake, "tf", episode_id, message_rows(("tf",)))
    # One frame in a thousand lost, so the camera-gap query has something to find.
    images = message_rows(tuple(f"{kind}_{c}" for kind in ("image", "depth") for c in CAMERAS), drop=1e-3)
    write_partition(lake, "images", episode_id, images | {"data": [b"placeholder"] * len(images["t_ns"])})

    duration_s = SYNTHETIC_SECONDS - 0.01
    distance_m = float(rng.uniform(0.2, 0.6) * duration_s)
    collisions = int(rng.poisson(0.3))
    events = {
        "t_ns": [start_ns, *sorted(rng.integers(start_ns, start_ns + int(duration_s * 1e9), collisions))],
        "topic": ["/events"] * (collisions + 1),
        "kind": ["episode_start"] + ["collision"] * collisions,
    }
    write_partition(lake, "events", episode_id, events)
    write_partition(
        lake,
        "episodes",
        episode_id,
        {
            "robot_id": [ROBOTS[index % len(ROBOTS)]],
            "site": [SITES[index % len(SITES)]],
            "world_kind": ["synthetic"],
            "t_ns": [start_ns],
            "start_ns": [start_ns],
            "end_ns": [start_ns + int(duration_s * 1e9)],
            "duration_s": [duration_s],
            "distance_m": [distance_m],
            "collisions": [collisions],
            "outcome": [OUTCOME_OK],
        },
    )
