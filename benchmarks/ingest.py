"""Ingest throughput: `pipelines.ingest` on the DirectRunner and on Dask (1 and 2 workers), against
reading and decoding the same files with the `mcap` libraries alone, in the same run.

Two baselines decode every message that has a decoder with `mcap-ros2-support`:
- "reader API": `make_reader(f, decoder_factories=...).iter_decoded_messages()`, the libraries' way;
- "stream loop": a plain `StreamReader` loop with one decoder per channel, the fastest way we know.
All contenders run in turn, REPEATS times, and each keeps its best time, so that other load on a
shared machine weighs on all alike. Recordings are made once and reused from `workdir`.

Whole processes too, as a user would time them: `astra ingest` against `benchmarks/naive_ingest.py` (the script a
user would write instead: `make_reader`, then one Parquet file per topic with pyarrow), alternating, on the same files.

`run_formats` (`python -m benchmarks ingest_formats`, about a minute): ingest of the same recordings as MCAP, as
rosbag2 SQLite files (`.db3`) and as ROS 1 bags (`.bag`), both made with `rosbags-convert`, side by side: time, and
rows against the MCAP's.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mcap.reader import make_reader
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from mcap_ros2.decoder import DecoderFactory

from pipelines.ingest import IngestSummary, ingest
from sim.world import generate_world, write_world
from tests.log_formats import storage_file, to_ros1_bag, to_rosbag2

EPISODES, SECONDS = 4, 30
CAMERA = ("96", "72")
REPEATS = 3
BASELINES = ("reader API", "stream loop")


def _recordings(workdir: Path, episodes: int = EPISODES, seconds: float = SECONDS) -> list[Path]:
    logs = workdir / "logs"
    if len(list(logs.glob("*.mcap"))) < episodes:
        shutil.rmtree(logs, ignore_errors=True)
        world = workdir / "office-0"
        write_world(generate_world("office", 0), world)
        astra = Path(sys.executable).parent / "astra"
        subprocess.run(
            [
                str(astra),
                "record",
                "--world",
                str(world),
                "--episodes",
                str(episodes),
                "--seconds",
                str(seconds),
                "--camera-width",
                CAMERA[0],
                "--camera-height",
                CAMERA[1],
                "--out",
                str(logs),
            ],
            stdout=subprocess.DEVNULL,
            check=True,
        )
    return sorted(logs.glob("*.mcap"))[:episodes]


def read_with_reader_api(files: list[Path]) -> int:
    """Read and decode every message with `make_reader`; returns the message count."""
    count = 0
    for path in files:
        with open(path, "rb") as f:
            for _ in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
                count += 1
    return count


def read_with_stream_loop(files: list[Path]) -> int:
    """Read every message with `StreamReader` and decode each one that has a decoder; returns the count."""
    count = 0
    for path in files:
        factory, schemas, channels, decoders = DecoderFactory(), {}, {}, {}
        with open(path, "rb") as f:
            for record in StreamReader(f).records:
                if isinstance(record, Message):
                    if record.channel_id not in decoders:
                        channel = channels[record.channel_id]
                        decoders[record.channel_id] = factory.decoder_for(
                            channel.message_encoding, schemas.get(channel.schema_id)
                        )
                    decode = decoders[record.channel_id]
                    if decode is not None:
                        decode(record.data)
                    count += 1
                elif isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
    return count


def _ingest_once(files: list[Path], lake: Path, **runner: object) -> IngestSummary:
    shutil.rmtree(lake, ignore_errors=True)
    summary = ingest(files, lake, progress=False, **runner)
    if summary.episodes != len(files) or summary.quarantined:
        raise RuntimeError(f"benchmark ingest went wrong: {summary.to_dict()}")
    return summary


def _best_seconds(contenders: dict[str, Callable[[], object]]) -> dict[str, float]:
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(REPEATS):
        for name, run_once in contenders.items():
            start = time.perf_counter()
            run_once()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def _whole_processes(files: list[Path], workdir: Path) -> dict[str, float]:
    """Best wall time of `astra ingest` and of the naive script, each a fresh process, run in turn."""
    lake, naive_out = workdir / "lake-process", workdir / "naive"
    bin_dir = Path(sys.executable).parent
    commands = {
        "astra ingest": [str(bin_dir / "astra"), "ingest", *map(str, files), "--lake", str(lake)],
        "naive script": [
            sys.executable,
            str(Path(__file__).with_name("naive_ingest.py")),
            str(naive_out),
            *map(str, files),
        ],
    }

    def once(command: list[str]) -> None:
        shutil.rmtree(lake, ignore_errors=True)
        shutil.rmtree(naive_out, ignore_errors=True)
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)

    return _best_seconds({name: lambda command=command: once(command) for name, command in commands.items()})


def run(workdir: Path) -> dict:
    from distributed import LocalCluster

    files = _recordings(workdir)
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    messages = read_with_stream_loop(files)
    lake = workdir / "lake"
    # Clusters start outside the timing: a long-lived cluster is what --dask-address points at.
    quiet = {"threads_per_worker": 1, "dashboard_address": None, "silence_logs": logging.ERROR}
    with LocalCluster(n_workers=1, **quiet) as one, LocalCluster(n_workers=2, **quiet) as two:
        seconds = _best_seconds(
            {
                "reader API": lambda: read_with_reader_api(files),
                "stream loop": lambda: read_with_stream_loop(files),
                "ingest, DirectRunner": lambda: _ingest_once(files, lake),
                "ingest, Dask 1 worker": lambda: _ingest_once(
                    files, lake, runner="dask", dask_address=one.scheduler_address
                ),
                "ingest, Dask 2 workers": lambda: _ingest_once(
                    files, lake, runner="dask", dask_address=two.scheduler_address
                ),
            }
        )
    print(f"{len(files)} recordings, {megabytes:.1f} MB, {messages} messages; best of {REPEATS}")
    print(f"{'':24} {'seconds':>8} {'MB/s':>6} {'msgs/s':>7}  ratio to: {'  '.join(BASELINES)}")
    runs = {}
    for name, took in seconds.items():
        ratios = {baseline: round(seconds[baseline] / took, 3) for baseline in BASELINES}
        runs[name] = {
            "seconds": round(took, 3),
            "mb_per_s": round(megabytes / took, 2),
            "msgs_per_s": round(messages / took),
            "ratio_to": ratios,
        }
        print(
            f"{name:24} {took:8.2f} {megabytes / took:6.1f} {messages / took:7.0f}            "
            + "  ".join(f"{ratios[b]:>{len(b)}.2f}" for b in BASELINES)
        )
    processes = _whole_processes(files, workdir)
    ratio = processes["naive script"] / processes["astra ingest"]
    print(
        f"whole process: astra ingest {processes['astra ingest']:.2f} s, "
        f"naive script {processes['naive script']:.2f} s: {ratio:.2f}x the naive script's throughput"
    )
    return {
        "files": len(files),
        "megabytes": round(megabytes, 2),
        "messages": messages,
        "runs": runs,
        "whole_process_seconds": {name: round(took, 3) for name, took in processes.items()},
        "throughput_vs_naive_script": round(ratio, 3),
    }


FORMAT_EPISODES, FORMAT_SECONDS = 1, 20  # recording takes most of the minute this figure may take


def _held_by_every_format(rows: dict[str, int]) -> dict[str, int]:
    """Rows per table but those only MCAP holds (attachments, metadata) and `channels`, whose ids differ."""
    return {table: n for table, n in rows.items() if table not in ("attachments", "metadata", "channels")}


def _as_formats(files: list[Path], workdir: Path) -> dict[str, list[Path]]:
    """The recordings as MCAP, and converted once to bare `.db3` files and to ROS 1 bags."""
    made: dict[str, list[Path]] = {"mcap": files, ".db3": [], ".bag": []}
    for path in files:
        db3, bag = workdir / "db3" / f"{path.stem}.db3", workdir / "bag" / f"{path.stem}.bag"
        if not db3.exists():
            bag2 = to_rosbag2(path, workdir / "rosbag2" / path.stem)
            db3.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(storage_file(bag2), db3)
            shutil.rmtree(bag2)
        if not bag.exists():
            bag.parent.mkdir(parents=True, exist_ok=True)
            to_ros1_bag(path, bag)
        made[".db3"].append(db3)
        made[".bag"].append(bag)
    return made


def run_formats(workdir: Path) -> dict:
    """Ingest of the same recordings as MCAP, `.db3` and `.bag`, in turn, best of REPEATS: seconds and rows."""
    made = _as_formats(_recordings(workdir, FORMAT_EPISODES, FORMAT_SECONDS), workdir)
    summaries: dict[str, IngestSummary] = {}

    def contender(name: str) -> Callable[[], None]:
        def once() -> None:
            summaries[name] = _ingest_once(made[name], workdir / "lake")

        return once

    seconds = _best_seconds({name: contender(name) for name in made})
    mcap_rows = summaries["mcap"].rows
    print(f"{FORMAT_EPISODES} recording(s) of {FORMAT_SECONDS} s as each format; best of {REPEATS}")
    print(f"{'format':8} {'MB':>6} {'seconds':>8} {'rows':>8}  rows as MCAP's")
    result = {}
    for name, files in made.items():
        rows = summaries[name].rows
        same = _held_by_every_format(rows) == _held_by_every_format(mcap_rows)
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        print(f"{name:8} {megabytes:6.1f} {seconds[name]:8.2f} {sum(rows.values()):8}  {same}")
        result[name] = {
            "megabytes": round(megabytes, 2),
            "seconds": round(seconds[name], 3),
            "rows": rows,
            "rows_as_mcap": same,
        }
    return result
