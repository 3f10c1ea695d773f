"""Baselines scored by the same protocol code as the models: popular, trending, item-kNN."""

from __future__ import annotations

import numpy as np

from training.data import InteractionLog
from training.evaluation.protocols import EvalCases


class MostPopular:
    """Every user gets the items with the most weighted interactions in training."""

    name = "most-popular"

    def __init__(self, log: InteractionLog, train: np.ndarray) -> None:
        self.popularity = log.popularity(train).astype(np.float64)

    def score(self, cases: EvalCases) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(cases), self.popularity.shape[0])).copy()


class Trending:
    """Weighted interactions decayed by age at the end of training (half-life in hours)."""

    name = "trending"

    def __init__(self, log: InteractionLog, train: np.ndarray, half_life_h: float = 24.0) -> None:
        end = log.ts[train].max() if train.size else 0
        age_h = (end - log.ts[train]) / 3_600_000.0
        w = log.weights[train] * np.power(0.5, age_h / half_life_h)
        self.scores = np.bincount(log.items[train], weights=w, minlength=log.n_items)

    def score(self, cases: EvalCases) -> np.ndarray:
        return np.broadcast_to(self.scores, (len(cases), self.scores.shape[0])).copy()


class ItemKNN:
    """Items that follow or precede the user's recent items in other users' sequences.

    Similarity is the cosine of co-occurrence counts within ``window`` consecutive
    events of a user's training history; each item keeps its ``neighbours`` best. A
    case scores the neighbours of its last ``recent`` items, newer items weighing more.
    Falls back to popularity (tiny weight) so that every item has a score.
    """

    name = "item-knn"

    def __init__(
        self,
        log: InteractionLog,
        train: np.ndarray,
        window: int = 5,
        neighbours: int = 100,
        recent: int = 10,
        recency_decay: float = 0.8,
    ) -> None:
        self.recent = recent
        self.decay = recency_decay
        n = log.n_items
        train = np.sort(train)
        users = log.users[train]
        items = log.items[train]
        order = np.argsort(users, kind="stable")
        users, items = users[order], items[order]
        keys = []
        for d in range(1, window + 1):
            same = users[d:] == users[:-d]
            a, b = items[:-d][same], items[d:][same]
            keep = a != b
            keys.append(a[keep] * n + b[keep])
            keys.append(b[keep] * n + a[keep])
        flat = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
        pairs, counts = np.unique(flat, return_counts=True)
        rows, cols = pairs // n, pairs % n
        occ = np.bincount(items, minlength=n).astype(np.float64)
        sims = counts / np.sqrt(np.maximum(occ[rows] * occ[cols], 1.0))
        order = np.lexsort((-sims, rows))
        rows, cols, sims = rows[order], cols[order], sims[order]
        starts = np.searchsorted(rows, np.arange(n))
        rank = np.arange(rows.shape[0]) - starts[rows]
        keep = rank < neighbours
        self.nbr = -np.ones((n, neighbours), dtype=np.int64)
        self.sim = np.zeros((n, neighbours), dtype=np.float64)
        self.nbr[rows[keep], rank[keep]] = cols[keep]
        self.sim[rows[keep], rank[keep]] = sims[keep]
        pop = log.popularity(train).astype(np.float64)
        self.prior = 1e-6 * pop / max(pop.max(), 1.0)

    def score(self, cases: EvalCases) -> np.ndarray:
        b = len(cases)
        out = np.broadcast_to(self.prior, (b, self.prior.shape[0])).copy()
        hist = cases.history.items[:, -self.recent :]
        length = hist.shape[1]
        weight = self.decay ** np.arange(length - 1, -1, -1)
        valid = hist >= 0
        nbr = self.nbr[np.clip(hist, 0, None)]  # (B, L, M)
        sim = self.sim[np.clip(hist, 0, None)] * (valid * weight)[:, :, None]
        ok = nbr >= 0
        rows = np.broadcast_to(np.arange(b)[:, None, None], nbr.shape)
        np.add.at(out, (rows[ok], nbr[ok]), sim[ok])
        return out


def fit_baselines(log: InteractionLog, train: np.ndarray) -> list[MostPopular | Trending | ItemKNN]:
    """The three baselines fitted on the training events."""
    return [MostPopular(log, train), Trending(log, train), ItemKNN(log, train)]
