"""Co-visitation scores: each user's followers summed and their top ``k``, compiled.

``CovisitTable.score_each`` wants, per damping and user, the ``k`` followers of the
user's recent items with the best summed scores. ``_user_sums`` lays a user's every
(history item, slot) contribution out sorted by follower with the sums at each group's
end, and ``_row_top`` ranks a row of them; ``follower_top`` runs both a user at a time in
one call, into buffers it reuses, so the ``(D, B, H·W)`` sums (2.4 MB each at 50 users, 3
dampings and 10 x 200 followers) are neither written out nor read back: only the rows
whose best sums tie come back, for the caller's numpy tie order. The whole-batch sums
and top ``k`` it replaced are kept in the tests (``tests/covisit_references.py``); the
array form they are checked against, to the bit, is ``tests/inference/
test_covisit_kernels.py``'s.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from inference.radix_order import radix_order

__all__ = ["followed_occurrences", "follower_top", "warm_up"]

# A user's working arrays for ``_user_sums``, ``H·W`` each.
Scratch = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# The table's arrays the sums read: slot_of, nbr, weight, error, occ.
Table = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@njit(cache=True, nogil=True)
def followed_occurrences(
    slot_of: np.ndarray, nbr: np.ndarray, occ: np.ndarray, history: np.ndarray
) -> np.ndarray:
    """``(B, H, W)``: each history row's followers' occurrences, floored at 1e-12 (row
    0's where the row or the entry is empty: the array form read follower 0 there)."""
    b, h = history.shape
    n, width = slot_of.shape[0], nbr.shape[1]
    floor = np.float32(1e-12)
    out = np.empty((b, h, width), np.float32)
    zero = occ[0] if occ.shape[0] else floor  # an empty table has no row 0
    empty = floor if zero < floor else zero
    for u in range(b):
        for t in range(h):
            row = history[u, t]
            st = slot_of[row] if row >= 0 and row < n else -1
            for j in range(width):
                dst = nbr[st, j] if st >= 0 else -1
                if dst < 0:
                    out[u, t, j] = empty
                else:
                    v = occ[dst]
                    out[u, t, j] = floor if v < floor else v  # NaN stays, as np.maximum
    return out


@njit(cache=True, nogil=True)
def _user_sums(
    u: int,
    table: Table,
    inputs: tuple[np.ndarray, np.ndarray, np.ndarray],
    items: np.ndarray,
    totals: np.ndarray,
    scratch: Scratch,
) -> None:
    """User ``u``'s follower sums per damping, into ``items`` and ``totals`` ``(D, H·W)``.

    ``table``: ``(slot_of, nbr, weight, error, occ)``; ``inputs``: ``(history,
    history_weight, damped)``, ``damped[d]`` being ``max(occ, 1e-12) ** damping_d`` of the
    followers, ``(D, B, H, W)``; ``scratch``: six arrays of ``H·W``. Row ``d`` lists
    the user's (history item, slot) contributions under damping ``d`` sorted by follower
    row (stable; ``n`` marks none); a follower's sum sits at the last of its entries
    (float32 running sum, minus the previous group's end in float64), every other entry
    is ``-inf``. The dampings share the reads and, where the same entries contribute
    (always, short of a float32 underflow), the sort: each damping's row is what it
    alone would give.
    """
    slot_of, nbr, weight, error, occ = table
    history, history_weight, damped = inputs
    item, first, contrib, share, root_of, order = scratch
    n_d = damped.shape[0]
    h = history.shape[1]
    n, width = slot_of.shape[0], nbr.shape[1]
    hw_len = h * width
    for t in range(h):
        row = history[u, t]
        ok = row >= 0 and row < n
        hs = row if ok else 0
        root = np.float32(np.sqrt(max(occ[hs], np.float32(1e-12))))
        st = slot_of[hs]
        for j in range(width):
            e = t * width + j
            dst = nbr[st, j]
            first[e] = dst if ok and dst >= 0 else -1
            if first[e] >= 0:
                share[e] = history_weight[u, t] * (weight[st, j] - error[st, j])
                root_of[e] = root
    for d in range(n_d):
        same = d > 0
        for t in range(h):
            for j in range(width):
                e = t * width + j
                c = np.float32(0.0)
                good = first[e] >= 0
                if good:
                    c = share[e] / (root_of[e] * damped[d, u, t, j])
                    good = c > 0
                now = first[e] if good else n
                same = same and item[e] == now
                item[e] = now
                contrib[e] = c
        if not same:
            order[:] = radix_order(item)
        cum = np.float32(0.0)
        prev_end = 0.0
        for e in range(hw_len):
            at = order[e]
            cum += contrib[at]
            items[d, e] = item[at]
            last = e == hw_len - 1 or item[order[e + 1]] != item[at]
            if last and item[at] < n:
                totals[d, e] = np.float64(cum) - prev_end
            else:
                totals[d, e] = -np.inf
            if last:
                prev_end = max(prev_end, np.float64(cum))


@njit(cache=True, nogil=True)
def _scratch(hw_len: int) -> Scratch:
    return (
        np.empty(hw_len, np.int64),
        np.empty(hw_len, np.int64),
        np.empty(hw_len, np.float32),
        np.empty(hw_len, np.float32),
        np.empty(hw_len, np.float32),
        np.empty(hw_len, np.int64),
    )


@njit(cache=True, nogil=True)
def _row_top(
    items: np.ndarray,
    totals: np.ndarray,
    k: int,
    at: np.ndarray,
    rows: np.ndarray,
    scores: np.ndarray,
) -> bool:
    """One row's ``k`` best followers whose sums are finite and positive, best first,
    into ``rows`` and ``scores`` (``k`` long, -1 / 0 on entry), when no two of the
    ``k + 1`` best sums tie: the answer is then the only one, whatever sort finds it
    (ties further down change neither which ``k`` are best nor their order). False,
    writing nothing, where they tie (the caller ranks the row with numpy, whose tie
    order is argpartition's). ``at``: scratch as long as the row."""
    m = 0
    for e in range(totals.shape[0]):
        t = totals[e]
        if t > 0 and t < np.inf:
            at[m] = e
            m += 1
    if m == 0:
        return True
    vals = np.empty(m, np.float64)
    for i in range(m):
        vals[i] = -totals[at[i]]
    if m > k + 1:  # sort only what is at most the (k + 1)-th best (ties included)
        cut = np.partition(vals, k)[k]
        near = np.empty(m, np.int64)
        c = 0
        for i in range(m):
            if vals[i] <= cut:
                near[c] = i
                c += 1
        near = near[:c]
        order = near[np.argsort(vals[near])]
    else:
        order = np.argsort(vals)
    for i in range(1, min(k + 1, m)):
        if vals[order[i]] == vals[order[i - 1]]:
            return False
    for i in range(min(k, m)):
        e = at[order[i]]
        rows[i] = items[e]
        scores[i] = np.float32(totals[e])
    return True


@njit(cache=True, nogil=True)
def follower_top(
    slot_of: np.ndarray,
    nbr: np.ndarray,
    weight: np.ndarray,
    error: np.ndarray,
    occ: np.ndarray,
    history: np.ndarray,
    history_weight: np.ndarray,
    damped: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each damping's and user's ``k`` best followers (``_user_sums``, ``_row_top``) over
    the ``(D·B, H·W)`` rows, a user at a time.

    Returns ``(rows (D·B, k), scores (D·B, k) float32, tied (T,), items (T, H·W),
    totals (T, H·W))``: past the ``H·W`` entries a row has, -1 and 0; row ``d·B + i``
    is damping ``d``'s for user ``i``. The rows in ``tied`` (ascending) hold -1 / 0 and
    are to be ranked by the caller from their sums, ``items[t]`` and ``totals[t]`` being
    row ``tied[t]``'s.
    """
    n_d = damped.shape[0]
    b, h = history.shape
    hw_len = h * nbr.shape[1]
    rows = np.full((n_d * b, k), -1, np.int64)
    scores = np.zeros((n_d * b, k), np.float32)
    items = np.empty((n_d, hw_len), np.int64)
    totals = np.empty((n_d, hw_len), np.float64)
    scratch = _scratch(hw_len)
    table = (slot_of, nbr, weight, error, occ)
    inputs = (history, history_weight, damped)
    at = np.empty(hw_len, np.int64)
    tied = np.empty(n_d * b, np.int64)
    tied_items = np.empty((4, hw_len), np.int64)  # grown by doubling: ties are few
    tied_totals = np.empty((4, hw_len), np.float64)
    n_tied = 0
    for u in range(b):
        _user_sums(u, table, inputs, items, totals, scratch)
        for d in range(n_d):
            r = d * b + u
            if _row_top(items[d], totals[d], k, at, rows[r], scores[r]):
                continue
            if n_tied == tied_items.shape[0]:
                more_items = np.empty((2 * n_tied, hw_len), np.int64)
                more_totals = np.empty((2 * n_tied, hw_len), np.float64)
                more_items[:n_tied] = tied_items
                more_totals[:n_tied] = tied_totals
                tied_items, tied_totals = more_items, more_totals
            tied[n_tied] = r
            tied_items[n_tied] = items[d]
            tied_totals[n_tied] = totals[d]
            n_tied += 1
    order = np.argsort(tied[:n_tied])  # by row: users come first, dampings within
    return rows, scores, tied[order], tied_items[order], tied_totals[order]


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first real call needs it."""
    slot_of = np.array([1, 0], np.int64)
    nbr = np.full((2, 2), -1, np.int64)
    weight, error = np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32)
    occ = np.zeros(2, np.float32)
    h = np.zeros((1, 1), np.int64)
    hw = np.ones((1, 1), np.float32)
    damped = followed_occurrences(slot_of, nbr, occ, h)[None]
    follower_top(slot_of, nbr, weight, error, occ, h, hw, damped, 1)
