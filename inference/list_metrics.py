"""Single-list quality measures shared by the re-ranker, online metrics and benchmarks.

Diversity here uses the same item similarity that MMR penalises (cosine of vectors
blended with a same-category indicator), so what the re-ranker optimises is what the
dashboards report.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

# Share of all interactions that the popularity head accounts for.
HEAD_MASS = 0.8
# Whole counts up to this many times the catalog size are binned, not sorted.
BINCOUNT_MAX = 4


def popularity_head(counts: npt.ArrayLike, mass: float = HEAD_MASS) -> npt.NDArray[np.bool_]:
    """Mask of the most popular items that together account for ``mass`` of interactions.

    Items are taken in decreasing count order (ties: lower index first) until their
    cumulative count reaches ``mass`` of the total. Items never interacted with are
    never in the head; an all-zero catalog has an empty head.
    """
    raw = np.asarray(counts)
    if raw.ndim == 1 and raw.dtype in (np.float32, np.float64):
        # the catalog's snapshot path: one compiled pass when the counts are whole
        head, whole = _head_of_whole_counts(raw, mass, BINCOUNT_MAX)
        if whole:
            return head
    c = np.clip(np.nan_to_num(np.asarray(counts, dtype=np.float64), nan=0.0), 0.0, None)
    head = np.zeros(c.shape, dtype=bool)
    total = c.sum()
    if c.size == 0 or total <= 0:
        return head
    top = c.max()
    if top <= BINCOUNT_MAX * max(c.size, 1024) and (c == np.floor(c)).all():
        return _head_of_counts(c, mass * total * (1 - 1e-12))
    return _head_by_sort(c, mass * total * (1 - 1e-12))


def _head_by_sort(c: npt.NDArray[np.float64], target: float) -> npt.NDArray[np.bool_]:
    """``popularity_head`` by a stable sort of the counts (any non-negative values)."""
    head = np.zeros(c.shape, dtype=bool)
    order = np.argsort(-c, kind="stable")
    cum = np.cumsum(c[order])
    n_head = int(np.searchsorted(cum, target, side="left")) + 1
    head[order[: min(n_head, c.size)]] = True
    head &= c > 0
    return head


def _head_of_counts(c: npt.NDArray[np.float64], target: float) -> npt.NDArray[np.bool_]:
    """``popularity_head`` of whole counts without sorting the items (``O(n + max)``).

    The stable sort's prefix is every item above some count ``t`` and the lowest-index
    items at ``t``: a histogram of the counts finds ``t`` and how many at ``t`` it
    takes. Sums of whole numbers below 2**53 are exact in float64 in any order, so the
    comparisons with ``target`` are the sorted prefix's own.
    """
    per_value = np.bincount(c.astype(np.int64))  # items holding each count
    values = np.arange(per_value.size - 1, 0, -1, dtype=np.float64)  # counts, descending
    n_at = per_value[:0:-1]
    mass_before = np.concatenate(([0.0], np.cumsum(values * n_at)))
    level = int(np.searchsorted(mass_before[1:], target, side="left"))
    if level >= n_at.size:  # mass above 1: every item with a count
        return c > 0
    t, prefix = values[level], mass_before[level]
    taking = prefix + t * np.arange(1, n_at[level] + 1, dtype=np.float64)
    n_at_t = int(np.searchsorted(taking, target, side="left")) + 1
    head = c > t
    head[np.flatnonzero(c == t)[:n_at_t]] = True
    return head


@njit(cache=True, nogil=True)
def _head_of_whole_counts(
    raw: npt.NDArray[np.floating], mass: float, bincount_max: int
) -> tuple[npt.NDArray[np.bool_], bool]:
    """``_head_of_counts`` in three passes over the items, compiled; ``(head, True)``.

    NaN and negative counts count as 0, as in ``popularity_head``. Returns
    ``(empty, False)`` when the counts are not all whole or exceed ``bincount_max``
    times ``max(n, 1024)``, or sum to 2**53 or more (the caller's numpy paths take those).
    The first pass sums whole counts in int64, without a branch, so it vectorises:
    below 2**53 a float64 sum of whole numbers is the same exact total in any order.
    """
    n = raw.shape[0]
    head = np.zeros(n, np.bool_)
    limit = float(bincount_max * max(n, 1024))
    total = np.int64(0)
    top = np.int64(0)
    bad = False
    for i in range(n):
        x = float(raw[i])
        v = x if x > 0.0 else 0.0  # NaN and negatives: 0
        bad |= (v != np.floor(v)) | (v > limit)
        k = np.int64(v) if v <= limit else np.int64(0)
        total += k
        top = k if k > top else top
    if bad or total >= 2**53:
        return head, False
    if n == 0 or total <= 0:
        return head, True
    target = mass * float(total) * (1 - 1e-12)
    per_value = np.zeros(top + 1, np.int64)
    for i in range(n):
        x = float(raw[i])
        if x > 0.0:
            per_value[int(x)] += 1
    # walk the counts downwards: the level t where the mass reaches the target
    cum = prefix = 0.0
    t = 0
    for v in range(int(top), 0, -1):
        prefix = cum
        cum += float(v) * float(per_value[v])
        if cum >= target:
            t = v
            break
    if t == 0:  # mass above 1: every item with a count
        for i in range(n):
            head[i] = raw[i] > 0.0
        return head, True
    n_at = per_value[t]
    n_at_t = n_at + 1  # as searchsorted past the end, then sliced
    for j in range(n_at):
        if prefix + float(t) * float(j + 1) >= target:
            n_at_t = j + 1
            break
    for i in range(n):
        x = float(raw[i])
        if x > t:
            head[i] = True
        elif x == t and n_at_t > 0:
            head[i] = True
            n_at_t -= 1
    return head, True


def unit_rows(vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Rows scaled to unit length; zero rows stay zero (cosine 0 with everything)."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def item_similarity(
    unit_a: npt.ArrayLike,
    cats_a: npt.ArrayLike,
    unit_b: npt.ArrayLike,
    cats_b: npt.ArrayLike,
    category_weight: float,
) -> npt.NDArray[np.float32]:
    """Pairwise similarity ``(1-w)·cos + w·[same category]`` over the last two axes.

    Args:
        unit_a: ``(..., m, d)`` unit vectors (see ``unit_rows``).
        cats_a: ``(..., m)`` category codes; negative means unknown (never equal).
        unit_b: ``(..., n, d)`` unit vectors.
        cats_b: ``(..., n)`` category codes.
        category_weight: ``w`` in [0, 1].

    Returns:
        ``(..., m, n)`` similarities.
    """
    a, b = np.asarray(unit_a, np.float32), np.asarray(unit_b, np.float32)
    ca, cb = np.asarray(cats_a)[..., :, None], np.asarray(cats_b)[..., None, :]
    cos = a @ np.swapaxes(b, -1, -2)
    same = (ca == cb) & (ca >= 0)
    return ((1.0 - category_weight) * cos + category_weight * same).astype(np.float32)


def intra_list_diversity(
    vectors: npt.ArrayLike, categories: npt.ArrayLike | None = None, category_weight: float = 0.5
) -> float:
    """Mean pairwise dissimilarity ``1 - item_similarity`` of one list; 0 below 2 items."""
    v = unit_rows(vectors)
    k = v.shape[0]
    if k < 2:
        return 0.0
    cats = np.full(k, -1) if categories is None else np.asarray(categories)
    w = 0.0 if categories is None else category_weight
    sim = item_similarity(v, cats, v, cats, w)
    upper = np.triu_indices(k, 1)
    return float(np.mean(1.0 - sim[upper]))


def longtail_share(items: npt.ArrayLike, head: npt.ArrayLike) -> float:
    """Share of a list's items (row numbers; -1 padding ignored) outside the head."""
    idx = np.asarray(items, dtype=np.int64).reshape(-1)
    idx = idx[idx >= 0]
    if idx.size == 0:
        return 0.0
    return float(np.mean(~np.asarray(head, dtype=bool)[idx]))
