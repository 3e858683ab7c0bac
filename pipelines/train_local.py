"""`astra train local`: Astra-Local's planners from a local training set (schemas.local_dataset).

Every variant of `models.astra_local.variants` trains on the windows of the buildings not held out, then is scored
on the held-out buildings' windows: ADE and FDE of its sampled trajectories against the expert's, and the share of
samples that pass within the robot's radius of a true obstacle (`plan_collision_rate`, the ESDF loss's target),
apart for static buildings and those with people and carts. Each checkpoint goes to OUT/<variant>/ with its model
card.

Training runs in one process, or under `torchrun --nproc_per_node N` with DistributedDataParallel (gloo on CPU).
Each step's batch is drawn from one generator on every process and split into `processes x micro_batches` parts,
each with its own noise generator; process r takes parts r, r + N, ..., and gradients are averaged over all parts.
So N processes take the same steps as one process with N times the micro-batches.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from datasets.local_windows import LocalWindows
from models.astra_local.planner import LocalPlannerModel, PlannerConfig
from models.astra_local.variants import PLANNER_VARIANTS
from schemas.robot import DEFAULT_ROBOT

HOLDOUT_SEEDS = tuple(range(800, 900))  # the evaluation protocol's unseen buildings (seeds >= 500)


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


def train_planner(
    model_config: PlannerConfig,
    windows: LocalWindows,
    config: LocalTrainConfig = LocalTrainConfig(),
    progress: bool = True,
    name: str = "planner",
) -> tuple[LocalPlannerModel, dict[str, Any]]:
    """A planner trained on `windows`; returns it (on the CPU, in eval mode) and the run's summary."""
    rank, processes = _process()
    torch.manual_seed(config.seed)
    model = LocalPlannerModel(model_config)
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
        chosen = torch.randint(len(windows), (config.batch_size,), generator=_generator(config.seed, step))
        mine = list(range(rank, parts, processes))
        step_loss = 0.0
        for n, part in enumerate(mine):
            indices = chosen.chunk(parts)[part].numpy()
            last = n == len(mine) - 1
            with trained.no_sync() if processes > 1 and not last else nullcontext():
                loss, _ = trained(windows.batch(indices), _generator(config.seed, step, part))
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
        "windows": len(windows),
        "seconds": round(time.perf_counter() - started, 1),
        "first_loss": round(float(np.mean(losses[:20])), 4),
        "last_loss": round(float(np.mean(losses[-50:])), 4),
    }
    return model, summary


class _Objective(torch.nn.Module):
    """The planner's loss as a module's forward: DistributedDataParallel all-reduces what runs through forward."""

    def __init__(self, model: LocalPlannerModel) -> None:
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
) -> dict[str, Any]:
    """Train each variant on the dataset's buildings but the held-out seeds, score it on those, and write it to
    OUT/<variant>/. Raises ValueError for an unknown variant or an empty split."""
    if unknown := [v for v in variants if v not in PLANNER_VARIANTS]:
        raise ValueError(f"unknown planners {unknown}; choose from {', '.join(PLANNER_VARIANTS)}")
    held = pl.col("world_seed").is_in(list(holdout_seeds))
    train, test = LocalWindows(dataset, where=~held), LocalWindows(dataset, where=held)
    if not len(train) or not len(test):
        raise ValueError(f"held-out seeds leave {len(train)} windows to train on and {len(test)} to test on")
    rank, _ = _process()
    results: dict[str, Any] = {}
    for name in variants:
        model, summary = train_planner(PLANNER_VARIANTS[name], train, config, progress, name)
        summary["held_out"] = evaluate_planner(model, test, config)
        summary["data"] = {"dataset": str(dataset), "lake_version": train.manifest.lake_version,
                           "held_out_seeds": sorted({int(s) for s in test.index["world_seed"]})}  # fmt: skip
        if rank == 0:
            card = "\n".join(f"- {key}: {value}" for key, value in summary.items())
            model.save_pretrained(Path(out) / name, model_card_kwargs={"training": card})
        results[name] = summary
    return {"out": str(out), "config": asdict(config), "planners": results}
