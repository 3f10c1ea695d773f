"""Model-free user embeddings: a time-decayed, event-weighted sum of item vectors.

Used while no model bundle is loaded. The state of a user is ``(vector, ts_ms)`` with

    vector = Σ_events w_e · 2^(−(ts_ms − t_e) / half_life) · item_vec_e,  ts_ms = max t_e

which does not depend on the order events arrive in: a late event is decayed to the
current state time instead of decaying the state. Inner-product retrieval only needs
the direction, so the vector is not normalised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

from schemas.event_weights import FOLD_IN_WEIGHTS, RATING_NEUTRAL, RATING_TOP, rating_value
from schemas.events import EventType

FloatArray = npt.NDArray[np.float32]
TsArray = npt.NDArray[np.float64]

# Default strength of each interaction type (``schemas.event_weights``, column
# ``fold_in``); a caller may pass its own mapping.
EVENT_WEIGHTS: Final[Mapping[EventType, float]] = FOLD_IN_WEIGHTS
_F32_MAX: Final = float(np.finfo(np.float32).max)
_F64_MAX: Final = float(np.finfo(np.float64).max)


def event_weights(
    types: npt.ArrayLike,
    values: npt.ArrayLike | None = None,
    table: Mapping[EventType, float] = EVENT_WEIGHTS,
    ratings_as_interactions: bool = False,
) -> FloatArray:
    """Weights for a batch of event types; ratings scale by ``(value − 3) / 2``.

    The rating rule of ``schemas.event_weights``: a 5-star rating pulls like a click, a
    1-star rating pushes away, 3 stars is neutral; a rating without a value (NaN), or
    any rating with ``ratings_as_interactions``, counts as 5 stars. Unknown types weigh 0.

    >>> event_weights(["rating", "rating", "click"], [1.0, np.nan, 1.0]).tolist()
    [-1.0, 1.0, 1.0]
    >>> event_weights(["rating"], [1.0], ratings_as_interactions=True).tolist()
    [1.0]
    """
    t = np.asarray(types, dtype=object).reshape(-1)
    w = np.array([table.get(x, 0.0) for x in t], dtype=np.float32)
    if values is not None:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        counted = np.array([rating_value(x, ratings_as_interactions) for x in v.tolist()])
        scale = (counted - RATING_NEUTRAL) / (RATING_TOP - RATING_NEUTRAL)
        w = np.where(t == "rating", w * scale, w).astype(np.float32)
    return w


def decay(dt_ms: npt.ArrayLike, half_life_s: float) -> npt.NDArray[np.float64]:
    """``2^(−dt / half_life)`` for non-negative ``dt_ms`` (negative counts as 0)."""
    if half_life_s <= 0:
        raise ValueError("half_life_s must be positive")
    dt = np.clip(np.nan_to_num(np.asarray(dt_ms, dtype=np.float64), nan=0.0), 0.0, None)
    return np.exp2(-dt / (1000.0 * half_life_s))


def fold_in(
    prev: npt.ArrayLike,
    prev_ts_ms: npt.ArrayLike,
    item_vecs: npt.ArrayLike,
    weights: npt.ArrayLike,
    ts_ms: npt.ArrayLike,
    half_life_s: float,
) -> tuple[FloatArray, TsArray]:
    """Fold one event per user into ``(B, d)`` state vectors.

    Args:
        prev: ``(B, d)`` current vectors (zeros for a new user).
        prev_ts_ms: ``(B,)`` their state times; ``-inf`` (or anything, with zero
            vectors) for a new user.
        item_vecs: ``(B, d)`` vectors of the items acted on.
        weights: ``(B,)`` event weights (see ``event_weights``).
        ts_ms: ``(B,)`` event times, epoch milliseconds.
        half_life_s: Time for an event's pull to halve.

    Returns:
        ``(vectors (B, d) float32, state times (B,) float64)``.
    """
    p = np.asarray(prev, dtype=np.float64)
    pt = np.asarray(prev_ts_ms, dtype=np.float64)
    t = np.asarray(ts_ms, dtype=np.float64)
    new_ts = np.fmax(pt, t)
    old_part = p * _decay_to(new_ts, pt, half_life_s)[:, None]
    w = np.asarray(weights, dtype=np.float64) * _decay_to(new_ts, t, half_life_s)
    out = old_part + w[:, None] * np.asarray(item_vecs, dtype=np.float64)
    return _finite(out), new_ts


def fold_in_events(
    prev: npt.ArrayLike,
    prev_ts_ms: npt.ArrayLike,
    user_index: npt.ArrayLike,
    item_vecs: npt.ArrayLike,
    weights: npt.ArrayLike,
    ts_ms: npt.ArrayLike,
    half_life_s: float,
) -> tuple[FloatArray, TsArray]:
    """Fold any number of events per user at once (same result as one at a time).

    Args:
        prev: ``(B, d)`` current vectors.
        prev_ts_ms: ``(B,)`` current state times.
        user_index: ``(E,)`` row in ``prev`` each event belongs to.
        item_vecs: ``(E, d)`` item vectors of the events.
        weights: ``(E,)`` event weights.
        ts_ms: ``(E,)`` event times.
        half_life_s: Time for an event's pull to halve.

    Returns:
        ``(vectors (B, d) float32, state times (B,) float64)``; users without events
        keep their vector and time.
    """
    p = np.ascontiguousarray(prev, dtype=np.float64)
    pt = np.asarray(prev_ts_ms, dtype=np.float64).reshape(-1)
    u = np.ascontiguousarray(user_index, dtype=np.int64).reshape(-1)
    t = np.asarray(ts_ms, dtype=np.float64).reshape(-1)
    new_ts = pt.copy()
    np.fmax.at(new_ts, u, t)
    # Both decays in one call (users' states, then events), numpy's exp2: the sums
    # below are a compiled loop, the float64 operations of np.add.at in its order.
    b = pt.size
    factor = _decay_to(np.concatenate([new_ts, new_ts[u]]), np.concatenate([pt, t]), half_life_s)
    w = np.asarray(weights, dtype=np.float64).reshape(-1) * factor[b:]
    vecs = np.ascontiguousarray(item_vecs, dtype=np.float32).reshape(u.size, p.shape[1])
    return _fold_sums(p, factor[:b], u, w, vecs), new_ts


@njit(cache=True, nogil=True)
def _fold_sums(
    prev: np.ndarray, keep: np.ndarray, user: np.ndarray, w: np.ndarray, vecs: np.ndarray
) -> np.ndarray:
    """``_finite(prev * keep[:, None])`` after ``np.add.at(.., user, w[:, None] * vecs)``:
    the same float64 products and sums in the same order, then float32 (NaN as 0,
    clipped to float32's range)."""
    b, d = prev.shape
    acc = np.empty((b, d), np.float64)
    for i in range(b):
        for j in range(d):
            acc[i, j] = prev[i, j] * keep[i]
    for e in range(user.shape[0]):
        for j in range(d):
            acc[user[e], j] += w[e] * np.float64(vecs[e, j])
    lo, hi = np.float64(-_F32_MAX), np.float64(_F32_MAX)
    out = np.empty((b, d), np.float32)
    for i in range(b):
        for j in range(d):
            x = acc[i, j]
            out[i, j] = 0.0 if x != x else np.float32(min(max(x, lo), hi))
    return out


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first fold-in needs it."""
    one = np.ones(1, np.int64)
    _fold_sums(np.zeros((1, 1)), np.ones(1), 0 * one, np.ones(1), np.ones((1, 1), np.float32))


def cold_user_vector(
    trending_vecs: npt.ArrayLike, trending_scores: npt.ArrayLike | None = None
) -> FloatArray:
    """Starting vector for a brand-new user: score-weighted mean of trending items.

    Returns a zero vector when there is nothing trending (or all scores are <= 0); the
    recommender then serves trending and exploration slots only.
    """
    v = np.asarray(trending_vecs, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"expected a (T, d) matrix, got shape {v.shape}")
    if trending_scores is None:
        s = np.ones(v.shape[0])
    else:
        s = np.clip(np.nan_to_num(np.asarray(trending_scores, dtype=np.float64)), 0.0, None)
    total = s.sum()
    if v.shape[0] == 0 or total <= 0:
        return np.zeros(v.shape[1], dtype=np.float32)
    return _finite(s @ v / total)


def _decay_to(to_ts: TsArray, from_ts: TsArray, half_life_s: float) -> npt.NDArray[np.float64]:
    """``decay(to - from)``: 1 where that is NaN (two empty states), 0 from an empty
    state (``-inf``) to a real time. Written out (no ``nan_to_num``, ``clip``), the same
    numbers as ``decay`` of the difference, for a fraction of the fixed cost."""
    if half_life_s <= 0:
        raise ValueError("half_life_s must be positive")
    with np.errstate(invalid="ignore"):
        dt = to_ts - from_ts  # inf - inf (two empty states) is nan -> no decay
    # ``decay``'s nan_to_num then clip: NaN and negatives -> 0, +inf -> float64's max
    dt = np.where(dt > 0, np.minimum(dt, _F64_MAX), 0.0)
    factor = np.exp2(-dt / (1000.0 * half_life_s))
    return np.where(np.isneginf(from_ts) & np.isfinite(to_ts), 0.0, factor)


def _finite(x: npt.NDArray[np.float64]) -> FloatArray:
    info = np.finfo(np.float32)
    return np.nan_to_num(np.clip(x, info.min, info.max), nan=0.0).astype(np.float32)
