"""The co-visitation table's per-call loops, compiled with numba.

A scoring call learns a few dozen pairs and reads a few hundred followers; done with
numpy, each is a fixed cost of some forty array operations (``np.unique``, ``lexsort``,
``np.add.at``, row sorts), about 0.5 ms a call whatever the batch size. These kernels do
the same work in plain loops, with the same float operations in the same order, so the
table and the scores are bit-for-bit those of the array form (``tests/inference/
test_covisit_kernels.py`` keeps that form as the reference). Compiled once, cached on
disk; ``inference.covisit.CovisitTable`` is the API.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from inference.radix_order import radix_order

__all__ = [
    "add_pairs",
    "pairs_of_visits",
    "right_aligned",
    "unclaimed",
    "warm_up",
]


@njit(cache=True, nogil=True)
def _heaviest_first(w: np.ndarray, m: int, out: np.ndarray) -> None:
    """``out[:m]``: ``np.argsort(-w[:m], kind="stable")``, by insertion when short (a
    row's misses are a handful; a merge sort's allocations cost more than the sort)."""
    if m > 32:
        out[:m] = np.argsort(-w[:m], kind="mergesort")
        return
    for t in range(m):
        at = t
        while at > 0 and -w[out[at - 1]] > -w[t]:
            out[at] = out[at - 1]
            at -= 1
        out[at] = t


@njit(cache=True, nogil=True)
def add_pairs(
    slot_of: np.ndarray,
    nbr: np.ndarray,
    weight: np.ndarray,
    error: np.ndarray,
    occ: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    w: np.ndarray,
    span: np.int64,
) -> None:
    """Add directed pair weights to the Space-Saving table in place.

    Every source row must hold a storage slot already (``slot_of``, ``claim``).

    Occurrences take every pair (float32, in input order: ``np.add.at``'s sums). Equal
    pairs are summed first (float64 in input order, then float32: ``np.bincount``'s).
    Per source row, a follower already held gains its weight; the others, heaviest
    first (ties: lower follower row first), each take the row's lightest slot (first of
    equals) and inherit its weight as their error. Rows never interact, so taking them
    one after another is the batch's result.
    """
    n = src.shape[0]
    for i in range(n):
        occ[src[i]] += w[i]
    for i in range(n):
        occ[dst[i]] += w[i]
    keys = src * span + dst
    order = radix_order(keys)
    width = nbr.shape[1]
    # Unique pairs in key order (so grouped by source row), weights summed.
    uk = np.empty(n, np.int64)
    uw = np.empty(n, np.float32)
    m = 0
    i = 0
    while i < n:
        key = keys[order[i]]
        total = 0.0
        while i < n and keys[order[i]] == key:
            total += np.float64(w[order[i]])
            i += 1
        uk[m] = key
        uw[m] = np.float32(total)
        m += 1
    miss_d = np.empty(m, np.int64)
    miss_w = np.empty(m, np.float32)
    heavy = np.empty(m, np.int64)
    lo = 0
    while lo < m:
        row = uk[lo] // span
        st = slot_of[row]
        hi = lo
        while hi < m and uk[hi] // span == row:
            hi += 1
        misses = 0
        for u in range(lo, hi):
            d = uk[u] % span
            slot = width  # the first slot holding d: a min over the row (vectorises)
            for j in range(width):
                slot = min(slot, j if nbr[st, j] == d else width)
            if slot < width:
                weight[st, slot] += uw[u]
            else:
                miss_d[misses] = d
                miss_w[misses] = uw[u]
                misses += 1
        if misses:
            _heaviest_first(miss_w, misses, heavy)
            for t in range(misses):
                slot = 0
                floor = weight[st, 0]
                for j in range(1, width):
                    if floor <= 0:  # weights are >= 0: the first empty slot is the lightest
                        break
                    if weight[st, j] < floor:
                        slot, floor = j, weight[st, j]
                nbr[st, slot] = miss_d[heavy[t]]
                weight[st, slot] = floor + miss_w[heavy[t]]
                error[st, slot] = floor
        lo = hi


@njit(cache=True, nogil=True)
def pairs_of_visits(
    flat: np.ndarray,
    lengths: np.ndarray,
    n_new: np.ndarray,
    dist_weight: np.ndarray,
    with_backward: bool,
    backward: np.float32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``follow_pairs`` over concatenated sequences (see its docstring).

    ``dist_weight[t]`` weighs distance ``t + 1``; pairs come per user, per new visit,
    by distance, then (``backward`` > 0) the same pairs reversed at ``backward`` times
    the weight when ``with_backward``.
    """
    window = dist_weight.shape[0]
    bound = 0
    for u in range(lengths.shape[0]):
        bound += max(min(n_new[u], lengths[u]), 0) * window
    src = np.empty(bound, np.int64)
    dst = np.empty(bound, np.int64)
    w = np.empty(bound, np.float32)
    visits = np.empty(flat.shape[0], np.int64)
    m = 0
    start = 0
    for u in range(lengths.shape[0]):
        end = start + lengths[u]
        new = min(n_new[u], lengths[u])
        if new > 0:
            n_vis = 0
            first_new = 0
            at = end - new  # the first new raw entry
            for i in range(start, end):
                if i == start or flat[i] != flat[i - 1]:
                    visits[n_vis] = flat[i]
                    n_vis += 1
                    if i == at:
                        first_new = n_vis - 1  # it starts a visit: that one is new
                elif i == at:
                    first_new = n_vis  # it repeats an old visit: the next one is new
            for later in range(max(first_new, 1), n_vis):
                b = visits[later]
                for d in range(1, window + 1):
                    j = later - d
                    if j < 0:
                        break
                    a = visits[j]
                    if a >= 0 and b >= 0 and a != b:
                        src[m] = a
                        dst[m] = b
                        w[m] = dist_weight[d - 1]
                        m += 1
        start = end
    if not with_backward:
        return src[:m], dst[:m], w[:m]
    s2 = np.empty(2 * m, np.int64)
    d2 = np.empty(2 * m, np.int64)
    w2 = np.empty(2 * m, np.float32)
    for i in range(m):
        s2[i], d2[i], w2[i] = src[i], dst[i], w[i]
        s2[m + i], d2[m + i], w2[m + i] = dst[i], src[i], w[i] * backward
    return s2, d2, w2


@njit(cache=True, nogil=True)
def right_aligned(
    flat: np.ndarray, lengths: np.ndarray, n: int, by_age: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each of the concatenated sequences' last ``n`` entries, right-aligned, -1 padded,
    weighing ``by_age[j]`` in column ``j`` where the entry is not -1 (0 elsewhere)."""
    b = lengths.shape[0]
    rows = np.full((b, n), -1, np.int64)
    weights = np.zeros((b, n), np.float32)
    end = 0
    for u in range(b):
        end += lengths[u]
        take = min(n, lengths[u])
        for j in range(n - take, n):
            r = flat[end - n + j]
            rows[u, j] = r
            if r >= 0:
                weights[u, j] = by_age[j]
    return rows, weights


@njit(cache=True, nogil=True)
def unclaimed(slot_of: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``np.unique(rows[slot_of[rows] == 0])``: the distinct rows without storage, sorted."""
    picked = np.empty(rows.shape[0], np.int64)
    m = 0
    for r in rows:
        if slot_of[r] == 0:
            picked[m] = r
            m += 1
    return np.unique(picked[:m])


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first real call needs it;
    the scores' kernels (``inference.covisit_top``) too."""
    from inference.covisit_top import warm_up as top_warm_up

    top_warm_up()
    slot_of = np.array([1, 0], np.int64)
    nbr = np.full((2, 2), -1, np.int64)
    weight, error = np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32)
    occ = np.zeros(2, np.float32)
    one = np.ones(1, np.int64)
    add_pairs(slot_of, nbr, weight, error, occ, 0 * one, one, np.ones(1, np.float32), 2 * one[0])
    right_aligned(one, one, 1, np.ones(1, np.float32))
    unclaimed(slot_of, one)
    for back in (0.0, 0.5):
        pairs_of_visits(one, one, one, np.ones(2, np.float32), back > 0, np.float32(back))
