"""User encoder: self-attention over the user's recent typed history of item vectors.

Inputs are what the online side keeps per user: the vectors of the last ``N`` items
(rows of the item matrix, or content-only vectors for cold items), their event types,
``log1p`` seconds since each event, and a mask; history runs oldest to newest and is
padded on the left, so position ``N-1`` is always the most recent event. The output is
the L2-normalised state at that position; a user with no history gets a learned vector.

A causal encoder lets each position attend only to itself and earlier positions, so
``states`` gives, in one pass, the user vector after every prefix of the history: the
trainer predicts the next item at every position (as SASRec does), and serving reads the
last one. Its gap input is then ignored: gaps are measured back from the newest event,
so at an earlier position they would reveal when later events happened.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class AttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention and feed-forward, written out for plain export."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, dim * 2), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * 2, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """Attention with an additive ``key_bias`` (B or 1, 1, N or 1, N) on the logits."""
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        q = q.reshape(b, n, h, d // h).transpose(1, 2)
        k = k.reshape(b, n, h, d // h).transpose(1, 2)
        v = v.reshape(b, n, h, d // h).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // h) + key_bias
        att = self.drop(torch.softmax(att, dim=-1))
        out = (att @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.drop(self.proj(out))
        return x + self.drop(self.ff(self.norm2(x)))


class UserEncoder(nn.Module):
    """(item_vecs, types, gaps, mask) -> L2-normalised user vector (B, D).

    Args:
        dim: Width ``D`` of item and user vectors.
        history_len: ``N``, the number of history positions.
        n_types: Size of the event-type vocabulary (0 is padding).
        layers: Attention blocks.
        heads: Attention heads (must divide ``dim``).
        dropout: Dropout rate in training.
        causal: Each position sees only itself and earlier positions (gaps unused).
    """

    causal_bias: torch.Tensor

    def __init__(
        self,
        dim: int,
        history_len: int,
        n_types: int,
        layers: int = 2,
        heads: int = 2,
        dropout: float = 0.1,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.causal = causal
        upper = torch.triu(torch.ones(history_len, history_len), diagonal=1)
        bias = (upper * -1e4).view(1, 1, history_len, history_len)
        self.register_buffer("causal_bias", bias, persistent=False)
        self.item_proj = nn.Linear(dim, dim)
        self.type_emb = nn.Embedding(n_types, dim, padding_idx=0)
        self.pos_emb = nn.Parameter(torch.randn(history_len, dim) * 0.02)
        self.gap_proj = nn.Linear(2, dim)
        self.blocks = nn.ModuleList(AttentionBlock(dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)
        self.empty = nn.Parameter(torch.randn(dim) * 0.05)
        self.drop = nn.Dropout(dropout)

    def states(
        self,
        item_vecs: torch.Tensor,
        types: torch.Tensor,
        gaps: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Un-normalised user state after each position (B, N, D)."""
        x = self.item_proj(item_vecs) + self.type_emb(types) + self.pos_emb
        if self.causal:
            # Keep the input in the graph (the exported contract has four inputs).
            x = x + 0.0 * gaps.unsqueeze(-1)
        else:
            g = (gaps / 10.0).unsqueeze(-1)
            x = x + self.gap_proj(torch.cat([g, g * g], dim=-1))
        x = self.drop(x) * mask.unsqueeze(-1)
        key_bias = ((mask - 1.0) * 1e4).unsqueeze(1).unsqueeze(1)  # (B, 1, 1, N)
        if self.causal:
            key_bias = key_bias + self.causal_bias
        for block in self.blocks:
            # Padding rows attend everywhere (all their keys are masked): zero them.
            x = block(x, key_bias) * mask.unsqueeze(-1)
        return self.out(self.norm(x)) + item_vecs

    def forward(
        self,
        item_vecs: torch.Tensor,
        types: torch.Tensor,
        gaps: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        last = self.states(item_vecs, types, gaps, mask)[:, -1]
        has_history = mask.amax(dim=1, keepdim=True)
        user = has_history * last + (1.0 - has_history) * self.empty
        return F.normalize(user, dim=-1)
