"""`astra train local`: Astra-Local's models from a local training set (schemas.local_dataset).

Every variant of `models.astra_local.variants` trains on the windows of the buildings not held out, then is scored
on the held-out buildings' windows: ADE and FDE of its sampled trajectories against the expert's, and the share of
samples that pass within the robot's radius of a true obstacle (`plan_collision_rate`, the ESDF loss's target),
apart for static buildings and those with people and carts. Each checkpoint goes to OUT/<variant>/ with its model
card. Then the odometry head's variants (OUT/odometry/<variant>/), scored against the wheel + IMU filter, and the 4D
encoder (OUT/encoder4d/), scored by its occupancy IoU now and 1 s ahead.

Training runs in one process, or under `torchrun --nproc_per_node N` with DistributedDataParallel (gloo on CPU).
Each step's batch is drawn from one generator on every process and split into `processes x micro_batches` parts,
each with its own noise generator; process r takes parts r, r + N, ..., and gradients are averaged over all parts.
So N processes take the same steps as one process with N times the micro-batches.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from datasets.encoder_sequences import EncoderSequences
from datasets.local_windows import LocalWindows, Mirrored
from datasets.odometry_sequences import OdometrySequences
from models.astra_local.encoder4d import Encoder4D, Encoder4DConfig, moving_ious, occupancy_ious
from models.astra_local.odometry import ODOMETRY_VARIANTS, AstraOdometry, OdometryConfig
from models.astra_local.planner import LocalPlannerModel
from models.astra_local.serving import DEFAULT_WEIGHTS, ENCODER_DIR
from models.astra_local.variants import PLANNER_VARIANTS
from models.hub import checkpoint_digest
from pipelines.odometry_eval import odometry_errors, vision_tokens
from schemas.local_dataset import VOXELS_DIR, write_voxels
from schemas.robot import DEFAULT_ROBOT

HOLDOUT_SEEDS = tuple(range(800, 900))
ODOMETRY_DIR = "odometry"  # the evaluation protocol's unseen buildings (seeds >= 500)
VOXEL_ENCODER = DEFAULT_WEIGHTS / ENCODER_DIR  # the committed 4D encoder, whose tokens voxel planners read


@dataclass(frozen=True)
class LocalTrainConfig:
    steps: int = 1500
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    micro_batches: int = 1  # per process
    seed: int = 0
    eval_windows: int = 400  # held-out windows scored per variant
    eval_samples: int = 4
    mirror: bool = False  # planners also learn each window's mirror image (datasets.local_windows.Mirrored)


ODOMETRY_TRAINING = LocalTrainConfig(steps=1500, batch_size=64)  # over cached vision tokens
ENCODER_TRAINING = LocalTrainConfig(steps=1000, batch_size=32)  # single steps of two BEV frames
# The vision encoder trains inside a one-step head: its token alone must tell the step's motion.
ENCODER_PRETRAINING = replace(ODOMETRY_VARIANTS["vision"], history=1)
# Each window renders 8 frames of 3 cameras: small batches, more steps' worth of learning rate.
ENCODER4D_TRAINING = LocalTrainConfig(steps=1000, batch_size=8, learning_rate=2e-3)


def _process() -> tuple[int, int]:
    """(rank, processes); under torchrun the process group is joined on first use."""
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def _generator(*keys: int) -> torch.Generator:
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + key) % (2**62)
    return torch.Generator().manual_seed(seed)


class TrainingData(Protocol):
    def __len__(self) -> int: ...
    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]: ...


class TrainedModel(Protocol):
    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, dict]: ...


def train_model(
    build: Callable[[], torch.nn.Module],
    data: TrainingData,
    config: LocalTrainConfig = LocalTrainConfig(),
    progress: bool = True,
    name: str = "model",
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model `build` makes (one with a `loss(batch, generator)`), trained on `data`; returns it (on the CPU, in
    eval mode) and the run's summary."""
    rank, processes = _process()
    torch.manual_seed(config.seed)
    model = build()
    objective = _Objective(model)
    trained = DistributedDataParallel(objective, find_unused_parameters=True) if processes > 1 else objective
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _learning_rate_factor(step, config))
    parts = processes * config.micro_batches
    if config.batch_size % parts:
        raise ValueError(f"batch size {config.batch_size} does not split into {parts} parts")
    started, losses = time.perf_counter(), []
    model.train()
    bar = tqdm(range(config.steps), desc=f"train {name}", file=sys.stderr, disable=not progress or rank != 0)
    for step in bar:
        chosen = torch.randint(len(data), (config.batch_size,), generator=_generator(config.seed, step))
        mine = list(range(rank, parts, processes))
        step_loss = 0.0
        for n, part in enumerate(mine):
            indices = chosen.chunk(parts)[part].numpy()
            last = n == len(mine) - 1
            with trained.no_sync() if processes > 1 and not last else nullcontext():
                loss, _ = trained(data.batch(indices), _generator(config.seed, step, part))
                (loss * processes / parts).backward()
            step_loss += loss.item() / len(mine)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        losses.append(step_loss)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
    model.eval()
    summary = {
        "steps": config.steps,
        "batch_size": config.batch_size,
        "processes": processes,
        "examples": len(data),
        "seconds": round(time.perf_counter() - started, 1),
        "first_loss": round(float(np.mean(losses[:20])), 4),
        "last_loss": round(float(np.mean(losses[-50:])), 4),
    }
    return model, summary


class _Objective(torch.nn.Module):
    """The model's loss as a module's forward: DistributedDataParallel all-reduces what runs through forward."""

    def __init__(self, model: TrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        return self.model.loss(batch, generator)


def _learning_rate_factor(step: int, config: LocalTrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * progress))


def evaluate_planner(model: LocalPlannerModel, windows: LocalWindows, config: LocalTrainConfig) -> dict[str, Any]:
    """Held-out figures of sampled trajectories, for static buildings and for those with people and carts."""
    rng = np.random.default_rng(config.seed)
    chosen = rng.permutation(len(windows))[: config.eval_windows]
    dynamic = windows.index["dynamic"].to_numpy()[chosen]
    batch = windows.batch(chosen)
    with torch.no_grad():
        samples = model.sample(batch, config.eval_samples, generator=_generator(config.seed))  # (B, S, K, 3)
    expert = batch["trajectory"][:, None, :, :2]
    errors = (samples[..., :2] - expert).norm(dim=-1)  # (B, S, K)
    g = windows.geometry
    coords = samples[..., :2].flatten(1, 2) / g.half_extent_m  # (B, S*K, 2)
    clearance = torch.nn.functional.grid_sample(batch["esdf"][:, :1], coords[:, None], align_corners=False)
    hits = (clearance[:, 0, 0].reshape(errors.shape) < DEFAULT_ROBOT.radius).any(dim=-1)  # (B, S)
    figures = {}
    for split, rows in (("in_distribution", ~dynamic), ("out_of_distribution", dynamic)):
        if rows.any():
            figures[split] = {
                "windows": int(rows.sum()),
                "ade_m": round(float(errors[rows].mean()), 3),
                "fde_m": round(float(errors[rows][..., -1].mean()), 3),
                "plan_collision_rate": round(float(hits[rows].float().mean()), 4),
            }
    return figures


def train_local(
    dataset: Path,
    out: Path,
    variants: Sequence[str] = tuple(PLANNER_VARIANTS),
    config: LocalTrainConfig = LocalTrainConfig(),
    holdout_seeds: Sequence[int] = HOLDOUT_SEEDS,
    progress: bool = True,
    odometry: Sequence[str] = tuple(ODOMETRY_VARIANTS),
    odometry_config: LocalTrainConfig = ODOMETRY_TRAINING,
    encoder_config: LocalTrainConfig = ENCODER_TRAINING,
    encoder4d: bool = True,
    encoder4d_config: LocalTrainConfig = ENCODER4D_TRAINING,
    voxel_encoder: Path | None = None,
) -> dict[str, Any]:
    """Train (`encoder4d`) the 4D encoder, then each planner variant, then each odometry variant, on the dataset's
    buildings but the held-out seeds, score each on those, and write it to OUT/<variant>/ (odometry:
    OUT/odometry/<variant>/, the encoder OUT/encoder4d/). Raises ValueError for an unknown variant or an empty split.

    Planners that attend to the 4D encoder's tokens learn from those of the frozen `voxel_encoder` (default: the one
    this run trained, else the committed one), cached beside the dataset, on the tour windows alone (DAgger windows
    have no frames). The odometry variants share one vision encoder: trained first on single steps (the BEV frames'
    cost), then frozen, its tokens cached, while each variant trains its transformer and IMU and wheel encoders over
    them."""
    if unknown := [v for v in variants if v not in PLANNER_VARIANTS]:
        raise ValueError(f"unknown planners {unknown}; choose from {', '.join(PLANNER_VARIANTS)}")
    if unknown := [v for v in odometry if v not in ODOMETRY_VARIANTS]:
        raise ValueError(f"unknown odometry variants {unknown}; choose from {', '.join(ODOMETRY_VARIANTS)}")
    held = pl.col("world_seed").is_in(list(holdout_seeds))
    rank, processes = _process()
    summary: dict[str, Any] = {"out": str(out)}
    if encoder4d:  # first: the voxel planners below read its tokens
        train, test = (EncoderSequences(dataset, where=w, progress=progress) for w in (~held, held))
        _check_split(len(train), len(test), "encoder windows")
        build = partial(Encoder4D, Encoder4DConfig())
        model, result = train_model(build, train, encoder4d_config, progress, ENCODER_DIR)
        result |= {"config": asdict(encoder4d_config), "held_out": evaluate_encoder4d(model, test)}
        summary[ENCODER_DIR] = _saved(model, result, train, test.index["world_seed"], Path(out) / ENCODER_DIR, rank)
        if processes > 1:  # the other processes read what rank 0 wrote
            dist.barrier()
    if voxel_encoder is None:
        voxel_encoder = Path(out) / ENCODER_DIR if encoder4d else VOXEL_ENCODER
    if variants:
        plain = [LocalWindows(dataset, where=w) for w in (~held, held)]
        _check_split(len(plain[0]), len(plain[1]), "windows")
        with_voxels = None
        summary |= {"config": asdict(config), "planners": {}}
        for name in variants:
            train, test = plain
            if PLANNER_VARIANTS[name].voxel_tokens:
                if with_voxels is None:
                    if rank == 0:  # computes them once, the other processes then read its file
                        cached_voxel_tokens(dataset, voxel_encoder, progress)
                    if processes > 1:
                        dist.barrier()
                    tokens = cached_voxel_tokens(dataset, voxel_encoder, progress)
                    with_voxels = [LocalWindows(dataset, where=w, voxels=tokens) for w in (~held, held)]
                    _check_split(len(with_voxels[0]), len(with_voxels[1]), "windows with frames")
                    summary["voxel_encoder"] = {"checkpoint": str(voxel_encoder), "tokens": str(tokens)}
                train, test = with_voxels
            model, result = train_model(
                partial(LocalPlannerModel, PLANNER_VARIANTS[name]),
                Mirrored(train) if config.mirror else train,
                config,
                progress,
                name,
            )
            result["held_out"] = evaluate_planner(model, test, config)
            summary["planners"][name] = _saved(model, result, train, test.index["world_seed"], Path(out) / name, rank)
            if PLANNER_VARIANTS[name].voxel_tokens and rank == 0:  # serving lifts the cameras with the same encoder
                shutil.copytree(voxel_encoder, Path(out) / name / ENCODER_DIR, dirs_exist_ok=True)
    if odometry:
        train, test = (OdometrySequences(dataset, where=w, progress=progress) for w in (~held, held))
        _check_split(len(train), len(test), "frames")
        summary |= {"odometry_config": asdict(odometry_config), "odometry": {}}
        encoder, result = train_model(
            partial(AstraOdometry, ENCODER_PRETRAINING),
            train.with_history(1),
            encoder_config,
            progress,
            "odometry vision encoder",
        )
        summary["odometry_encoder"] = result | {"config": asdict(encoder_config)}
        cached = train.with_vision_tokens(vision_tokens(encoder, train))
        for name in odometry:
            build = partial(_with_frozen_vision, ODOMETRY_VARIANTS[name], encoder)
            model, result = train_model(build, cached, odometry_config, progress, f"odometry {name}")
            errors = odometry_errors(test, {name: model})
            result["held_out"] = {
                variant: {k: v for k, v in figures.items() if k != "tours"} for variant, figures in errors.items()
            }
            seeds = [e.world_seed for e in test.episodes]
            summary["odometry"][name] = _saved(model, result, train, seeds, Path(out) / ODOMETRY_DIR / name, rank)
    return summary


def cached_voxel_tokens(dataset: Path, encoder: Path, progress: bool = True, batch_size: int = 16) -> Path:
    """The VOXELS file of the 4D encoder checkpoint `encoder`'s tokens of every tour window of `dataset` with its past
    frames; computed once per checkpoint (its digest names the file)."""
    path = Path(dataset) / VOXELS_DIR / f"{checkpoint_digest(Path(encoder))}.parquet"
    if path.is_file():
        return path
    model = Encoder4D.from_pretrained(encoder).eval()
    frames = EncoderSequences(dataset, past=model.config.past, future=0, progress=progress)
    tokens = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(frames), batch_size), desc="4D encoder tokens", disable=not progress):
            batch = frames.batch(np.arange(start, min(start + batch_size, len(frames))))
            tokens.extend(t.numpy().astype("<f2").tobytes() for t in model.encode(batch)["tokens"])
    table = frames.index.select("episode_id", "t_ns").with_columns(voxels=pl.Series(tokens, dtype=pl.Binary))
    write_voxels(table.to_arrow(), (model.config.token_grid**2, model.config.bev_channels), path)
    return path


def evaluate_encoder4d(model: Encoder4D, windows: EncoderSequences, batch_size: int = 16) -> dict[str, Any]:
    """Occupancy IoU now and 1 s ahead (all cells, those the past frames saw, and those whose truth changes within
    the second) over every held-out window, static buildings and those with people and carts apart; None where no
    cell counts."""
    maps: list[tuple[torch.Tensor, ...]] = []
    for start in range(0, len(windows), batch_size):
        maps.append(model.occupancy_maps(windows.batch(np.arange(start, min(start + batch_size, len(windows))))))
    predicted, truth, seen = (torch.cat(parts) for parts in zip(*maps, strict=True))
    dynamic = torch.from_numpy(windows.index["dynamic"].to_numpy())
    result = {}
    for case, rows in (("in_distribution", ~dynamic), ("out_of_distribution", dynamic)):
        if rows.any():
            scores = occupancy_ious(predicted[rows], truth[rows], seen[rows])
            scores |= moving_ious(predicted[rows], truth[rows])
            result[case] = {"windows": int(rows.sum())} | {k: _rounded(v) for k, v in scores.items()}
    return result


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def _with_frozen_vision(config: OdometryConfig, encoder: AstraOdometry) -> AstraOdometry:
    """An odometry head of `config` with `encoder`'s trained vision encoder, frozen: its tokens are cached."""
    model = AstraOdometry(config)
    model.vision.load_state_dict(encoder.vision.state_dict())
    model.vision.requires_grad_(False)
    return model


def _check_split(train: int, test: int, what: str) -> None:
    if not train or not test:
        raise ValueError(f"held-out seeds leave {train} {what} to train on and {test} to test on")


def _saved(
    model: Any,
    result: dict[str, Any],
    data: LocalWindows | OdometrySequences | EncoderSequences,
    held_out_seeds: Sequence[int],
    folder: Path,
    rank: int,
) -> dict[str, Any]:
    """`result` with the data it came from, after rank 0 wrote the model and its card to `folder`."""
    manifest = data.manifest
    result["data"] = {"dataset": str(data.folder), "lake": manifest.lake, "lake_version": manifest.lake_version,
                      "train_items": len(data), "held_out_seeds": sorted({int(s) for s in held_out_seeds})}  # fmt: skip
    if manifest.dagger and isinstance(data, LocalWindows):  # the planners' own drives it learned from too
        result["data"]["dagger_rounds"] = [
            {k: r[k] for k in ("round", "planner_digest", "windows", "collision_rate")} for r in manifest.dagger
        ]
    if rank == 0:
        card = "\n".join(f"- {key}: {value}" for key, value in result.items())
        (folder / "README.md").unlink(missing_ok=True)  # save_pretrained keeps an old card: a stale run
        model.save_pretrained(folder, model_card_kwargs={"training": card})
    return result
