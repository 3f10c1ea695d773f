"""The relevance blend of model score, co-visitation and popularity, and its tuning.

Each signal is put on [0, 1] per user first (the model's inner product by min-max over
the valid candidates, co-visitation and log-popularity by their row maximum), so the
weights are scale-free trades. The weights are not fixed by hand: ``tune_blend`` picks
them on validation cases (a held-out early part of the stream) by HR@K, and its grid
always holds the co-visitation source alone, so on validation the blend never does
worse than that source. Pure numpy; no I/O.

>>> model = np.array([[0.9, 0.1, 0.5]], np.float32)
>>> covisit = np.array([[0.0, 2.0, 1.0]], np.float32)
>>> pop = np.array([[10.0, 10.0, 10.0]], np.float32)
>>> valid = np.ones((1, 3), bool)
>>> blend_scores(model, covisit, pop, valid, BlendWeights(model=0.0, covisit=1.0)).round(2)
array([[0. , 1. , 0.5]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from inference.rerank import minmax_rows

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class BlendWeights:
    """Weights of the three relevance signals (each on [0, 1] per user)."""

    model: float = 1.0
    covisit: float = 1.0
    popularity: float = 0.0


COVISIT_ALONE = BlendWeights(model=0.0, covisit=1.0, popularity=0.0)

DEFAULT_GRID: tuple[BlendWeights, ...] = tuple(
    BlendWeights(model=m, covisit=1.0, popularity=p)
    for m in (0.0, 0.1, 0.25, 0.5, 1.0)
    for p in (0.0, 0.05, 0.1, 0.2, 0.4)
)
"""What ``tune_blend`` tries by default: co-visitation fixed at 1 (only ratios matter)."""


def _row_max_scaled(x: FloatArray, valid: BoolArray) -> FloatArray:
    top = np.where(valid, x, 0.0).max(axis=1, initial=0.0)
    return np.where(valid, x / np.where(top > 0, top, 1.0)[:, None], 0.0).astype(np.float32)


def blend_scores(
    model: npt.ArrayLike,
    covisit: npt.ArrayLike,
    popularity: npt.ArrayLike,
    valid: npt.ArrayLike,
    weights: BlendWeights,
) -> FloatArray:
    """``(B, C)`` blended relevance; invalid candidates get -inf.

    Args:
        model: ``(B, C)`` model scores (inner product or a ranker's output).
        covisit: ``(B, C)`` co-visitation scores, 0 where a candidate has none.
        popularity: ``(B, C)`` interaction counts (or decayed counts) of each candidate.
        valid: ``(B, C)`` candidates that may be shown.
        weights: The trade between the three.
    """
    ok = np.asarray(valid, bool)
    m = np.asarray(model, np.float32)
    ok = ok & np.isfinite(m)
    cv = np.nan_to_num(np.asarray(covisit, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    pop = np.log1p(np.clip(np.asarray(popularity, np.float32), 0.0, None))
    out = (
        np.float32(weights.model) * minmax_rows(m, ok).astype(np.float32)
        + np.float32(weights.covisit) * _row_max_scaled(np.clip(cv, 0.0, None), ok)
        + np.float32(weights.popularity) * _row_max_scaled(pop, ok)
    )
    return np.where(ok, out, -np.inf).astype(np.float32)


@dataclass(frozen=True)
class BlendCase:
    """One validation case: a user's candidates, their signals and the item that came next.

    ``target`` is the target's position among the candidates, -1 when it is not one
    (a miss whatever the weights).
    """

    model: FloatArray
    covisit: FloatArray
    popularity: FloatArray
    valid: BoolArray
    target: int


def hits_at_k(cases: Sequence[BlendCase], weights: BlendWeights, k: int = 10) -> int:
    """How many cases rank their target in the top ``k`` under ``weights``.

    Ties count against the target (a candidate scoring the same is ranked above it), so
    a blend gains nothing from flat scores.
    """
    hits = 0
    for case in cases:
        if case.target < 0 or not case.valid[case.target]:
            continue
        s = blend_scores(
            case.model[None], case.covisit[None], case.popularity[None], case.valid[None], weights
        )[0]
        t = s[case.target]
        above = int(np.count_nonzero(s >= t)) - 1
        hits += int(np.isfinite(t) and above < k)
    return hits


def tune_blend(
    cases: Sequence[BlendCase],
    grid: Iterable[BlendWeights] = DEFAULT_GRID,
    k: int = 10,
) -> tuple[BlendWeights, dict[BlendWeights, int]]:
    """The weights with the most validation hits, and the hits of every weight tried.

    The co-visitation source alone is always tried; on a tie it wins (the simpler
    blend), then the earlier grid entry.
    """
    tried = [COVISIT_ALONE, *(w for w in grid if w != COVISIT_ALONE)]
    table = {w: hits_at_k(cases, w, k) for w in tried}
    best = max(tried, key=lambda w: table[w])  # max keeps the first of equals
    return best, table


def one_se_choice(hits: npt.ArrayLike, prefer: npt.ArrayLike, z: float = 1.0) -> int:
    """The choice to serve: within ``z`` paired standard errors of the best hit rate,
    the one that ``prefer`` scores highest (the first of equals).

    The one-standard-error rule of model selection: choices the validation cannot tell
    apart from the best are ties, and a tie goes to the secondary goal (the bench
    passes the lists' long-tail share). The error is paired, per case, since every
    choice is scored on the same cases.

    Args:
        hits: ``(M, C)`` whether choice ``m`` hit case ``c``.
        prefer: ``(M,)`` the secondary goal, higher is better.
        z: How many standard errors count as a tie (0: the best hit rate alone).

    >>> hits = np.array([[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0, 0, 0], [0] * 7 + [1]])
    >>> one_se_choice(hits, [0.1, 0.3, 0.9]), one_se_choice(hits, [0.1, 0.3, 0.9], z=0)
    (1, 0)
    """
    h = np.asarray(hits, np.float64)
    goal = np.asarray(prefer, np.float64)
    best = int(np.argmax(h.mean(axis=1)))  # argmax keeps the first of equals
    n = h.shape[1]
    diff = h[best][None, :] - h
    mean = diff.mean(axis=1)
    se = diff.std(axis=1, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(h.shape[0])
    tied = np.flatnonzero(mean <= z * se + 1e-12)
    return int(tied[np.argmax(goal[tied])])
