"""One user's relevance before re-ranking, compiled: cold users' trending score, each
candidate's co-visitation score and the blend.

``inference.list_kernel.prepare_lists`` calls these per user; each is the numba form of
a numpy function (``inference.recommend.trend_score_of``,
``inference.rerank_kernels.covisit_lookup``, ``inference.blend.blend_scores``), in the
same precision and order so the lists match.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["blend_row", "covisit_scores", "hash_slots", "trend_score"]


@njit(cache=True, nogil=True)
def trend_score(row: int, trend_rows: np.ndarray, scores: np.ndarray) -> np.float32:
    """``inference.recommend.trend_score_of`` for one row: its first occurrence's score.

    A scan of the few trending rows (asked only for cold users' trending candidates).
    """
    for t in range(trend_rows.shape[0]):
        if trend_rows[t] == row:
            return scores[t]
    return np.float32(0.0)


@njit(cache=True, nogil=True)
def hash_slots(k: int) -> int:
    """Slots of ``covisit_scores``' table for ``k`` co-visitation rows: a power of two,
    at least twice ``k`` and 16 (probes stay short)."""
    size = 16
    while size < 2 * k:
        size *= 2
    return size


@njit(cache=True, nogil=True)
def covisit_scores(
    r: np.ndarray,
    valid: np.ndarray,
    cv_rows: np.ndarray,
    cv_scores: np.ndarray,
    keys: np.ndarray,
    first: np.ndarray,
    out: np.ndarray,
) -> bool:
    """``out[j]``: candidate ``j``'s co-visitation score (its row's first entry in
    ``cv_rows``, -1 padded), 0 where the candidate is empty, not valid or not there;
    returns whether any is positive.

    ``covisit_lookup`` for one user, with the ``K`` rows put in an open-addressing table
    (``keys`` and ``first``, ``hash_slots(K)`` long, overwritten) instead of scanned per
    candidate: ``C + K`` steps instead of ``C·K`` (432 candidates and 50 rows a user).
    """
    mask = keys.shape[0] - 1
    keys[:] = -1
    for t in range(cv_rows.shape[0]):
        x = cv_rows[t]
        if x < 0:
            continue
        h = ((x * 2654435761) >> 16) & mask
        while keys[h] >= 0 and keys[h] != x:
            h = (h + 1) & mask
        if keys[h] < 0:  # a later copy keeps the first entry's score
            keys[h] = x
            first[h] = t
    found = False
    for j in range(r.shape[0]):
        out[j] = 0.0
        x = r[j]
        if x < 0 or not valid[j]:
            continue
        h = ((x * 2654435761) >> 16) & mask
        while keys[h] >= 0 and keys[h] != x:
            h = (h + 1) & mask
        if keys[h] == x:
            out[j] = cv_scores[first[h]]
            found = found or out[j] > 0
    return found


@njit(cache=True, nogil=True)
def blend_row(
    rel: np.ndarray,
    valid: np.ndarray,
    cv: np.ndarray,
    log_pop: np.ndarray,
    w_model: np.float32,
    w_covisit: np.float32,
    w_pop: np.float32,
    pop_on: bool,
) -> None:
    """``blend_scores`` for one row, written into ``rel`` where valid and finite."""
    c = rel.shape[0]
    ok = np.empty(c, np.bool_)
    lo, hi = np.inf, -np.inf
    cv_top = np.float32(0.0)
    pop_top = np.float32(0.0)
    for j in range(c):
        ok[j] = valid[j] and np.isfinite(rel[j])
        if ok[j]:
            v = np.float64(rel[j])
            lo = min(lo, v)
            hi = max(hi, v)
            cv_top = max(cv_top, cv[j])
            if pop_on:
                pop_top = max(pop_top, log_pop[j])
    span = hi - lo
    good = np.isfinite(span) and span > 0
    cv_div = cv_top if cv_top > 0 else np.float32(1.0)
    pop_div = pop_top if pop_top > 0 else np.float32(1.0)
    for j in range(c):
        if not ok[j]:
            continue
        mm = np.float32((np.float64(rel[j]) - lo) / span) if good else np.float32(0.0)
        out = w_model * mm + w_covisit * np.float32(cv[j] / cv_div)
        if pop_on:
            out = out + w_pop * np.float32(log_pop[j] / pop_div)
        rel[j] = out
