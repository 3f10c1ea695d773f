"""Ranking and beyond-accuracy metrics: pure numpy over whole batches.

Two families, both usable one event at a time (B = 1) by a prequential benchmark:

- *Rank-based* (one held-out item per case): ``target_ranks`` turns a score matrix into
  the 0-based rank of each case's target, and ``hits``/``ndcg_gains``/
  ``reciprocal_ranks`` give per-case values to average or accumulate.
- *List-based* (recommended id lists (B, K)): ``recall_at_k``/``ndcg_at_k`` against sets
  of relevant items, and catalog coverage, long-tail share, novelty, intra-list diversity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target among its row's scores: (B,) int64.

    Ties count against the target (an item scoring the same is ranked ahead of it), so
    a scorer that gives every item the same score gets the worst rank, not the best.
    Excluded items should carry ``-inf``; a target that is itself ``-inf`` ranks last.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    rows = np.arange(scores.shape[0])
    mine = scores[rows, targets]
    ahead = (scores >= mine[:, None]).sum(axis=1) - 1
    return np.where(np.isneginf(mine), scores.shape[1] - 1, ahead).astype(np.int64)


def hits(ranks: np.ndarray, k: int) -> np.ndarray:
    """1.0 where the target is in the top ``k``, else 0.0 (HR@K = Recall@K, one target)."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-case NDCG@K with one relevant item: ``1/log2(rank + 2)`` inside the top ``k``."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def reciprocal_ranks(ranks: np.ndarray, k: int | None = None) -> np.ndarray:
    """Per-case ``1/(rank + 1)``, zero beyond ``k`` when given."""
    ranks = np.asarray(ranks, dtype=np.float64)
    rr = 1.0 / (ranks + 1.0)
    return rr if k is None else np.where(ranks < k, rr, 0.0)


def hit_rate_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of cases whose target is in the top ``k``."""
    return _mean(hits(ranks, k))


def ndcg_from_ranks(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@K with one relevant item per case."""
    return _mean(ndcg_gains(ranks, k))


def mrr(ranks: np.ndarray, k: int | None = None) -> float:
    """Mean reciprocal rank (cut at ``k`` when given)."""
    return _mean(reciprocal_ranks(ranks, k))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores of each row, best first: (B, k)."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def recall_at_k(recommended: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Mean share of each case's relevant items found in its top ``k``; empty sets skipped."""
    values = [
        len(set(row[:k].tolist()) & rel) / len(rel)
        for row, rel in zip(recommended, relevant, strict=True)
        if rel
    ]
    return _mean(np.asarray(values))


def ndcg_at_k(recommended: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Mean binary NDCG@K of recommended lists against sets of relevant items."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    values = []
    for row, rel in zip(recommended, relevant, strict=True):
        if not rel:
            continue
        gains = np.array([1.0 if int(i) in rel else 0.0 for i in row[:k]])
        ideal = discounts[: min(len(rel), k)].sum()
        values.append(float((gains * discounts[: gains.shape[0]]).sum() / ideal))
    return _mean(np.asarray(values))


def catalog_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one recommended list."""
    rec = np.asarray(recommended)
    if n_items <= 0 or rec.size == 0:
        return 0.0
    return float(np.unique(rec[rec >= 0]).shape[0] / n_items)


def head_items(popularity: np.ndarray, share: float = 0.8) -> np.ndarray:
    """Mask of the head: the most popular items that together hold ``share`` of interactions.

    Items are added in order of popularity until their cumulative share reaches
    ``share``; the item that crosses the line belongs to the head.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    mask = np.zeros(pop.shape[0], dtype=bool)
    total = pop.sum()
    if total <= 0:
        return mask
    order = np.argsort(-pop, kind="stable")
    cum = np.cumsum(pop[order]) / total
    n_head = int(np.searchsorted(cum, share - 1e-12) + 1)
    mask[order[:n_head]] = True
    return mask


def long_tail_share(recommended: np.ndarray, head_mask: np.ndarray) -> float:
    """Share of recommended slots filled by items outside the head."""
    rec = np.asarray(recommended)
    rec = rec[rec >= 0]
    return float((~head_mask[rec]).mean()) if rec.size else 0.0


def novelty(recommended: np.ndarray, popularity: np.ndarray) -> float:
    """Mean self-information ``-log2 p(i)`` of recommended items, p from popularity.

    Unseen items get half an interaction so they are finite and the most novel.
    """
    pop = np.maximum(np.asarray(popularity, dtype=np.float64), 0.5)
    prob = pop / pop.sum()
    rec = np.asarray(recommended)
    rec = rec[rec >= 0]
    return float(-np.log2(prob[rec]).mean()) if rec.size else 0.0


def intra_list_diversity(recommended: np.ndarray, item_vectors: np.ndarray) -> float:
    """Mean over lists of the mean pairwise cosine distance ``1 - cos`` between items."""
    rec = np.asarray(recommended)
    if rec.ndim != 2 or rec.shape[1] < 2:
        return 0.0
    vecs = np.asarray(item_vectors, dtype=np.float64)[rec]
    vecs /= np.maximum(np.linalg.norm(vecs, axis=2, keepdims=True), 1e-12)
    sims = np.einsum("bkd,bld->bkl", vecs, vecs)
    k = rec.shape[1]
    off = (sims.sum(axis=(1, 2)) - np.trace(sims, axis1=1, axis2=2)) / (k * (k - 1))
    return float((1.0 - off).mean())


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0
