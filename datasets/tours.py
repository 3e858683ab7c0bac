"""An expert tour recorded in-process to MCAP: what `astra record` records, without the dataflow.

The recording holds the simulator's outputs (sensors, odometry, ground truth, /tf, events), not the dataflow's
command topics.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from datasets.recording import EpisodeWriter
from schemas.episode import SOFTWARE_VERSION, EpisodeMetadata
from schemas.robot import DEFAULT_ROBOT, RobotConfig
from schemas.world import World
from sim.expert import ExpertDriver
from sim.perturbation import PerturbationConfig
from sim.simulator import Simulator
from sim.tour import drive_tour
from sim.world import generate_world, write_world


def record_tour(
    world_dir: Path,
    path: Path,
    seconds: float,
    config: RobotConfig = DEFAULT_ROBOT,
    seed: int = 0,
    leave_out: frozenset[str] = frozenset(),
    perturbation: PerturbationConfig | None = None,
) -> Path:
    """Drive the expert through the world for `seconds` of sim time and record it to MCAP at `path`, but for the
    outputs named in `leave_out` (depth images are most of a recording's bytes); with `perturbation`, its commands
    are bent now and then (sim.perturbation), each bend an `events` message."""
    world_json = (world_dir / "world.json").read_bytes()
    world = World.from_json(world_json.decode())
    sim = Simulator(world_dir, config, seed=seed)
    metadata = EpisodeMetadata(
        config.robot_id, world.site, world.kind, world.seed, seed, SOFTWARE_VERSION, config.camera_width,
        config.camera_height, sim.sensor_errors.to_json(),
    )  # fmt: skip
    expert = ExpertDriver(world, seed=seed, perturbation=perturbation)
    writer = EpisodeWriter(path, metadata, world_json)
    try:
        for output_id, message in drive_tour(sim, expert, seconds):
            if output_id not in leave_out:
                writer.write(output_id, message)
    finally:
        writer.close()
        sim.close()
    return path


@dataclass(frozen=True)
class Building:
    """A building to tour (`sim.world.generate_world`): its kind and seed, with or without people and carts."""

    kind: str
    seed: int
    dynamic: bool = False

    @property
    def site(self) -> str:
        return f"{self.kind}-{self.seed}"

    @property
    def folder(self) -> str:
        """Its folder name: the same building with people and carts is another world."""
        return f"{self.site}-dynamic" if self.dynamic else self.site


_Job = tuple[Building, Path, int, float, RobotConfig, frozenset[str], PerturbationConfig | None]


def tour_name(seed: int, perturbed: bool) -> str:
    """A tour's file name: perturbed tours of a building sit beside its plain ones."""
    return f"tour-{seed}-perturbed.mcap" if perturbed else f"tour-{seed}.mcap"


def write_building(building: Building, world_dir: Path) -> None:
    """Write the building to `world_dir` unless it is there."""
    if not (world_dir / "world.json").is_file():
        write_world(generate_world(building.kind, building.seed, building.dynamic), world_dir)


def _tour_building(job: _Job) -> list[Path]:
    """Write one building, unless written, and record its tours that are not recorded yet."""
    building, out, tours, seconds, config, leave_out, perturbation = job
    world_dir = out / "worlds" / building.folder
    write_building(building, world_dir)
    paths = [out / building.folder / tour_name(seed, perturbation is not None) for seed in range(tours)]
    for seed, path in enumerate(paths):
        if not path.is_file():
            partial = path.with_name(f".{path.name}.part")  # a tour cut short is never taken for a recorded one
            record_tour(world_dir, partial, seconds, config, seed, leave_out, perturbation)
            partial.rename(path)
    return paths


def record_building_tours(
    buildings: Sequence[Building],
    out: Path,
    tours: int = 2,
    seconds: float = 60.0,
    config: RobotConfig = DEFAULT_ROBOT,
    leave_out: frozenset[str] = frozenset(),
    workers: int | None = None,
    progress: bool = True,
    perturbation: PerturbationConfig | None = None,
) -> list[Path]:
    """`tours` expert tours of each building (expert seeds 0, 1, ...), recorded in-process to
    `out/<folder>/<tour_name>` without the outputs in `leave_out`, the buildings written to
    `out/worlds/<folder>` (`Building.folder`); what is there already is kept. With `perturbation` the expert's
    commands are bent now and then (sim.perturbation), and the files are named `tour-<seed>-perturbed.mcap`.

    Buildings are spread over `workers` processes (default one per core): writing a building's textures and
    rendering its tours each run on one core.
    """
    jobs = [(building, Path(out), tours, seconds, config, leave_out, perturbation) for building in buildings]
    processes = min(workers or os.cpu_count() or 1, len(jobs))
    paths: list[Path] = []
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(
            tqdm(total=len(jobs), unit="building", desc="tours", file=sys.stderr, disable=not progress)
        )
        if processes > 1:
            context = multiprocessing.get_context("fork")  # the parent has rendered nothing, so no GL state is copied
            recordings = stack.enter_context(ProcessPoolExecutor(processes, mp_context=context)).map(
                _tour_building, jobs
            )
        else:  # in this process: a child forked from one whose torch thread pools have run can hang
            recordings = map(_tour_building, jobs)
        for recorded in recordings:
            paths += recorded
            bar.update()
    return paths
