"""Supervised fine-tuning of Astra-Global: teacher-forced cross-entropy on the answer tokens only.

Each step draws a batch of examples, all with pictures or all text only (text goals: short prompts that would
otherwise be padded to a picture prompt's length), appends each true answer (AnswerGrammar.encode, END included) to
its prompt and lets transformers' causal-LM loss average the next-token cross-entropy over the answer tokens; the
prompt (map list, image pads, instruction) is never a target. AdamW with linear warm-up and cosine decay, gradients
clipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import get_cosine_schedule_with_warmup

from models.astra_global.model import AstraGlobal
from models.astra_global.prompts import Example


@dataclass(frozen=True)
class SFTConfig:
    steps: int = 1000
    batch_size: int = 8
    text_batch_size: int = 16  # text-only prompts are a tenth as long, so their batches hold more
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
    """Train in place for config.steps batches of examples (sft_batches); the loss of every step."""
    optimizer = torch.optim.AdamW(model.model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    model.model.train()
    losses = []
    for step, picks in zip(range(config.steps), sft_batches(examples, config), strict=False):
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


def sft_batches(examples: Sequence[Example], config: SFTConfig) -> Iterator[list[int]]:
    """Endless batches of example indices: each all with pictures (config.batch_size) or all text only
    (config.text_batch_size). Each kind goes through its examples in shuffled epochs, so a small set is seen evenly,
    and a batch's kind is drawn in proportion to that kind's batches per epoch, so both kinds' epochs keep pace."""
    generator = torch.Generator().manual_seed(config.seed)
    kinds = [[i for i, e in enumerate(examples) if bool(e.query.all_images) is pictures] for pictures in (True, False)]
    sizes = (config.batch_size, config.text_batch_size)
    streams = [(members, size) for members, size in zip(kinds, sizes, strict=True) if members]
    weights = torch.tensor([len(members) / size for members, size in streams])
    orders: list[list[int]] = [[] for _ in streams]
    while True:
        kind = int(torch.multinomial(weights, 1, generator=generator))
        members, size = streams[kind]
        while len(orders[kind]) < size:
            orders[kind] += [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
        yield orders[kind][:size]
        orders[kind] = orders[kind][size:]
