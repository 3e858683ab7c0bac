"""Text goals on the mission benchmark's buildings: goal accuracy on sampled missions, nonsense rejection, resolve time.

For each kind and seed of benchmarks.missions (unseen buildings; prepared and cached as that benchmark does), missions
are sampled (sim.missions) among the rooms the mapping tour covered (pipelines.missions.mapped_rooms), and each
instruction is resolved from the mission's start. A goal counts as right when its node's base_link, moved into the
world by the map's alignment with the tour's truth, lies inside the intended room's rectangle; `nodes_in_rooms` is
the share of nodes inside some room. Nonsense instructions should come back as goal_not_found; the best scores of
both sets are reported to calibrate GoalConfig.threshold.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import missions
from datasets.map_store import read_map
from datasets.navigation import planar_world_from_map
from models.goals import GoalResolver
from models.navigation import se2
from models.routing import base_poses
from models.text_encoder import TextEncoder
from pipelines.missions import mapped_rooms, prepare_building
from schemas.world import World
from sim.missions import sample_missions

MISSIONS, SEED = 100, 0
NONSENSE = (
    "sing me a song",
    "what is the capital of France?",
    "tell me a joke",
    "what time is it?",
    "how old are you?",
    "play some jazz",
    "what's the weather like tomorrow?",
    "who won the football match yesterday?",
    "translate hello into Spanish",
    "what is two plus two?",
    "order a pizza",
    "remind me to call my mother",
    "turn up the volume",
    "how do you spell necessary?",
    "book a flight to Tokyo",
    "recite a poem about the sea",
)


def evaluate(map_dir: Path, world_dir: Path, n: int = MISSIONS, seed: int = SEED) -> dict[str, Any]:
    """Goal accuracy, nonsense rejection, scores and timings of one site."""
    topo, world = read_map(map_dir), World.load(world_dir)
    world_from_map = planar_world_from_map(topo)
    encoder = TextEncoder.from_pretrained()
    started = time.perf_counter()
    resolver = GoalResolver(topo.nodes, topo.landmarks, topo.node_landmarks, encoder)
    build_s = time.perf_counter() - started
    node_rooms = [world.room_at(*xy) for xy in se2.apply(world_from_map, base_poses(topo.nodes)[:, :2])]
    mapped = mapped_rooms(world, topo, world_from_map)
    missions = sample_missions(world, n, seed, rooms=mapped)
    right: dict[str, list[bool]] = defaultdict(list)
    scores, seconds, failures = [], [], []
    for mission in missions:
        started = time.perf_counter()
        result = resolver.resolve(mission.instruction, near_xy=mission.start[:2])
        seconds.append(time.perf_counter() - started)
        scores.append(result.candidates[0].score)
        room = world.room_at(*se2.apply(world_from_map, np.array(result.goal.pose[:2]))) if result.goal else None
        ok = room is not None and room.name == mission.goal_room
        right[mission.family].append(ok)
        if not ok:
            got = f"{result.goal.label} at {room.name if room else None}" if result.goal else "goal_not_found"
            failures.append(f"{mission.instruction!r} -> {got} (want {mission.goal_room})")
    nonsense = [resolver.resolve(text) for text in NONSENSE]
    all_right = [ok for oks in right.values() for ok in oks]
    return {
        "site": world.site,
        "missions": len(missions),
        "goal_accuracy": round(float(np.mean(all_right)), 3),
        "accuracy_by_family": {family: [sum(oks), len(oks)] for family, oks in sorted(right.items())},
        "nonsense_rejected": round(float(np.mean([r.goal is None for r in nonsense])), 3),
        "threshold": resolver.config.threshold,
        "mission_score_min": round(min(scores), 3),
        "mission_score_p5": round(float(np.percentile(scores, 5)), 3),
        "nonsense_score_max": round(max(r.candidates[0].score for r in nonsense), 3),
        "resolve_ms_median": round(1e3 * statistics.median(seconds), 2),
        "resolve_ms_max": round(1e3 * max(seconds), 2),
        "load_average": round(os.getloadavg()[0], 1),  # the CPU encoder slows down several-fold on a busy machine
        "build_s": round(build_s, 2),
        "goals_offered": len(resolver.candidates),
        "mapped_rooms": len(mapped),
        "nodes_in_rooms": round(float(np.mean([room is not None for room in node_rooms])), 3),
        "failures": failures,
    }


def run(out: Path) -> list[dict[str, Any]]:
    """Evaluate the mission benchmark's static buildings, preparing any not cached yet."""
    rows = []
    for kind in missions.KINDS:
        for seed in missions.MISSION_SEEDS[False]:
            building = prepare_building(kind, seed, False, missions.building_dir(out.parent / "missions", kind, seed))
            row = evaluate(building.map_dir, building.world_dir)
            print({k: v for k, v in row.items() if k != "failures"})
            print("\n".join(f"  wrong: {failure}" for failure in row["failures"]))
            rows.append(row)
    return rows
