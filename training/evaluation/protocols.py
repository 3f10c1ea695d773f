"""Evaluation protocols: which held-out events are asked for, and how any scorer is scored.

A *case* is one held-out interaction: the user's history just before it, and the item
that came next. Each case is ranked against all items with the user's seen items
excluded; cases whose target was already seen (re-consumption) are left out, since a
seen-excluding recommender cannot get them. Baselines and models are scored by the same
``evaluate``, through the ``Scorer`` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from training.data import HistoryBatch, InteractionLog, Split, UserHistories, history_batch
from training.evaluation import metrics as m


@dataclass(frozen=True)
class EvalCases:
    """Held-out interactions with their pasts.

    Attributes:
        events: (C,) event index of each case in the log.
        targets: (C,) item code that came next.
        history: The last ``N`` events before each case (for sequence models).
        seen_rows, seen_items: Pairs (case, item) of everything the user touched before.
        cold_user: (C,) the user has no training events.
        cold_item: (C,) the target has no training events.
    """

    events: np.ndarray
    targets: np.ndarray
    history: HistoryBatch
    seen_rows: np.ndarray
    seen_items: np.ndarray
    cold_user: np.ndarray
    cold_item: np.ndarray

    def __len__(self) -> int:
        return int(self.events.shape[0])


class Scorer(Protocol):
    """Anything that scores every item of the log for a batch of cases."""

    name: str

    def score(self, cases: EvalCases) -> np.ndarray:
        """Scores (C, n_items) for the cases; higher is better."""
        ...


def build_cases(
    log: InteractionLog,
    split: Split,
    part: str = "test",
    history_len: int = 50,
    max_cases: int | None = 5000,
    seed: int = 0,
    hist: UserHistories | None = None,
) -> EvalCases:
    """Cases for the ``valid`` or ``test`` part of a split (subsampled to ``max_cases``)."""
    hist = hist or UserHistories.of(log)
    events = split.valid if part == "valid" else split.test
    rows, cols = hist.seen_pairs(events, log)
    repeat = np.zeros(events.shape[0], dtype=bool)
    hit = cols == log.items[events][rows]
    repeat[rows[hit]] = True
    events = events[~repeat]
    if max_cases is not None and events.shape[0] > max_cases:
        rng = np.random.default_rng(seed)
        events = np.sort(rng.choice(events, size=max_cases, replace=False))
    train_users = np.zeros(log.n_users, dtype=bool)
    train_users[log.users[split.train]] = True
    train_items = np.zeros(log.n_items, dtype=bool)
    train_items[log.items[split.train]] = True
    seen_rows, seen_items = hist.seen_pairs(events, log)
    return EvalCases(
        events=events,
        targets=log.items[events],
        history=history_batch(log, hist, events, history_len),
        seen_rows=seen_rows,
        seen_items=seen_items,
        cold_user=~train_users[log.users[events]],
        cold_item=~train_items[log.items[events]],
    )


def take(cases: EvalCases, idx: np.ndarray) -> EvalCases:
    """The sub-batch of ``cases`` at positions ``idx`` (sorted)."""
    pos = -np.ones(len(cases), dtype=np.int64)
    pos[idx] = np.arange(idx.shape[0])
    keep = pos[cases.seen_rows] >= 0
    h = cases.history
    return EvalCases(
        events=cases.events[idx],
        targets=cases.targets[idx],
        history=HistoryBatch(h.items[idx], h.types[idx], h.gaps[idx], h.mask[idx]),
        seen_rows=pos[cases.seen_rows[keep]],
        seen_items=cases.seen_items[keep],
        cold_user=cases.cold_user[idx],
        cold_item=cases.cold_item[idx],
    )


@dataclass(frozen=True)
class EvalResult:
    """Per-case outcomes of one scorer on one set of cases, plus list metrics."""

    name: str
    ranks: np.ndarray
    recommended: np.ndarray
    cold_user: np.ndarray
    cold_item: np.ndarray
    metrics: dict[str, float]


def evaluate(
    scorer: Scorer,
    cases: EvalCases,
    train_popularity: np.ndarray,
    k: int = 10,
    batch_size: int = 512,
    item_vectors: np.ndarray | None = None,
) -> EvalResult:
    """Rank every case's target among all unseen items and summarise.

    Args:
        scorer: The model or baseline.
        cases: From ``build_cases``.
        train_popularity: Item popularity in training, for head/tail and novelty.
        k: List length for the @K metrics and beyond-accuracy metrics.
        batch_size: Cases scored at once (memory is ``batch_size * n_items`` floats).
        item_vectors: For intra-list diversity; skipped when None.
    """
    n = len(cases)
    ranks = np.zeros(n, dtype=np.int64)
    recommended = np.zeros((n, k), dtype=np.int64)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        sub = take(cases, idx)
        scores = np.asarray(scorer.score(sub), dtype=np.float64)
        scores[sub.seen_rows, sub.seen_items] = -np.inf
        ranks[idx] = m.target_ranks(scores, sub.targets)
        recommended[idx] = m.top_k(scores, k)
    head = m.head_items(train_popularity)
    out = summarise(ranks, k)
    out.update(
        {
            "coverage": m.catalog_coverage(recommended, train_popularity.shape[0]),
            "long_tail_share": m.long_tail_share(recommended, head),
            "novelty": m.novelty(recommended, train_popularity),
            "cases": float(n),
        }
    )
    if item_vectors is not None:
        out["diversity"] = m.intra_list_diversity(recommended, item_vectors)
    for label, sel in (("cold_user", cases.cold_user), ("cold_item", cases.cold_item)):
        part = summarise(ranks[sel], k)
        out.update({f"{label}/{key}": v for key, v in part.items()})
        out[f"{label}/cases"] = float(sel.sum())
    return EvalResult(scorer.name, ranks, recommended, cases.cold_user, cases.cold_item, out)


def summarise(ranks: np.ndarray, k: int) -> dict[str, float]:
    """HR@K, NDCG@K and MRR of a set of target ranks."""
    return {
        f"hr@{k}": m.hit_rate_at_k(ranks, k),
        f"ndcg@{k}": m.ndcg_from_ranks(ranks, k),
        "mrr": m.mrr(ranks),
    }
