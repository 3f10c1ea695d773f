"""Item tower: ID embedding plus hashed-content embedding, trained with ID dropout.

An item's vector is ``normalize(content(features) + id_embedding(id))``. Row 0 of the ID
table is a fixed zero vector, used for items without training interactions; ID dropout
replaces real ids with 0 during training, so the content path alone learns to place an
item well (item cold start). The content path by itself is exported as
``item_content.onnx`` and gives exactly the vector a no-ID item has in the item matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ItemTower(nn.Module):
    """Item vectors from (ID index, hashed feature ids).

    Args:
        n_ids: Items with a learned ID embedding; index 0 means 'no ID'.
        buckets: Size of the hashed feature vocabulary (id 0 is padding).
        dim: Output width ``D``.
        dropout: Dropout inside the content MLP.
    """

    def __init__(self, n_ids: int, buckets: int, dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.id_emb = nn.Embedding(n_ids + 1, dim, padding_idx=0)
        self.feat_emb = nn.Embedding(buckets, dim, padding_idx=0)
        self.content_mlp = nn.Sequential(
            nn.Linear(dim, dim * 2), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * 2, dim)
        )
        nn.init.normal_(self.id_emb.weight, std=0.05)
        nn.init.normal_(self.feat_emb.weight, std=0.1)
        with torch.no_grad():
            self.id_emb.weight[0].zero_()
            self.feat_emb.weight[0].zero_()

    def content(self, feature_ids: torch.Tensor) -> torch.Tensor:
        """Un-normalised content vector (B, D) from padded feature ids (B, F)."""
        # Row 0 (padding) is zero and never trained, so a plain sum skips the padding.
        present = (feature_ids > 0).to(torch.float32).sum(dim=1, keepdim=True)
        pooled = self.feat_emb(feature_ids).sum(dim=1) / present.clamp(min=1.0)
        return self.content_mlp(pooled)

    def forward(self, id_index: torch.Tensor, feature_ids: torch.Tensor) -> torch.Tensor:
        """L2-normalised item vectors (B, D); ``id_index`` 0 means content only."""
        return F.normalize(self.content(feature_ids) + self.id_emb(id_index), dim=-1)


class ContentOnly(nn.Module):
    """The exported cold-start path: ``feature_ids`` (B, F) int64 -> ``item_vec`` (B, D)."""

    def __init__(self, tower: ItemTower) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, feature_ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.tower.content(feature_ids), dim=-1)
