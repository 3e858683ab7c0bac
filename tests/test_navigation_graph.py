"""dataflow.yml run the other ways a robot runs it: `dora up` + `dora start --attach`, split over two machines
(dataflows/split.yml's graph, rooted at this checkout: global on `server`, the rest on `robot`), and fed by a
recording (ASTRA_SENSOR=replay).

Each run is short: it checks the graph starts, localizes and records, not that a mission completes (that is
tests/test_navigation.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from schemas.map import KEY_ENV
from schemas.topics import BY_OUTPUT
from tests.dora_cluster import DORA, dora_cluster, dora_up
from tests.split_graph import DATAFLOW, ROBOT, ROOT, SERVER, split_dataflow

pytestmark = pytest.mark.dora_daemons

SECONDS = 12  # an integer: dora coerces numeric-looking --env values ("12.0" would arrive as "12")


def _env(office_world: Path, office_map: tuple[Path, str, object], out: Path, **extra: str) -> dict[str, str]:
    map_dir, key, _ = office_map
    return {
        "ASTRA_WORLD": str(office_world),
        "ASTRA_MAP": str(map_dir),
        KEY_ENV: key,
        "ASTRA_GOAL": "take me to the reception",
        "ASTRA_SECONDS": str(SECONDS),
        "ASTRA_MCAP": str(out / "run.mcap"),
        "ASTRA_RRD": str(out / "run.rrd"),
        **extra,
    }


def _counts(mcap: Path) -> dict[str, int]:
    with open(mcap, "rb") as stream:
        summary = make_reader(stream).get_summary()
    counts = summary.statistics.channel_message_counts
    return {summary.channels[c].topic: n for c, n in counts.items()}


def _rate_hz(mcap: Path, topic: str) -> float:
    """Messages per second of log time on `topic`, between its first and last message."""
    with open(mcap, "rb") as stream:
        stamps = [m.log_time for _, _, m in make_reader(stream).iter_messages(topics=[topic])]
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) * 1e-9)


def _episode_seconds(mcap: Path) -> float:
    """Robot seconds the sensor ran, from its `episode_end` event."""
    with open(mcap, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, _, _, event in reader.iter_decoded_messages(topics=[BY_OUTPUT["events"].ros_topic]):
            if event.kind == "episode_end":
                return event.value
    raise AssertionError("no episode_end event")


def test_dora_up_then_start_attach_runs_the_stack(
    office_world: Path, office_map: tuple[Path, str, object], tmp_path: Path
) -> None:
    with dora_up(tmp_path) as cluster:
        cluster.run_graph(DATAFLOW, _env(office_world, office_map, tmp_path), timeout_s=240)
    counts = _counts(tmp_path / "run.mcap")
    assert counts[BY_OUTPUT["localization"].ros_topic] >= 1
    assert counts[BY_OUTPUT["mission_status"].ros_topic] >= 1
    # Nodes still importing when the sensor starts miss its first messages; once running, odometry is at 50 Hz.
    assert _rate_hz(tmp_path / "run.mcap", BY_OUTPUT["local_odom"].ros_topic) >= 45


def test_split_graph_runs_global_on_the_server(
    office_world: Path, office_map: tuple[Path, str, object], tmp_path: Path
) -> None:
    # Not dataflows/split.yml itself: its working_dirs name the checkout it was generated in, which may be another.
    graph = tmp_path / "split.yml"
    graph.write_text(yaml.safe_dump(split_dataflow(yaml.safe_load(DATAFLOW.read_text()), ROOT, ROOT)))
    with dora_cluster((SERVER, ROBOT), tmp_path) as cluster:
        cluster.run_graph(graph, _env(office_world, office_map, tmp_path), timeout_s=240)
    counts = _counts(tmp_path / "run.mcap")
    # dora 1.1 may drop messages between daemons (dora-rs/dora#3439): global's outputs must arrive, not all of them.
    assert counts.get(BY_OUTPUT["localization"].ros_topic, 0) + counts.get(BY_OUTPUT["mission_status"].ros_topic, 0)
    assert _rate_hz(tmp_path / "run.mcap", BY_OUTPUT["local_odom"].ros_topic) >= 45


def test_replay_feeds_a_recording_through_the_stack(
    office_world: Path, office_map: tuple[Path, str, object], tour_lake: Path, tmp_path: Path
) -> None:
    [tour] = sorted((tour_lake.parent / "logs").glob("*.mcap"))[:1]
    env = _env(office_world, office_map, tmp_path, ASTRA_SENSOR="replay", ASTRA_REPLAY=str(tour))
    proc = subprocess.run(
        ["dora", "run", str(DATAFLOW)],
        env={**env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = _counts(tmp_path / "run.mcap")
    # The episode ends after SECONDS, or a second after the mission ends: the tour may pass the goal early.
    played_s = _episode_seconds(tmp_path / "run.mcap")
    assert played_s >= 2.0
    assert counts[BY_OUTPUT["image_front"].ros_topic] >= 8 * played_s  # the recording's camera, at 10 Hz
    assert counts[BY_OUTPUT["localization"].ros_topic] >= 1
    assert BY_OUTPUT["cmd_vel"].ros_topic in counts  # the stack answered, open loop


@pytest.fixture(autouse=True)
def _no_dora_left() -> None:
    yield
    # Only this checkout's dora: another checkout's tests on the same machine may run theirs meanwhile.
    ours = f"{re.escape(str(DORA))} (coordinator|daemon)"
    left = subprocess.run(["pgrep", "-f", ours], capture_output=True, text=True).stdout
    assert not left.strip(), left
