"""The ranker's input rows, computed one way for training and for serving.

The online pipeline hands a ranker ``(user_vecs (W, d), cand_vecs (W, C, d), features)``
where ``features`` holds ``(W, C)`` arrays ``ann_score``, ``log_popularity``, ``age_s``,
``is_trending`` and ``category`` (see ``inference.recommend.Ranker``). Training builds
the same dict for retrieval candidates of logged cases and calls ``candidate_features``
here, so a feature cannot mean one thing offline and another online. Pure numpy.

Everything but ``ann_score`` and ``u * v`` is taken *relative to the user's candidate
list* (ranks, centred values, shares): category codes are numbered differently by each
catalog and popularity counts are on a different scale in training and in a live worker,
but a candidate's standing among the other candidates means the same in both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

LAYOUT: Final = "freshet-ranker-v1"
"""Name and version of the layout below; a bundle's ranker must have been trained on it."""

SCALAR_FEATURES: Final = (
    "ann_score",  # user·item inner product
    "ann_gap",  # inner product minus the best in the list
    "ann_z",  # inner product standardised within the list
    "ann_rank",  # 0 (best) .. 1 (worst) by inner product within the list
    "log_popularity_centred",  # log1p(popularity) minus the list mean
    "popularity_rank",  # 0 (most popular) .. 1 within the list
    "log_age_h",  # log1p(age in hours), unknown age counts as AGE_CAP_S
    "age_known",  # 1 when the item's first-seen time is known
    "is_new",  # 1 when younger than NEW_ITEM_AGE_S
    "is_trending",  # 1 when the item is on the trending list
    "category_share",  # share of the list in the item's category (0 when unknown)
    "category_affinity",  # same, weighted by softmax(inner product / CATEGORY_TEMPERATURE)
)
"""Named leading columns of a row; the user·item element-wise product (``d`` wide) follows."""

AGE_CAP_S: Final = 90 * 86_400.0
NEW_ITEM_AGE_S: Final = 3 * 86_400.0
CATEGORY_TEMPERATURE: Final = 0.1
INPUT_NAME: Final = "features"
OUTPUT_NAME: Final = "score"

RowScorer = Callable[[FloatArray], "npt.ArrayLike | None"]
"""Scores ``(B, R)`` feature rows, ``(B,)`` out; ``LoadedBundle.rank`` is one."""


def feature_width(dim: int) -> int:
    """Columns ``R`` of a row for ``dim``-wide user and item vectors."""
    return len(SCALAR_FEATURES) + dim


def candidate_features(
    user_vecs: npt.ArrayLike,
    cand_vecs: npt.ArrayLike,
    features: Mapping[str, npt.ArrayLike],
) -> FloatArray:
    """Ranker rows ``(W, C, R)`` float32 for each user's candidates; always finite.

    Args:
        user_vecs: ``(W, d)`` user vectors.
        cand_vecs: ``(W, C, d)`` candidate item vectors.
        features: ``(W, C)`` arrays ``ann_score``, ``log_popularity`` (``log1p`` of an
            interaction count), ``age_s`` (``inf`` when unknown), ``is_trending`` and
            ``category`` (integer code, negative when unknown).
    """
    u = np.asarray(user_vecs, dtype=np.float32)
    v = np.asarray(cand_vecs, dtype=np.float32)
    w, c = v.shape[:2]
    ip = _finite(features["ann_score"], (w, c))
    log_pop = _finite(features["log_popularity"], (w, c))
    age = np.asarray(features["age_s"], dtype=np.float64).reshape(w, c)
    trending = _finite(features["is_trending"], (w, c))
    cats = np.asarray(features["category"], dtype=np.int64).reshape(w, c)

    age_known = np.isfinite(age) & (age >= 0)
    age_s = np.where(age_known, np.minimum(age, AGE_CAP_S), AGE_CAP_S)
    std = ip.std(axis=1, keepdims=True)
    share, affinity = _category_shares(cats, _softmax(ip / CATEGORY_TEMPERATURE))
    scalars = [
        ip,
        ip - ip.max(axis=1, keepdims=True, initial=-np.inf) if c else ip,
        (ip - ip.mean(axis=1, keepdims=True)) / np.maximum(std, 1e-6) if c else ip,
        _rank_fraction(-ip),
        log_pop - log_pop.mean(axis=1, keepdims=True) if c else log_pop,
        _rank_fraction(-log_pop),
        np.log1p(age_s / 3600.0),
        age_known.astype(np.float64),
        (age_known & (age < NEW_ITEM_AGE_S)).astype(np.float64),
        (trending > 0).astype(np.float64),
        share,
        affinity,
    ]
    out = np.empty((w, c, feature_width(u.shape[1])), dtype=np.float32)
    out[:, :, : len(scalars)] = np.stack(scalars, axis=-1)
    out[:, :, len(scalars) :] = u[:, None, :] * v
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def make_ranker(
    score_rows: RowScorer,
    on_error: Callable[[Exception], None] | None = None,
) -> Callable[[FloatArray, FloatArray, Mapping[str, np.ndarray]], FloatArray]:
    """The online ``Ranker`` hook around a row scorer: rows in, ``(W, C)`` scores out.

    When ``score_rows`` returns None (a bundle without a ranker), the inner product is
    kept, so the hook never changes lists it cannot score. With ``on_error``, a scorer
    that raises, returns the wrong shape or any non-finite score is reported there and
    the inner product is kept instead (a faulty ranker must not stop the stream);
    without it, errors propagate and non-finite scores drop their candidates.
    """

    def rank(
        user_vecs: FloatArray, cand_vecs: FloatArray, features: Mapping[str, np.ndarray]
    ) -> FloatArray:
        rows = candidate_features(user_vecs, cand_vecs, features)
        w, c, r = rows.shape
        ann = np.asarray(features["ann_score"], dtype=np.float32).reshape(w, c)
        if w * c == 0:
            return ann
        try:
            scores = score_rows(rows.reshape(w * c, r))
            if scores is None:
                return ann
            out = np.asarray(scores, dtype=np.float32).reshape(w, c)
            if on_error is not None and not np.isfinite(out).all():
                raise ValueError("ranker gave non-finite scores")
            return out
        except Exception as exc:
            if on_error is None:
                raise
            on_error(exc)
            return ann

    return rank


def _finite(x: npt.ArrayLike, shape: tuple[int, int]) -> npt.NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64).reshape(shape)
    return np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)


def _category_shares(
    cats: npt.NDArray[np.int64], weights: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per candidate: share and weight share of its row in the same (known) category."""
    w, c = cats.shape
    if w * c == 0:
        return np.zeros((w, c)), np.zeros((w, c))
    known = cats >= 0
    # One group per (row, category): O(W·C log) instead of comparing all C² pairs.
    keys = np.arange(w)[:, None] * (int(cats.max()) + 2) + np.where(known, cats + 1, 0)
    _, group = np.unique(keys.reshape(-1), return_inverse=True)
    counts = np.bincount(group)
    mass = np.bincount(group, weights=weights.reshape(-1))
    share = np.where(known, counts[group].reshape(w, c) / c, 0.0)
    affinity = np.where(known, mass[group].reshape(w, c), 0.0)
    return share, affinity


def _rank_fraction(keys: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Position of each entry when its row is sorted ascending by ``keys``, as 0..1."""
    c = keys.shape[1]
    ranks = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1)
    return ranks / max(c - 1, 1)


def _softmax(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if x.shape[1] == 0:
        return x
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
