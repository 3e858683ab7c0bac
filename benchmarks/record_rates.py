"""Achieved versus configured rate of every topic in a real recorded run (`astra record`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from schemas.topics import TOPICS
from sim.world import generate_world, write_world

SECONDS = 60


def run(workdir: Path) -> dict:
    world = workdir / "office-0"
    write_world(generate_world("office", 0), world)
    astra = Path(sys.executable).parent / "astra"
    proc = subprocess.run(
        [str(astra), "record", "--world", str(world), "--seconds", str(SECONDS), "--out", str(workdir / "logs")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    episode = json.loads(proc.stdout.strip().splitlines()[-1])["summaries"][0]
    rows = []
    print(f"{'topic':44} {'configured Hz':>13} {'achieved Hz':>11} {'messages':>9}")
    for topic in TOPICS:
        stats = episode["topics"].get(topic.ros_topic, {"count": 0, "rate_hz": 0.0})
        configured = "event" if topic.rate_hz is None else f"{topic.rate_hz:g}"
        print(f"{topic.ros_topic:44} {configured:>13} {stats['rate_hz']:>11.2f} {stats['count']:>9}")
        rows.append({"topic": topic.ros_topic, "configured_hz": topic.rate_hz, **stats})
    return {
        "seconds": SECONDS,
        "duration_s": episode["duration_s"],
        "collisions": episode["collisions"],
        "distance_m": episode["distance_m"],
        "topics": rows,
    }
