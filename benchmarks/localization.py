"""The localization protocol (`astra eval localization`) on held-out buildings of every kind: every variant on the
same queries, and text-goal accuracy.

For each kind and each seed of SEEDS (held out of Astra-Global's training: `astra train global --holdout-seeds`), the
building is generated, toured and mapped (pipelines.missions.prepare_building), a query tour of QUERY_SECONDS is
recorded on another route, and QUERIES instants along it are localized with no prior by each variant. Buildings are
cached in data/eval/KIND-SEED, where `astra eval localization --kind KIND --seed SEED --query-seconds 300` finds them
too. ASTRA_BENCH_KINDS, ASTRA_BENCH_SEEDS and ASTRA_BENCH_VARIANTS (comma separated) run a subset.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from datasets.lake import Lake
from datasets.map_store import read_map
from pipelines.localization_eval import VARIANTS, evaluate_localization, protocol_queries, record_query_tour
from pipelines.missions import prepare_building
from schemas.world import World

KINDS = ("office", "warehouse", "home", "hospital")
SEEDS = (700,)
QUERIES, QUERY_SECONDS, GOALS = 100, 300.0, 40
BUILDINGS = Path("data/eval")


def evaluate(kind: str, seed: int, variants: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    work = BUILDINGS / f"{kind}-{seed}"
    building = prepare_building(kind, seed, False, work, progress=False)
    query_lake, episode = record_query_tour(building.world_dir, work, seed, QUERY_SECONDS, progress=False)
    topo, lake = read_map(building.map_dir), Lake(building.lake)
    queries = protocol_queries(query_lake, episode, topo, lake, QUERIES)
    prepared_s = time.perf_counter() - started
    world = World.load(building.world_dir)
    result = evaluate_localization(
        topo, lake, queries.covered, variants, world=world, goals=GOALS, outside=queries.outside
    )
    return {"kind": kind, "seed": seed, "prepare_s": round(prepared_s, 1), "coverage": queries.coverage, **result}


def run(_: Path) -> list[dict[str, Any]]:
    kinds = os.environ.get("ASTRA_BENCH_KINDS", ",".join(KINDS)).split(",")
    seeds = [int(s) for s in os.environ.get("ASTRA_BENCH_SEEDS", ",".join(map(str, SEEDS))).split(",")]
    variants = os.environ.get("ASTRA_BENCH_VARIANTS", ",".join(VARIANTS)).split(",")
    rows = []
    for kind in kinds:
        for seed in seeds:
            rows.append(evaluate(kind, seed, variants))
            print(json.dumps(rows[-1]), flush=True)
    return rows
