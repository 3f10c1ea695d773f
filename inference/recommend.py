"""The online scoring pipeline for one micro-batch of users, pure and batch-first.

candidates (ANN + co-visitation + trending + tail exploration) -> business filters ->
relevance (inner product, or a pluggable ranker; optional popularity debiasing; blended
with the co-visitation score) -> MMR with long-tail, trending and exploration quotas ->
reasons -> one explained list per user.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.blend import BlendWeights, blend_scores
from inference.candidates import Candidates, ItemTable, Searcher, gather_candidates
from inference.reasons import assign_reasons
from inference.rerank import (
    FROM_TRENDING,
    ItemFilter,
    debias,
    exclusion_mask,
    gather_unit_vectors,
    mmr_select_at,
    pad_ragged,
    shortlist,
    sorted_lookup,
    take_rows,
)
from inference.rerank_kernels import covisit_lookup
from inference.slot_quotas import slot_quotas
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
    u = np.atleast_2d(np.asarray(user_vecs, dtype=np.float32))
    b = u.shape[0]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    has_vec = np.isfinite(u).all(axis=1) & (np.abs(u).sum(axis=1) > 0)
    warm = has_vec & (np.ones(b, bool) if known is None else np.asarray(known, dtype=bool))
    u = np.where(warm[:, None], u, 0.0).astype(np.float32)
    k = config.list_size

    cv_rows, cv_scores = _covisit_arrays(covisit, b, config.covisit_weight)
    excluded = pad_ragged(exclude, b)
    trend_rows = np.asarray(trending, dtype=np.int64).reshape(-1)
    n_trend = trend_rows.size
    if trending_scores is None:
        trend_scores: FloatArray = np.linspace(
            1.0, 1.0 / max(n_trend, 1), n_trend, dtype=np.float32
        )
    else:
        trend_scores = np.asarray(trending_scores, dtype=np.float32).reshape(-1)
        if trend_scores.shape != (n_trend,):
            raise ValueError(f"{trend_scores.size} trending scores for {n_trend} items")
    known_rows = (trend_rows >= 0) & (trend_rows < items.size) & np.isfinite(trend_scores)
    trend_rows, trend_scores = trend_rows[known_rows], trend_scores[known_rows]
    cands = gather_candidates(
        u,
        warm,
        items,
        index,
        config.candidates,
        trend_rows[: config.trending_pool],
        config.explore_pool,
        rng,
        overfetch=min(excluded.shape[1], config.max_overfetch),
        covisit=cv_rows,
    )
    valid = exclusion_mask(cands.rows, excluded, items.removed, allow)
    rel = _relevance(u, warm, cands, items, trend_rows, trend_scores, ranker, config)
    rel, led = _blend_covisit(rel, cands.rows, valid, cv_rows, cv_scores, items, warm, config)
    quotas = slot_quotas(cands, items, warm, warm | led, config, rel)
    if config.mmr_pool > 0 and config.category_cap is None:
        # MMR over a shortlist (positions into the candidate axis) instead of all C.
        pos = shortlist(rel, valid, quotas, max(config.mmr_pool, k))
    else:
        pos = np.broadcast_to(np.arange(rel.shape[1], dtype=np.int64), rel.shape)
    picked = mmr_select_at(
        rel,
        valid,
        pos,
        cands.rows,
        items.unit,
        items.categories,
        k,
        config.mmr_lambda,
        config.category_weight,
        quotas=quotas,
        category_cap=config.category_cap,
    )
    return _assemble(picked, cands, rel, warm, model_free, items, history, config)


def _relevance(
    u: FloatArray,
    warm: npt.NDArray[np.bool_],
    cands: Candidates,
    items: ItemTable,
    trend_rows: IntArray,
    t_scores: FloatArray,
    ranker: Ranker | None,
    config: RecommendConfig,
) -> FloatArray:
    rows = np.maximum(cands.rows, 0)
    cand_vecs = items.vectors[rows]
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
    rel = debias(rel, items.popularity[rows], config.popularity_beta)

    if warm.all():  # no cold user: the trending lookup below would be discarded
        return rel.astype(np.float32)
    # Cold users: trending score for trending items, 0 for the rest (exploration).
    cold_rel = np.where(
        (cands.flags & FROM_TRENDING) > 0, trend_score_of(rows, trend_rows, t_scores), 0.0
    )
    return np.where(warm[:, None], rel, cold_rel).astype(np.float32)


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


def _covisit_arrays(
    covisit: tuple[npt.ArrayLike, npt.ArrayLike] | None, b: int, weight: float
) -> tuple[IntArray, FloatArray]:
    """Validated ``(B, K)`` co-visitation rows and scores; empty when off or absent."""
    if covisit is None or weight <= 0:
        return np.full((b, 0), -1, np.int64), np.zeros((b, 0), np.float32)
    rows = np.asarray(covisit[0], dtype=np.int64).reshape(b, -1)
    scores = np.asarray(covisit[1], dtype=np.float32).reshape(b, -1)
    if rows.shape != scores.shape:
        raise ValueError(f"co-visitation rows {rows.shape} and scores {scores.shape} differ")
    ok = (rows >= 0) & np.isfinite(scores) & (scores > 0)
    return np.where(ok, rows, -1), np.where(ok, scores, 0.0).astype(np.float32)


def _blend_covisit(
    rel: FloatArray,
    rows: IntArray,
    valid: npt.NDArray[np.bool_],
    cv_rows: IntArray,
    cv_scores: FloatArray,
    items: ItemTable,
    warm: npt.NDArray[np.bool_],
    config: RecommendConfig,
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Relevance blended with co-visitation and popularity, and which users co-visitation led.

    The blend is ``inference.blend.blend_scores`` with ``model_weight``,
    ``covisit_weight`` and ``popularity_weight`` (each signal on [0, 1] per user
    first, so the weights are scale-free trades; the bench tunes them on validation).
    It applies to users co-visitation led, and to every warm user when popularity has
    a weight; other users keep the relevance above.
    """
    b = rel.shape[0]
    weights = BlendWeights(config.model_weight, config.covisit_weight, config.popularity_weight)
    cv = covisit_lookup(
        np.ascontiguousarray(rows, np.int64),
        np.ascontiguousarray(valid, np.bool_),
        np.ascontiguousarray(cv_rows, np.int64),
        np.ascontiguousarray(cv_scores, np.float32),
    )
    led = cv.max(axis=1, initial=0.0) > 0
    blended_users = led | (warm if weights.popularity > 0 else np.zeros(b, bool))
    if not blended_users.any():
        return rel, led
    ok = valid & np.isfinite(rel)
    pop = items.popularity[np.maximum(rows, 0)]
    blended = blend_scores(rel, cv, pop, ok, weights)
    out = np.where(blended_users[:, None] & ok, blended, rel).astype(np.float32)
    return out, led


def _assemble(
    picked: IntArray,
    cands: Candidates,
    rel: FloatArray,
    warm: npt.NDArray[np.bool_],
    model_free: bool | npt.ArrayLike,
    items: ItemTable,
    history: Sequence[npt.ArrayLike] | None,
    config: RecommendConfig,
) -> list[UserList]:
    b = picked.shape[0]
    ok = picked >= 0
    pos = np.maximum(picked, 0)
    rows = np.where(ok, take_rows(cands.rows, pos), -1)
    flags = take_rows(cands.flags, pos)
    scores = take_rows(rel, pos)
    is_new = items.age_s[np.maximum(rows, 0)] < config.new_item_age_s
    hist = pad_ragged(history, b)
    hist_ok = (hist >= 0) & (hist < items.size)
    codes, hist_pos = assign_reasons(
        flags,
        is_new,
        gather_unit_vectors(items.unit, rows),
        gather_unit_vectors(items.unit, np.where(hist_ok, hist, -1)),
        hist_ok,
        config.similar_threshold,
    )
    # hist_pos is -1 everywhere when no user has history; the column keeps the gather valid.
    hist_padded = np.concatenate([hist, np.full((b, 1), -1, np.int64)], axis=1)
    reason_rows = take_rows(hist_padded, np.where(hist_pos >= 0, hist_pos, -1))
    free = np.broadcast_to(np.asarray(model_free, dtype=bool), (b,))
    # Whole-batch gathers into Python lists first: indexing numpy per slot is slow.
    counts = ok.sum(axis=1).tolist()  # picks are packed at the front
    ids = items.ids[np.maximum(rows, 0)].tolist()
    reason_ids = items.ids[np.maximum(reason_rows, 0)].tolist()
    has_reason = (reason_rows >= 0).tolist()
    score_l, code_l = scores.astype(np.float64).tolist(), codes.tolist()
    out: list[UserList] = []
    for i in range(b):
        n = counts[i]
        slots = tuple(
            RecommendedItem(
                item_id=ids[i][j],
                score=score_l[i][j],
                reason=REASONS[code_l[i][j]],
                reason_item_id=reason_ids[i][j] if has_reason[i][j] else None,
            )
            for j in range(n)
        )
        strategy: Strategy = (
            "cold_start" if not warm[i] else "model_free" if free[i] else "personalised"
        )
        out.append(UserList(items=slots, strategy=strategy, rows=rows[i, :n].copy()))
    return out
