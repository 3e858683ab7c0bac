"""Learned landmarks (models.landmark_extraction) against the annotated extractor's, on the same map.

Per building, its mapping tour's keyframes are reconstructed once, as `astra map build` does (without Beam), and both
extractors run on the same nodes, so that only the landmarks differ: precision and recall of the detector's landmark
rows matched to the annotated ones by category and colour within 1 m (models.mapping.evaluation.match_landmarks),
the position error of the matches, how often a detection fell back to a ray, and the time each extractor took. The
buildings are the evaluation's (seeds 700, never tuned on), prepared as `astra eval mission` prepares them
(pipelines.missions.prepare_building, cached in data/eval/KIND-SEED).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from datasets.lake import Lake
from datasets.site_log import site_episodes
from models.mapping.evaluation import match_landmarks
from pipelines.mapping import (
    DEFAULT_GRAPH,
    DEFAULT_KEYFRAMES,
    DEFAULT_SFM,
    MapGraph,
    SiteReconstruction,
    episode_keyframes,
    extract_landmarks,
    map_graph,
    reconstruct,
)
from pipelines.missions import prepare_building

BUILDINGS = tuple((kind, 700) for kind in ("office", "warehouse", "home", "hospital"))
EVAL_DIR = Path("data/eval")


def shared_map(lake: Lake, site: str, work_dir: Path) -> tuple[MapGraph, SiteReconstruction]:
    """The site's map graph and reconstruction, as map building makes them."""
    episodes = [episode_keyframes(e, lake, DEFAULT_KEYFRAMES) for e in site_episodes(lake, site)]
    reconstruction = reconstruct(episodes, str(work_dir), DEFAULT_SFM)
    return map_graph(reconstruction, DEFAULT_GRAPH), reconstruction


def compare_extractors(lake: Path, site: str, world_dir: Path) -> dict[str, Any]:
    """The detector's landmarks against the annotated ones on one shared map of the site, and the detector's report."""
    source = Lake(lake)
    with tempfile.TemporaryDirectory(prefix="astra-landmarks-") as tmp:
        graph, reconstruction = shared_map(source, site, Path(tmp))
        detected = extract_landmarks(graph, "detector", None, reconstruction, source)
        annotated = extract_landmarks(graph, "annotated", str(world_dir), reconstruction, source)
    return {
        **match_landmarks(detected.landmarks, annotated.landmarks),
        **detected.report,
        "annotated_stage_seconds": annotated.report["stage_seconds"],
    }


def run(out: Path) -> list[dict[str, Any]]:
    torch.set_num_threads(1)  # the detector is small; a second thread mostly waits on a shared machine
    rows = []
    for kind, seed in BUILDINGS:
        building = prepare_building(kind, seed, False, EVAL_DIR / f"{kind}-{seed}", progress=False)
        row = {"kind": kind, "seed": seed, **compare_extractors(building.lake, f"{kind}-{seed}", building.world_dir)}
        print(row, flush=True)
        rows.append(row)
    return rows
