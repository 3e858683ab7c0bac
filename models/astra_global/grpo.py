"""Group relative policy optimisation of Astra-Global with the rule rewards (models.astra_global.rewards).

Each step draws `queries_per_step` examples and, for each, samples a group of `group_size` answers from the policy at
`temperature`. Every answer is parsed and scored against the truth; its advantage is its reward minus the group's
mean, divided by the group's standard deviation (+1e-4). The policy then takes `iterations` clipped policy-gradient
steps on those samples with a KL penalty to the frozen reference (the SFT model):

    ratio  = exp(logp - logp_old)                                        per answer token
    loss_t = -min(ratio·A, clip(ratio, 1-ε, 1+ε)·A) + β·KL_t,   KL_t = exp(ref - logp) - (ref - logp) - 1   (k3)
    loss   = Σ_t loss_t / (answer tokens in the batch)

Checked against TRL's GRPOTrainer (github.com/huggingface/trl, trl/trainer/grpo_trainer.py at f2cd577,
`_generate_and_score_completions` and `_compute_loss`); this loop follows it in:
- advantages: (r - group mean) / (group std + 1e-4), the std unbiased (its default scale_rewards="group");
- the KL estimator k3 per token, added to the per-token loss with weight β (its `per_token_kl`);
- two-sided clipping of the token-level ratio with ε = 0.2 (epsilon_low = epsilon_high);
- log-probabilities of the logits divided by the sampling temperature;
- (beside TRL) sampling and scoring both restrict the softmax to the answer vocabulary (AstraGlobal.unsayable);
- completions masked after their first end token, which counts;
- loss aggregation over all answer tokens of the batch (its default loss_type="dapo"), so a long answer (many seen
  landmarks) weighs by its tokens rather than as one sequence.
It differs in: β defaults to 0.04 here (TRL's default is 0, no reference model): the issue asks for a KL term to the
SFT model; one process and no vLLM, so no importance-sampling correction; no entropy bonus or masks; with
`iterations` = 1 (TRL's default num_iterations) the ratio is 1 and clipping only matters for iterations > 1.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from models.astra_global.model import IGNORE, AstraGlobal
from models.astra_global.prompts import Example
from models.astra_global.rewards import RewardConfig, score


@dataclass(frozen=True)
class GRPOConfig:
    steps: int = 200
    queries_per_step: int = 4
    group_size: int = 8
    learning_rate: float = 1e-5
    beta: float = 0.04  # weight of the KL penalty to the reference model
    epsilon: float = 0.2  # clipping range of the probability ratio
    iterations: int = 1  # optimiser steps per sampled batch (TRL's num_iterations, μ in the GRPO paper)
    temperature: float = 1.0
    max_new_tokens: int = 48
    max_grad_norm: float = 1.0
    rewards: RewardConfig = field(default_factory=RewardConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"a group needs at least 2 answers to compare, got group_size={self.group_size}")


@dataclass(frozen=True)
class GRPOStep:
    """What one step saw: the mean and spread of the sampled answers' rewards, the share that parsed, the mean KL
    to the reference and the share of answer tokens whose ratio was clipped."""

    reward: float
    reward_std: float
    format: float
    kl: float
    clipped: float


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(r - group mean) / (group std + 1e-4) for rewards laid out group after group; 0 where a group agrees."""
    groups = rewards.view(-1, group_size)
    advantages = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-4)
    return advantages.flatten()


def answer_logps(model: AstraGlobal, inputs: dict, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the appended answer tokens (model.inputs with completions) and their mask, (B, T)."""
    labels = inputs["labels"]
    width = int((labels != IGNORE).sum(1).max())
    model_inputs = {key: value for key, value in inputs.items() if key != "labels"}
    logits = model.model(**model_inputs, logits_to_keep=width + 1).logits[:, :-1].float() / temperature
    logits = model.answer_logits(logits)
    targets = labels[:, -width:]
    mask = targets != IGNORE
    logps = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    # Padding scores as the (unsayable) pad token at -inf; zero it so that masked sums stay finite.
    return logps.masked_fill(~mask, 0.0), mask


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clipped surrogate with the k3 KL penalty, averaged over answer tokens; also the mean KL and the share of
    tokens clipped. logps and the rest are (B, T) over answer tokens; advantages (B,)."""
    ratio = torch.exp(logps - old_logps)
    advantage = advantages.unsqueeze(1)
    surrogate = torch.min(ratio * advantage, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantage)
    kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
    per_token = -surrogate + beta * kl
    tokens = mask.sum().clamp(min=1)
    clipped = ((ratio < 1 - epsilon) & (advantage < 0)) | ((ratio > 1 + epsilon) & (advantage > 0))
    return (per_token * mask).sum() / tokens, (kl * mask).sum() / tokens, (clipped & mask).sum() / tokens


def train_grpo(
    policy: AstraGlobal,
    examples: Sequence[Example],
    config: GRPOConfig = GRPOConfig(),
    reference: AstraGlobal | None = None,
    on_step: Callable[[int, GRPOStep], None] | None = None,
) -> list[GRPOStep]:
    """Train the policy in place; the reference defaults to a frozen copy of the policy as it starts (the SFT
    model). Seeds torch's global generator (sampling uses it)."""
    torch.manual_seed(config.seed)
    if reference is None:
        reference = AstraGlobal(copy.deepcopy(policy.model), policy.tokenizer, policy.image_processor, policy.grammar)
    reference.model.eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for step in range(config.steps):
        picks = torch.randperm(len(examples), generator=generator)[: config.queries_per_step].tolist()
        batch = [examples[i] for i in picks for _ in range(config.group_size)]
        queries = [example.query for example in batch]
        completions = policy.generate(queries, config.max_new_tokens, temperature=config.temperature)
        rewards = [score(policy.parse(c), e.answer, config.rewards) for c, e in zip(completions, batch, strict=True)]
        totals = torch.tensor([r.total for r in rewards])
        advantages = group_advantages(totals, config.group_size).to(policy.device)
        inputs = policy.inputs(queries, completions)
        policy.model.train()
        with torch.no_grad():
            ref_logps, _ = answer_logps(reference, inputs, config.temperature)
            # With one iteration the samples are on-policy: the old log-probabilities are the current ones.
            old_logps = answer_logps(policy, inputs, config.temperature)[0] if config.iterations > 1 else None
        for _ in range(config.iterations):
            logps, mask = answer_logps(policy, inputs, config.temperature)
            loss, kl, clipped = grpo_loss(
                logps,
                logps.detach() if old_logps is None else old_logps,
                ref_logps,
                advantages,
                mask,
                config.epsilon,
                config.beta,
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.model.parameters(), config.max_grad_norm)
            optimizer.step()
        history.append(
            GRPOStep(
                reward=totals.mean().item(),
                reward_std=totals.std().item(),
                format=sum(r.format for r in rewards) / len(rewards),
                kl=kl.item(),
                clipped=clipped.item(),
            )
        )
        if on_step is not None:
            on_step(step, history[-1])
    return history
