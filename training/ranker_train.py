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

from inference.ranker_features import feature_width
from training.data import InteractionLog, Split
from training.evaluation.protocols import (
    EvalCases,
    EvalResult,
    build_cases,
    evaluate,
    summarise,
)
from training.models.ranker import CandidateRanker
from training.models.retrieval import RetrievalModel
from training.ranker_cases import (
    CandidateSet,
    ItemContext,
    RankerConfig,
    build_candidates,
    candidate_scores,
    candidate_set,
    item_context,
    rows_of,
    user_vectors,
)

MIN_GAIN = 0.02
"""Relative NDCG@10 gain over retrieval alone, on held-out validation cases, that a
ranker must show before ``auto`` puts it in a bundle (it costs latency on every list)."""
DEFAULT_CONFIG = RankerConfig()


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
    cands: CandidateSet, vectors: np.ndarray, config: RankerConfig = DEFAULT_CONFIG
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
    config: RankerConfig = DEFAULT_CONFIG,
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
