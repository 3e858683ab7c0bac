"""Shared fixtures: small, generated test data."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadFileScheduling

import sim  # noqa: F401  (picks MuJoCo's rendering backend before any test imports mujoco)
from schemas import messages as m
from schemas.map import KEY_ENV, generate_key
from schemas.topics import CAMERAS, TOPICS, camera_frame

if TYPE_CHECKING:
    from pipelines.mapping import MapSummary

T0 = 1_700_000_000_000_000_000


def sample_message(output_id: str, t_ns: int = T0) -> object:
    """A plausible message for every recorded output id."""
    identity = (0.0, 0.0, 0.0, 1.0)
    if output_id.startswith(("image_", "depth_", "camera_info_")):
        kind, camera = next(
            (k, c) for c in CAMERAS for k in ("image", "depth", "camera_info") if output_id == f"{k}_{c}"
        )
        frame = camera_frame(camera)
        if kind == "image":
            return m.CompressedImage(t_ns, frame, "jpeg", b"\xff\xd8fake-jpeg\xff\xd9")
        if kind == "depth":
            depth = np.linspace(0.5, 4.0, 12, dtype="<f4").reshape(3, 4)
            return m.DepthImage(t_ns, frame, 4, 3, depth.tobytes())
        return m.CameraInfo(
            t_ns,
            frame,
            4,
            3,
            (2.0, 0, 2.0, 0, 2.0, 1.5, 0, 0, 1),
            "plumb_bob",
            (0.0,) * 5,
            (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
            (2.0, 0, 2.0, 0, 0, 2.0, 1.5, 0, 0, 0, 1, 0),
        )
    samples = {
        "clock": m.Clock(t_ns),
        "imu": m.Imu(t_ns, "imu_link", identity, (0.0, 0.0, 0.01), (0.02, -0.01, 9.81)),
        "wheels": m.WheelState(t_ns, ("left_wheel", "right_wheel"), (1.0, 1.1), (5.0, 5.2)),
        "odom": m.Odometry(t_ns, "odom", "base_link", (1.0, 2.0, 0.0), identity, (0.5, 0.0, 0.0), (0.0, 0.0, 0.1)),
        "ground_truth": m.Odometry(t_ns, "map", "base_link", (1.0, 2.0, 0.0), identity, (0.5, 0, 0), (0, 0, 0.1)),
        "tf": m.TFMessage(
            t_ns,
            (
                m.Transform(t_ns, "map", "odom", (0.5, -0.2, 0.0), identity),
                m.Transform(t_ns, "odom", "base_link", (1.0, 2.0, 0.0), identity),
            ),
        ),
        "tf_static": m.TFMessage(
            t_ns,
            (
                m.Transform(t_ns, "base_link", "imu_link", (0.0, 0.0, 0.2), identity),
                m.Transform(t_ns, "base_link", camera_frame("front"), (0.22, 0.0, 0.45), (-0.5, 0.5, -0.5, 0.5)),
            ),
        ),
        "obstacles": m.DynamicObstacles(
            t_ns, ("p1", "c1"), (1.0, 2.0), (3.0, 4.0), (0.5, 0.0), (0.0, -0.5), (0.25, 0.4)
        ),
        "expert_cmd_vel": m.Twist(t_ns, (0.5, 0.0, 0.0), (0.0, 0.0, 0.2)),
        "cmd_vel": m.Twist(t_ns, (0.5, 0.0, 0.0), (0.0, 0.0, 0.2)),
        "events": m.Event(t_ns, "collision", "sim", "wall_3", 0.4),
        "safety_events": m.Event(t_ns, "watchdog_stop", "actuation", "", 0.0),
        "mission_goal": m.MissionGoal(t_ns, "m1", "take me to radiology"),
        "mission_status": m.MissionStatus(
            t_ns, "m1", "goal_not_found", "sing me a song", "", "", "", 0.0, ("Kitchen", "Lobby", "Radiology"), ""
        ),
        "localization": m.LocalizationResult(
            t_ns,
            "map",
            True,
            (1.0, 2.0, 0.0),
            identity,
            tuple(float(i == j) * 0.01 for i in range(6) for j in range(6)),
            0.9,
            312,
            ("n1", "n7"),
            0.42,
            "periodic",
            "",
        ),
        "localization_pose": m.PoseWithCovariance(
            t_ns, "map", (1.0, 2.0, 0.0), identity, tuple(float(i == j) * 0.01 for i in range(6) for j in range(6))
        ),
        "map_odom": m.TFMessage(t_ns, (m.Transform(t_ns, "map", "odom", (0.4, -0.1, 0.0), identity),)),
        "goal": m.PoseStamped(t_ns, "map", (5.0, 3.0, 0.0), (0.0, 0.0, 0.7071067811865476, 0.7071067811865476)),
        "route": m.Path(t_ns, "map", (0.0, 1.5, 3.0), (0.0, 0.5, 1.0), (0.0, 0.3, 0.3)),
        "subgoals": m.Path(t_ns, "odom", (1.5, 3.0), (0.5, 1.0), (0.3, 0.3)),
        "odom_tf": m.TFMessage(t_ns, (m.Transform(t_ns, "odom", "base_link", (1.0, 2.0, 0.0), identity),)),
        "local_odom": m.Odometry(t_ns, "odom", "base_link", (1.0, 2.0, 0.0), identity, (0.5, 0, 0), (0, 0, 0.1)),
        "local_cmd": m.Twist(t_ns, (0.6, 0.0, 0.0), (0.0, 0.0, -0.3)),
        "plan": m.Path(t_ns, "odom", (1.0, 1.1, 1.2), (2.0, 2.0, 2.1), (0.0, 0.1, 0.2)),
        "local_candidates": m.CandidatePaths(
            t_ns,
            "odom",
            (1.0, 1.2, 1.4, 1.0, 1.2, 1.4, 1.0, 1.1),
            (2.0, 2.1, 2.3, 2.0, 2.0, 2.0, 2.0, 1.9),
            (3, 3, 2),
            (0.4, -0.2, math.inf),
            1,
        ),
        "local_costmap": m.OccupancyGrid(t_ns, "odom", 0.05, 4, 3, (-0.1, -0.075, 0.0), bytes([0, 100, 255, 0] * 3)),
        "moving_obstacles": m.DynamicObstacles(t_ns, ("m0",), (1.5,), (0.2,), (0.0,), (0.0,), (0.3,)),
        "nav_events": m.Event(t_ns, "recovery", "local", "back_up", 0.3),
    }
    return samples[output_id]


@pytest.fixture
def all_topic_messages() -> list[tuple[str, object]]:
    return [(t.output_id, sample_message(t.output_id)) for t in TOPICS]


# `make test` runs the suite on several workers (pytest-xdist, --dist loadfile): each test module runs whole on one
# worker, so that its module-scoped fixtures are built once. The modules below share one worker, which takes them
# first: the office map takes minutes to build, and tests that start dora daemons must not overlap
# (test_navigation_graph checks that no coordinator or daemon of this checkout outlives its tests). xdist's
# --dist loadgroup would read such groups off markers, but on pytest 9.2 it silently ignores them
# (pytest-dev/pytest-xdist#1386).
ONE_WORKER_MODULES = frozenset(
    f"tests/{name}.py"
    for name in (
        "test_dora_deploy",
        "test_global_dataset",
        "test_localization_eval",
        "test_map_update",
        "test_mapping",
        "test_navigation",
        "test_navigation_graph",
        "test_submaps",
    )
)
MODULE_SECONDS = "astra/module_seconds"  # in .pytest_cache: how long each module took when it last ran
_module_seconds: Counter[str] = Counter()


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class _OneWorkerModules(LoadFileScheduling):
    def _split_scope(self, nodeid: str) -> str:
        module = super()._split_scope(nodeid)
        return "one worker" if module in ONE_WORKER_MODULES else module


@pytest.hookimpl(optionalhook=True)  # a hook of xdist's
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadFileScheduling | None:
    return _OneWorkerModules(config, log) if config.getoption("dist") == "loadfile" else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # only on xdist's workers
        return
    astray = [
        item.nodeid
        for item in items
        if ({"office_map", "tour_lake"} & set(item.fixturenames) or item.get_closest_marker("dora_daemons"))
        and _module(item.nodeid) not in ONE_WORKER_MODULES
    ]
    if astray:
        raise pytest.UsageError(f"add their modules to ONE_WORKER_MODULES in tests/conftest.py: {astray}")
    # The scheduler hands out modules in this order (--no-loadscope-reorder): the one-worker modules, then the others
    # longest first by their last run, so that no long module is left for the end while the other workers idle.
    cache = getattr(config, "cache", None)
    seconds = cache.get(MODULE_SECONDS, {}) if cache else {}
    items.sort(key=lambda item: (_module(item.nodeid) not in ONE_WORKER_MODULES, -seconds.get(_module(item.nodeid), 0)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _module_seconds[_module(report.nodeid)] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    cache = getattr(session.config, "cache", None)
    if cache and _module_seconds and not hasattr(session.config, "workerinput"):  # xdist's controller, or no xdist
        last = {module: round(seconds, 1) for module, seconds in _module_seconds.items()}
        cache.set(MODULE_SECONDS, cache.get(MODULE_SECONDS, {}) | last)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread: the suite runs one worker per core, and two torch threads per
    worker fight over the cores (a small matmul measured 50x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def office_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated office building, shared by the tests that drive the robot through it."""
    from sim.world import generate_world, write_world

    out = tmp_path_factory.mktemp("worlds") / "office-0"
    write_world(generate_world("office", 0), out)
    return out


@pytest.fixture(scope="session")
def hospital_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated hospital with people walking their loops."""
    from sim.world import generate_world, write_world

    out = tmp_path_factory.mktemp("worlds") / "hospital-1"
    write_world(generate_world("hospital", 1, dynamic=True), out)
    return out


# Two short expert tours of the office, and the encrypted map `astra map build` makes of them: the mapping and
# navigation tests share them.
TOUR_SECONDS, TOUR_SEEDS = 30.0, (0, 1)


@pytest.fixture(scope="session")
def tour_lake(office_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake holding two recorded tours of the office, on routes the expert chose with different seeds."""
    from datasets.tours import record_tour
    from pipelines.ingest import ingest

    root = tmp_path_factory.mktemp("tour")
    for seed in TOUR_SEEDS:
        record_tour(office_world, root / "logs" / f"tour-{seed}.mcap", TOUR_SECONDS, seed=seed)
    summary = ingest([root / "logs"], root / "lake", progress=False)
    assert summary.episodes == len(TOUR_SEEDS) and not summary.quarantined
    return root / "lake"


@pytest.fixture(scope="session")
def office_map(tour_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, MapSummary]:
    """The office's map built from both tours by `astra map build`, encrypted: (map dir, key, summary)."""
    from pipelines.mapping import MapSummary

    key = generate_key()
    out = tmp_path_factory.mktemp("maps") / "office-0"
    astra = Path(sys.executable).parent / "astra"
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV} | {KEY_ENV: key}
    # Annotated: the navigation and goal tests resolve goals by the rooms the annotation names.
    argv = [
        "map",
        "build",
        "--site",
        "office-0",
        "--lake",
        str(tour_lake),
        "--out",
        str(out),
        "--extractor",
        "annotated",
    ]
    proc = subprocess.run([astra, *argv], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Only the progress bar reaches the user: no COLMAP log lines (glog: "I1129 15:02:52 ...") nor Beam warnings.
    assert not re.search(r"^[IWE]\d{4} ", proc.stderr, re.MULTILINE) and "apitools" not in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, key, MapSummary(**{k: v for k, v in summary.items() if k != "registration_rate"})
