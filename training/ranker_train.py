"""Training and offline scoring of the candidate ranker on the retrieval model's candidates.

A ranker case is one held-out interaction: the retrieval model's top ``C`` unseen items
for the user's history just before it (the list the online side would re-score), and
the position of the item that came next (or -1 when retrieval missed it). Features are
the online hook's ``features`` dict rebuilt from the log as the worker would have seen
it at the case's time (popularity and trending from earlier events only, item age from
first sight), turned into rows by the same ``inference.ranker_features`` code.

The ranker learns on the *validation* part of the split: the retrieval model never
fitted those events (it only chose its epoch on them), so its scores there look like
its scores on new traffic, unlike its over-confident scores on its own training events.
The test part stays untouched for the final comparison.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from inference.ranker_features import candidate_features, feature_width
from training.data import InteractionLog, Split
from training.evaluation.protocols import (
    EvalCases,
    EvalResult,
    build_cases,
    evaluate,
    summarise,
    take,
)
from training.models.ranker import CandidateRanker
from training.models.retrieval import RetrievalModel, fit_length

MIN_GAIN = 0.02
"""Relative NDCG@10 gain over retrieval alone, on held-out validation cases, that a
ranker must show before ``auto`` puts it in a bundle (it costs latency on every list)."""


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


# --- Training ---------------------------------------------------------------------------


@dataclass
class RankerResult:
    """The trained ranker and how it did on the hold-out against retrieval alone."""

    model: CandidateRanker
    config: RankerConfig
    best_epoch: int = 0
    holdout: dict[str, float] = field(default_factory=dict)
    retrieval_holdout: dict[str, float] = field(default_factory=dict)
    cases: int = 0
    seconds: float = 0.0

    @property
    def gain(self) -> float:
        """Relative NDCG@10 gain over retrieval alone on the hold-out."""
        base = self.retrieval_holdout.get("ndcg@10", 0.0)
        return self.holdout.get("ndcg@10", 0.0) / base - 1.0 if base > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            **asdict(self.config),
            "best_epoch": self.best_epoch,
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "holdout": self.holdout,
            "retrieval_holdout": self.retrieval_holdout,
            "holdout_gain": self.gain,
        }


def candidate_ranks(scores: np.ndarray, label: np.ndarray, c: int) -> np.ndarray:
    """0-based rank of each labelled candidate under ``scores`` (ties count against it);
    ``c`` (beyond any list) where retrieval missed the target."""
    rows = np.arange(scores.shape[0])
    mine = scores[rows, np.maximum(label, 0)]
    ahead = (scores >= mine[:, None]).sum(axis=1) - 1
    return np.where(label >= 0, ahead, c)


def rank_metrics(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """HR@K and NDCG@K of target ranks."""
    out = summarise(ranks, k)
    return {key: out[key] for key in (f"hr@{k}", f"ndcg@{k}")}


@torch.no_grad()
def score_rows(model: CandidateRanker, rows: np.ndarray, batch: int = 65_536) -> np.ndarray:
    """Ranker scores for rows (..., R) in eval mode, same leading shape."""
    was = model.training
    model.eval()
    flat = rows.reshape(-1, rows.shape[-1])
    out = np.concatenate(
        [
            model(torch.as_tensor(flat[s : s + batch])).numpy()
            for s in range(0, flat.shape[0], batch)
        ]
        or [np.zeros(0, np.float32)]
    )
    model.train(was)
    return out.reshape(rows.shape[:-1])


def train_ranker(
    cands: CandidateSet, vectors: np.ndarray, config: RankerConfig = RankerConfig()
) -> RankerResult:
    """Fit a ranker on the earlier cases of ``cands`` and keep the epoch best on the later.

    ``cands`` must be in time order. The loss is a softmax over each case's candidates
    with the target as the one positive; cases whose target retrieval missed carry no
    signal for re-ranking and are left out of the loss (not out of the hold-out).
    """
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    started = time.perf_counter()
    n = len(cands)
    if config.max_cases is not None and n > config.max_cases:
        cands = cands.take(np.arange(n - config.max_cases, n))
        n = config.max_cases
    n_hold = max(1, round(n * config.holdout))
    fit = cands.take(np.arange(0, n - n_hold))
    hold = cands.take(np.arange(n - n_hold, n))
    fit = fit.take(np.flatnonzero(fit.label >= 0))
    c = cands.rows.shape[1]
    model = CandidateRanker(feature_width(vectors.shape[1]), config.hidden, config.dropout)
    result = RankerResult(model=model, config=config, cases=n)
    hold_rows = rows_of(hold, vectors)
    result.retrieval_holdout = rank_metrics(
        candidate_ranks(hold.features["ann_score"].astype(np.float64), hold.label, c)
    )
    if len(fit) == 0:
        result.holdout = dict(result.retrieval_holdout)
        return result
    sample = fit.take(rng.choice(len(fit), size=min(len(fit), 2000), replace=False))
    model.set_normalisation(rows_of(sample, vectors))
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = max(1, math.ceil(len(fit) / config.batch_cases))
    best, best_state, stale = -1.0, None, 0
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(fit))
        model.train()
        for step in range(steps):
            batch = fit.take(order[step * config.batch_cases : (step + 1) * config.batch_cases])
            x = torch.as_tensor(rows_of(batch, vectors))
            logits = model(x.reshape(-1, x.shape[-1])).reshape(x.shape[0], x.shape[1])
            loss = F.cross_entropy(logits, torch.as_tensor(batch.label))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optim.step()
        scores = score_rows(model, hold_rows).astype(np.float64)
        metrics = rank_metrics(candidate_ranks(scores, hold.label, c))
        if metrics["ndcg@10"] > best:
            best, result.best_epoch, result.holdout = metrics["ndcg@10"], epoch, metrics
            best_state, stale = copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


# --- Offline scoring through the evaluation protocol ------------------------------------


class CandidateScorer:
    """The protocol's ``Scorer`` for retrieval over live items, optionally re-ranked.

    Scores every item as the online side would order it: items not yet in the catalog
    at the case's time are out (``-inf``); with a ranker, the top ``C`` unseen items by
    inner product are re-ordered by the ranker and placed above all other items, which
    keep their inner-product order.
    """

    def __init__(
        self,
        model: RetrievalModel,
        log: InteractionLog,
        context: ItemContext,
        ranker: CandidateRanker | None = None,
        candidates: int = 200,
    ) -> None:
        self.name = "user-encoder + ranker" if ranker is not None else "user-encoder (live items)"
        self.model = model
        self.log = log
        self.context = context
        self.ranker = ranker
        self.candidates = candidates
        self.vectors = model.all_item_vectors()

    def score(self, cases: EvalCases) -> np.ndarray:
        now = self.log.ts[cases.events]
        users = user_vectors(self.model, cases, self.vectors)
        scores = candidate_scores(users, self.vectors, cases, self.context, now)
        if self.ranker is None:
            return scores
        cands = candidate_set(scores, users, cases.targets, self.context, now, self.candidates)
        ranked = score_rows(self.ranker, rows_of(cands, self.vectors)).astype(np.float64)
        # Inner products lie in [-1, 1]: shift the rest below every re-ranked candidate.
        out = np.where(np.isfinite(scores), scores - 2.0, scores)
        top = ranked - ranked.min(axis=1, keepdims=True)
        live = np.isfinite(np.take_along_axis(scores, cands.rows, axis=1))
        np.put_along_axis(out, cands.rows, np.where(live, top, -np.inf), axis=1)
        return out


# --- The stage of a training run --------------------------------------------------------


@dataclass
class RankerStage:
    """A trained ranker and the test-part comparison with retrieval over the same items."""

    result: RankerResult
    evaluations: list[EvalResult]

    @property
    def test_gain(self) -> float:
        """Relative test NDCG@10 of retrieval + ranker over retrieval (live items)."""
        base, ranked = (e.metrics["ndcg@10"] for e in self.evaluations)
        return ranked / base - 1.0 if base > 0 else 0.0

    def passes(self, min_gain: float = MIN_GAIN) -> bool:
        """Whether the ranker paid for itself on the hold-out (test is not used to decide)."""
        return self.result.gain >= min_gain

    def summary(self) -> dict[str, Any]:
        retrieval, ranked = self.evaluations
        return {
            **self.result.summary(),
            "min_gain": MIN_GAIN,
            "test": ranked.metrics,
            "retrieval_test": retrieval.metrics,
            "test_gain": self.test_gain,
        }


def ranker_stage(
    model: RetrievalModel,
    log: InteractionLog,
    split: Split,
    test_cases: EvalCases,
    train_popularity: np.ndarray,
    history_len: int,
    config: RankerConfig = RankerConfig(),
) -> RankerStage:
    """Train a ranker on the validation part, then score the test part with and without it."""
    context = item_context(log, config)
    valid = build_cases(log, split, "valid", history_len, config.max_cases, config.seed)
    vectors = model.all_item_vectors()
    result = train_ranker(
        build_candidates(model, log, valid, context, config.candidates), vectors, config
    )
    scorers = [
        CandidateScorer(model, log, context, None, config.candidates),
        CandidateScorer(model, log, context, result.model, config.candidates),
    ]
    return RankerStage(result, [evaluate(s, test_cases, train_popularity) for s in scorers])
