"""The real data-collection graph: `dora run dataflows/record.yml` and `astra record`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from datasets.recording import summarize
from schemas.episode import EPISODE_METADATA_NAME, WORLD_ATTACHMENT_NAME
from schemas.topics import TOPICS

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)
# Topics record.yml's recorder gets that a static world publishes in any run; obstacles need --dynamic, safety
# events a stop.
RECORDED = {
    node["id"]: set(node.get("inputs", {}))
    for node in yaml.safe_load((ROOT / "dataflows" / "record.yml").read_text())["nodes"]
}["recorder"]
ALWAYS = {t.ros_topic for t in TOPICS if t.output_id in RECORDED - {"obstacles", "safety_events"}}


def _env(**overrides: str) -> dict[str, str]:
    """A plain headless shell: no display, no MUJOCO_GL nor any ASTRA_* setting, the venv's bin first on PATH."""
    plain = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY") and not k.startswith("ASTRA_")
    }
    return {
        **plain,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
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


def _decoded(path: Path, topic: str) -> list[tuple[int, object]]:
    """(log time ns, decoded message) of every message on one topic."""
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return [(message.log_time, decoded) for _, _, message, decoded in reader.iter_decoded_messages(topics=[topic])]


ESTOP = "4-6"


def test_dora_run_by_hand_records_every_topic_and_ends_the_episode(office_world: Path, tmp_path: Path) -> None:
    """As the README runs it: no ASTRA_RRD and no display, so the viz node saves its recording beside the logs."""
    mcap = tmp_path / "run.mcap"
    proc = subprocess.run(
        ["dora", "run", str(ROOT / "dataflows" / "record.yml")],
        # Relative ASTRA_* paths resolve against the directory dora was started from, as a shell's $PWD says.
        cwd=tmp_path,
        env=_env(
            ASTRA_WORLD=str(office_world), ASTRA_MCAP=mcap.name, ASTRA_SECONDS="8", ASTRA_ESTOP=ESTOP, PWD=str(tmp_path)
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts, metadata, events = _decode_all(mcap)
    assert counts.keys() >= ALWAYS, ALWAYS - counts.keys()
    assert events == ["episode_start", "episode_end"]
    rrd = list((tmp_path / "data" / "logs").glob("office-0-*.rrd"))
    verify = subprocess.run([f"{VENV_BIN}/rerun", "rrd", "verify", *map(str, rrd)], capture_output=True, text=True)
    assert len(rrd) == 1 and verify.returncode == 0, verify.stderr
    assert metadata[EPISODE_METADATA_NAME]["world_kind"] == "office"
    # Rates from stamps: message counts at STOP depend on each input's backlog, stamps do not.
    summary = summarize(mcap)
    assert abs(summary.topics["/imu"].rate_hz - 100.0) < 0.5
    # The closed loop ran all along: actuation sent cmd_vel at its 50 Hz on every tick of the recorded time,
    # and the robot drove under the expert's commands.
    assert abs(summary.topics["/cmd_vel"].rate_hz - 50.0) < 0.5
    assert summary.topics["/cmd_vel"].count >= 0.9 * 50 * summary.duration_s
    assert summary.distance_m > 1.0
    # The e-stop button, pressed from 4 s to 6 s of the episode, stopped the robot through actuation's `estop` input.
    start_ns = _decoded(mcap, "/clock")[0][0]
    stops = [(t - start_ns) * 1e-9 for t, event in _decoded(mcap, "/actuation/events") if event.kind == "estop"]
    assert len(stops) == 1 and 4.0 <= stops[0] < 4.1, stops
    held = [abs(cmd.linear.x) for t, cmd in _decoded(mcap, "/cmd_vel") if 4.2 <= (t - start_ns) * 1e-9 < 6.0]
    assert held and max(held) == 0.0


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


NEVER_ACKS = """
from dora import Node

node = Node()
for event in node:  # takes the episode's events and never answers, not even STOP
    pass
"""


def test_astra_record_times_out_when_an_ack_never_comes(office_world: Path, tmp_path: Path) -> None:
    """A sensor waiting for an acknowledgement prints nothing: the deadline must still end the run."""
    graph = yaml.safe_load((ROOT / "dataflows" / "record.yml").read_text())
    sensor = next(n for n in graph["nodes"] if n["id"] == "sensor")
    silent = tmp_path / "never_acks.py"
    silent.write_text(NEVER_ACKS)
    sensor["path"] = str(ROOT / "operators" / "sensor.py")
    sensor["inputs"] = {"silent_done": "silent/done"}
    sensor["env"] = {"ASTRA_EPISODE_ACKS": "silent_done"}
    graph["nodes"] = [sensor, {"id": "silent", "path": str(silent), "inputs": {"events": "sensor/events"},
                               "outputs": ["done"]}]  # fmt: skip
    dataflow = tmp_path / "hangs.yml"
    dataflow.write_text(yaml.safe_dump(graph))
    argv = [f"{VENV_BIN}/astra", "record", "--world", str(office_world), "--seconds", "2", "--timeout", "20"]
    proc = subprocess.run(
        [*argv, "--dataflow", str(dataflow), "--out", str(tmp_path / "logs")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "did not finish within 20 s" in proc.stderr and "Traceback" not in proc.stderr
    log = Path(proc.stderr.split("dora log: ")[1].split()[0])
    assert log.is_file() and "progress" in log.read_text()
    lingering = subprocess.run(["pgrep", "-f", str(silent)], capture_output=True, text=True)
    assert lingering.stdout == "", "nodes outlived the stopped run"


def test_record_rejects_missing_world(tmp_path: Path) -> None:
    proc = subprocess.run(
        [f"{VENV_BIN}/astra", "record", "--world", str(tmp_path / "nope")], env=_env(), capture_output=True, text=True
    )
    assert proc.returncode == 2 and "astra sim world" in proc.stderr


@pytest.mark.parametrize("argv", [["sim", "world", "--help"], ["record", "--help"], ["--help"]])
def test_every_subcommand_has_help(argv: list[str]) -> None:
    proc = subprocess.run([f"{VENV_BIN}/astra", *argv], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: astra" in proc.stdout
