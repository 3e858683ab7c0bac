"""dora graphs run as on a robot (`dora up`, `dora start --attach`, `dora down`) and split over two machines.

The graph is tests/dora_nodes/count.yml: `source` sends COUNT numbers, `sink` collects them, and each node writes
its PID and its parent's (the daemon that spawned it) to REPORT_DIR. Each test runs a copy of it, since dora writes
its logs to `out/` in the graph's folder.

Across two daemons dora 1.1 loses messages now and then, `queue_policy: backpressure` or not (see dora-rs/dora#3439:
cross-daemon forwarding is bounded and drops), so there the sink is only required to get an ordered, non-empty
subset.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.dora_cluster import DORA, DoraError, dora_cluster, dora_env, dora_up, is_running
from tests.split_graph import DATAFLOW, ROBOT, SERVER, SPLIT_DATAFLOW, deploy_graph, split_dataflow, working_dirs

pytestmark = pytest.mark.dora_daemons

NODES = Path(__file__).parent / "dora_nodes"
COUNT = 200


def _copy_graph(tmp_path: Path) -> Path:
    """A copy of tests/dora_nodes under tmp_path, where dora may write its `out/` logs."""
    return Path(shutil.copytree(NODES, tmp_path / "graph", ignore=shutil.ignore_patterns("out", "__pycache__")))


def _reports(report_dir: Path) -> tuple[dict, dict]:
    return tuple(json.loads((report_dir / f"{node}.json").read_text()) for node in ("source", "sink"))


def test_dora_up_start_attach_down_runs_the_graph_to_completion(tmp_path: Path) -> None:
    graph = _copy_graph(tmp_path) / "count.yml"
    with dora_up(tmp_path / "dora") as cluster:
        output = cluster.run_graph(graph, {"COUNT": str(COUNT), "REPORT_DIR": str(tmp_path)})
    source, sink = _reports(tmp_path)
    assert source["sent"] == COUNT
    assert sink["received"] == list(range(COUNT)), output
    assert source["parent_pid"] == sink["parent_pid"] == cluster.daemon_pids[""]
    assert not [pid for pid in [*cluster.pids, source["pid"], sink["pid"]] if is_running(pid)]


def test_split_graph_runs_its_nodes_on_the_daemons_of_their_machines(tmp_path: Path) -> None:
    nodes = _copy_graph(tmp_path)
    split = deploy_graph(
        yaml.safe_load((nodes / "count.yml").read_text()),
        {"source": SERVER, "sink": ROBOT},
        dict.fromkeys((SERVER, ROBOT), nodes),
    )
    graph = tmp_path / "split.yml"  # away from the nodes: their paths resolve against deploy.working_dir
    graph.write_text(yaml.safe_dump(split, sort_keys=False))
    with dora_cluster([SERVER, ROBOT], tmp_path / "dora") as cluster:
        output = cluster.run_graph(graph, {"COUNT": str(COUNT), "REPORT_DIR": str(tmp_path)})
    source, sink = _reports(tmp_path)
    assert source["parent_pid"] == cluster.daemon_pids[SERVER]
    assert sink["parent_pid"] == cluster.daemon_pids[ROBOT]
    received = sink["received"]
    assert received, output  # numbers crossed from one daemon to the other ...
    assert received == sorted(set(received)) and set(received) <= set(range(COUNT))  # ... in order, uncorrupted
    assert not [pid for pid in [*cluster.pids, source["pid"], sink["pid"]] if is_running(pid)]


def test_a_failing_graph_raises_and_leaves_no_process_behind(tmp_path: Path) -> None:
    nodes = _copy_graph(tmp_path)
    on_robot = deploy_graph(
        yaml.safe_load((nodes / "count.yml").read_text()), {"source": ROBOT, "sink": ROBOT}, {ROBOT: nodes}
    )
    graph = tmp_path / "robot.yml"
    graph.write_text(yaml.safe_dump(on_robot, sort_keys=False))
    with dora_cluster([ROBOT], tmp_path / "dora") as cluster, pytest.raises(DoraError, match="COUNT"):
        cluster.run_graph(graph, {"REPORT_DIR": str(tmp_path)})  # no COUNT: the source fails
    assert not [pid for pid in cluster.pids if is_running(pid)]


def test_split_yml_is_dataflow_yml_with_global_on_the_server() -> None:
    split = yaml.safe_load(SPLIT_DATAFLOW.read_text())
    roots = working_dirs(split)
    expected = split_dataflow(yaml.safe_load(DATAFLOW.read_text()), roots[ROBOT], roots[SERVER])
    assert split == expected, "dataflows/split.yml is stale: run `.venv/bin/python -m tests.split_graph`"
    assert {node["id"] for node in split["nodes"] if node["deploy"]["machine"] == SERVER} == {"global"}


def test_dora_accepts_split_yml() -> None:
    result = subprocess.run(
        [str(DORA), "validate", str(SPLIT_DATAFLOW)], env=dora_env(), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
