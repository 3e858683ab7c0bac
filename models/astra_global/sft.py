"""Supervised fine-tuning of Astra-Global: teacher-forced cross-entropy on the answer tokens only.

Each step draws a batch of examples, appends each true answer (AnswerGrammar.encode, END included) to its prompt and
lets transformers' causal-LM loss average the next-token cross-entropy over the answer tokens; the prompt (map list,
image pads, instruction) is never a target. AdamW with linear warm-up and cosine decay, gradients clipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import get_cosine_schedule_with_warmup

from models.astra_global.model import AstraGlobal
from models.astra_global.prompts import Example


@dataclass(frozen=True)
class SFTConfig:
    steps: int = 1000
    batch_size: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_grad_norm: float = 1.0
    seed: int = 0


def sft_loss(model: AstraGlobal, examples: Sequence[Example]) -> torch.Tensor:
    """Mean cross-entropy of the true answers' tokens given their prompts."""
    inputs = model.inputs([e.query for e in examples], [model.answer_ids(e.answer) for e in examples])
    return model.model(**inputs).loss


def train_sft(
    model: AstraGlobal,
    examples: Sequence[Example],
    config: SFTConfig = SFTConfig(),
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train in place for config.steps batches of examples (shuffled epochs); the loss of every step."""
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    model.model.train()
    losses, order = [], []
    for step in range(config.steps):
        while len(order) < config.batch_size:  # epochs in random order, so a small set is seen evenly
            order += torch.randperm(len(examples), generator=generator).tolist()
        picks, order = order[: config.batch_size], order[config.batch_size :]
        loss = sft_loss(model, [examples[i] for i in picks])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.model.parameters(), config.max_grad_norm)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    return losses
