"""The candidate ranker's training cases: what the online side knew, and its candidates.

A ranker case is one held-out interaction: the retrieval model's top ``C`` unseen items
for the user's history just before it, with the online hook's ``features`` rebuilt
from the log as the worker would have seen them at the case's time (popularity and
trending from earlier events only, item age from first sight). ``training.ranker_train``
fits and gates the ranker on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from inference.ranker_features import candidate_features
from training.data import InteractionLog
from training.evaluation.protocols import EvalCases, take
from training.models.retrieval import RetrievalModel, fit_length


@dataclass(frozen=True)
class RankerConfig:
    """Hyperparameters of the ranker and of its training cases.

    Attributes:
        candidates: ``C``, retrieval candidates re-scored per case (the online default).
        hidden, dropout: MLP width and dropout.
        epochs, patience: Most epochs; stop after ``patience`` without a better hold-out.
        batch_cases: Cases per step (each a softmax over its ``C`` candidates).
        lr, weight_decay: AdamW settings.
        holdout: Latest share of the ranker's cases kept for early stopping and the gate.
        max_cases: Cap on ranker cases (the latest are kept).
        buckets: Time steps at which popularity and trending are recomputed.
        trending_k, trending_half_life_s: The trending list, as the worker keeps it.
        seed: Seeds numpy and torch.
        threads: torch intra-op threads.
    """

    candidates: int = 200
    hidden: int = 64
    dropout: float = 0.1
    epochs: int = 30
    patience: int = 4
    batch_cases: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    holdout: float = 0.2
    max_cases: int | None = 30_000
    buckets: int = 128
    trending_k: int = 200
    trending_half_life_s: float = 6 * 3600.0
    seed: int = 0
    threads: int = 2


# --- What the online side knew at each moment -------------------------------------------


@dataclass(frozen=True)
class ItemContext:
    """Item facts through time, built from the log without looking ahead.

    Attributes:
        edges: (K,) bucket start times, epoch ms; a case uses the last start at or
            before its time.
        counts: (K, I) weighted interaction counts of events before each start.
        trending: (K, I) on the top-``k`` decayed-count list at each start.
        first_ts: (I,) when each item first appeared (catalog or interaction).
        category: (I,) a code of the item's first category, -1 when unknown.
    """

    edges: np.ndarray
    counts: np.ndarray
    trending: np.ndarray
    first_ts: np.ndarray
    category: np.ndarray

    def at(self, ts: np.ndarray) -> np.ndarray:
        """Bucket of each time (B,)."""
        pos = np.searchsorted(self.edges, np.asarray(ts), side="right") - 1
        return np.clip(pos, 0, self.edges.shape[0] - 1)


def category_codes(log: InteractionLog) -> np.ndarray:
    """Each item's first category as its hashed id, -1 when unknown.

    Categories lead a hashed content row (``inference.item_features``), so column 0 is
    the first category's token id when the item has one. The codes only need to be
    equal for equal categories: the ranker sees category shares, never the codes.
    """
    if not log.hashing.fields or log.hashing.fields[0] != "categories":
        return np.full(log.n_items, -1, dtype=np.int64)
    first = log.item_features[:, 0]
    return np.where(first > 0, first, -1).astype(np.int64)


def item_context(log: InteractionLog, config: RankerConfig = RankerConfig()) -> ItemContext:
    """Popularity and trending at ``config.buckets`` evenly spaced times over the log."""
    n_items = log.n_items
    k = config.buckets
    lo = int(log.ts[0]) if log.n_events else 0
    hi = int(log.ts[-1]) + 1 if log.n_events else 1
    edges = np.linspace(lo, hi, k + 1)[:-1].astype(np.int64)
    counts = np.zeros((k, n_items), dtype=np.float32)
    trending = np.zeros((k, n_items), dtype=bool)
    total = np.zeros(n_items)
    decayed = np.zeros(n_items)
    half_ms = config.trending_half_life_s * 1000.0
    cuts = np.searchsorted(log.ts, edges, side="left")
    prev_edge, prev_cut = int(edges[0]), 0
    for j in range(k):
        sel = slice(prev_cut, int(cuts[j]))
        items, w = log.items[sel], log.weights[sel].astype(np.float64)
        decay = np.power(0.5, (edges[j] - log.ts[sel]) / half_ms)
        total += np.bincount(items, weights=w, minlength=n_items)
        decayed = decayed * 0.5 ** ((edges[j] - prev_edge) / half_ms)
        decayed += np.bincount(items, weights=w * decay, minlength=n_items)
        counts[j] = total
        top = np.argsort(-decayed, kind="stable")[: config.trending_k]
        trending[j, top[decayed[top] > 0]] = True
        prev_edge, prev_cut = int(edges[j]), int(cuts[j])
    return ItemContext(edges, counts, trending, log.item_first_ts.copy(), category_codes(log))


# --- Candidates of logged cases ---------------------------------------------------------


@dataclass(frozen=True)
class CandidateSet:
    """Each case's retrieval candidates and the online ``features`` dict for them.

    Attributes:
        users: (n, D) user vectors.
        rows: (n, C) item codes, best inner product first.
        features: ``(n, C)`` arrays under the online hook's names.
        label: (n,) position of the case's target in ``rows``, -1 when absent.
    """

    users: np.ndarray
    rows: np.ndarray
    features: dict[str, np.ndarray]
    label: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def take(self, idx: np.ndarray) -> CandidateSet:
        return CandidateSet(
            self.users[idx],
            self.rows[idx],
            {k: v[idx] for k, v in self.features.items()},
            self.label[idx],
        )


@torch.no_grad()
def user_vectors(model: RetrievalModel, cases: EvalCases, vectors: np.ndarray) -> np.ndarray:
    """The encoder's user vectors (n, D) for each case's history, on item matrix ``vectors``."""
    hist = fit_length(cases.history, model.history_len)
    was = model.training
    model.eval()
    vecs = vectors[np.clip(hist.items, 0, None)] * hist.mask[:, :, None]
    users = model.encode(torch.as_tensor(vecs), hist).numpy()
    model.train(was)
    return users


def candidate_scores(
    users: np.ndarray, vectors: np.ndarray, cases: EvalCases, context: ItemContext, now: np.ndarray
) -> np.ndarray:
    """Inner products (n, I); seen items and items not yet in the catalog at ``now`` get -inf."""
    scores = (users @ vectors.T).astype(np.float64)
    scores[cases.seen_rows, cases.seen_items] = -np.inf
    scores[context.first_ts[None, :] > now[:, None]] = -np.inf
    return scores


def candidate_set(
    scores: np.ndarray,
    users: np.ndarray,
    targets: np.ndarray,
    context: ItemContext,
    now: np.ndarray,
    c: int,
) -> CandidateSet:
    """Top-``c`` candidates of each case by ``scores`` and their online features."""
    c = min(c, scores.shape[1])
    part = np.argpartition(-scores, c - 1, axis=1)[:, :c]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    rows = np.take_along_axis(part, order, axis=1)
    ann = np.take_along_axis(scores, rows, axis=1)
    bucket = context.at(now)[:, None]
    age = (now[:, None] - context.first_ts[rows]) / 1000.0
    features = {
        "ann_score": np.where(np.isfinite(ann), ann, 0.0).astype(np.float32),
        "log_popularity": np.log1p(context.counts[bucket, rows]).astype(np.float32),
        "age_s": np.maximum(age, 0.0).astype(np.float32),
        "is_trending": context.trending[bucket, rows].astype(np.float32),
        "category": context.category[rows],
    }
    hit = (rows == targets[:, None]) & np.isfinite(ann)
    label = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    return CandidateSet(users.astype(np.float32), rows, features, label)


def build_candidates(
    model: RetrievalModel,
    log: InteractionLog,
    cases: EvalCases,
    context: ItemContext,
    c: int,
    batch: int = 512,
) -> CandidateSet:
    """``candidate_set`` over all cases, ``batch`` at a time (memory ``batch × I``)."""
    vectors = model.all_item_vectors()
    parts = []
    for start in range(0, len(cases), batch):
        sub = take(cases, np.arange(start, min(start + batch, len(cases))))
        now = log.ts[sub.events]
        users = user_vectors(model, sub, vectors)
        scores = candidate_scores(users, vectors, sub, context, now)
        parts.append(candidate_set(scores, users, sub.targets, context, now, c))
    return CandidateSet(
        np.concatenate([p.users for p in parts]),
        np.concatenate([p.rows for p in parts]),
        {k: np.concatenate([p.features[k] for p in parts]) for k in parts[0].features},
        np.concatenate([p.label for p in parts]),
    )


def rows_of(cands: CandidateSet, vectors: np.ndarray) -> np.ndarray:
    """Ranker input rows (n, C, R) of a candidate set: the online feature code."""
    return candidate_features(cands.users, vectors[cands.rows], cands.features)
