"""The online scoring pipeline for one micro-batch of users, pure and batch-first.

candidates (ANN + co-visitation + trending + tail exploration) -> business filters ->
relevance (inner product, or a pluggable ranker; optional popularity debiasing; blended
with the co-visitation score) -> MMR with long-tail, trending and exploration quotas ->
reasons -> one explained list per user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from inference.candidates import (
    CandidateBatch,
    Candidates,
    ItemTable,
    Searcher,
    candidate_batch,
)
from inference.list_kernel import finish_lists, negated_scores, prepare_lists
from inference.rerank import (
    FROM_TRENDING,
    ItemFilter,
    debias,
    longtail_quota,
    pad_ragged,
    sorted_lookup,
)
from schemas.recommendation import REASONS, RecommendedItem, Strategy

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

Ranker = Callable[[FloatArray, FloatArray, Mapping[str, np.ndarray]], npt.ArrayLike]
"""Scoring hook ``(user_vecs (W, d), cand_vecs (W, C, d), features) -> (W, C) scores``.

Called once per batch with the warm users only. ``features`` holds ``(W, C)`` arrays:
``ann_score`` (inner product), ``log_popularity``, ``age_s``, ``is_trending``,
``category``. Non-finite scores drop the candidate.
"""


@dataclass(frozen=True)
class RecommendConfig:
    """Knobs of the pipeline; ``freshet.wiring.recommend_config`` maps them from settings."""

    list_size: int = 20
    candidates: int = 200
    mmr_lambda: float = 0.7
    longtail_share: float = 0.2
    exploration_slots: int = 2
    trending_slots: int = 2
    category_weight: float = 0.5
    category_cap: int | None = None
    popularity_beta: float = 0.0
    new_item_age_s: float = 3 * 86_400.0
    new_item_slots: int = 1
    new_item_quantile: float = 0.5
    similar_threshold: float = 0.8
    explore_pool: int = 32
    max_overfetch: int = 100
    mmr_pool: int = 100
    trending_pool: int = 50
    covisit_weight: float = 1.0
    model_weight: float = 0.25
    popularity_weight: float = 0.0


@dataclass(frozen=True)
class UserList:
    """One user's ranked list, its strategy, and the item rows behind it (for metrics)."""

    items: tuple[RecommendedItem, ...]
    strategy: Strategy
    rows: IntArray


def recommend(
    user_vecs: npt.ArrayLike,
    items: ItemTable,
    index: Searcher,
    config: RecommendConfig,
    *,
    known: npt.ArrayLike | None = None,
    model_free: bool | npt.ArrayLike = False,
    exclude: Sequence[npt.ArrayLike] | None = None,
    history: Sequence[npt.ArrayLike] | None = None,
    trending: npt.ArrayLike = (),
    trending_scores: npt.ArrayLike | None = None,
    ranker: Ranker | None = None,
    allow: ItemFilter | None = None,
    seed: int | np.random.Generator = 0,
    covisit: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
) -> list[UserList]:
    """Ranked, explained lists for a micro-batch of users.

    Args:
        user_vecs: ``(B, d)`` user embeddings. A row that is all zeros or not finite
            marks a user without an embedding (served ``cold_start``).
        items: Catalog snapshot; ``index`` must return its row numbers as ids.
        index: Inner-product search over the catalog (e.g. ``AnnIndex``).
        config: List size, candidate count, MMR λ, quotas, thresholds.
        known: ``(B,)`` False for users with no history (``cold_start`` whatever
            their vector). Default: all known.
        model_free: True (scalar or ``(B,)``) where the embedding came from fold-in
            rather than a model bundle; such lists say ``model_free``.
        exclude: Per user, item rows never to show (seen, purchased).
        history: Per user, recent item rows (newest last) for ``similar_to_item``.
        trending: Trending item rows, best first.
        trending_scores: Their scores (default: by rank); relevance for cold users.
        ranker: Optional scoring hook replacing the inner product for warm users.
        allow: Optional business hook, ``(B, C)`` rows -> allowed mask.
        seed: Seed or generator for exploration draws.
        covisit: ``(rows (B, K), scores (B, K))``: items that follow each user's recent
            ones in the stream (``inference.covisit``), -1 padded. They join the
            candidates, and a user who has any gets relevance ``minmax(base) +
            covisit_weight · score / max score``, where ``base`` is the relevance
            above; such a user counts as known for the quotas even with no vector.

    Returns:
        One ``UserList`` per user, in input order. Scores are finite; no item repeats,
        and no excluded or removed item appears. Lists can be shorter than
        ``list_size`` when too few items survive filtering.
    """
    batch = candidate_batch(
        user_vecs,
        items,
        index,
        config,
        known,
        exclude,
        trending,
        trending_scores,
        allow,
        seed,
        covisit,
    )
    u, warm, cands, valid = batch.user_vecs, batch.warm, batch.cands, batch.valid
    b, k = u.shape[0], config.list_size
    const = _constants(config, items.age_s.dtype)
    rel = _relevance(u, warm, cands, items, ranker, config)
    rel, members, at_least, at_most = _prepare(rel, batch, items, config, const)
    if const.shortlisted:
        # MMR over a shortlist (positions into the candidate axis) instead of all C.
        pos = _shortlist(rel, valid, members, at_least, max(config.mmr_pool, k))
    else:
        pos = np.ascontiguousarray(
            np.broadcast_to(np.arange(rel.shape[1], dtype=np.int64), rel.shape)
        )
    hist = pad_ragged(history, b)
    picked = finish_lists(
        cands.rows,
        cands.flags,
        rel,
        valid,
        pos,
        const.shortlisted,
        items.unit,
        items.categories,
        items.age_s,
        const.new_age,
        members,
        at_least,
        at_most,
        k,
        const.mmr_lambda,
        float(config.category_weight),
        -1 if config.category_cap is None else int(config.category_cap),
        hist,
        const.similar,
    )
    return _assemble(*picked, warm, model_free, items)


@dataclass(frozen=True)
class _Constants:
    """What the compiled passes take from a config, built once per config (not per call)."""

    shortlisted: bool
    new_age: float
    mmr_lambda: float
    similar: float
    weights: FloatArray
    minimums: IntArray


@lru_cache(maxsize=16)
def _constants(config: RecommendConfig, age_dtype: np.dtype) -> _Constants:
    k = config.list_size
    weights = np.array(
        [config.model_weight, config.covisit_weight, config.popularity_weight], np.float32
    )
    slots = (
        k,
        longtail_quota(config.longtail_share, k),
        config.trending_slots,
        min(config.exploration_slots, k),
        min(config.new_item_slots, k),
    )
    # shared by every call with this config: the passes read them, never write them
    minimums = np.array(slots, np.int64)
    return _Constants(
        shortlisted=config.mmr_pool > 0 and config.category_cap is None,
        new_age=_threshold(np.zeros(0, age_dtype), config.new_item_age_s),
        mmr_lambda=float(np.clip(config.mmr_lambda, 0.0, 1.0)),
        similar=_threshold(np.float32(0.0), config.similar_threshold),
        weights=weights,
        minimums=minimums,
    )


def _threshold(values: npt.ArrayLike, threshold: float) -> float:
    """``threshold`` as numpy compares it with ``values`` (a Python float: in their dtype)."""
    return float(np.result_type(values, threshold).type(threshold))


def _relevance(
    u: FloatArray,
    warm: npt.NDArray[np.bool_],
    cands: Candidates,
    items: ItemTable,
    ranker: Ranker | None,
    config: RecommendConfig,
) -> FloatArray:
    """Warm users' relevance (inner product or the ranker, debiased); cold rows are
    replaced in ``prepare_lists``."""
    rows = np.maximum(cands.rows, 0)
    # take copies the same rows as items.vectors[rows], several times faster for a
    # (B, C) index (100k items, 512 users: 7 ms against 25); the arrays' own methods
    # here and in the shortlist skip numpy's Python wrappers (two frames a call)
    cand_vecs = items.vectors.take(rows, axis=0)
    ip = np.einsum("bcd,bd->bc", cand_vecs, u).astype(np.float32)
    rel = ip
    if ranker is not None and warm.any():
        features = {
            "ann_score": ip[warm],
            "log_popularity": np.log1p(np.clip(items.popularity[rows[warm]], 0, None)),
            "age_s": items.age_s[rows[warm]],
            "is_trending": ((cands.flags[warm] & FROM_TRENDING) > 0).astype(np.float32),
            "category": items.categories[rows[warm]],
        }
        scored = np.asarray(ranker(u[warm], cand_vecs[warm], features), dtype=np.float32)
        if scored.shape != (int(warm.sum()), rows.shape[1]):
            raise ValueError(f"ranker returned shape {scored.shape}")
        rel = rel.copy()
        rel[warm] = scored
    if config.popularity_beta != 0.0:
        rel = debias(rel, items.popularity[rows], config.popularity_beta)
    return np.ascontiguousarray(rel, np.float32)


def _prepare(
    rel: FloatArray,
    batch: CandidateBatch,
    items: ItemTable,
    config: RecommendConfig,
    const: _Constants,
) -> tuple[FloatArray, npt.NDArray[np.bool_], IntArray, IntArray]:
    """Final relevance (cold users, the co-visitation blend) and the slot quota groups.

    The blend is ``inference.blend.blend_scores`` with ``model_weight``,
    ``covisit_weight`` and ``popularity_weight`` (each signal on [0, 1] per user
    first, so the weights are scale-free trades; the bench tunes them on validation).
    It applies to users co-visitation led, and to every warm user when popularity has
    a weight; other users keep the relevance above. The quotas are
    ``inference.slot_quotas.slot_quotas``'s, over the blended relevance.
    """
    cands = batch.cands
    log_pop = (
        np.log1p(np.clip(items.popularity[np.maximum(cands.rows, 0)], 0.0, None))
        if config.popularity_weight != 0
        else np.zeros((rel.shape[0], 0), np.float32)
    )
    rel, _, members, at_least, at_most = prepare_lists(
        cands.rows,
        cands.flags,
        batch.valid,
        rel,
        batch.warm,
        batch.trend_rows,
        batch.trend_scores,
        batch.cv_rows,
        batch.cv_scores,
        np.ascontiguousarray(log_pop, np.float32),
        const.weights,
        items.head,
        items.age_s,
        const.new_age,
        const.minimums,
        float(config.new_item_quantile),
    )
    return rel, members, at_least, at_most


def _shortlist(
    rel: FloatArray,
    valid: npt.NDArray[np.bool_],
    members: npt.NDArray[np.bool_],
    at_least: IntArray,
    size: int,
) -> IntArray:
    """``inference.rerank.shortlist``'s positions, before its clean-up (in ``finish_lists``).

    The ``size`` best eligible candidates, then per quota group with a minimum its
    ``2·at_least`` best eligible members (the batch's largest minimum). The same
    ``np.argpartition`` calls on the same scores: their order breaks MMR's ties.
    """
    b, c = at_least.shape[1], rel.shape[1]
    # each group's largest minimum in the batch (in lists: numpy scalars cost per use)
    need = (at_least[:, 0] if b == 1 else at_least.max(axis=1, initial=0)).tolist() if b else []
    groups = [g for g, n in enumerate(need) if n > 0]
    neg = negated_scores(rel, valid, members, np.array(groups, np.int64))
    widths = [size, *(2 * need[g] for g in groups)]
    if b == 1:  # the live loop's call: the same partitions of the one row, in 1-D
        return np.concatenate(
            [
                neg[n, 0].argpartition(m - 1)[:m] if m < c else np.arange(c, dtype=np.int64)
                for n, m in enumerate(widths)
            ]
        ).reshape(1, -1)
    parts = [
        neg[n].argpartition(m - 1, axis=1)[:, :m]
        if m < c
        else np.broadcast_to(np.arange(c, dtype=np.int64), rel.shape)
        for n, m in enumerate(widths)
    ]
    return np.ascontiguousarray(np.concatenate(parts, axis=1), np.int64)


def trend_score_of(rows: IntArray, trend_rows: IntArray, t_scores: FloatArray) -> FloatArray:
    """Each row's trending score (its first, best, occurrence in ``trend_rows``), else 0.

    A binary search over the few trending rows, not a catalog-sized lookup table: the
    cost follows the candidates, not the catalog.

    >>> trend_score_of(np.array([[3, 5, 7]]), np.array([7, 3, 7]), np.array([0.9, 0.5, 0.1]))
    array([[0.5, 0. , 0.9]], dtype=float32)
    """
    uniq, first = np.unique(trend_rows, return_index=True)
    at, found = sorted_lookup(rows, uniq)
    scores = np.asarray(t_scores, np.float32)[first] if first.size else np.zeros(1, np.float32)
    return np.where(found, scores[at], 0.0).astype(np.float32)


def _assemble(
    rows: IntArray,
    scores: FloatArray,
    codes: npt.NDArray[np.int8],
    reason_rows: IntArray,
    warm: npt.NDArray[np.bool_],
    model_free: bool | npt.ArrayLike,
    items: ItemTable,
) -> list[UserList]:
    """The picks as list records; whole-batch gathers first (indexing numpy per slot
    is slow)."""
    b = rows.shape[0]
    free = np.asarray(model_free, dtype=bool)
    # broadcast_to (a few us) only where the shape needs it
    free_l = (
        free.tolist()
        if free.shape == (b,)
        else [bool(free)] * b
        if free.ndim == 0
        else np.broadcast_to(free, (b,)).tolist()
    )
    # picks are packed at the front; one row counts without the axis machinery
    picked = rows >= 0
    counts = [int(np.count_nonzero(picked))] if b == 1 else picked.sum(axis=1).tolist()
    ids = items.ids[np.maximum(rows, 0)].tolist()
    why = _reason_ids(reason_rows, items)
    score_l, code_l = scores.astype(np.float64).tolist(), codes.tolist()
    warm_l = warm.tolist()
    out: list[UserList] = []
    k = rows.shape[1]
    for i in range(b):
        n = counts[i]
        # positional, through map: half the cost of a keyword call per slot
        slots = tuple(
            map(
                RecommendedItem,
                ids[i][:n],
                score_l[i][:n],
                map(REASONS.__getitem__, code_l[i][:n]),
                why[i * k : i * k + n],
            )
        )
        strategy: Strategy = (
            "cold_start" if not warm_l[i] else "model_free" if free_l[i] else "personalised"
        )
        out.append(UserList(items=slots, strategy=strategy, rows=rows[i, :n].copy()))
    return out


def _reason_ids(reason_rows: IntArray, items: ItemTable) -> list[str | None]:
    """Each slot's reason item id (row-major over ``(B, k)``), None where it has none:
    an id is made only for the few slots that name a history item."""
    flat = reason_rows.reshape(-1)
    why: list[str | None] = [None] * flat.size
    at = (flat >= 0).nonzero()[0]
    for slot, name in zip(at.tolist(), items.ids[flat[at]].tolist(), strict=True):
        why[slot] = name
    return why
