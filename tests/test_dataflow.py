"""The real data-collection graph: `dora run dataflows/record.yml` and `astra record`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from datasets.recording import summarize
from schemas.episode import EPISODE_METADATA_NAME, WORLD_ATTACHMENT_NAME
from schemas.topics import TOPICS

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)
# Topics a static world publishes in any run; obstacles need --dynamic, safety events a stop.
ALWAYS = {t.ros_topic for t in TOPICS if t.output_id not in ("obstacles", "safety_events")}


def _env(**overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "MUJOCO_GL": "egl",
        "ASTRA_CAMERA_WIDTH": "96",
        "ASTRA_CAMERA_HEIGHT": "72",
        **overrides,
    }


def _decode_all(path: Path) -> tuple[dict[str, int], dict, list[str]]:
    """Decode every message; return per-topic counts, metadata records and the /events kinds."""
    counts: dict[str, int] = {}
    events = []
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for _schema, channel, _message, decoded in reader.iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == "/events":
                events.append(decoded.kind)
        metadata = {r.name: dict(r.metadata) for r in reader.iter_metadata()}
        attachments = {a.name for a in reader.iter_attachments()}
        assert WORLD_ATTACHMENT_NAME in attachments
    return counts, metadata, events


def test_dora_run_stop_after_records_every_topic(office_world: Path, tmp_path: Path) -> None:
    mcap, rrd = tmp_path / "run.mcap", tmp_path / "run.rrd"
    proc = subprocess.run(
        ["dora", "run", str(ROOT / "dataflows" / "record.yml"), "--stop-after", "12s"],
        env=_env(ASTRA_WORLD=str(office_world), ASTRA_MCAP=str(mcap), ASTRA_RRD=str(rrd)),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts, metadata, events = _decode_all(mcap)
    assert counts.keys() >= ALWAYS, ALWAYS - counts.keys()
    assert events[0] == "episode_start" and "collision" not in events
    assert metadata[EPISODE_METADATA_NAME]["world_kind"] == "office"
    # Rates from stamps: message counts at STOP depend on each input's backlog, stamps do not.
    assert abs(summarize(mcap).topics["/imu"].rate_hz - 100.0) < 0.5
    assert counts["/cmd_vel"] > 10  # the closed loop ran: actuation turned expert commands into cmd_vel


def test_astra_record_ends_episode_and_saves_rrd(office_world: Path, tmp_path: Path) -> None:
    out, rrd = tmp_path / "logs", tmp_path / "episode.rrd"
    proc = subprocess.run(
        [
            f"{VENV_BIN}/astra",
            "record",
            "--world",
            str(office_world),
            "--episodes",
            "1",
            "--seconds",
            "6",
            "--out",
            str(out),
            "--rrd",
            str(rrd),
            "--camera-width",
            "96",
            "--camera-height",
            "72",
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 1 and summary["collisions"] == 0
    episode = summary["summaries"][0]
    assert 5.5 <= episode["duration_s"] <= 6.5  # the sensor ended the episode on simulated time
    counts, _, events = _decode_all(Path(episode["path"]))
    assert counts.keys() >= ALWAYS
    assert events == ["episode_start", "episode_end"]
    assert counts == {k: v["count"] for k, v in episode["topics"].items()}
    for camera in ("front", "rear_left", "rear_right"):
        assert abs(episode["topics"][f"/camera/{camera}/image/compressed"]["rate_hz"] - 10.0) < 0.1
    assert abs(episode["topics"]["/imu"]["rate_hz"] - 100.0) < 0.5
    verify = subprocess.run([f"{VENV_BIN}/rerun", "rrd", "verify", str(rrd)], capture_output=True, text=True)
    assert verify.returncode == 0 and "1 file verified" in verify.stdout + verify.stderr


def test_record_rejects_missing_world(tmp_path: Path) -> None:
    proc = subprocess.run(
        [f"{VENV_BIN}/astra", "record", "--world", str(tmp_path / "nope")], env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2 and "astra sim world" in proc.stderr


@pytest.mark.parametrize("argv", [["sim", "world", "--help"], ["record", "--help"], ["--help"]])
def test_every_subcommand_has_help(argv: list[str]) -> None:
    proc = subprocess.run([f"{VENV_BIN}/astra", *argv], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: astra" in proc.stdout
