"""One user's relevance before re-ranking, compiled: cold users' trending score and the blend.

``inference.list_kernel.prepare_lists`` calls these per user; each is the numba form of
a numpy function (``inference.recommend.trend_score_of``,
``inference.blend.blend_scores``), in the same precision and order so the lists match.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["blend_row", "trend_score"]


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
