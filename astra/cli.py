"""`astra`: the one command line for the Astra platform (see `astra --help`).

Exit codes: 0 ok, 2 usage error, 3 finished with some inputs quarantined or rejected, 1 anything else.
Data commands print one JSON summary line on stdout, last; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tqdm import tqdm

from astra import __version__
from schemas.lake import DEFAULT_LAKE, DEFAULT_RETENTION_HOURS

if TYPE_CHECKING:
    from datasets.map_store import TopoMap
    from schemas.world import World

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LOCAL_WEIGHTS = Path("models/weights/astra_local")  # Astra-Local's trained planners, one folder per variant
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


class UsageError(Exception):
    """Bad arguments or inputs the user can fix; exits with code 2."""


def _emit(summary: dict) -> None:
    print(json.dumps(summary), flush=True)


# --- astra sim world -----------------------------------------------------------------------------


def cmd_sim_world(args: argparse.Namespace) -> int:
    from schemas.world import WORLD_KINDS
    from sim.world import generate_world, write_world

    if args.kind not in WORLD_KINDS:
        raise UsageError(f"unknown kind {args.kind!r}; choose one of {', '.join(WORLD_KINDS)}")
    world = generate_world(args.kind, args.seed, dynamic=args.dynamic)
    write_world(world, args.out)
    _emit(
        {
            "world": str(args.out),
            "kind": world.kind,
            "seed": world.seed,
            "site": world.site,
            "rooms": len(world.rooms),
            "landmarks": len(world.landmarks),
            "agents": len(world.agents),
        }
    )
    return EXIT_OK


def _seed_list(text: str) -> list[int]:
    """ "600-603,610" -> [600, 601, 602, 603, 610]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            seeds.extend(range(int(low), int(high or low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are numbers and ranges such as 600-603,610, not {text!r}") from None
    return seeds


def cmd_sim_tours(args: argparse.Namespace) -> int:
    from datasets.tours import Building, record_building_tours
    from schemas.robot import DEFAULT_ROBOT
    from schemas.topics import DEPTH_OUTPUTS
    from schemas.world import WORLD_KINDS
    from sim.perturbation import PerturbationConfig

    kinds = args.kinds.split(",")
    if unknown := [k for k in kinds if k not in WORLD_KINDS]:
        raise UsageError(f"unknown kinds {unknown}; choose from {', '.join(WORLD_KINDS)}")
    if min(args.camera_width, args.camera_height, args.tours) < 1 or args.seconds <= 0:
        raise UsageError("camera sizes and --tours must be at least 1, and --seconds positive")
    config = replace(DEFAULT_ROBOT, camera_width=args.camera_width, camera_height=args.camera_height)
    buildings = [Building(kind, seed, args.dynamic) for kind in kinds for seed in args.seeds]
    started = time.perf_counter()
    paths = record_building_tours(
        buildings,
        args.out,
        tours=args.tours,
        seconds=args.seconds,
        config=config,
        leave_out=frozenset() if args.depth else DEPTH_OUTPUTS,
        workers=args.workers,
        perturbation=PerturbationConfig() if args.perturb else None,
    )
    _emit(
        {
            "out": str(args.out),
            "buildings": len(buildings),
            "tours": len(paths),
            "bytes": sum(p.stat().st_size for p in paths),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    return EXIT_OK


# --- astra record --------------------------------------------------------------------------------

RECORD_DATAFLOW = PROJECT_ROOT / "dataflows" / "record.yml"
# The sensor node prints `progress <sim seconds>` once a simulated second; `dora run` prefixes node output.
_PROGRESS = re.compile(r"stdout\s+sensor: progress ([0-9.]+)")
STOP_GRACE_S = 10.0  # after an interrupt, how long dora may take to stop its nodes before they are killed


def _follow_progress(lines: IO[str], log: IO[str], seconds: float, bar: tqdm) -> None:
    for line in lines:
        log.write(line)
        if match := _PROGRESS.search(line):
            bar.n = min(float(match.group(1)), seconds)
            bar.refresh()


def _end_process_group(proc: subprocess.Popen) -> None:
    """Interrupt `dora run` as Ctrl-C would, then kill it and every node it started if they linger."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_GRACE_S)
    # Nodes that ignored the stop may outlive `dora run` in its process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _run_episode(dataflow: Path, env: dict[str, str], seconds: float, timeout_s: float, log_path: Path,
                 bar: tqdm) -> None:  # fmt: skip
    """Run one `dora run` of a recording dataflow; progress comes from the sensor's lines, the deadline from a clock.

    A node can block without printing (a sensor waiting for acknowledgements), so the deadline cannot wait for
    output: the output is followed on a thread while this one waits on the process.
    """
    # Nodes run with the first `python` on PATH: make it this environment's.
    env = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["dora", "run", str(dataflow)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so that a timeout can end every node
        )
        follower = threading.Thread(target=_follow_progress, args=(proc.stdout, log, seconds, bar), daemon=True)
        follower.start()
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _end_process_group(proc)
            follower.join(timeout=5.0)
            raise RuntimeError(f"recording did not finish within {timeout_s:.0f} s; dora log: {log_path}") from None
        follower.join()
    if returncode != 0:
        raise RuntimeError(f"dora run failed with exit code {returncode}; dora log: {log_path}")


def cmd_record(args: argparse.Namespace) -> int:
    from datasets.recording import summarize
    from schemas.world import World

    try:
        world = World.load(args.world)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    if args.episodes < 1 or args.seconds <= 0:
        raise UsageError("--episodes must be >= 1 and --seconds > 0")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be > 0")
    if not args.dataflow.is_file():
        raise UsageError(f"no such dataflow: {args.dataflow}")
    # A slow machine runs the simulation slower than real time rather than dropping ticks: allow for it.
    timeout_s = args.timeout or 120 + 20 * args.seconds
    args.out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for index in range(args.episodes):
        seed = args.seed + index
        stem = f"{world.site}-{args.robot_id}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-s{seed}"
        mcap = (args.out / f"{stem}.mcap").resolve()
        rrd = (
            args.rrd
            if args.rrd and args.episodes == 1
            else (args.rrd.with_stem(f"{args.rrd.stem}-{index}") if args.rrd else mcap.with_suffix(".rrd"))
        )
        env = {
            "ASTRA_WORLD": str(Path(args.world).resolve()),
            "ASTRA_SECONDS": str(args.seconds),
            "ASTRA_SEED": str(seed),
            "ASTRA_MCAP": str(mcap),
            "ASTRA_RRD": str(Path(rrd).resolve()),
            "ASTRA_ROBOT_ID": args.robot_id,
            "ASTRA_CAMERA_WIDTH": str(args.camera_width),
            "ASTRA_CAMERA_HEIGHT": str(args.camera_height),
        }
        with tqdm(
            total=args.seconds,
            desc=f"episode {index + 1}/{args.episodes}",
            unit="sim s",
            file=sys.stderr,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} sim s [{elapsed}<{remaining}]",
        ) as bar:
            _run_episode(args.dataflow, env, args.seconds, timeout_s, mcap.with_suffix(".dora.log"), bar)
        summary = summarize(mcap)
        summaries.append({**summary.to_dict(), "rrd": str(rrd)})
        _print_episode(summary.to_dict())
    _emit(
        {
            "episodes": len(summaries),
            "mcaps": [s["path"] for s in summaries],
            "distance_m": round(sum(s["distance_m"] for s in summaries), 3),
            "collisions": sum(s["collisions"] for s in summaries),
            "summaries": summaries,
        }
    )
    return EXIT_OK


def _print_episode(summary: dict) -> None:
    """Human-readable episode summary on stderr (stdout carries the JSON line)."""
    out = sys.stderr
    print(f"\nMCAP: {summary['path']}", file=out)
    print(
        f"duration {summary['duration_s']:.1f} s, distance {summary['distance_m']:.1f} m, "
        f"collisions {summary['collisions']}",
        file=out,
    )
    print(f"{'topic':42} {'messages':>9} {'rate Hz':>8}", file=out)
    for topic, stats in summary["topics"].items():
        print(f"{topic:42} {stats['count']:>9} {stats['rate_hz']:>8.1f}", file=out)


# --- astra ingest / sql / export ----------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    from datasets.lake import LakeError
    from pipelines.ingest import ingest

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or directory: {', '.join(missing)}")
    _check_runner_arguments(args)
    try:
        summary = ingest(
            args.paths, args.lake, runner=args.runner, dask_address=args.dask_address, workers=args.workers
        )
    except LakeError as exc:  # a lake in the layout before Delta Lake
        raise UsageError(str(exc)) from exc
    _emit(summary.to_dict())
    return EXIT_PARTIAL if summary.quarantined else EXIT_OK


def cmd_sql(args: argparse.Namespace) -> int:
    from datasets.lake import run_query

    try:
        print(run_query(args.lake, args.query, args.format, version=args.as_of))
    except ValueError as exc:  # refused statements, SQL errors (with the tables listed), missing lake
        raise UsageError(str(exc)) from exc
    return EXIT_OK


def cmd_lake(args: argparse.Namespace) -> int:
    from datasets import lake_tables as lake

    started = time.perf_counter()
    try:
        if args.lake_command == "compact":
            summary = {"compacted": lake.compact(args.lake)}
        elif args.lake_command == "vacuum":
            summary = {"deleted_files": lake.vacuum(args.lake, args.retention_hours)}
        else:
            summary = {"migrated_rows": lake.migrate(args.lake)}
    except lake.LakeError as exc:  # no lake, a lake not yet migrated, a negative retention
        raise UsageError(str(exc)) from exc
    summary |= {"version": lake.lake_version(args.lake), "seconds": round(time.perf_counter() - started, 3)}
    _emit({"lake": str(args.lake), **summary})
    return EXIT_OK


def cmd_export_lerobot(args: argparse.Namespace) -> int:
    from datasets.lake import LakeError
    from datasets.lerobot import export_lerobot

    try:
        summary = export_lerobot(args.lake, args.episodes, args.out, fps=args.fps)
    except (ValueError, FileExistsError, LakeError) as exc:  # bad filter, no episodes, --out not empty, no lake
        raise UsageError(str(exc)) from exc
    _emit(summary.to_dict())
    return EXIT_PARTIAL if summary.skipped else EXIT_OK


# --- astra map build / eval map / viz map ----------------------------------------------------------


def _add_runner_arguments(parser: argparse.ArgumentParser, spread: str) -> None:
    parser.add_argument(
        "--runner",
        choices=("direct", "dask"),
        default="direct",
        help=f"Beam runner (default direct: one process; dask spreads {spread} over processes)",
    )
    parser.add_argument("--dask-address", help="scheduler address of an existing Dask cluster (with --runner dask)")
    parser.add_argument("--workers", type=int, help="local Dask workers when no address is given (--runner dask)")


def _check_runner_arguments(args: argparse.Namespace) -> None:
    if args.runner != "dask" and (args.dask_address or args.workers):
        raise UsageError("--dask-address and --workers need --runner dask")


DEFAULT_MAPS = Path("data/maps")


def cmd_map_build(args: argparse.Namespace) -> int:
    from datasets.map_store import key_from_env
    from models.mapping.sfm import FEATURES
    from pipelines.mapping import DEFAULT_SFM, build_site_map

    _check_runner_arguments(args)
    try:
        summary = build_site_map(
            args.lake,
            args.site,
            args.out or DEFAULT_MAPS / args.site,
            key=key_from_env(),
            world_dir=args.world,
            runner=args.runner,
            dask_address=args.dask_address,
            workers=args.workers,
            **({"extractor": args.extractor} if args.extractor else {}),
            **({"descriptor": args.descriptor} if args.descriptor else {}),
            **({"sfm_config": replace(DEFAULT_SFM, sift=FEATURES[args.features])} if args.features else {}),
        )
    except ValueError as exc:  # no episodes of the site, no lake, bad key, no world.json (LakeError, MapError)
        raise UsageError(str(exc)) from exc
    _emit(summary.to_dict())
    return EXIT_OK


def cmd_map_update(args: argparse.Namespace) -> int:
    from datasets.map_store import key_from_env
    from pipelines.mapping import update_site_map

    _check_runner_arguments(args)
    try:
        summary = update_site_map(
            args.map,
            args.lake,
            args.site,
            key=key_from_env(),
            world_dir=args.world,
            runner=args.runner,
            dask_address=args.dask_address,
            workers=args.workers,
        )
    except ValueError as exc:  # no map, wrong key, another site's map, no lake (MapError, LakeError)
        raise UsageError(str(exc)) from exc
    if summary is None:
        print(
            f"the map at {args.map} holds every episode of site {args.site} in the lake: nothing to add",
            file=sys.stderr,
        )
        return EXIT_OK
    _emit(summary.to_dict())
    return EXIT_OK


def cmd_dataset_global(args: argparse.Namespace) -> int:
    from pipelines.global_dataset import build_global_dataset

    try:
        summary = build_global_dataset(args.lake, args.out, sites=args.site or None)
    except ValueError as exc:  # no tours in the lake, no lake, an output folder that exists (LakeError)
        raise UsageError(str(exc)) from exc
    _emit(asdict(summary))
    return EXIT_OK


def cmd_dataset_local(args: argparse.Namespace) -> int:
    from pipelines.local_dataset import build_local_dataset

    _check_runner_arguments(args)
    try:
        summary = build_local_dataset(
            args.lake,
            args.out,
            sites=args.site or None,
            runner=args.runner,
            dask_address=args.dask_address,
            workers=args.workers,
        )
    except ValueError as exc:  # no tours (or none with depth) in the lake, no lake, an output folder that exists
        raise UsageError(str(exc)) from exc
    _emit(asdict(summary))
    return EXIT_OK


def cmd_dataset_dagger(args: argparse.Namespace) -> int:
    from pipelines.dagger import DaggerConfig, add_dagger_round
    from pipelines.planning_eval import PlanningConfig
    from schemas.local_dataset import LocalDatasetError

    if not (args.planner / "config.json").is_file():
        raise UsageError(f"{args.planner} holds no trained planner (config.json): run `astra train local` first")
    if args.episodes < 1 or args.time_limit <= 0:
        raise UsageError("--episodes must be >= 1 and --time-limit positive")
    config = DaggerConfig(args.episodes, PlanningConfig(time_limit_s=args.time_limit))
    try:
        summary = add_dagger_round(
            args.dataset,
            args.planner,
            config,
            holdout_seeds=args.holdout_seeds,
            sites=args.site or None,
            work=args.work,
            workers=args.workers,
        )
    except (ValueError, LocalDatasetError) as exc:  # not a dataset, nothing to drive, a building too small
        raise UsageError(str(exc)) from exc
    _emit(asdict(summary))
    return EXIT_OK


def _variants(chosen: str, known: dict) -> list[str]:
    """`all`, `none` or a comma-separated list (checked by the trainer)."""
    return list(known) if chosen == "all" else [] if chosen == "none" else chosen.split(",")


def cmd_train_local(args: argparse.Namespace) -> int:
    from models.astra_local.odometry import ODOMETRY_VARIANTS
    from models.astra_local.variants import PLANNER_VARIANTS
    from pipelines.train_local import (
        ENCODER4D_TRAINING,
        ENCODER_TRAINING,
        ODOMETRY_TRAINING,
        LocalTrainConfig,
        train_local,
    )
    from schemas.local_dataset import LocalDatasetError

    if min(args.steps, args.odometry_steps, args.encoder_steps, args.encoder4d_steps) < 1:
        raise UsageError("--steps, --odometry-steps, --encoder-steps and --encoder4d-steps must be >= 1")
    mirror = {} if args.mirror is None else {"mirror": args.mirror}
    config = LocalTrainConfig(steps=args.steps, micro_batches=args.micro_batches, **mirror)
    odometry_config = replace(ODOMETRY_TRAINING, steps=args.odometry_steps, micro_batches=args.micro_batches)
    encoder_config = replace(ENCODER_TRAINING, steps=args.encoder_steps, micro_batches=args.micro_batches)
    try:
        summary = train_local(
            args.dataset,
            args.out,
            _variants(args.planners, PLANNER_VARIANTS),
            config,
            args.holdout_seeds,
            odometry=_variants(args.odometry, ODOMETRY_VARIANTS),
            odometry_config=odometry_config,
            encoder_config=encoder_config,
            encoder4d=args.encoder4d,
            encoder4d_config=replace(ENCODER4D_TRAINING, steps=args.encoder4d_steps, micro_batches=args.micro_batches),
        )
    except (ValueError, LocalDatasetError) as exc:  # not a dataset, an unknown variant, an empty split
        raise UsageError(str(exc)) from exc
    _emit(summary)
    return EXIT_OK


def cmd_eval_planning(args: argparse.Namespace) -> int:
    from pipelines.planning_eval import PlanningConfig, evaluate_planners, planner_specs
    from sim.world import generate_world, write_world

    try:
        names = args.planners.split(",") if args.planners else None
        guidance = {} if args.guidance is None else {"guidance_m": args.guidance}
        retry = {} if args.retry_guidance is None else {"retry_guidance_m": args.retry_guidance}
        specs = planner_specs(names, args.weights, args.choose == "safe", **guidance, **retry)
    except ValueError as exc:  # an unknown or untrained planner
        raise UsageError(str(exc)) from exc
    if args.world is None:
        if args.kind is None:
            raise UsageError("give --kind (with --seed), or --world")
        world_dir = args.work / f"{args.kind}-{args.seed}{'-dynamic' if args.dynamic else ''}"
        if not (world_dir / "world.json").is_file():
            write_world(generate_world(args.kind, args.seed, args.dynamic), world_dir)
    elif not (args.world / "world.json").is_file():
        raise UsageError(f"{args.world} holds no world.json")
    else:
        world_dir = args.world
    if args.episodes < 1:
        raise UsageError("--episodes must be >= 1")
    config = PlanningConfig(episodes=args.episodes, seed=args.seed, time_limit_s=args.time_limit)
    try:
        summary = evaluate_planners(world_dir, specs, config, workers=args.workers)
    except ValueError as exc:  # a building too small for the episodes asked for
        raise UsageError(str(exc)) from exc
    _emit({"kind": summary.pop("site").rsplit("-", 1)[0], "seed": args.seed} | summary)
    return EXIT_OK


def cmd_eval_odometry(args: argparse.Namespace) -> int:
    from datasets.tours import Building
    from models.astra_local.odometry import ODOMETRY_VARIANTS
    from pipelines.odometry_eval import OdometryEvalConfig, evaluate_odometry
    from pipelines.train_local import ODOMETRY_DIR
    from schemas.world import WORLD_KINDS

    if args.kind not in WORLD_KINDS:
        raise UsageError(f"unknown kind {args.kind!r}; choose from {', '.join(WORLD_KINDS)}")
    if args.tours < 1 or args.seconds <= 0:
        raise UsageError("--tours must be >= 1 and --seconds positive")
    checkpoints = {name: args.weights / ODOMETRY_DIR / name for name in ODOMETRY_VARIANTS}
    if missing := [n for n, path in checkpoints.items() if not (path / "config.json").is_file()]:
        raise UsageError(
            f"no trained {', '.join(missing)} under {args.weights / ODOMETRY_DIR}: run `astra train local`"
        )
    config = OdometryEvalConfig(tours=args.tours, seconds=args.seconds)
    summary = evaluate_odometry(Building(args.kind, args.seed, args.dynamic), args.work, checkpoints, config)
    if not args.json:
        for name, figures in summary["variants"].items():
            print(f"{name:>18}: RTE {figures['rte_pct']:.2f} %  RRE {figures['rre_deg_per_10m']:.2f} deg/10 m  "
                  f"ATE {figures['ate_m']:.3f} m")  # fmt: skip
    _emit({"kind": args.kind, "seed": args.seed} | summary)
    return EXIT_OK


def cmd_train_global(args: argparse.Namespace) -> int:
    from models.landmark_detector import TrainConfig
    from models.vpr import VprTrainConfig
    from pipelines.train_global import (
        AstraTrainConfig,
        HeldOut,
        run_trainings,
        train_astra_model,
        train_detector_model,
        train_vpr_model,
    )
    from schemas.global_dataset import GlobalDatasetError

    models = args.models.split(",")
    if unknown := sorted(set(models) - {"vpr", "detector", "astra"}):
        raise UsageError(f"unknown models {unknown}; choose from vpr, detector, astra")
    steps = (args.vpr_steps, args.detector_epochs, args.goal_steps, args.sft_steps, args.grpo_steps)
    if any(value is not None and value <= 0 for value in steps):
        raise UsageError("--vpr-steps, --detector-epochs, --goal-steps, --sft-steps and --grpo-steps must be positive")
    held_out = HeldOut(tuple(args.holdout_seeds))
    astra = AstraTrainConfig()
    astra = replace(
        astra,
        goal_sft=replace(astra.goal_sft, **_given(steps=args.goal_steps)),
        sft=replace(astra.sft, **_given(steps=args.sft_steps)),
        grpo=replace(astra.grpo, **_given(steps=args.grpo_steps)),
    )
    if args.jobs is not None and args.jobs <= 0:
        raise UsageError("--jobs must be positive")
    trainers = {  # the longest first: with two processes, the other two run one after the other beside it
        "astra": partial(train_astra_model, args.dataset, args.out / "astra_global", held_out, astra),
        "detector": partial(
            train_detector_model,
            args.dataset,
            args.out / "landmark_detector",
            held_out,
            TrainConfig(**_given(epochs=args.detector_epochs)),
        ),
        "vpr": partial(
            train_vpr_model, args.dataset, args.out / "vpr", held_out, VprTrainConfig(**_given(steps=args.vpr_steps))
        ),
    }
    jobs = args.jobs or min(len(set(models)), os.cpu_count() or 1)
    try:
        summaries = run_trainings({name: trainers[name] for name in trainers if name in models}, jobs)
    except (GlobalDatasetError, ValueError) as exc:  # not a dataset, or held-out seeds that leave nothing
        raise UsageError(str(exc)) from exc
    _emit(summaries)
    return EXIT_OK


def _add_global_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--global",
        dest="global_localization",
        help="how `global` localizes: classical, astra or hybrid (default: ASTRA_GLOBAL, else classical)",
    )


def _global_localization(args: argparse.Namespace) -> str:
    """--global, else ASTRA_GLOBAL, else classical; UsageError for anything else."""
    from operators.config import ConfigError, global_localization

    try:
        return global_localization(args.global_localization)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def _add_local_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--local",
        dest="local_planner",
        help="what `local` plans with: classical, or astra (Astra-Local's learned planner with the classical one as "
        "its fallback) (default: ASTRA_LOCAL, else classical)",
    )


def _local_planner(args: argparse.Namespace) -> str:
    """--local, else ASTRA_LOCAL, else classical; UsageError for anything else."""
    from operators.config import ConfigError, local_planner

    try:
        return local_planner(args.local_planner)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def _given(**settings: Any) -> dict[str, Any]:
    """The settings given on the command line: the others keep their defaults."""
    return {name: value for name, value in settings.items() if value is not None}


def cmd_eval_map(args: argparse.Namespace) -> int:
    from datasets.map_eval import evaluate_map_dir
    from datasets.map_store import key_from_env

    try:
        metrics = evaluate_map_dir(args.map, args.lake, key=key_from_env())
    except ValueError as exc:  # no map, wrong key, no lake (MapError, LakeError)
        raise UsageError(str(exc)) from exc
    if not args.json:
        for name, value in metrics.items():
            print(f"{name:22} {value}", file=sys.stderr)
    _emit(metrics)
    return EXIT_OK


# --- astra navigate / eval mission -----------------------------------------------------------------

NAVIGATE_DATAFLOW = PROJECT_ROOT / "dataflow.yml"


def _navigation_inputs(world_dir: Path, map_dir: Path) -> tuple[World, TopoMap]:
    """The world and its map, checked: usage errors for a missing world or map, a map without its key, a mismatch."""
    from datasets.navigation import check_world_matches, read_navigation_map
    from schemas.world import World

    try:
        world = World.load(world_dir)
        topo_map = read_navigation_map(map_dir)
        check_world_matches(topo_map, world)
    except (FileNotFoundError, ValueError) as exc:  # MapError and MapKeyError are ValueErrors
        raise UsageError(str(exc)) from exc
    return world, topo_map


def _world_from_map(topo_map: TopoMap, lake: Path | None) -> tuple[float, float, float] | None:
    """The map's alignment with the simulator's world, or None where its lake cannot say (no truth to score)."""
    from datasets.lake import LakeError
    from datasets.navigation import planar_world_from_map

    try:
        return planar_world_from_map(topo_map, lake)
    except (LakeError, KeyError, ValueError, FileNotFoundError) as exc:
        print(f"astra: cannot score against ground truth ({exc})", file=sys.stderr)
        return None


def cmd_navigate(args: argparse.Namespace) -> int:
    from datasets.mission_log import score_recording
    from models.goals import GoalResolver
    from models.text_encoder import TextEncoder

    world, topo_map = _navigation_inputs(args.world, args.map)
    if args.seconds <= 0:
        raise UsageError("--seconds must be > 0")
    localization = _global_localization(args)
    planner = _local_planner(args)
    resolver = GoalResolver(topo_map.nodes, topo_map.landmarks, topo_map.node_landmarks, TextEncoder.from_pretrained())
    result = resolver.resolve(args.goal)
    if result.goal is None:
        closest = "; ".join(f"{c.label!r} ({c.score:.2f})" for c in result.candidates)
        raise UsageError(f"goal_not_found: nothing on the map fits {args.goal!r}; closest: {closest}")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{world.site}-navigate-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    mcap = (args.out / f"{stem}.mcap").resolve()
    rrd = (args.rrd or mcap.with_suffix(".rrd")).resolve()
    env = {
        "ASTRA_WORLD": str(Path(args.world).resolve()),
        "ASTRA_MAP": str(Path(args.map).resolve()),
        "ASTRA_GOAL": args.goal,
        "ASTRA_SECONDS": str(args.seconds),
        "ASTRA_SEED": str(args.seed),
        "ASTRA_GLOBAL": localization,
        "ASTRA_LOCAL": planner,
        "ASTRA_MCAP": str(mcap),
        "ASTRA_RRD": str(rrd),
        **({"ASTRA_START": args.start} if args.start else {}),
    }
    timeout_s = args.timeout or 120 + 20 * args.seconds
    with tqdm(total=args.seconds, desc="mission", unit="sim s", file=sys.stderr,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} sim s [{elapsed}]") as bar:  # fmt: skip
        _run_episode(args.dataflow, env, args.seconds, timeout_s, mcap.with_suffix(".dora.log"), bar)
    summary: dict = {"goal_text": args.goal, "mcap": str(mcap), "rrd": str(rrd)}
    alignment = _world_from_map(topo_map, args.lake)
    if alignment is not None:
        summary |= score_recording(mcap, world, alignment)
    _emit(summary)
    return EXIT_OK


def _evaluated_building(args: argparse.Namespace, dynamic: bool) -> tuple[Path, Path, Path]:
    """The world and map an evaluation runs on, and its work folder: built from --kind/--seed under --work (default
    data/eval/KIND-SEED), or the --world/--map given (work folder data/eval/<map folder name>)."""
    from pipelines.missions import StaleBuildingError, prepare_building
    from schemas.world import WORLD_KINDS

    if (args.world is None) != (args.map is None):
        raise UsageError("--world and --map go together")
    if args.world is not None:
        return args.world, args.map, args.work or Path("data/eval") / Path(args.map).name
    if args.kind not in WORLD_KINDS:
        raise UsageError(f"give --kind (one of {', '.join(WORLD_KINDS)}) and --seed, or --world and --map")
    work = args.work or Path("data/eval") / f"{args.kind}-{args.seed}{'-dynamic' if dynamic else ''}"
    try:
        building = prepare_building(args.kind, args.seed, dynamic, work, args.tour_seconds)
    except StaleBuildingError as exc:
        raise UsageError(str(exc)) from exc
    return building.world_dir, building.map_dir, work


def cmd_eval_mission(args: argparse.Namespace) -> int:
    from datasets.navigation import planar_world_from_map
    from pipelines.missions import (
        MissionConfig,
        MissionOutcome,
        run_missions,
        summarize,
    )
    from sim.missions import Mission

    if args.missions < 1:
        raise UsageError("--missions must be >= 1")
    world_dir, map_dir, work = _evaluated_building(args, args.dynamic)
    lake = args.lake if args.world else work / "lake"
    world, topo_map = _navigation_inputs(world_dir, map_dir)
    alignment = planar_world_from_map(topo_map, lake)
    bar = tqdm(total=args.missions, desc="missions", unit="mission", file=sys.stderr)

    def report(index: int, mission: Mission, outcome: MissionOutcome) -> None:
        bar.update()
        if not args.json:
            print(
                f"{index}: {outcome.state:14} success={outcome.success} {outcome.instruction!r} -> "
                f"{outcome.resolved_room or '?'} ({mission.goal_room}) {outcome.time_s:.0f} s "
                f"error {outcome.final_error_m:.2f} m",
                file=sys.stderr,
            )

    config = MissionConfig(
        time_limit_s=args.time_limit,
        blind_agents=args.blind_agents,
        localization=_global_localization(args),
        planner=_local_planner(args),
    )
    outcomes = run_missions(world_dir, topo_map, alignment, args.missions, args.seed, config, report)
    bar.close()
    dynamic = bool(world.agents)
    summary = {
        "kind": world.kind,
        "seed": world.seed,
        "dynamic": dynamic,
        "blind_agents": dynamic and args.blind_agents,
        "global": config.localization,
        "local": config.planner,
    }
    _emit(summary | summarize(outcomes))
    return EXIT_OK


def cmd_eval_localization(args: argparse.Namespace) -> int:
    from datasets.map_eval import source_lake
    from models.astra_global.model import COMMITTED_CHECKPOINTS
    from pipelines.localization_eval import VARIANTS, evaluate_localization, protocol_queries, record_query_tour
    from pipelines.missions import TOUR_SECONDS

    if args.queries < 1 or args.goals < 0 or args.outside < 0:
        raise UsageError("--queries must be >= 1, and --goals and --outside >= 0")
    variants = args.variants.split(",") if args.variants else list(VARIANTS)
    if unknown := sorted(set(variants) - set(VARIANTS)):
        raise UsageError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    checkpoints = None
    if args.weights:
        checkpoints = {name: args.weights / path.name for name, path in COMMITTED_CHECKPOINTS.items()}
    world_dir, map_dir, work = _evaluated_building(args, dynamic=False)
    world, topo_map = _navigation_inputs(world_dir, map_dir)
    seconds = args.query_seconds or TOUR_SECONDS[world.kind]
    query_lake, query_episode = record_query_tour(world_dir, work, world.seed, seconds)
    try:
        map_lake = source_lake(topo_map, args.lake)
        queries = protocol_queries(query_lake, query_episode, topo_map, map_lake, args.queries, args.outside)
        result = evaluate_localization(
            topo_map, map_lake, queries.covered, variants, checkpoints, world, args.goals, queries.outside
        )
    except ValueError as exc:  # the map's lake is gone or holds no truth (LakeError)
        raise UsageError(str(exc)) from exc
    if not args.json:
        for name, figures in result["variants"].items():
            print(f"{name:10} " + " ".join(f"{k}={v}" for k, v in figures.items()), file=sys.stderr)
    _emit({"kind": world.kind, "seed": world.seed, "coverage": queries.coverage, **result})
    return EXIT_OK


def cmd_viz_map(args: argparse.Namespace) -> int:
    import rerun as rr

    from datasets.lake import Lake
    from datasets.map_store import key_from_env, read_map
    from viz.map import log_map

    rec = rr.RecordingStream("astra", recording_id=f"map-{args.map.name}")
    try:
        topo = read_map(args.map, key_from_env())
        if args.save:
            rec.save(args.save)
        else:
            rec.spawn()
        lake = args.lake or topo.manifest.build.get("lake")
        route = log_map(rec, topo, Lake(lake) if lake and Path(lake).is_dir() else None, route_rooms=args.route)
    except ValueError as exc:  # unknown room, no route, bad map or key
        raise UsageError(str(exc)) from exc
    rec.disconnect()  # flushes and writes the .rrd footer
    _emit(
        {
            "map": str(args.map),
            "rrd": str(args.save) if args.save else None,
            "route_m": None if route is None else round(route.length_m, 2),
        }
    )
    return EXIT_OK


def _recording_world(mcap: Path, world_dir: Path | None) -> World:
    """The building of a recording: --world where given (it must be the recorded one), else its world.json."""
    from datasets.replay import replay_world
    from schemas.world import World

    recorded = replay_world(mcap)
    if world_dir is None:
        if recorded is None:
            raise UsageError(f"{mcap} carries no world.json: pass --world DIR")
        return recorded
    world = World.load(world_dir)
    if recorded is not None and recorded.site != world.site:
        raise UsageError(f"{mcap} was recorded in {recorded.site!r} but --world is {world.site!r}")
    return world


def cmd_viz_local(args: argparse.Namespace) -> int:
    import numpy as np
    import polars as pl

    from datasets.local_windows import LocalWindows
    from datasets.odometry_sequences import OdometrySequences
    from models.astra_local.planner import LocalPlannerModel
    from schemas.local_dataset import LocalDatasetError, LocalDatasetManifest
    from viz.local import local_recording, log_windows

    try:
        episodes = LocalDatasetManifest.read(args.dataset).episodes
    except (ValueError, LocalDatasetError) as exc:  # not a local training set
        raise UsageError(str(exc)) from exc
    if args.samples < 1:
        raise UsageError("--samples must be >= 1")
    episode = args.episode or episodes[0]
    if episode not in episodes:
        raise UsageError(f"no episode {episode!r} in {args.dataset}; it holds {len(episodes)}, e.g. {episodes[0]}")
    if args.planner is not None and not (args.planner / "config.json").is_file():
        raise UsageError(f"{args.planner} holds no trained planner (config.json)")
    windows = LocalWindows(args.dataset, where=pl.col("episode_id") == episode)
    sequences = OdometrySequences(args.dataset, where=pl.col("episode_id") == episode)
    frames = sequences.episodes[0] if sequences.episodes else None
    bev = (
        {}
        if frames is None
        else {int(t): grid.astype(np.float32) for t, grid in zip(frames.t_ns, frames.bev, strict=True)}
    )
    planner = LocalPlannerModel.from_pretrained(args.planner).eval() if args.planner else None
    rec = local_recording(f"local-{episode}", args.save)
    log_windows(rec, windows, range(len(windows)), planner, args.samples, bev)
    rec.disconnect()
    _emit({"episode": episode, "windows": len(windows), "rrd": str(args.save) if args.save else None})
    return EXIT_OK


def cmd_viz_episode(args: argparse.Namespace) -> int:
    from mcap.writer import MCAP0_MAGIC

    from datasets.mcap_reader import SalvagingReader
    from datasets.navigation import (
        NO_WORLD_PLACEMENT,
        check_world_matches,
        read_navigation_map,
        recorded_map_from_world,
    )
    from datasets.replay import recorded_messages
    from viz.episode import EpisodeLogger, episode_recording, save_episode_blueprint

    mcap = args.mcap
    if not mcap.is_file():
        raise UsageError(f"no such recording: {mcap}")
    with open(mcap, "rb") as stream:
        if stream.read(len(MCAP0_MAGIC)) != MCAP0_MAGIC:
            raise UsageError(f"{mcap} is not an MCAP file")
    try:
        world = _recording_world(mcap, args.world)
        topo = None
        if args.map is not None:
            topo = read_navigation_map(args.map)
            check_world_matches(topo, world)
    except (FileNotFoundError, ValueError) as exc:  # MapError and MapKeyError are ValueErrors
        raise UsageError(str(exc)) from exc
    blueprint = args.blueprint or (args.save.with_suffix(".rbl") if args.save else None)
    map_from_world = recorded_map_from_world(topo) if topo is not None else None
    if topo is not None and map_from_world is None:
        print(f"note: {NO_WORLD_PLACEMENT}", file=sys.stderr)
    rec = episode_recording(world, mcap.stem, args.save, topo, map_from_world)
    logger = EpisodeLogger(rec, map_from_world)
    messages = 0
    with (
        open(mcap, "rb") as stream,
        tqdm(total=mcap.stat().st_size, desc="episode", unit="B", unit_scale=True, file=sys.stderr) as bar,
    ):
        reader = SalvagingReader(stream)
        for output_id, msg in recorded_messages(reader):
            logger.log(output_id, msg)
            messages += 1
            bar.update(stream.tell() - bar.n)  # the reader takes a chunk at a time
        bar.update(stream.tell() - bar.n)
    rec.disconnect()  # flushes and writes the .rrd footer
    for damage in reader.damage:
        print(f"astra: {mcap}: {damage}", file=sys.stderr)
    if blueprint is not None:
        save_episode_blueprint(world, blueprint)
    _emit(
        {
            "mcap": str(mcap),
            "site": world.site,
            "map": str(args.map) if args.map else None,
            "messages": messages,
            "damage": [str(d) for d in reader.damage],
            "rrd": str(args.save) if args.save else None,
            "blueprint": str(blueprint) if blueprint else None,
        }
    )
    return EXIT_OK


# --- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astra",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit codes: 0 ok, 2 usage error, 3 some inputs rejected, 1 other errors.",
    )
    parser.add_argument("--version", action="version", version=f"astra {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", help="also show the libraries' own logs (Beam, COLMAP, Dask)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sim = commands.add_parser("sim", help="simulator tools: generate worlds")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True, metavar="SIM_COMMAND")
    world = sim_commands.add_parser(
        "world",
        parents=[common],
        help="generate a procedural building (world.json, world.xml, textures)",
        description="Generate a procedural building. The same kind and seed give byte-identical files.",
    )
    world.add_argument("--kind", required=True, help="office | warehouse | home | hospital")
    world.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    world.add_argument("--out", type=Path, required=True, help="output folder")
    world.add_argument("--dynamic", action="store_true", help="add people and carts that walk fixed loops")
    world.set_defaults(func=cmd_sim_world)
    tours = sim_commands.add_parser(
        "tours",
        parents=[common],
        help="record expert tours of many generated buildings in-process, as fast as the simulator runs",
        description="Generate buildings of the given kinds and seeds and record TOURS expert tours of each "
        "(expert seeds 0, 1, ...) to OUT/<site>/tour-<seed>.mcap, without the dataflow: the training data of the "
        "learned models. Tours already recorded are kept; buildings go to OUT/worlds/<site>.",
    )
    tours.add_argument("--kinds", default="office,warehouse,home,hospital", help="comma-separated (default: all)")
    tours.add_argument("--seeds", type=_seed_list, required=True, help="building seeds, e.g. 600-611,700")
    tours.add_argument("--tours", type=int, default=2, help="tours per building (default 2)")
    tours.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per tour (default 60)")
    tours.add_argument("--camera-width", type=int, default=160, help="camera width in pixels (default 160)")
    tours.add_argument("--camera-height", type=int, default=120, help="camera height in pixels (default 120)")
    tours.add_argument("--depth", action="store_true", help="also record the depth images (4x the bytes)")
    tours.add_argument(
        "--dynamic",
        action="store_true",
        help="people and carts walk the buildings (folders OUT/<site>-dynamic): the out-of-distribution case",
    )
    tours.add_argument(
        "--perturb",
        action="store_true",
        help="bend the expert's commands for about a second every few seconds, so that the tours show it steering "
        "back to its path (DART; training data for Astra-Local's planners); files tour-<n>-perturbed.mcap",
    )
    tours.add_argument("--workers", type=int, help="processes (default: one per core)")
    tours.add_argument("--out", type=Path, required=True, help="output folder")
    tours.set_defaults(func=cmd_sim_tours)

    record = commands.add_parser(
        "record",
        parents=[common],
        help="record expert tours of a world to MCAP (runs dataflows/record.yml)",
        description="Run the data-collection dataflow once per episode: the simulated robot tours every room "
        "under the expert driver and the safety layer; every topic goes to one MCAP per episode "
        "(ROS 2 encoding) and a Rerun .rrd.",
    )
    record.add_argument("--world", type=Path, required=True, help="folder written by `astra sim world`")
    record.add_argument("--episodes", type=int, default=1, help="number of episodes (default 1)")
    record.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per episode (default 60)")
    record.add_argument("--out", type=Path, default=Path("data/logs"), help="MCAP folder (default data/logs)")
    record.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode i uses seed+i")
    record.add_argument("--robot-id", default="astra-sim-01", help="robot id stored in each recording")
    record.add_argument("--camera-width", type=int, default=320, help="camera width in pixels (default 320)")
    record.add_argument("--camera-height", type=int, default=240, help="camera height in pixels (default 240)")
    record.add_argument("--rrd", type=Path, help="Rerun recording path (default: next to each MCAP)")
    record.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="wall-clock seconds an episode may take before dora is stopped and the command exits 1 "
        "(default 120 + 20 x --seconds)",
    )
    record.add_argument(
        "--dataflow",
        type=Path,
        default=RECORD_DATAFLOW,
        help="recording graph to run (default dataflows/record.yml); it gets the ASTRA_* settings in its environment",
    )
    record.set_defaults(func=cmd_record)

    ingest = commands.add_parser(
        "ingest",
        parents=[common],
        help="ingest robot logs (MCAP, rosbag2, ROS 1 bags) into the lake's Delta Lake tables (Apache Beam)",
        description="Decode robot logs (ROS 2 cdr into typed tables, anything else raw into `messages`) and "
        "commit them into the lake's Delta Lake tables, one commit per table per batch of logs, `episodes` last. "
        "Logs: MCAP files (also whole-file .mcap.zstd and .mcap.lz4), rosbag2 SQLite files (.db3, .db3.zstd), rosbag2 "
        "directories (a folder with metadata.yaml is one recording) and ROS 1 bags (.bag). Re-ingesting a log "
        "changes nothing. Damaged logs are salvaged and quarantined (exit code 3). Tables are compacted once small "
        "files pile up. The summary's `skipped` names every file not ingested, with the reason.",
    )
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="log files or folders (recursive)")
    ingest.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="lake folder (default data/lake)")
    _add_runner_arguments(ingest, "files")
    ingest.set_defaults(func=cmd_ingest)

    sql = commands.add_parser(
        "sql",
        parents=[common],
        help="run a read-only SQL query over the lake (DuckDB)",
        description="Run one read-only SQL query with DuckDB over a view per lake table (episodes, images, imu, "
        "wheels, odometry, commands, tf, events, messages, ...). DDL and DML are refused.",
    )
    sql.add_argument("query", help='e.g. "SELECT site, sum(collisions) FROM episodes GROUP BY site"')
    sql.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="lake folder (default data/lake)")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format")
    sql.add_argument(
        "--as-of",
        type=int,
        metavar="VERSION",
        help="read the lake as it was at this version (time travel; default: the latest); "
        "maps and `astra ingest` name the versions they read and wrote",
    )
    sql.set_defaults(func=cmd_sql)

    lake = commands.add_parser(
        "lake",
        help="maintain the lake's Delta Lake tables: compact, vacuum, migrate",
        description="Maintain the lake's Delta Lake tables. Each command prints one JSON line.",
    )
    lake_commands = lake.add_subparsers(dest="lake_command", required=True, metavar="LAKE_COMMAND")
    for name, help_, description in (
        (
            "compact",
            "merge each partition's small files into large ones",
            "Merge the small files of each table's partitions (site, day) into files of about 128 MB, one commit "
            "per table. Queries read the same rows from fewer files; older versions stay readable until vacuumed.",
        ),
        (
            "vacuum",
            "delete files no recent version reads",
            "Delete the files that no version younger than --retention-hours reads: those compaction replaced, "
            "and those a killed ingest left uncommitted. Versions older than that can no longer be read.",
        ),
        (
            "migrate",
            "convert a lake in the layout before Delta Lake (a folder per episode), add columns added since",
            "Convert a lake written before Delta Lake (<table>/episode_id=<id>/*.parquet) into Delta Lake tables "
            "in place, table by table, and rewrite Delta tables written without columns added since (images' "
            "since_previous_ns), which ingest refuses to commit to until then; re-ingesting its files afterwards "
            "changes nothing. Safe to run again.",
        ),
    ):
        command = lake_commands.add_parser(name, parents=[common], help=help_, description=description)
        command.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="lake folder (default data/lake)")
        command.set_defaults(func=cmd_lake)
        if name == "vacuum":
            command.add_argument(
                "--retention-hours",
                type=int,
                default=DEFAULT_RETENTION_HOURS,
                metavar="H",
                help=f"keep the files of versions younger than H hours (default {DEFAULT_RETENTION_HOURS}; "
                "0 keeps only the latest)",
            )

    export = commands.add_parser("export", help="export lake episodes to other dataset formats")
    export_formats = export.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    lerobot = export_formats.add_parser(
        "lerobot",
        parents=[common],
        help="write a LeRobot v3 dataset (parquet + mp4 videos)",
        description="Export the episodes matching a SQL filter as a LeRobot v3.0 dataset: state is the wheel "
        "odometry pose and velocities, action is cmd_vel, images are the three cameras (mp4).",
    )
    lerobot.add_argument(
        "--episodes",
        metavar="SQL_FILTER",
        help='SQL boolean expression over the episodes table, e.g. "collisions = 0" (default: every episode)',
    )
    lerobot.add_argument("--out", type=Path, required=True, help="output dataset folder")
    lerobot.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="lake folder (default data/lake)")
    lerobot.add_argument("--fps", type=int, default=10, help="frames per second (default 10, the camera rate)")
    lerobot.set_defaults(func=cmd_export_lerobot)

    map_ = commands.add_parser("map", help="build and update maps from the lake")
    map_commands = map_.add_subparsers(dest="map_command", required=True, metavar="MAP_COMMAND")
    build = map_commands.add_parser(
        "build",
        parents=[common],
        help="build a site's topological-semantic map (Apache Beam + pycolmap)",
        description="Select keyframes of every episode of a site, reconstruct them with pycolmap, and write the map "
        "graph (nodes, edges, landmarks) with the reconstruction; encrypted when ASTRA_MAP_KEY is set.",
    )
    build.add_argument("--site", required=True, help="site name as in episodes.site, e.g. office-0")
    build.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="lake folder (default data/lake)")
    build.add_argument("--out", type=Path, help="map folder (default data/maps/SITE)")
    build.add_argument(
        "--world",
        type=Path,
        help="world folder for the annotated landmark extractor (default: the attached world.json)",
    )
    build.add_argument(
        "--extractor",
        help="landmark extractor: detector (learned, from the pictures alone; the default) or annotated (the "
        "simulator's annotation, which needs the world; for evaluation)",
    )
    build.add_argument(
        "--descriptor", help="global image descriptor of the nodes: vpr (the learned one; the default) or tiny_image"
    )
    build.add_argument(
        "--features",
        choices=("fast", "accurate"),
        help="SIFT features: accurate (on pictures doubled in size first, COLMAP's default; the default) or fast (on "
        "the pictures as recorded: about half the build time, for site-scale maps, at about twice the ATE and with "
        "fewer relocalization fixes); localization describes its queries the same way",
    )
    _add_runner_arguments(build, "submaps")
    build.set_defaults(func=cmd_map_build)
    update = map_commands.add_parser(
        "update",
        parents=[common],
        help="add a site's new tours to its map without rebuilding it; the old version stays readable",
        description="Map the episodes of the site in the lake that the map does not hold yet (as `astra map build` "
        "does, with the map's own settings), join them to the map, which does not move, by loop closures into it, "
        "and write the result as the map's next version. The version it replaces moves to MAP/versions/<n>/, "
        "where `--map MAP/versions/<n>` reads it; the manifest's build.history says which episodes and which lake "
        "version each version holds. With nothing new to add, it says so and changes nothing.",
    )
    update.add_argument("--map", type=Path, required=True, help="the map folder to update, e.g. data/maps/office-0")
    update.add_argument("--site", required=True, help="site name as in episodes.site, e.g. office-0")
    update.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="lake folder (default data/lake)")
    update.add_argument(
        "--world",
        type=Path,
        help="world folder, for a map made with the annotated landmark extractor (default: the attached world.json)",
    )
    _add_runner_arguments(update, "submaps")
    update.set_defaults(func=cmd_map_update)

    dataset = commands.add_parser("dataset", help="build training sets from the lake")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", required=True, metavar="DATASET_COMMAND")
    global_set = dataset_commands.add_parser(
        "global",
        parents=[common],
        help="Astra-Global's training set: labelled frames of the tours of simulated buildings (Apache Beam)",
        description="Pick instants along the true trajectory of every tour of a simulated building in the lake, and "
        "write each camera's picture there with its true pose and the landmarks the simulator's segmentation shows "
        "(schemas/global_dataset.py). Prints one JSON line: sites, episodes, frames, landmarks, the lake version.",
    )
    global_set.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="lake folder (default data/lake)")
    global_set.add_argument("--out", type=Path, required=True, help="dataset folder to create (must not exist)")
    global_set.add_argument(
        "--site", action="append", help="only this site (repeatable; default: every simulated site in the lake)"
    )
    global_set.set_defaults(func=cmd_dataset_global)
    local_set = dataset_commands.add_parser(
        "local",
        parents=[common],
        help="Astra-Local's training set: frames and windows of the tours of simulated buildings (Apache Beam)",
        description="Replay the robot's own wheel + IMU filter and depth costmap over every tour of a simulated "
        "building in the lake (record them with `astra sim tours --depth`, and --dynamic for people and carts), and "
        "write a frame every 0.5 s (pictures, depth, IMU and wheel samples, filter and true poses) and a window at "
        "each frame: the costmap crops of the last 4 frames, velocities, the subgoal, the expert's next 2 s, and the "
        "true occupancy and ESDF now and 1 s ahead (schemas/local_dataset.py). Prints one JSON line: sites, "
        "episodes, frames, windows, the lake version.",
    )
    local_set.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="lake folder (default data/lake)")
    local_set.add_argument("--out", type=Path, required=True, help="dataset folder to create (must not exist)")
    local_set.add_argument(
        "--site", action="append", help="only this site (repeatable; default: every simulated site in the lake)"
    )
    _add_runner_arguments(local_set, "episodes")
    local_set.set_defaults(func=cmd_dataset_local)
    dagger = dataset_commands.add_parser(
        "dagger",
        parents=[common],
        help="add to Astra-Local's training set the learned planner's own drives, labelled by the expert (DAgger)",
        description="Drive a trained planner alone (no classical fallback) on planning episodes in each building of "
        "a training set from `astra dataset local` whose seed is not held out, static and with people and carts as "
        "its tours were; every 0.5 s keep what the model saw, label it with the privileged expert's next 2 s from "
        "the robot's true state, crop the true occupancy and ESDF, and add these windows to the dataset as a new "
        "round (its manifest names the planner). Retrain with `astra train local`. Prints one JSON line: the "
        "round, episodes, windows, the drives' collision rate and progress, and the labels in which the expert "
        "stood still away from the goal.",
    )
    dagger.add_argument("--dataset", type=Path, required=True, help="folder from `astra dataset local` (extended)")
    dagger.add_argument(
        "--planner",
        type=Path,
        default=LOCAL_WEIGHTS / "fm_esdf",
        help=f"the trained planner to drive (default {LOCAL_WEIGHTS / 'fm_esdf'})",
    )
    dagger.add_argument("--episodes", type=int, default=1, help="episodes per building (default 1)")
    dagger.add_argument("--time-limit", type=float, default=45.0, help="per episode, simulated s (default 45)")
    dagger.add_argument("--site", action="append", help="only this site (repeatable; default every training site)")
    dagger.add_argument(
        "--holdout-seeds",
        type=_seed_list,
        default=list(range(800, 900)),
        help="building seeds never driven, as `astra train local` holds them out (default 800-899)",
    )
    dagger.add_argument(
        "--work",
        type=Path,
        default=Path("data/eval/dagger"),
        help="where generated buildings go (default data/eval/dagger)",
    )
    dagger.add_argument("--workers", type=int, help="processes (default: one per core)")
    dagger.set_defaults(func=cmd_dataset_dagger)

    train = commands.add_parser("train", help="train the learned models")
    train_commands = train.add_subparsers(dest="train_command", required=True, metavar="TRAIN_COMMAND")
    train_global = train_commands.add_parser(
        "global",
        parents=[common],
        help="train Astra-Global's models on a training set from `astra dataset global`",
        description="Train Astra-Global's models (the VPR descriptor, the landmark detector, and Astra-Global itself: "
        "SFT then GRPO, both checkpoints kept as astra_global_sft and astra_global) on the buildings of a training set "
        "whose seeds are not held out, score them on the held-out ones, and write each checkpoint with a model "
        "card (data, steps, figures) to OUT/<model>. Prints one JSON line with each model's summary.",
    )
    train_global.add_argument("--dataset", type=Path, required=True, help="folder from `astra dataset global`")
    train_global.add_argument(
        "--out", type=Path, default=Path("models/weights"), help="checkpoint folder (default models/weights)"
    )
    train_global.add_argument(
        "--holdout-seeds",
        type=_seed_list,
        default=_seed_list("700-709"),
        help="building seeds kept for the evaluation (default 700-709)",
    )
    train_global.add_argument("--models", default="vpr,detector", help="which to train (default vpr,detector)")
    train_global.add_argument("--vpr-steps", type=int, help="training steps of the VPR descriptor (default 2000)")
    train_global.add_argument(
        "--detector-epochs", type=float, help="passes of the landmark detector over the frames (default 3)"
    )
    train_global.add_argument(
        "--goal-steps", type=int, help="Astra-Global's first SFT steps, on 16 text goals each (default 500)"
    )
    train_global.add_argument(
        "--sft-steps",
        type=int,
        help="Astra-Global's SFT steps, each on 8 examples with pictures or 16 text goals (default 2400)",
    )
    train_global.add_argument("--grpo-steps", type=int, help="Astra-Global's GRPO steps (default 30)")
    train_global.add_argument(
        "--jobs",
        type=int,
        help="models trained side by side, each in its own process with its share of the cores (default: one per "
        "core, at most one per model)",
    )
    train_global.set_defaults(func=cmd_train_global)
    train_local = train_commands.add_parser(
        "local",
        parents=[common],
        help="Astra-Local's models: the flow-matching planner, its ablations and baselines, the odometry head and the "
        "4D encoder",
        description="Train every planner (models/astra_local/variants.py) on the windows of `astra dataset local` "
        "but those of the held-out building seeds, score each on the held-out windows (ADE, FDE, and the share of "
        "sampled plans that pass within the robot's radius of a true obstacle, static and with people apart), and "
        "write each to OUT/<planner>/ with its model card. Then train the odometry head's variants on the frames "
        "(vision, vision_imu, vision_imu_wheel), score each against the wheel + IMU filter on the held-out tours "
        "(RTE, RRE, ATE) and write it to OUT/odometry/<variant>/. Then train the 4D encoder (Lift-Splat voxels of the "
        "three cameras, rendered depth and colour now and 4 frames ahead), score its occupancy IoU now and 1 s ahead "
        "on the held-out windows and write it to OUT/encoder4d/. Runs in one process or under "
        "`torchrun --nproc_per_node N $(which astra) train local ...` (DistributedDataParallel on gloo). "
        "Prints one JSON line.",
    )
    train_local.add_argument("--dataset", type=Path, required=True, help="an `astra dataset local` folder")
    train_local.add_argument("--out", type=Path, default=LOCAL_WEIGHTS, help=f"(default {LOCAL_WEIGHTS})")
    train_local.add_argument("--planners", default="all", help="comma-separated variants, all (default) or none")
    train_local.add_argument("--steps", type=int, default=1500, help="optimizer steps per planner (default 1500)")
    train_local.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        help="planners also learn every window mirrored left to right (default: pipelines/train_local.py's)",
    )
    train_local.add_argument(
        "--odometry",
        default="all",
        help="odometry variants: vision, vision_imu, vision_imu_wheel, all (default) or none",
    )
    train_local.add_argument(
        "--odometry-steps", type=int, default=1500, help="optimizer steps per odometry variant (default 1500)"
    )
    train_local.add_argument(
        "--encoder-steps",
        type=int,
        default=1000,
        help="optimizer steps of the odometry variants' shared vision encoder (default 1000)",
    )
    train_local.add_argument(
        "--encoder4d",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the 4D encoder first, for the voxel planners' tokens (default; --no-encoder4d: the committed one)",
    )
    train_local.add_argument(
        "--encoder4d-steps",
        type=int,
        default=1000,
        help="optimizer steps of the 4D encoder, 8 windows each (default 1000)",
    )
    train_local.add_argument(
        "--micro-batches", type=int, default=1, help="parts each process splits its share of a batch into (default 1)"
    )
    train_local.add_argument(
        "--holdout-seeds",
        type=_seed_list,
        default=list(range(800, 900)),
        help="building seeds never trained on, scored on (default 800-899)",
    )
    train_local.set_defaults(func=cmd_train_local)

    navigate = commands.add_parser(
        "navigate",
        parents=[common],
        help="run one mission to a text goal through dataflow.yml",
        description="Run the navigation stack (dataflow.yml) in the simulator: the robot starts with no pose, "
        "localizes from its cameras against the map, resolves the goal text and drives there. Prints one JSON "
        "line: state, success, time, path length, SPL, collisions, fallbacks, relocalization errors.",
    )
    navigate.add_argument("--world", type=Path, required=True, help="folder written by `astra sim world`")
    navigate.add_argument("--map", type=Path, required=True, help="map folder from `astra map build`")
    navigate.add_argument("--goal", required=True, help='the goal in words, e.g. "take me to the kitchen"')
    navigate.add_argument("--seconds", type=float, default=180.0, help="time limit, simulated s (default 180)")
    navigate.add_argument("--start", help="start pose x,y,yaw in the world frame (default: the dock)")
    navigate.add_argument("--seed", type=int, default=0, help="sensor noise seed (default 0)")
    _add_global_argument(navigate)
    _add_local_argument(navigate)
    navigate.add_argument("--rrd", type=Path, help="Rerun recording path (default: next to the MCAP)")
    navigate.add_argument("--out", type=Path, default=Path("data/logs"), help="MCAP folder (default data/logs)")
    navigate.add_argument(
        "--lake", type=Path, help="lake with the map's tour, to score against truth (default: the map's)"
    )
    navigate.add_argument("--timeout", type=float, help="wall-clock limit in seconds (default 120 + 20 x --seconds)")
    navigate.add_argument(
        "--dataflow", type=Path, default=NAVIGATE_DATAFLOW, help="navigation graph (default dataflow.yml)"
    )
    navigate.set_defaults(func=cmd_navigate)

    evaluate = commands.add_parser("eval", help="evaluate maps and missions against ground truth")
    eval_targets = evaluate.add_subparsers(dest="eval_target", required=True, metavar="TARGET")
    eval_map = eval_targets.add_parser(
        "map", parents=[common], help="registration, ATE, rotation error, landmarks, room connectivity"
    )
    eval_map.add_argument("--map", type=Path, required=True, help="map folder")
    eval_map.add_argument(
        "--lake", type=Path, help="lake with the ground truth (default: the lake the map was built from)"
    )
    eval_map.add_argument("--json", action="store_true", help="only the JSON line (no table on stderr)")
    eval_map.set_defaults(func=cmd_eval_map)
    eval_mission = eval_targets.add_parser(
        "mission",
        parents=[common],
        help="the mission protocol on one building: world, mapping tour, map, N missions",
        description="Generate a building (--kind/--seed), record an expert mapping tour, ingest it, build the map, "
        "then run N missions in-process from random starts to text goals in other rooms. Or reuse a built "
        "--world/--map. The last stdout line is JSON: success_rate, spl, collisions, fallback_rate, "
        "goal_accuracy, relocalization, local/global timings and per_mission.",
    )
    eval_mission.add_argument("--kind", help="office | warehouse | home | hospital")
    eval_mission.add_argument("--seed", type=int, default=500, help="building and mission seed (default 500)")
    eval_mission.add_argument("--dynamic", action="store_true", help="people and carts walk the building")
    eval_mission.add_argument(
        "--blind-agents",
        action="store_true",
        help="people and carts walk into the robot when it is in their way (the stress test); by default they stop "
        "short of it, as people do",
    )
    eval_mission.add_argument("--missions", type=int, default=5, help="missions to run (default 5)")
    eval_mission.add_argument("--tour-seconds", type=float, help="mapping tour length (default by kind, 90-150 s)")
    eval_mission.add_argument("--time-limit", type=float, default=180.0, help="per mission, simulated s (default 180)")
    eval_mission.add_argument("--world", type=Path, help="reuse this world (with --map)")
    eval_mission.add_argument("--map", type=Path, help="reuse this map (with --world)")
    eval_mission.add_argument("--lake", type=Path, help="the map's lake, for the truth (default: the map's)")
    eval_mission.add_argument("--work", type=Path, help="where the building goes (default data/eval/KIND-SEED)")
    _add_global_argument(eval_mission)
    _add_local_argument(eval_mission)
    eval_mission.add_argument("--json", action="store_true", help="only the JSON line (no per-mission lines)")
    eval_mission.set_defaults(func=cmd_eval_mission)

    eval_planning = eval_targets.add_parser(
        "planning",
        parents=[common],
        help="local planners closed-loop in one building, every planner on the same episodes",
        description="Generate a building (--kind/--seed, --dynamic for people and carts: the out-of-distribution "
        "case) or reuse --world, pick start-goal pairs 6-12 m apart, give `local` the true shortest route and drive "
        "each with every planner: the classical one, each trained variant under --weights, and `astra` (the default "
        "variant with the classical planner as its fallback). The last stdout line is JSON: per planner "
        "collision_rate, progress, success_rate, mean_speed, score, latency_p50_ms, latency_p99_ms, handover_rate.",
    )
    eval_planning.add_argument("--kind", help="office | warehouse | home | hospital")
    eval_planning.add_argument("--seed", type=int, default=500, help="building and episode seed (default 500)")
    eval_planning.add_argument("--dynamic", action="store_true", help="people and carts walk the building")
    eval_planning.add_argument("--world", type=Path, help="reuse this world instead of generating one")
    eval_planning.add_argument("--episodes", type=int, default=6, help="episodes per planner (default 6)")
    eval_planning.add_argument("--time-limit", type=float, default=45.0, help="per episode, simulated s (default 45)")
    eval_planning.add_argument("--planners", help="comma-separated (default: classical, every trained one, astra)")
    eval_planning.add_argument(
        "--weights", type=Path, default=LOCAL_WEIGHTS, help=f"trained planners (default {LOCAL_WEIGHTS})"
    )
    eval_planning.add_argument(
        "--choose",
        choices=("safe", "nearest"),
        default="safe",
        help="which of its samples a learned planner follows: the one nearest their mean that passes the classical "
        "planner's checks (default), or the nearest whatever the checks say (the model unaided)",
    )
    eval_planning.add_argument(
        "--guidance",
        type=float,
        metavar="M",
        help="each sampling refinement pushes a learned planner's waypoints off the obstacles it sees by up to M "
        "metres; 0 turns the guidance off (default: as the `local` node serves)",
    )
    eval_planning.add_argument(
        "--retry-guidance",
        type=float,
        metavar="M",
        help="where none of a learned planner's samples passes the checks, it samples again guided by up to M metres "
        "a refinement; 0 turns the retry off (default: as the `local` node serves)",
    )
    eval_planning.add_argument("--workers", type=int, help="processes (default: one per core)")
    eval_planning.add_argument(
        "--work", type=Path, default=Path("data/eval/planning"), help="where generated buildings go"
    )
    eval_planning.add_argument("--json", action="store_true", help="only the JSON line")
    eval_planning.set_defaults(func=cmd_eval_planning)

    eval_odometry = eval_targets.add_parser(
        "odometry",
        parents=[common],
        help="the learned odometry's variants against the wheel + IMU filter, on tours of an unseen building",
        description="Generate a building (--kind/--seed, --dynamic for people and carts), record --tours expert "
        "tours of it with depth, ingest and cut them into frames under --work (kept for later runs), and integrate "
        "each variant's motions over every tour: the robot's wheel + IMU filter and the odometry head with vision, "
        "vision + IMU, and vision + IMU + wheels. The last stdout line is JSON: per variant rte_pct (per metre "
        "over 10 m segments), rre_deg_per_10m and ate_m (after a rigid alignment), means over the tours.",
    )
    eval_odometry.add_argument("--kind", required=True, help="office | warehouse | home | hospital")
    eval_odometry.add_argument("--seed", type=int, default=500, help="building seed (default 500)")
    eval_odometry.add_argument("--dynamic", action="store_true", help="people and carts walk the building")
    eval_odometry.add_argument("--tours", type=int, default=2, help="expert tours (default 2)")
    eval_odometry.add_argument("--seconds", type=float, default=60.0, help="simulated seconds per tour (default 60)")
    eval_odometry.add_argument(
        "--weights", type=Path, default=LOCAL_WEIGHTS, help=f"trained models (default {LOCAL_WEIGHTS})"
    )
    eval_odometry.add_argument(
        "--work", type=Path, default=Path("data/eval/odometry"), help="where buildings and their tours go"
    )
    eval_odometry.add_argument("--json", action="store_true", help="only the JSON line")
    eval_odometry.set_defaults(func=cmd_eval_odometry)

    eval_localization = eval_targets.add_parser(
        "localization",
        parents=[common],
        help="global localization on one building: every variant on the same queries of another tour",
        description="Generate a building (--kind/--seed), record an expert mapping tour and build its map (as "
        "`astra eval mission` does, sharing its folder), record a query tour on another route, and localize at "
        "query instants 0.5 m apart with no prior, with every variant. Or reuse a built --world/--map. Queries are "
        "those the map covers (a mapping keyframe within 1 m, facing within 45 deg); on the uncovered ones only "
        "wrong answers count. The last stdout line is JSON: queries, coverage (the covered share of the tour), "
        "and per variant the recall within 0.25 m/2 deg, 0.5 m/5 deg, 1 m/5 deg and 5 m/10 deg, coarse recall "
        "within 10 m, latency p50/p99, and outside_wrong.",
    )
    eval_localization.add_argument("--kind", help="office | warehouse | home | hospital")
    eval_localization.add_argument("--seed", type=int, default=500, help="building seed (default 500)")
    eval_localization.add_argument("--queries", type=int, default=40, help="covered query instants (default 40)")
    eval_localization.add_argument(
        "--outside", type=int, default=50, help="uncovered query instants, for outside_wrong (default 50; 0: none)"
    )
    eval_localization.add_argument("--tour-seconds", type=float, help="mapping tour length (default by kind)")
    eval_localization.add_argument("--query-seconds", type=float, help="query tour length (default by kind)")
    eval_localization.add_argument("--world", type=Path, help="reuse this world (with --map)")
    eval_localization.add_argument("--map", type=Path, help="reuse this map (with --world)")
    eval_localization.add_argument("--lake", type=Path, help="the map's lake, for the truth (default: the map's)")
    eval_localization.add_argument("--work", type=Path, help="where the building goes (default data/eval/KIND-SEED)")
    eval_localization.add_argument("--variants", help="comma-separated variants (default: all)")
    eval_localization.add_argument(
        "--goals", type=int, default=40, help="text goals to resolve for goal_accuracy (default 40; 0: none)"
    )
    eval_localization.add_argument(
        "--weights", type=Path, help="folder with astra_global and astra_global_sft (default models/weights)"
    )
    eval_localization.add_argument("--json", action="store_true", help="only the JSON line")
    eval_localization.set_defaults(func=cmd_eval_localization)

    viz = commands.add_parser("viz", help="show recorded runs and maps in Rerun")
    viz_targets = viz.add_subparsers(dest="viz_target", required=True, metavar="TARGET")
    viz_map = viz_targets.add_parser(
        "map", parents=[common], help="SfM points, keyframe cameras, graph, landmarks, trajectories, route"
    )
    viz_map.add_argument("map", type=Path, metavar="DIR", help="map folder")
    viz_map.add_argument(
        "--lake", type=Path, help="lake for pictures and ground truth (default: the lake the map was built from)"
    )
    viz_map.add_argument("--route", nargs=2, metavar=("START_ROOM", "GOAL_ROOM"), help="plan and draw a route")
    viz_map.add_argument("--save", type=Path, metavar="FILE.rrd", help="write an .rrd instead of spawning a viewer")
    viz_map.set_defaults(func=cmd_viz_map)
    viz_local = viz_targets.add_parser(
        "local",
        parents=[common],
        help="Astra-Local's windows: costmap, true occupancy now and ahead, ESDF, BEV, expert and sampled plans",
        description="Log one tour of an `astra dataset local` folder to Rerun, a window per step: the robot's "
        "costmap, the true occupancy now and 1 s ahead, the true ESDF, the odometry head's bird's-eye view, the "
        "expert's trajectory and subgoal, and given --planner its sampled trajectories and the one serving follows.",
    )
    viz_local.add_argument("dataset", type=Path, metavar="DIR", help="an `astra dataset local` folder")
    viz_local.add_argument("--episode", help="the tour's episode id (default: the first)")
    viz_local.add_argument(
        "--planner", type=Path, metavar="DIR", help="a trained planner, e.g. " + str(LOCAL_WEIGHTS / "fm_esdf")
    )
    viz_local.add_argument("--samples", type=int, default=8, help="trajectories sampled per window (default 8)")
    viz_local.add_argument("--save", type=Path, metavar="FILE.rrd", help="write an .rrd instead of spawning a viewer")
    viz_local.set_defaults(func=cmd_viz_local)
    viz_episode = viz_targets.add_parser(
        "episode",
        parents=[common],
        help="a recorded run: trajectories, fixes, costmap and ESDF, plans, cameras, events",
        description="Log a recording (an MCAP of `astra record` or `astra navigate`) to Rerun as the viz node "
        "does live: the building, ground truth and estimate, relocalization fixes by confidence, the route, "
        "the local costmap and its ESDF, the planner's candidates and choice, cameras, commands and events, "
        "laid out by the episode blueprint. Reads the file as a stream. The building comes from the "
        "recording's world.json unless --world is given.",
    )
    viz_episode.add_argument("mcap", type=Path, metavar="FILE.mcap", help="the recording")
    viz_episode.add_argument("--map", type=Path, metavar="DIR", help="draw this map's graph (of the same building)")
    viz_episode.add_argument(
        "--world", type=Path, metavar="DIR", help="the building (default: the world.json the recording carries)"
    )
    viz_episode.add_argument("--save", type=Path, metavar="FILE.rrd", help="write an .rrd instead of spawning a viewer")
    viz_episode.add_argument(
        "--blueprint",
        type=Path,
        metavar="FILE.rbl",
        help="also save the layout as a Rerun blueprint (default with --save: beside the .rrd)",
    )
    viz_episode.set_defaults(func=cmd_viz_episode)
    return parser


def _library_logs(verbose: bool) -> None:
    """Show what libraries log (Beam's optional-dependency warnings, COLMAP's step-by-step log) only when asked.

    The user cannot act on them, and COLMAP's lines would run over the progress bars. GLOG_minloglevel must be
    set before COLMAP loads, and reaches the pipeline's worker processes through the environment.
    """
    level = logging.INFO if verbose else logging.ERROR
    # The handler filters too: Dask sets its own loggers to INFO, which the root logger's level does not stop.
    handler = logging.StreamHandler()
    handler.setLevel(level)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", handlers=[handler])
    if not verbose:
        os.environ.setdefault("GLOG_minloglevel", "2")  # errors and fatal only


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _library_logs(args.verbose)
    try:
        return args.func(args)
    except UsageError as exc:
        parser.error(str(exc))  # exits 2
    except (RuntimeError, OSError) as exc:
        print(f"astra: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
