"""The candidate ranker: a small MLP over ``inference.ranker_features`` rows.

It re-scores the retrieval model's top candidates of one user. Inputs are standardised
inside the model (the training rows' mean and spread are buffers), so the exported
graph takes the raw rows that the online hook builds: ``features`` (B, R) float32 in,
``score`` (B,) out. The inner product also reaches the output through a linear skip, so
an untrained or undertrained ranker starts from the retrieval order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class CandidateRanker(nn.Module):
    """``features`` (B, R) -> ``score`` (B,).

    Args:
        width: Row width ``R`` (``inference.ranker_features.feature_width(dim)``).
        hidden: Hidden units of each of the two layers.
        dropout: Dropout between the layers in training.
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, width: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.width = width
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 1),
        )
        self.skip = nn.Linear(width, 1)

    def set_normalisation(self, rows: np.ndarray) -> None:
        """Standardise inputs by the mean and spread of training rows (R columns)."""
        flat = np.asarray(rows, dtype=np.float64).reshape(-1, self.width)
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(flat.mean(axis=0), dtype=torch.float32))
            self.scale.copy_(torch.as_tensor(np.maximum(flat.std(axis=0), 1e-3)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features - self.mean) / self.scale
        return (self.mlp(x) + self.skip(x)).squeeze(-1)
