"""Attention of Astra-Local's transformer: its masks, as bool (N, N) matrices, True where query token i may attend to
key j (scaled_dot_product_attention's convention), and a small pre-norm transformer that runs under them.

Trajectory attention (CUHK Astra, Astra-Local's planner): the sequence is cut into segments, one per frame, each
holding that frame's observation, state and action tokens. A token sees every token of its own segment (both ways)
and every token of earlier segments, never a later one: within a frame the tokens describe one instant together,
across frames the past cannot look at the future. The causal mask is the plain token-level one, the ablation.

Under either mask the tokens before the first one being sampled may not depend on it (`independent_prefix`), so
a sampler runs them once and keeps their keys and values while it iterates on the rest (`MaskedTransformer.forward`
with `past`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KeyValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values (N, heads, L, head dim)


def trajectory_attention_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """(N, N) bool from (N,) non-decreasing segment ids: token i may attend to token j when segment(j) <= segment(i)."""
    if segment_ids.ndim != 1:
        raise ValueError(f"segment ids must be one row, got shape {tuple(segment_ids.shape)}")
    if (segment_ids.diff() < 0).any():
        raise ValueError("segment ids must not decrease along the sequence")
    return segment_ids[None, :] <= segment_ids[:, None]


def causal_attention_mask(length: int) -> torch.Tensor:
    """(length, length) bool: token i may attend to tokens 0..i."""
    return torch.ones(length, length, dtype=torch.bool).tril()


def independent_prefix(mask: torch.Tensor, varying_from: int) -> int:
    """The longest prefix of tokens, none from `varying_from` on, that attends to nothing after itself: its outputs
    stay the same whatever the later tokens are."""
    prefix = varying_from
    while mask[:prefix, prefix:].any():
        prefix -= 1
    return prefix


class TransformerBlock(nn.Module):
    """Pre-norm masked self-attention and a GELU MLP; the attention also reads earlier tokens' keys and values."""

    def __init__(self, d_model: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.mlp_norm = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(), nn.Linear(mlp_ratio * d_model, d_model)
        )

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor | None, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """tokens (N, L, d); mask (L, P + L) over the P past tokens then these; -> (tokens, all keys and values)."""
        n, length, d = tokens.shape
        qkv = self.qkv(self.attention_norm(tokens)).reshape(n, length, 3, self.heads, d // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        if past is not None:
            key, value = torch.cat([past[0], key], dim=2), torch.cat([past[1], value], dim=2)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        tokens = tokens + self.out(attended.transpose(1, 2).reshape(n, length, d))
        return tokens + self.mlp(self.mlp_norm(tokens)), (key, value)


class MaskedTransformer(nn.Module):
    """A stack of `TransformerBlock`s and a final LayerNorm."""

    def __init__(self, d_model: int, heads: int, layers: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TransformerBlock(d_model, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor | None = None, past: KeyValues | None = None
    ) -> tuple[torch.Tensor, KeyValues]:
        """tokens (N, L, d) -> (N, L, d), and every layer's keys and values of the past and these tokens.

        mask (L, P + L), True = may attend (None: all), over the P tokens whose keys and values `past` holds (as a
        previous call returned them), then these."""
        key_values = []
        for layer, block in enumerate(self.blocks):
            tokens, layer_key_values = block(tokens, mask, None if past is None else past[layer])
            key_values.append(layer_key_values)
        return self.norm(tokens), key_values
