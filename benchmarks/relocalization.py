"""Relocalization from camera images alone (models.localization) against the maps `astra map build` made.

For each prepared site, the simulator (another seed than the tour's, so rooms are lit differently) places
the robot at random free positions inside rooms, at a random heading:
- near the map: within NEAR_MAP_M of a mapped keyframe; localized without a prior, and again with a prior
  PRIOR_SIGMA_M off the truth;
- off the map: farther than FAR_FROM_MAP_M from every keyframe, where an honest localizer is unsure.

Fixes are judged in the simulator's world after aligning the map with it (datasets.map_eval.world_from_map).
Reported: the share of fixes within 1 m and 5 deg, median and p95 errors (of the fixes returned), the share
of confident fixes (confidence >= CONFIDENT) that are wrong, and localize() wall time p50/p99 on this machine
with the CPU time of all its threads (a fairer figure on a shared machine).

Maps come from data/maps/<site> (or `--maps DIR` when run as `python -m benchmarks.relocalization`); where
that map is of an older format, or missing, the site is rebuilt from data/lake into `<workdir>/<site>` (once).
The truth comes from the lake each map records it was built from; worlds from data/worlds/<site>.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
from scipy.spatial.transform import Rotation

from datasets.lake import Lake
from datasets.map_eval import world_from_map
from datasets.map_store import TopoMap, read_map
from datasets.site_log import read_rig
from models.localization import LocalizationFix, Localizer, LocalizerConfig
from models.mapping.evaluation import keyframe_poses, pose_error
from models.planning import ClearanceMap, occupancy_grid
from pipelines.mapping import build_site_map
from schemas.map import MapError
from schemas.robot import DEFAULT_ROBOT
from schemas.world import World
from sim.simulator import Simulator

SITES = ("office-0", "warehouse-0")
MAPS, WORLDS, LAKE = Path("data/maps"), Path("data/worlds"), Path("data/lake")
NEAR_SAMPLES, FAR_SAMPLES = 40, 15
NEAR_MAP_M, FAR_FROM_MAP_M = 1.0, 4.0
PRIOR_SIGMA_M = 0.5
CLEARANCE_M = DEFAULT_ROBOT.radius + 0.1
CONFIDENT = 0.5
WITHIN_M, WITHIN_DEG = 1.0, 5.0
SEED = 7


def _map(site: str, maps: Path, workdir: Path) -> TopoMap:
    try:
        return read_map(maps / site)
    except MapError as error:
        print(f"{site}: {error}; building it into {workdir / site}", flush=True)
    try:
        return read_map(workdir / site)
    except MapError:
        build_site_map(LAKE, site, workdir / site, progress=False)
        return read_map(workdir / site)


def _positions(world: World, keyframes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Free positions in rooms (shuffled): those near the mapped keyframes (world x, y) and those far from them."""
    clearance = ClearanceMap.from_occupancy(occupancy_grid(world), world.grid)
    cells = np.argwhere(clearance.distance >= CLEARANCE_M)
    xy = world.grid.cell_to_world(cells)
    xy = xy[[world.room_at(x, y) is not None for x, y in xy]]
    nearest = np.min(np.linalg.norm(xy[:, None, :] - keyframes[None, :, :2], axis=2), axis=1)
    near, far = xy[nearest <= NEAR_MAP_M], xy[nearest >= FAR_FROM_MAP_M]
    return rng.permutation(near), rng.permutation(far)


def _pose(x: float, y: float, yaw: float) -> pycolmap.Rigid3d:
    return pycolmap.Rigid3d(pycolmap.Rotation3d(Rotation.from_euler("z", yaw).as_quat()), [x, y, 0.0])


def _summary(
    errors: list[tuple[float, float]], fixes: list[LocalizationFix], seconds: list[tuple[float, float]]
) -> dict[str, Any]:
    """Figures of one case; `seconds` holds (wall, CPU of all threads) per localize() call."""
    error = np.array(errors, float).reshape(-1, 2)
    found = np.array([f.success for f in fixes])
    within = found & (error[:, 0] <= WITHIN_M) & (error[:, 1] <= WITHIN_DEG)
    confident = np.array([f.confidence >= CONFIDENT for f in fixes])
    milliseconds = 1000 * np.array(seconds).reshape(-1, 2)

    def stat(values: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(values, q)), 3) if len(values) else None

    return {
        "samples": len(fixes),
        "fixes": int(found.sum()),
        "within_1m_5deg": round(float(within.mean()), 3),
        "median_m": stat(error[found, 0], 50),
        "p95_m": stat(error[found, 0], 95),
        "median_deg": stat(error[found, 1], 50),
        "p95_deg": stat(error[found, 1], 95),
        "confident": int(confident.sum()),
        "confident_wrong": int((confident & ~within).sum()),
        "median_confidence_right": stat(np.array([f.confidence for f, w in zip(fixes, within, strict=True) if w]), 50),
        "median_confidence_wrong": stat(
            np.array([f.confidence for f, w in zip(fixes, within, strict=True) if not w]), 50
        ),
        "global_p50_ms": stat(milliseconds[:, 0], 50),
        "global_p99_ms": stat(milliseconds[:, 0], 99),
        "cpu_p50_ms": stat(milliseconds[:, 1], 50),
    }


def measure(site: str, maps: Path, workdir: Path) -> dict[str, Any]:
    """Localize at random places of one site, near and far from its map; the figures of each case."""
    topo = _map(site, maps, workdir)
    lake = Lake(topo.manifest.build["lake"])
    rig = read_rig(lake, sorted(set(topo.nodes["episode_id"].to_pylist()))[0])
    started = time.perf_counter()
    localizer = Localizer(topo.nodes, topo.node_features, rig, LocalizerConfig.for_map(topo.manifest.build))
    load_s = time.perf_counter() - started
    world_from_map_ = world_from_map(topo, lake)
    map_from_world = world_from_map_.inverse()
    keyframes = np.array([(world_from_map_ * p).translation for p in keyframe_poses(topo.nodes, rig[0])[1]])
    rng = np.random.default_rng(SEED)
    near, far = _positions(World.load(WORLDS / site), keyframes, rng)
    cases: dict[str, list] = {name: [[], [], []] for name in ("no_prior", "prior", "off_map")}
    sim = Simulator(WORLDS / site, seed=SEED)
    try:
        for name, positions in (("no_prior", near[:NEAR_SAMPLES]), ("off_map", far[:FAR_SAMPLES])):
            for x, y in positions:
                yaw = rng.uniform(-np.pi, np.pi)
                sim.place(x, y, yaw)
                images = {c.name: sim.render(c.name)[0] for c in rig}
                truth = _pose(x, y, yaw)
                runs = [(name, None)]
                if name == "no_prior":
                    offset = rng.normal(0.0, PRIOR_SIGMA_M, 2)
                    runs.append(("prior", map_from_world * _pose(x + offset[0], y + offset[1], yaw)))
                for case, prior in runs:
                    started, cpu_started = time.perf_counter(), time.process_time()
                    fix = localizer.localize(images, prior, PRIOR_SIGMA_M if prior is not None else None)
                    seconds = (time.perf_counter() - started, time.process_time() - cpu_started)
                    found = fix.map_from_base is not None
                    error = pose_error(world_from_map_ * fix.map_from_base, truth) if found else (np.inf, np.inf)
                    for values, value in zip(cases[case], (error, fix, seconds), strict=True):
                        values.append(value)
    finally:
        sim.close()
    result = {"site": site, "localizer_load_s": round(load_s, 2), "node_features_rows": topo.node_features.num_rows}
    result["node_features_bytes"] = topo.manifest.files["node_features.parquet"].size
    return {**result, **{case: _summary(*values) for case, values in cases.items()}}


def run(workdir: Path, maps: Path = MAPS) -> list[dict[str, Any]]:
    rows = []
    print(
        f"{'site':12} {'case':9} {'n':>3} {'fixes':>5} {'<1m5deg':>7} {'med m':>6} {'p95 m':>6} {'med deg':>7} "
        f"{'confident':>9} {'conf wrong':>10} {'p50 ms':>7} {'p99 ms':>7}"
    )
    for site in SITES:
        row = measure(site, maps, workdir)
        rows.append(row)
        for case in ("no_prior", "prior", "off_map"):
            r = row[case]
            print(
                f"{site:12} {case:9} {r['samples']:>3} {r['fixes']:>5} {r['within_1m_5deg']:>7} {r['median_m']!s:>6} "
                f"{r['p95_m']!s:>6} {r['median_deg']!s:>7} {r['confident']:>9} {r['confident_wrong']:>10} "
                f"{r['global_p50_ms']!s:>7} {r['global_p99_ms']!s:>7}",
                flush=True,
            )
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=Path, default=MAPS, help="folder of the site maps (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, default=Path("data/bench/relocalization"))
    arguments = parser.parse_args()
    print(json.dumps(run(arguments.workdir, arguments.maps), indent=1))
