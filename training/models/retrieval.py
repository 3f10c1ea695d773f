"""The two-tower retrieval model: item tower and user encoder trained jointly.

Training is next-item prediction, with one of two objectives:

- ``last``: for each training event, the history the online side would have held just
  before it is encoded and the event's item is the positive (one prediction per history);
- ``causal``: a window of a user's consecutive events goes through a causal encoder once
  and the next item is predicted at every position (SASRec's objective), so one forward
  pass yields up to ``N`` predictions.

The softmax runs over every item for small catalogs, else over the batch's items plus
uniformly sampled negatives with a logQ correction for how often popular items appear
among the in-batch candidates.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.data import HistoryBatch, InteractionLog
from training.evaluation.protocols import EvalCases
from training.models.item_tower import ItemTower
from training.models.user_encoder import UserEncoder


def id_index_of(log: InteractionLog, train: np.ndarray) -> np.ndarray:
    """ID-table row of each item code: 1.. for items with training events, else 0."""
    has = np.zeros(log.n_items, dtype=bool)
    has[log.items[train]] = True
    index = np.zeros(log.n_items, dtype=np.int64)
    index[has] = np.arange(1, int(has.sum()) + 1)
    return index


class RetrievalModel(nn.Module):
    """Item tower + user encoder over one log's item codes."""

    id_index: torch.Tensor
    features: torch.Tensor

    def __init__(
        self,
        id_index: np.ndarray,
        item_features: np.ndarray,
        buckets: int,
        dim: int,
        history_len: int,
        n_types: int,
        layers: int = 2,
        heads: int = 2,
        dropout: float = 0.1,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("id_index", torch.as_tensor(id_index, dtype=torch.long))
        self.register_buffer("features", torch.as_tensor(item_features, dtype=torch.long))
        self.items = ItemTower(int(id_index.max(initial=0)), buckets, dim, dropout)
        self.users = UserEncoder(dim, history_len, n_types, layers, heads, dropout, causal)
        self.dim = dim
        self.history_len = history_len

    def item_vectors(self, codes: torch.Tensor, id_dropout: float = 0.0) -> torch.Tensor:
        """Vectors (len(codes), D) of item codes, dropping IDs with prob ``id_dropout``."""
        ids = self.id_index[codes]
        if id_dropout > 0:
            keep = torch.rand(ids.shape, device=ids.device) >= id_dropout
            ids = ids * keep
        return self.items(ids, self.features[codes])

    @torch.no_grad()
    def all_item_vectors(self, batch: int = 8192) -> np.ndarray:
        """The item matrix (I, D) float32 in eval mode (cold items by content only)."""
        was = self.training
        self.eval()
        n = int(self.id_index.shape[0])
        out = [
            self.item_vectors(torch.arange(s, min(s + batch, n))).numpy()
            for s in range(0, n, batch)
        ]
        self.train(was)
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode(self, vecs: torch.Tensor, hist: HistoryBatch) -> torch.Tensor:
        """User vectors from history item vectors (B, N, D) and the history's other fields."""
        return self.users(
            vecs,
            torch.as_tensor(hist.types, dtype=torch.long),
            torch.as_tensor(hist.gaps),
            torch.as_tensor(hist.mask),
        )

    def loss(
        self,
        hist: HistoryBatch,
        targets: np.ndarray,
        log_popularity: torch.Tensor,
        temperature: float,
        id_dropout: float,
        negatives: np.ndarray | None,
    ) -> torch.Tensor:
        """Softmax cross-entropy of each target against the candidates.

        Args:
            hist: Histories before each target.
            targets: (B,) item codes.
            log_popularity: (I,) log of each item's share of training targets.
            temperature: Softmax temperature on cosine scores.
            id_dropout: Probability of replacing an item's ID with the no-ID row.
            negatives: Uniform sampled negatives, or None for a full softmax.
        """
        valid = hist.mask > 0
        cand, vecs, pos_of = self._candidates(hist.items[valid], targets, id_dropout, negatives)
        users = self.encode(self._history_vectors(hist, vecs, pos_of), hist)
        in_batch = int(valid.sum()) + targets.shape[0]
        return self._softmax_loss(
            users, targets, cand, vecs, pos_of, log_popularity, temperature, negatives, in_batch
        )

    def sequence_loss(
        self,
        hist: HistoryBatch,
        targets: np.ndarray,
        log_popularity: torch.Tensor,
        temperature: float,
        id_dropout: float,
        negatives: np.ndarray | None,
    ) -> torch.Tensor:
        """Mean cross-entropy of the next item at every position of causal windows.

        Args:
            hist: (W, N) windows of consecutive events of one user each.
            targets: (W, N) the item after each position, -1 where there is none.
            log_popularity, temperature, id_dropout, negatives: As in ``loss``.
        """
        if not self.users.causal:
            raise ValueError("the sequence objective needs a causal user encoder")
        predict = targets >= 0
        valid = hist.mask > 0
        cand, vecs, pos_of = self._candidates(
            hist.items[valid], targets[predict], id_dropout, negatives
        )
        states = self.users.states(
            self._history_vectors(hist, vecs, pos_of),
            torch.as_tensor(hist.types, dtype=torch.long),
            torch.as_tensor(hist.gaps),
            torch.as_tensor(hist.mask),
        )
        users = F.normalize(states[torch.as_tensor(predict)], dim=-1)
        in_batch = int(valid.sum() + predict.sum())
        return self._softmax_loss(
            users,
            targets[predict],
            cand,
            vecs,
            pos_of,
            log_popularity,
            temperature,
            negatives,
            in_batch,
        )

    def _candidates(
        self,
        history_items: np.ndarray,
        targets: np.ndarray,
        id_dropout: float,
        negatives: np.ndarray | None,
    ) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
        """Candidate codes, their vectors, and each item code's row among them (-1: none)."""
        n_items = int(self.id_index.shape[0])
        if negatives is None:
            cand = np.arange(n_items)
        else:
            cand = np.unique(np.concatenate([history_items, targets, negatives]))
        vecs = self.item_vectors(torch.as_tensor(cand), id_dropout)
        pos_of = np.full(n_items, -1, dtype=np.int64)
        pos_of[cand] = np.arange(cand.shape[0])
        return cand, vecs, pos_of

    @staticmethod
    def _history_vectors(
        hist: HistoryBatch, vecs: torch.Tensor, pos_of: np.ndarray
    ) -> torch.Tensor:
        """(B, N, D) vectors of the history items, zero on padding."""
        valid = hist.mask > 0
        rows = torch.as_tensor(np.where(valid, pos_of[np.clip(hist.items, 0, None)], 0))
        return vecs[rows] * torch.as_tensor(hist.mask).unsqueeze(-1)

    def _softmax_loss(
        self,
        users: torch.Tensor,
        targets: np.ndarray,
        cand: np.ndarray,
        vecs: torch.Tensor,
        pos_of: np.ndarray,
        log_popularity: torch.Tensor,
        temperature: float,
        negatives: np.ndarray | None,
        in_batch: int,
    ) -> torch.Tensor:
        """Cross-entropy of (P, D) user vectors against the candidates, targets positive.

        ``in_batch`` counts the item occurrences (history and targets) that put items
        among the candidates, for the sampled softmax's logQ correction.
        """
        logits = (users / temperature) @ vecs.T
        if negatives is not None:
            # In-batch candidates turn up in proportion to popularity: correct for it.
            n_items = int(self.id_index.shape[0])
            uniform = negatives.shape[0] / n_items
            expected = torch.exp(log_popularity[cand]) * float(in_batch) + uniform
            logits = logits - torch.log(expected.clamp(max=1.0) + 1e-9)
        return F.cross_entropy(logits, torch.as_tensor(pos_of[targets]))


def fit_length(hist: HistoryBatch, n: int) -> HistoryBatch:
    """The last ``n`` positions of a history batch, left-padded when it is shorter."""
    length = hist.items.shape[1]
    if length >= n:
        return HistoryBatch(
            *(a[:, length - n :] for a in (hist.items, hist.types, hist.gaps, hist.mask))
        )
    pad = ((0, 0), (n - length, 0))
    return HistoryBatch(
        np.pad(hist.items, pad, constant_values=-1),
        np.pad(hist.types, pad),
        np.pad(hist.gaps, pad),
        np.pad(hist.mask, pad),
    )


class TorchScorer:
    """Scores cases with a trained model (the protocol's ``Scorer``)."""

    name = "user-encoder"

    def __init__(self, model: RetrievalModel) -> None:
        self.model = model
        self.vectors = model.all_item_vectors()

    @torch.no_grad()
    def score(self, cases: EvalCases) -> np.ndarray:
        hist = fit_length(cases.history, self.model.history_len)
        was = self.model.training
        self.model.eval()
        vecs = self.vectors[np.clip(hist.items, 0, None)] * hist.mask[:, :, None]
        users = self.model.encode(torch.as_tensor(vecs), hist).numpy()
        self.model.train(was)
        return users @ self.vectors.T
