"""`astra dataset dagger`: windows from a learned planner's own drives, labelled by the privileged expert (DAgger).

A planner trained on expert tours only ever saw the expert's states; its own mistakes lead it where the expert never
goes (up against a wall, say) and it has not learned what to do there. DAgger (Ross et al., 2011) closes the loop:

    drive        the learned planner alone (no classical fallback) on planning episodes in the training set's
                 buildings, through the same local stack and safety governor as `astra eval planning`
    label        every `frame_period_s`, the model's own input is kept, and the expert, placed afresh at the robot's
                 true state, drives on an ideal unicycle for the window's horizon (`sim.expert.ExpertDriver.imagine`)
    crop         the true occupancy and ESDF around the robot now and `esdf_ahead_s` later, as the dataset crops them;
                 windows where the robot already touches an obstacle are dropped (below)
    write        windows/<episode>.parquet in the dataset, WINDOWS rows (no frames), and a round in its manifest

A planner that collides is pinned against the wall until the episode ends, and those states (36 % of a round
driven by a planner that collided in 70 % of its drives) are not where it should learn to be: their labels are the
expert's way out of a state the robot should never reach. The windows before the contact, where it drove at the
wall, are the lesson, and are kept.

Retraining on the dataset (`astra train local`) then learns from the expert tours and every round. Buildings whose
seeds are held out are never driven, so the held-out figures stay clean.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from datasets.tours import Building, write_building
from models.astra_local.crops import clearance_at_robot, true_crops
from models.astra_local.serving import AstraPlanner, AstraPlannerConfig, PlannerObservation, astra_planner
from models.hub import checkpoint_digest
from models.navigation import se2
from models.planning import ClearanceMap, occupancy_grid
from pipelines.planning_eval import PlanningConfig, PlanningEpisode, run_episode, sample_episodes
from schemas.local_dataset import WINDOWS, WINDOWS_DIR, LocalDatasetManifest, LocalGeometry
from schemas.robot import DEFAULT_ROBOT
from schemas.world import World
from sim.expert import ExpertDriver
from sim.simulator import Simulator


@dataclass(frozen=True)
class DaggerConfig:
    episodes: int = 1  # per building, static and with people and carts apart
    planning: PlanningConfig = field(default_factory=lambda: PlanningConfig(time_limit_s=45.0))


@dataclass(frozen=True)
class _Job:
    building: Building
    world_dir: Path
    episode: PlanningEpisode
    episode_id: str
    checkpoint: Path
    geometry: LocalGeometry
    config: DaggerConfig


@dataclass
class PendingWindow:
    """A window whose label is known; its crops wait for the world `esdf_ahead_s` later."""

    t_ns: int
    observation: PlannerObservation
    pose: se2.Pose2
    trajectory: np.ndarray  # (K, 3) in the ego frame
    expert_v: float


class DaggerRecorder:
    """The `run_episode` observer: keeps the planner's input every frame period, with the expert's label and the
    truth the crops need."""

    def __init__(self, planner: AstraPlanner, world: World, goal: tuple[float, float], geometry: LocalGeometry) -> None:
        self.planner, self.geometry = planner, geometry
        self.goal = np.asarray(goal, dtype=float)
        self.labeller = ExpertDriver(world, goals={"goal": goal})
        self.static_occupied = occupancy_grid(world)
        self.static_clearance = ClearanceMap.from_occupancy(self.static_occupied, world.grid)
        self.pending: list[PendingWindow] = []
        self.discs: list[tuple[int, np.ndarray]] = []  # (t_ns, (N, 3) x, y, radius of every person and cart)
        self.standing = 0  # labels in which the expert, away from the goal, neither drives nor turns: no way on
        self.touching = 0  # windows dropped: the robot touched an obstacle (`touching`)

    def __call__(self, sim: Simulator, t_ns: int) -> None:
        obstacles = sim.obstacles() if self.labeller.world.agents else None
        discs = np.zeros((0, 3)) if obstacles is None else np.column_stack([obstacles.x, obstacles.y, obstacles.radius])
        self.discs.append((t_ns, discs.reshape(-1, 3)))
        seen = self.planner.last_observation
        g = self.geometry
        if seen is None or (self.pending and t_ns - self.pending[-1].t_ns < g.frame_period_s * 1e9 - 1):
            return
        if self.pending and seen is self.pending[-1].observation:
            return  # the classical planner took the cycle: no new input
        pose = sim.pose()
        times = g.waypoint_period_s * np.arange(g.waypoints + 1)
        future = self.labeller.imagine(t_ns, pose, sim.velocity(), obstacles, times)
        moved, turned = float(np.hypot(*(future[-1, :2] - future[0, :2]))), abs(future[-1, 2] - future[0, 2])
        self.standing += moved < 0.05 and turned < 0.1 and float(np.hypot(*(self.goal - pose[:2]))) > 0.5
        ego = se2.inverse(pose)
        trajectory = np.array([se2.compose(ego, tuple(p)) for p in future[1:]])
        speed = float(np.hypot(*(future[1, :2] - future[0, :2]))) / g.waypoint_period_s
        self.pending.append(PendingWindow(t_ns, seen, pose, trajectory, speed))

    def rows(self, tags: dict[str, Any]) -> list[dict[str, Any]]:
        """WINDOWS rows of every window with the world known `esdf_ahead_s` after it, but those `touching`."""
        g = self.geometry
        stamps = np.array([t for t, _ in self.discs])
        ahead_ns = round(g.esdf_ahead_s * 1e9)
        rows = []
        self.touching = 0
        for window in self.pending:
            if window.t_ns + ahead_ns > stamps[-1]:
                break
            crops = [
                true_crops(
                    self.static_occupied,
                    self.static_clearance,
                    window.pose,
                    self.discs[int(np.argmin(np.abs(stamps - t)))][1],
                    g,
                )
                for t in (window.t_ns, window.t_ns + ahead_ns)
            ]
            if touching(crops[0][1]):
                self.touching += 1
                continue
            seen = window.observation
            rows.append(
                tags
                | {
                    "t_ns": window.t_ns,
                    "frame_t_ns": list(seen.frame_t_ns),
                    "occupancy": seen.occupancy.astype(np.uint8).tobytes(),
                    "velocity": seen.velocity.ravel().tolist(),
                    "motion": seen.motion.ravel().tolist(),
                    "goal_x": float(seen.goal[0]),
                    "goal_y": float(seen.goal[1]),
                    "trajectory": window.trajectory.astype(np.float32).ravel().tolist(),
                    "true_occupancy": np.stack([c[0] for c in crops]).astype(np.uint8).tobytes(),
                    "esdf": np.stack([c[1] for c in crops]).astype("<f2").tobytes(),
                    "expert_v": window.expert_v,
                }
            )
        return rows


def touching(esdf_now: np.ndarray, robot_radius: float = DEFAULT_ROBOT.radius, contact_m: float = 0.02) -> bool:
    """Whether the robot of a window whose true ESDF crop now is `esdf_now` (G, G) touches an obstacle: its
    centre is within its radius (and `contact_m`, the crop's bilinear slack) of one."""
    return clearance_at_robot(esdf_now) < robot_radius + contact_m


def _drive(job: _Job) -> tuple[str, pa.Table, dict[str, Any]]:
    """One episode of the learned planner alone: its windows, labelled, and what the drive did."""
    import torch

    torch.set_num_threads(1)  # one episode per core
    planner = astra_planner(job.checkpoint, AstraPlannerConfig(fallback=False))
    recorder = DaggerRecorder(planner, World.load(job.world_dir), job.episode.goal, job.geometry)
    collided, success, progress, seconds, _, _ = run_episode(
        job.world_dir, job.episode, planner, job.config.planning, observer=recorder
    )
    b = job.building
    tags = {
        "site": b.site,
        "kind": b.kind,
        "world_seed": b.seed,
        "dynamic": b.dynamic,
        "episode_id": job.episode_id,
    }
    table = pa.Table.from_pylist(recorder.rows(tags), schema=WINDOWS)
    drive = {"collided": collided, "success": success, "progress": progress, "seconds": seconds}
    return job.episode_id, table, drive | {"standing": recorder.standing, "touching": recorder.touching}


def training_buildings(manifest: LocalDatasetManifest, holdout_seeds: Sequence[int]) -> list[Building]:
    """The dataset's buildings, static and with people and carts as its tours were, less the held-out seeds."""
    buildings = []
    for site, info in sorted(manifest.sites.items()):
        if info["world_seed"] in holdout_seeds:
            continue
        if Building(info["kind"], info["world_seed"]).site != site:
            raise ValueError(f"site {site} is not a generated building (kind-seed): DAgger drives only those")
        dynamic = set(info["dynamic_episodes"])
        for flag in sorted({e in dynamic for e in info["episodes"]}):
            buildings.append(Building(info["kind"], info["world_seed"], flag))
    return buildings


@dataclass(frozen=True)
class DaggerSummary:
    dataset: str
    round: int
    planner: str
    buildings: int
    episodes: int
    windows: int
    collision_rate: float
    progress: float
    standing_labels: int  # the expert stood still away from the goal: what the labels lean on
    touching_dropped: int  # windows not written: the robot touched an obstacle
    seconds: float


def add_dagger_round(
    dataset: Path,
    checkpoint: Path,
    config: DaggerConfig = DaggerConfig(),
    holdout_seeds: Sequence[int] = (),
    sites: Sequence[str] | None = None,
    work: Path = Path("data/eval/dagger"),
    workers: int | None = None,
    progress: bool = True,
) -> DaggerSummary:
    """Drive `checkpoint` on `config.episodes` episodes in each training building of `dataset` (of `sites`, or all),
    and add the labelled windows to it as a new round. Raises ValueError where there is nothing to drive."""
    started = time.perf_counter()
    dataset = Path(dataset)
    manifest = LocalDatasetManifest.read(dataset)
    buildings = [b for b in training_buildings(manifest, holdout_seeds) if sites is None or b.site in sites]
    if not buildings:
        raise ValueError(f"{dataset} has no building to drive outside the held-out seeds and the sites asked for")
    geometry = manifest.local_geometry
    round_ = len(manifest.dagger) + 1
    written: dict[str, tuple[Building, int]] = {}
    drives = []
    workers = workers or os.cpu_count() or 1
    # Spawned, not forked: a fork of a process whose thread pools (torch, polars) are running can hang.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    with pool or contextlib.nullcontext():
        parallel_map = pool.map if pool is not None else map
        world_dirs = [Path(work) / b.folder for b in buildings]
        # Writing a building's textures takes seconds on one core: the workers write them side by side.
        bar = tqdm(total=len(buildings), desc="buildings", unit="building", file=sys.stderr, disable=not progress)
        with bar:
            for _ in parallel_map(write_building, buildings, world_dirs):
                bar.update()
        jobs = []
        for b, world_dir in zip(buildings, world_dirs, strict=True):
            planning = replace(config.planning, episodes=config.episodes, seed=1000 * round_ + b.seed)
            for i, episode in enumerate(sample_episodes(World.load(world_dir), planning)):
                episode_id = f"dagger{round_}-{b.folder}-{i}"
                jobs.append(_Job(b, world_dir, episode, episode_id, Path(checkpoint), geometry, config))
        bar = tqdm(
            total=len(jobs), unit="episode", desc=f"dagger round {round_}", file=sys.stderr, disable=not progress
        )
        with bar:
            for job, (episode_id, table, drive) in zip(jobs, parallel_map(_drive, jobs), strict=True):
                pq.write_table(table, dataset / WINDOWS_DIR / f"{episode_id}.parquet")  # each episode as it comes
                written[episode_id] = (job.building, table.num_rows)
                drives.append(drive)
                bar.update()
    sites_info = {site: dict(info) for site, info in manifest.sites.items()}
    for episode_id, (building, windows) in written.items():
        info = sites_info[building.site]
        info["dagger_episodes"] = [*info.get("dagger_episodes", []), episode_id]
        info["dagger_windows"] = info.get("dagger_windows", 0) + windows
    windows = sum(n for _, n in written.values())
    summary = DaggerSummary(
        dataset=str(dataset),
        round=round_,
        planner=str(checkpoint),
        buildings=len(buildings),
        episodes=len(written),
        windows=windows,
        collision_rate=round(float(np.mean([d["collided"] for d in drives])), 3),
        progress=round(float(np.mean([d["progress"] for d in drives])), 3),
        standing_labels=int(sum(d["standing"] for d in drives)),
        touching_dropped=int(sum(d["touching"] for d in drives)),
        seconds=round(time.perf_counter() - started, 1),
    )
    record = {"round": round_, "planner": str(checkpoint), "planner_digest": checkpoint_digest(checkpoint)}
    record |= {"episodes": list(written), "windows": windows, "collision_rate": summary.collision_rate}
    counts = manifest.counts | {"dagger_windows": manifest.counts.get("dagger_windows", 0) + windows}
    replace(manifest, sites=sites_info, dagger=[*manifest.dagger, record], counts=counts).write(dataset)
    return summary
