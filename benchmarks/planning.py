"""Local planners closed-loop on buildings never trained on: `astra eval planning` over the four kinds, static (in
distribution) and with people and carts (out of distribution), every planner on the same episodes.

ASTRA_BENCH_KINDS (comma separated), ASTRA_BENCH_SEEDS, ASTRA_BENCH_EPISODES (per building, default 6) and
ASTRA_BENCH_PLANNERS (default: classical, every variant trained under ASTRA_BENCH_WEIGHTS, by default the
committed ones, and astra) choose a subset; ASTRA_BENCH_CHOOSE=nearest runs the learned planners unaided by the
classical planner's checks, and ASTRA_BENCH_GUIDANCE (metres, 0: off) overrides how far each sampling refinement
may push their waypoints off the obstacles they see. Figures are pooled over the buildings of each case, episodes
weighted equally. Each planner trained with and without the ESDF loss (`X_esdf` beside `X`) is compared episode by
episode under `esdf_effect`: the episodes only one of the two collided in, and the exact McNemar p-value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from models.astra_local.serving import DEFAULT_WEIGHTS
from pipelines.planning_eval import (
    PlanningConfig,
    collision_rate_upper95,
    evaluate_planners,
    paired_collisions,
    planner_specs,
)
from sim.world import generate_world, write_world

KINDS = tuple(os.environ.get("ASTRA_BENCH_KINDS", "office,warehouse,home,hospital").split(","))
SEEDS = tuple(int(s) for s in os.environ.get("ASTRA_BENCH_SEEDS", "900").split(","))
EPISODES = int(os.environ.get("ASTRA_BENCH_EPISODES", "6"))
WEIGHTS = Path(os.environ.get("ASTRA_BENCH_WEIGHTS", DEFAULT_WEIGHTS))
CHOOSE = os.environ.get("ASTRA_BENCH_CHOOSE", "safe")  # or nearest: `astra eval planning --choose`
GUIDANCE = os.environ.get("ASTRA_BENCH_GUIDANCE")  # metres: `astra eval planning --guidance`


def run(workdir: Path) -> dict[str, Any]:
    names = os.environ["ASTRA_BENCH_PLANNERS"].split(",") if "ASTRA_BENCH_PLANNERS" in os.environ else None
    if CHOOSE not in ("safe", "nearest"):
        raise SystemExit(f"ASTRA_BENCH_CHOOSE must be safe or nearest, not {CHOOSE!r}")
    try:
        guidance = {} if GUIDANCE is None else {"guidance_m": float(GUIDANCE)}
        specs = planner_specs(names, WEIGHTS, CHOOSE == "safe", **guidance)
    except ValueError as exc:
        raise SystemExit(f"benchmarks planning: {exc}") from exc
    result: dict[str, Any] = {}
    for case, dynamic in (("in_distribution", False), ("out_of_distribution", True)):
        runs = []
        for kind in KINDS:
            for seed in SEEDS:
                world_dir = workdir / f"{kind}-{seed}{'-dynamic' * dynamic}"
                if not (world_dir / "world.json").is_file():
                    write_world(generate_world(kind, seed, dynamic), world_dir)
                config = PlanningConfig(episodes=EPISODES, seed=seed)
                runs.append(evaluate_planners(world_dir, specs, config))
        episodes = sum(r["episodes"] for r in runs)
        pooled = {name: _pooled([r["planners"][name] for r in runs], episodes) for name in specs}
        collided = {name: _collided(runs, name) for name in specs}
        effect = {
            name: paired_collisions(collided[f"{name}_esdf"], collided[name])
            for name in specs
            if f"{name}_esdf" in specs
        }
        result[case] = {"buildings": len(runs), "episodes": episodes, "planners": pooled, "esdf_effect": effect}
        print(f"{case}: {len(runs)} buildings, {result[case]['episodes']} episodes per planner")
        for name, figures in pooled.items():
            print(f"  {name:24} " + " ".join(f"{k} {v}" for k, v in figures.items()))
        for name, pair in effect.items():
            print(f"  ESDF loss, {name}: only with it collided {pair['only_first']}, only without {pair['only_second']}"
                  f" of {pair['episodes']} (McNemar p {pair['p_value']})")  # fmt: skip
    return result


def _pooled(per_building: list[dict[str, Any]], episodes: int) -> dict[str, Any]:
    """The buildings' figures averaged (each has as many episodes); latency p99 is the worst, collisions a sum over
    all `episodes`."""
    pooled = _averaged(per_building)
    pooled["latency_p99_ms"] = max(b["latency_p99_ms"] for b in per_building)
    pooled["collisions"] = sum(b["collisions"] for b in per_building)
    pooled["collision_rate_upper95"] = collision_rate_upper95(pooled["collisions"], episodes)
    return pooled


def _collided(runs: list[dict[str, Any]], name: str) -> list[bool]:
    """Whether `name` collided in each episode of `runs`, building after building."""
    return [i in r["planners"][name]["collided_episodes"] for r in runs for i in range(r["episodes"])]


def _averaged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's mean over `parts`, figures split by reason reason by reason; lists (which episodes) are not
    figures."""
    return {
        k: _averaged([p[k] for p in parts]) if isinstance(v, dict) else round(float(np.mean([p[k] for p in parts])), 3)
        for k, v in parts[0].items()
        if not isinstance(v, list)
    }
