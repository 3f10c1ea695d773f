"""The candidate front end as it was before ``candidate_rows`` (9401bf6): the tests' reference.

``inference.candidates.candidate_batch`` must give the same ``CandidateBatch`` as this
composition (its input checks are shared): the co-visitation candidates validated in
numpy, the sources joined by ``merge_sources``, then ``exclusion_mask``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from inference.candidates import (
    SOURCE_ORDER,
    BoolArray,
    CandidateBatch,
    Candidates,
    FloatArray,
    IntArray,
    ItemTable,
    Searcher,
    batch_inputs,
)
from inference.rerank import ItemFilter, exclusion_mask
from inference.rerank_kernels import merge_sources

if TYPE_CHECKING:
    from inference.recommend import RecommendConfig


def gather_candidates(
    user_vecs: FloatArray,
    warm: BoolArray,
    items: ItemTable,
    index: Searcher,
    n_candidates: int,
    trending: IntArray,
    explore_pool: int,
    rng: np.random.Generator,
    overfetch: int = 0,
    covisit: IntArray | None = None,
) -> Candidates:
    """Union of the candidate sources for every user in the batch."""
    b = user_vecs.shape[0]
    k_ann = n_candidates + overfetch
    ann = np.full((b, k_ann), -1, dtype=np.int64)
    if warm.any() and k_ann > 0:
        found, _ = index.search(user_vecs[warm], k_ann)
        ann[warm] = found
    trend = np.asarray(trending, dtype=np.int64).reshape(-1)[:n_candidates]
    explore = _numpy_explore_draws(items, rng, b, explore_pool)
    cov = np.full((b, 0), -1, np.int64) if covisit is None else np.asarray(covisit, np.int64)
    rows, flags = merge_sources(
        ann, np.ascontiguousarray(cov), np.ascontiguousarray(trend), explore, SOURCE_ORDER
    )
    return Candidates(rows=rows, flags=flags)


def _numpy_explore_draws(items: ItemTable, rng: np.random.Generator, b: int, pool: int) -> IntArray:
    """The exploration draws as numpy's generator makes them (before the compiled draws)."""
    tail = items.tail_rows
    if tail.size and pool > 0:
        return tail[rng.integers(0, tail.size, size=(b, pool))]
    return np.full((b, 0), -1, dtype=np.int64)


def reference_candidate_batch(
    user_vecs: npt.ArrayLike,
    items: ItemTable,
    index: Searcher,
    config: RecommendConfig,
    known: npt.ArrayLike | None,
    exclude: Sequence[npt.ArrayLike] | None,
    trending: npt.ArrayLike,
    trending_scores: npt.ArrayLike | None,
    allow: ItemFilter | None,
    seed: int | np.random.Generator,
    covisit: tuple[npt.ArrayLike, npt.ArrayLike] | None,
) -> CandidateBatch:
    """``inference.candidates.candidate_batch`` as it was; the same arguments and result."""
    u, warm, _, excluded, trend_rows, trend_scores = batch_inputs(
        user_vecs, items, known, exclude, trending, trending_scores, seed
    )
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    cv_rows, cv_scores = _covisit_arrays(covisit, u.shape[0], config.covisit_weight)
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
    valid = exclusion_mask(cands.rows, excluded, items.removed, allow, unique=True)
    return CandidateBatch(u, warm, cands, valid, trend_rows, trend_scores, cv_rows, cv_scores)


def _covisit_arrays(
    covisit: tuple[npt.ArrayLike, npt.ArrayLike] | None, b: int, weight: float
) -> tuple[IntArray, FloatArray]:
    if covisit is None or weight <= 0:
        return np.full((b, 0), -1, np.int64), np.zeros((b, 0), np.float32)
    rows = np.asarray(covisit[0], dtype=np.int64).reshape(b, -1)
    scores = np.asarray(covisit[1], dtype=np.float32).reshape(b, -1)
    ok = (rows >= 0) & np.isfinite(scores) & (scores > 0)
    return np.where(ok, rows, -1), np.where(ok, scores, 0.0).astype(np.float32)
