"""The re-rank pipeline as it was before the fused kernels (5e66c59): the tests' reference.

``inference.recommend.recommend`` must give the same lists as this numpy composition
of the old candidate front end (``candidates_reference``), ``blend_scores``,
``slot_quotas``, ``shortlist``, ``mmr_select_at`` and ``assign_reasons``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from candidates_reference import reference_candidate_batch

from inference.blend import BlendWeights, blend_scores
from inference.candidates import Candidates, ItemTable, Searcher
from inference.reasons import assign_reasons
from inference.recommend import (
    FloatArray,
    IntArray,
    Ranker,
    RecommendConfig,
    UserList,
    trend_score_of,
)
from inference.recommend import _relevance as warm_relevance
from inference.rerank import (
    FROM_TRENDING,
    ItemFilter,
    gather_unit_vectors,
    mmr_select_at,
    pad_ragged,
    shortlist,
    take_rows,
)
from inference.rerank_kernels import covisit_lookup
from inference.slot_quotas import slot_quotas
from schemas.recommendation import REASONS, RecommendedItem, Strategy


def reference_recommend(
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
    """``inference.recommend.recommend`` as it was; the same arguments and result."""
    batch = reference_candidate_batch(
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
    trend_rows, trend_scores = batch.trend_rows, batch.trend_scores
    cv_rows, cv_scores = batch.cv_rows, batch.cv_scores
    k = config.list_size
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
    rel = warm_relevance(u, warm, cands, items, ranker, config)

    if warm.all():  # no cold user: the trending lookup below would be discarded
        return rel.astype(np.float32)
    # Cold users: trending score for trending items, 0 for the rest (exploration).
    cold_rel = np.where(
        (cands.flags & FROM_TRENDING) > 0, trend_score_of(rows, trend_rows, t_scores), 0.0
    )
    return np.where(warm[:, None], rel, cold_rel).astype(np.float32)


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
