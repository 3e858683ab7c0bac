"""`astra map update`: the office's second tour added to the map of its first, without rebuilding it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from scipy.spatial.transform import Rotation

from datasets.lake import Lake
from datasets.map_eval import evaluate_map_dir
from datasets.map_store import read_map
from datasets.site_log import read_rig, read_trajectory, site_episodes
from models.mapping.evaluation import alignment, keyframe_poses, trajectory_errors
from models.mapping.keyframes import KeyframeConfig
from models.mapping.sfm import SfmConfig
from models.mapping.submaps import SubmapConfig
from pipelines.ingest import ingest
from pipelines.mapping import DESCRIPTOR, MapSource, build_site_map, episode_keyframes, reconstruct
from schemas.map import KEY_ENV, VERSIONS_DIR, generate_key, parse_key
from schemas.topics import GROUND_TRUTH_TOPIC

SITE = "office-0"


@pytest.fixture(scope="module")
def first_tour_map(tour_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A lake that holds the office's first tour only, and its map, encrypted: (lake, map, key)."""
    root = tmp_path_factory.mktemp("update")
    first, _ = sorted((tour_lake.parent / "logs").glob("*.mcap"))
    assert ingest([first], root / "lake", progress=False).episodes == 1
    key = generate_key()
    build_site_map(root / "lake", SITE, root / "map", key=parse_key(key), progress=False)
    return root / "lake", root / "map", key


def _astra(*argv: str, key: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV} | {KEY_ENV: key}
    return subprocess.run([Path(sys.executable).parent / "astra", *argv], capture_output=True, text=True, env=env)


def test_a_second_tour_joins_the_map_as_its_next_version(
    first_tour_map: tuple[Path, Path, str], tour_lake: Path, tmp_path: Path
) -> None:
    lake, built, key = first_tour_map
    shutil.copytree(lake, tmp_path / "lake")
    shutil.copytree(built, tmp_path / "map")
    lake, map_dir = tmp_path / "lake", tmp_path / "map"
    before = read_map(map_dir, parse_key(key))

    nothing = _astra("map", "update", "--map", str(map_dir), "--site", SITE, "--lake", str(lake), key=key)
    assert nothing.returncode == 0 and "nothing to add" in nothing.stderr and not (map_dir / VERSIONS_DIR).exists()
    wrong_site = _astra("map", "update", "--map", str(map_dir), "--site", "office-9", "--lake", str(lake), key=key)
    assert wrong_site.returncode == 2 and "office-0" in wrong_site.stderr and "Traceback" not in wrong_site.stderr

    held = site_episodes(Lake(lake), SITE)
    _, second = sorted((tour_lake.parent / "logs").glob("*.mcap"))
    assert ingest([second], lake, progress=False).episodes == 1
    proc = _astra("map", "update", "--map", str(map_dir), "--site", SITE, "--lake", str(lake), key=key)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["map_version"] == 2 and summary["episodes"] == 1 and summary["registration_rate"] >= 0.95
    assert summary["submaps"]["loop_closures"] > 0

    # The old version is kept whole and readable; the new one holds it unchanged, and the second tour.
    kept = read_map(map_dir / VERSIONS_DIR / "1", parse_key(key))
    assert kept.nodes.equals(before.nodes) and kept.manifest.build == before.manifest.build
    after = read_map(map_dir, parse_key(key))
    assert after.nodes.slice(0, before.nodes.num_rows).equals(before.nodes)
    assert after.edges.slice(0, before.edges.num_rows).equals(before.edges)
    assert after.landmarks.num_rows >= before.landmarks.num_rows
    episodes = site_episodes(Lake(lake), SITE)
    assert sorted(set(after.nodes["episode_id"].to_pylist())) == sorted(episodes)
    history = after.manifest.build["history"]
    assert [(h["map_version"], h["made"], h["lake_version"]) for h in history] == [(1, "build", 1), (2, "update", 2)]
    assert history[0]["episodes"] == held and history[1]["episodes"] == after.manifest.build["episodes"]
    assert len(after.reconstruction().images) == len(after.nodes.filter(after.nodes["registered"]))
    # Where this version's SfM time went: the added tour's submaps only, summing to the version's totals.
    by_submap, seconds = after.manifest.build["sfm_submaps"], after.manifest.build["sfm_seconds"]
    assert len(by_submap) == summary["submaps"]["submaps"]
    assert {s["episode_id"] for s in by_submap} == set(episodes) - set(held)
    assert sum(s["mapping"] for s in by_submap) == pytest.approx(seconds["mapping"], abs=0.01)

    metrics = evaluate_map_dir(map_dir, key=parse_key(key))
    assert metrics["lake_version"] == 2 and metrics["registration_rate"] >= 0.95 and metrics["connected"]
    assert metrics["ate_rmse_m"] <= 0.10 and metrics["placed_by_odometry"] is not None


def test_loop_closures_into_the_map_pull_a_tour_that_started_off_its_dock(
    first_tour_map: tuple[Path, Path, str], tour_lake: Path, tmp_path: Path
) -> None:
    """The second tour's recorded map -> odom made 1.5 m and 10 degrees wrong: only loop closures into the fixed
    map (and its own submaps' into each other) can put it where the map is."""
    first_lake, map_dir, key = first_tour_map
    lake = Lake(tour_lake)
    (second,) = set(site_episodes(lake, SITE)) - set(site_episodes(Lake(first_lake), SITE))
    config = SubmapConfig(keyframes=24, overlap=4)
    episode = episode_keyframes(second, lake, KeyframeConfig())
    wrong = pycolmap.Rigid3d(pycolmap.Rotation3d(Rotation.from_euler("z", 10, degrees=True).as_quat()), [1.5, 0, 0])
    episode = replace(episode, map_from_odom=wrong * episode.map_from_odom)
    site = reconstruct(
        [episode], str(tmp_path), SfmConfig(), config, DESCRIPTOR, MapSource(str(map_dir), parse_key(key))
    )
    base = site.base.read()

    # The map's frame is where its own keyframes put the world: judge the new tour in it, not aligned on its own.
    rig = read_rig(lake, second)
    stamps, poses = keyframe_poses(base.nodes, rig[0])
    truth = {e: read_trajectory(lake, e, GROUND_TRUTH_TOPIC) for e in site_episodes(lake, SITE)}
    world_from_map = alignment(poses, [truth[e].at(np.array([t])).poses()[0] for e, t in stamps])
    registered = [(k, m) for k, m in zip(episode.keyframes, site.mapped, strict=True) if m.registered]
    assert len(registered) >= 0.95 * len(episode.keyframes)
    estimated = [world_from_map * m.map_from_base for _, m in registered]
    true_poses = [truth[second].at(np.array([k.t_ns])).poses()[0] for k, _ in registered]
    errors = [np.linalg.norm(e.translation - t.translation) for e, t in zip(estimated, true_poses, strict=True)]
    assert float(np.sqrt(np.mean(np.square(errors)))) <= 0.10
    assert trajectory_errors(estimated, true_poses)[0] <= 0.10
    assert site.counts["loop_closures"] > 0
    # New point ids stay clear of the map's.
    assert set(site.node_features["point3D_id"].to_pylist()).isdisjoint(base.node_features["point3D_id"].to_pylist())
