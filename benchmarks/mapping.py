"""`astra map build` on recorded expert tours: build time against keyframe count, and map quality per building kind.

Scaling: one office tour per size, long enough for about 100, 400, 1,500 and 3,000 keyframes; each is recorded,
ingested and built alone with the fast SIFT features (`astra map build --features fast`, for site-scale maps), and
the build is timed whole and per stage, and evaluated. Those up to 300 s are built again with the default features,
side by side.

Update: a 300 s tour of the same office, on another route, added by `astra map update` to the map of the longest
scaling tour (a copy of it), timed, and the updated map evaluated.

Quality: a 60 s tour of every building kind, on the seed the SfM settings were tuned on (0) and on seeds they
never saw, built with the default features and evaluated as `astra eval map` does (registration rate, ATE RMSE after
a rigid alignment, rotation); and tours of 300 s and 1000 s (about 450 and 1,450 keyframes) of every kind on another
unseen seed, which several submaps join, built with the site-scale features as the scaling tours are.
`ASTRA_BENCH_MAP_LONG_TOURS_S` (comma-separated seconds) picks the long quality tours.

Tours are recorded in-process at the robot's default 320x240 (sim.tour), without depth (mapping reads none), and
reused from `<workdir>/<case>/logs`. `ASTRA_BENCH_MAP_TOURS_S` (comma-separated seconds) picks the scaling tours,
and `ASTRA_BENCH_MAP_PARTS` (comma-separated, of scaling, update and quality; all by default) the parts to run: update
needs the longest scaling tour's map.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from datasets.map_eval import evaluate_map_dir
from datasets.map_store import read_map
from datasets.tours import record_tour
from models.mapping.sfm import DEFAULT_FEATURES, FEATURES
from pipelines.ingest import ingest
from pipelines.mapping import DEFAULT_SFM, build_site_map, update_site_map
from schemas.topics import DEPTH_OUTPUTS
from schemas.world import WORLD_KINDS
from sim.world import generate_world, write_world

# Sim seconds of office tour for about 100, 400, 1,500 and 3,000 keyframes (about 1.5 keyframes per second of tour).
SCALING_TOURS_S = tuple(float(s) for s in os.environ.get("ASTRA_BENCH_MAP_TOURS_S", "65,265,1000,2000").split(","))
SCALING_FEATURES = "fast"
SIDE_BY_SIDE_MAX_TOUR_S = 300.0  # the default features take about twice as long: side by side on short tours only
QUALITY_TOUR_S = 60.0
LONG_QUALITY_TOURS_S = tuple(float(s) for s in os.environ.get("ASTRA_BENCH_MAP_LONG_TOURS_S", "300,1000").split(","))
TUNED_SEED, UNSEEN_SEEDS, LONG_SEED = 0, (11, 23), 31
UPDATE_TOUR_S, UPDATE_ROUTE_SEED = 300.0, 1


def _case(workdir: Path, kind: str, seed: int, seconds: float) -> Path:
    return workdir / f"{kind}-{seed}-{seconds:.0f}s"


def _recorded(world: Path, log: Path, seconds: float, route_seed: int = 0) -> Path:
    """The tour at `log`, recorded once."""
    if not log.exists():
        record_tour(world, log.with_suffix(".part"), seconds, seed=route_seed, leave_out=DEPTH_OUTPUTS)
        log.with_suffix(".part").rename(log)
    return log


def _build(workdir: Path, kind: str, seed: int, seconds: float, features: str = DEFAULT_FEATURES) -> dict[str, Any]:
    """Record (once), ingest and map one tour with the named SIFT features; the build's figures and the map's
    evaluation."""
    case = _case(workdir, kind, seed, seconds)
    world = case / "world"
    if not world.exists():
        write_world(generate_world(kind, seed), world)
    log = _recorded(world, case / "logs" / "tour.mcap", seconds)
    shutil.rmtree(case / "lake", ignore_errors=True)
    ingest([log], case / "lake", progress=False)
    started = time.perf_counter()
    out = case / f"map-{features}"
    sfm = replace(DEFAULT_SFM, sift=FEATURES[features])
    summary = build_site_map(case / "lake", f"{kind}-{seed}", out, progress=False, sfm_config=sfm)
    build_s = time.perf_counter() - started
    metrics = evaluate_map_dir(out, case / "lake")
    return {
        "kind": kind, "seed": seed, "tour_s": seconds, "features": features, "keyframes": summary.keyframes,
        "build_s": round(build_s, 1), "sfm_s": read_map(out).manifest.build["sfm_seconds"], **summary.submaps,
        **{k: metrics[k] for k in ("registration_rate", "placed_by_odometry_rate", "ate_rmse_m", "rotation_median_deg",
                                   "landmarks", "rooms", "connected")},
    }  # fmt: skip


def scaling(workdir: Path) -> list[dict[str, Any]]:
    """Build time and quality of office tours of about 100, 400, 1,500 and 3,000 keyframes."""
    print(
        f"{'SIFT':>8} {'keyframes':>9} {'build s':>8} {'s/keyframe':>10} {'features':>9} {'matching':>9} "
        f"{'mapping':>8} {'join':>6} {'submaps':>7} {'loops':>9} {'registered':>10} {'by odom':>7} {'ATE m':>7}"
    )
    rows, sizes = [], sorted(SCALING_TOURS_S)
    side_by_side = [s for s in sizes if s <= SIDE_BY_SIDE_MAX_TOUR_S]
    for seconds, features in [(s, SCALING_FEATURES) for s in sizes] + [(s, DEFAULT_FEATURES) for s in side_by_side]:
        row = _build(workdir, "office", TUNED_SEED, seconds, features)
        rows.append(row)
        sfm = row["sfm_s"]
        print(
            f"{features:>8} {row['keyframes']:>9} {row['build_s']:>8.1f} {row['build_s'] / row['keyframes']:>10.2f} "
            f"{sfm['features']:>9.1f} {sfm['matching']:>9.1f} {sfm['mapping']:>8.1f} {sfm['join']:>6.1f} "
            f"{row['submaps']:>7} {row['loop_closures']:>4}/{row['loop_queries']:<4} "
            f"{row['registration_rate']:>10.3f} {row['placed_by_odometry_rate']:>7.3f} {row['ate_rmse_m']:>7.3f}",
            flush=True,
        )
    per_keyframe = [row["build_s"] / row["keyframes"] for row in rows if row["features"] == SCALING_FEATURES]
    low, high = min(per_keyframe), max(per_keyframe)
    print(f"s/keyframe {low:.2f}-{high:.2f}: ±{100 * (high - low) / (high + low):.0f} % about their middle")
    return rows


def update(workdir: Path) -> dict[str, Any]:
    """`astra map update` of a 300 s tour into (a copy of) the map of the longest scaling tour; the update describes
    the new tour as that map's manifest says (fast SIFT)."""
    base = _case(workdir, "office", TUNED_SEED, max(SCALING_TOURS_S))
    case = workdir / "office-update"
    log = _recorded(base / "world", case / "logs" / "tour.mcap", UPDATE_TOUR_S, UPDATE_ROUTE_SEED)
    for part, source in (("lake", "lake"), ("map", f"map-{SCALING_FEATURES}")):
        shutil.rmtree(case / part, ignore_errors=True)
        shutil.copytree(base / source, case / part)
    ingest([log], case / "lake", progress=False)
    started = time.perf_counter()
    summary = update_site_map(case / "map", case / "lake", f"office-{TUNED_SEED}", progress=False)
    update_s = time.perf_counter() - started
    metrics = evaluate_map_dir(case / "map")
    row = {
        "map_keyframes": metrics["keyframes"] - summary.keyframes, "added_keyframes": summary.keyframes,
        "update_s": round(update_s, 1), "map_version": summary.map_version, **summary.submaps,
        **{k: metrics[k] for k in ("registration_rate", "placed_by_odometry_rate", "ate_rmse_m", "rotation_median_deg",
                                   "landmarks", "connected")},
    }  # fmt: skip
    print(
        f"\nupdate: {row['added_keyframes']} keyframes into a map of {row['map_keyframes']} in {update_s:.1f} s "
        f"({row['loop_closures']}/{row['loop_queries']} loop closures); the updated map: registered "
        f"{row['registration_rate']:.3f}, by odometry {row['placed_by_odometry_rate']:.3f}, ATE "
        f"{row['ate_rmse_m']:.3f} m, connected {row['connected']}",
        flush=True,
    )
    return row


def quality(workdir: Path) -> list[dict[str, Any]]:
    """Map quality of a 60 s tour of every building kind on the tuned seed and on unseen ones (default features), and
    of the long tours of an unseen seed (site-scale features)."""
    print(
        f"\n{'kind':10} {'seed':>4} {'tour s':>6} {'SIFT':>8} {'keyframes':>9} {'build s':>8} {'registered':>10} "
        f"{'by odom':>7} {'ATE m':>7} {'rot deg':>7} {'landmarks':>9} {'rooms':>5} {'connected':>9}"
    )
    rows = []
    cases = [(seed, QUALITY_TOUR_S, DEFAULT_FEATURES) for seed in (TUNED_SEED, *UNSEEN_SEEDS)]
    cases += [(LONG_SEED, seconds, SCALING_FEATURES) for seconds in LONG_QUALITY_TOURS_S]
    for kind in WORLD_KINDS:
        for seed, seconds, features in cases:
            row = _build(workdir, kind, seed, seconds, features)
            rows.append(row)
            print(
                f"{kind:10} {seed:>4} {seconds:>6.0f} {features:>8} {row['keyframes']:>9} {row['build_s']:>8.1f} "
                f"{row['registration_rate']:>10.3f} {row['placed_by_odometry_rate']:>7.3f} {row['ate_rmse_m']:>7.3f} "
                f"{row['rotation_median_deg']:>7.2f} {row['landmarks']:>9} {row['rooms']:>5} {row['connected']!s:>9}",
                flush=True,
            )
    meets = [r for r in rows if r["registration_rate"] >= 0.95 and r["ate_rmse_m"] <= 0.10 and r["connected"]]
    print(f"registered >= 0.95, ATE <= 0.10 m and connected: {len(meets)} of {len(rows)} maps")
    return rows


PARTS = {"scaling": scaling, "update": update, "quality": quality}


def run(workdir: Path) -> dict:
    names = os.environ.get("ASTRA_BENCH_MAP_PARTS", ",".join(PARTS)).split(",")
    unknown = set(names) - PARTS.keys()
    if unknown:
        print(f"ASTRA_BENCH_MAP_PARTS: unknown part(s) {sorted(unknown)}; choose from {sorted(PARTS)}", file=sys.stderr)
        raise SystemExit(2)
    return {name: PARTS[name](workdir) for name in names}
