"""`astra train local`: planners learn from a local training set, and two processes train as one does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from scipy import ndimage

from astra.cli import main
from datasets.local_windows import LocalWindows
from models.astra_local.planner import LocalPlannerModel
from models.astra_local.variants import PLANNER_VARIANTS
from pipelines.train_local import LocalTrainConfig, evaluate_planner, train_model
from schemas.local_dataset import (
    FREE,
    LOCAL_GEOMETRY,
    OCCUPIED,
    WINDOWS,
    WINDOWS_DIR,
    LocalDatasetError,
    LocalDatasetManifest,
)

ASTRA = Path(sys.executable).parent / "astra"


def _window(rng: np.random.Generator, site: str, seed: int, t_ns: int) -> dict:
    """A window in a room with a few boxes, the expert curving toward a goal that keeps clear of them."""
    g = LOCAL_GEOMETRY
    occupied = np.zeros((g.grid, g.grid), bool)
    for _ in range(3):
        r, c = rng.integers(0, g.grid - 8, 2)
        occupied[r : r + 8, c : c + 8] = True
    occupied[28:36, 28:36] = False  # the robot stands free
    goal = np.array([g.goal_ahead_m * np.cos(a := rng.uniform(-1, 1)), g.goal_ahead_m * np.sin(a)])
    t = np.arange(1, g.waypoints + 1) / g.waypoints
    heading = a * t
    trajectory = np.column_stack([goal[0] * t * 0.6, goal[1] * t**2 * 0.6, heading])
    esdf = ndimage.distance_transform_edt(~occupied) * g.resolution
    codes = np.where(occupied, OCCUPIED, FREE).astype(np.uint8)
    return {
        "site": site,
        "kind": site.split("-")[0],
        "world_seed": seed,
        "dynamic": bool(seed % 2),
        "episode_id": f"{site}-0",
        "t_ns": t_ns,
        "frame_t_ns": [t_ns - k * 500_000_000 for k in range(g.frames - 1, -1, -1)],
        "occupancy": np.stack([codes] * g.frames).tobytes(),
        "velocity": [0.5, 0.1] * g.frames,
        "motion": [0.0, 0.0, 0.0] + [0.25, 0.0, 0.0] * (g.frames - 1),
        "goal_x": float(goal[0]),
        "goal_y": float(goal[1]),
        "trajectory": trajectory.astype(np.float32).ravel().tolist(),
        "true_occupancy": np.stack([occupied] * 2).astype(np.uint8).tobytes(),
        "esdf": np.stack([esdf] * 2).astype("<f2").tobytes(),
        "expert_v": 0.5,
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local training set of generated windows: two buildings to train on, one held out (seed 801)."""
    folder = tmp_path_factory.mktemp("local-set")
    (folder / WINDOWS_DIR).mkdir()
    rng = np.random.default_rng(0)
    sites = {"office-1": 1, "home-2": 2, "office-801": 801}
    for site, seed in sites.items():
        rows = [_window(rng, site, seed, i * 500_000_000) for i in range(48)]
        pq.write_table(pa.Table.from_pylist(rows, schema=WINDOWS), folder / WINDOWS_DIR / f"{site}-0.parquet")
    LocalDatasetManifest(
        lake="generated",
        lake_version=0,
        episodes=[f"{s}-0" for s in sites],
        sites={
            s: {
                "kind": s.split("-")[0],
                "world_seed": n,
                "episodes": [f"{s}-0"],
                "dynamic_episodes": [],
                "frames": 0,
                "windows": 48,
            }
            for s, n in sites.items()
        },
        geometry=LOCAL_GEOMETRY.__dict__,
    ).write(folder)
    return folder


def test_a_planner_learns_the_expert_and_is_scored_on_held_out_buildings(dataset: Path) -> None:
    import polars as pl

    train = LocalWindows(dataset, where=pl.col("world_seed") != 801)
    test = LocalWindows(dataset, where=pl.col("world_seed") == 801)
    assert (len(train), len(test)) == (96, 48)
    config = LocalTrainConfig(steps=120, batch_size=16, learning_rate=3e-3, eval_windows=48)
    untrained = evaluate_planner(LocalPlannerModel(PLANNER_VARIANTS["bc"]), test, config)
    model, summary = train_model(partial(LocalPlannerModel, PLANNER_VARIANTS["bc"]), train, config, progress=False)
    assert summary["last_loss"] < 0.5 * summary["first_loss"]
    trained = evaluate_planner(model, test, config)
    assert trained["out_of_distribution"]["ade_m"] < 0.6 * untrained["out_of_distribution"]["ade_m"]


def test_two_processes_train_as_one_process_with_their_micro_batches(dataset: Path, tmp_path: Path) -> None:
    """torchrun with 2 processes and DistributedDataParallel on gloo takes the same steps as one process that
    splits each batch in the same two parts."""
    common = ["train", "local", "--dataset", str(dataset), "--planners", "fm_esdf", "--steps", "6",
              "--odometry", "none", "--no-encoder4d", "--holdout-seeds", "801"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [ASTRA, *common, "--out", str(tmp_path / "one"), "--micro-batches", "2"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = Path(sys.executable).parent / "torchrun"
    two = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", "29531", ASTRA, *common, "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    summaries = [json.loads(proc.stdout.strip().splitlines()[-1]) for proc in (one, two)]
    assert summaries[1]["planners"]["fm_esdf"]["processes"] == 2
    first, second = (LocalPlannerModel.from_pretrained(tmp_path / run / "fm_esdf") for run in ("one", "two"))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name
    untrained = LocalPlannerModel(PLANNER_VARIANTS["fm_esdf"]).state_dict()
    assert any(not torch.allclose(untrained[n], v) for n, v in first.state_dict().items())


def test_a_retrained_planner_carries_its_own_runs_card(dataset: Path, tmp_path: Path) -> None:
    for steps in ("2", "3"):
        argv = ["train", "local", "--dataset", str(dataset), "--planners", "bc", "--odometry", "none",
                "--no-encoder4d", "--steps", steps, "--holdout-seeds", "801", "--out", str(tmp_path)]  # fmt: skip
        assert main(argv) == 0
    assert "- steps: 3" in (tmp_path / "bc" / "README.md").read_text()


def test_the_command_refuses_unknown_planners_and_folders_without_a_dataset(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for argv, said in (
        (["--dataset", str(dataset), "--planners", "nope"], "unknown planners"),
        (["--dataset", str(dataset), "--planners", "none", "--odometry", "lidar"], "unknown odometry variants"),
        (["--dataset", str(dataset), "--encoder-steps", "0"], "must be >= 1"),
        (["--dataset", str(dataset), "--encoder4d-steps", "0"], "must be >= 1"),
        (["--dataset", str(tmp_path)], "not a local training set"),
    ):
        with pytest.raises(SystemExit) as exit_:  # in process: each `astra` start would import torch again
            main(["train", "local", *argv, "--out", str(tmp_path / "w")])
        assert exit_.value.code == 2 and said in capsys.readouterr().err, said


def test_a_set_of_another_version_is_refused_with_the_command_that_rebuilds_it(dataset: Path, tmp_path: Path) -> None:
    manifest = json.loads((dataset / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(manifest | {"version": manifest["version"] - 1}))
    with pytest.raises(LocalDatasetError, match="build it again with `astra dataset local`"):
        LocalDatasetManifest.read(tmp_path)
    assert LocalDatasetManifest.read(dataset).counts == manifest["counts"]
