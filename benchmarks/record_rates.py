"""Achieved versus configured rate of every topic in a real recorded run (`astra record`), and the watchdog stops
of the actuation safety layer in that run and in one made while a second process keeps one core busy."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from schemas.topics import BY_OUTPUT, TOPICS
from schemas.world import WORLD_KINDS
from sim.world import generate_world, write_world

SECONDS = 60
_SAFETY_EVENTS = BY_OUTPUT["safety_events"].ros_topic


def _record(world: Path, out: Path) -> dict:
    """Record one episode with `astra record`; its summary."""
    astra = Path(sys.executable).parent / "astra"
    proc = subprocess.run(
        [str(astra), "record", "--world", str(world), "--seconds", str(SECONDS), "--out", str(out)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])["summaries"][0]


def watchdog_stops(mcap: Path) -> int:
    """Number of `watchdog_stop` events the actuation layer recorded."""
    decode = DecoderFactory()
    with open(mcap, "rb") as f:
        messages = make_reader(f).iter_messages(topics=[_SAFETY_EVENTS])
        return sum(decode.decoder_for(c.message_encoding, s)(m.data).kind == "watchdog_stop" for s, c, m in messages)


@contextmanager
def _busy_core() -> Iterator[None]:
    """A second process spinning on one core for the duration."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def run(workdir: Path) -> dict:
    world = workdir / "office-0"
    write_world(generate_world("office", 0), world)
    episode = _record(world, workdir / "logs")
    rows = []
    print(f"{'topic':44} {'configured Hz':>13} {'achieved Hz':>11} {'messages':>9}")
    for topic in TOPICS:
        stats = episode["topics"].get(topic.ros_topic, {"count": 0, "rate_hz": 0.0})
        configured = f"{topic.rate_hz:g}" if topic.rate_hz else "once" if topic.latched else "event"
        print(f"{topic.ros_topic:44} {configured:>13} {stats['rate_hz']:>11.2f} {stats['count']:>9}")
        rows.append({"topic": topic.ros_topic, "configured_hz": topic.rate_hz, **stats})
    stops = watchdog_stops(Path(episode["path"]))
    print(f"watchdog stops in {SECONDS} s of office: {stops}")
    loaded = {}
    with _busy_core():  # every kind: the warehouse's long aisles make the slowest tour plans
        for kind in WORLD_KINDS:
            write_world(generate_world(kind, 0), workdir / f"{kind}-0")
            summary = _record(workdir / f"{kind}-0", workdir / f"logs-loaded-{kind}")
            loaded[kind] = {k: summary[k] for k in ("duration_s", "collisions", "distance_m")}
            loaded[kind]["watchdog_stops"] = watchdog_stops(Path(summary["path"]))
            print(f"with one core kept busy, {kind}-0: {loaded[kind]['watchdog_stops']} watchdog stops", flush=True)
    return {
        "seconds": SECONDS,
        "duration_s": episode["duration_s"],
        "collisions": episode["collisions"],
        "distance_m": episode["distance_m"],
        "watchdog_stops": stops,
        "topics": rows,
        "one_core_busy": loaded,
    }
