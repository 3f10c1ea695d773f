"""Top-``k`` selection per row of a score matrix, compiled with numba.

The exact search's selection: at one to a few users per call over ~10k items, numpy's
``argpartition`` + gathers + ``argsort`` cost more in fixed overhead and copies than one
pass with a bounded heap. The order is defined to the bit: by score, best first, ties
by lower row first (``np.argsort(-scores, kind="stable")[:k]``); NaN scores rank last.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["top_rows", "warm_up"]


@njit(cache=True, nogil=True, inline="always")
def _worse(sa: float, ra: int, sb: float, rb: int) -> bool:
    """Whether ``(score sa, row ra)`` ranks below ``(sb, rb)``; NaN below any number."""
    if sa != sa:
        return sb == sb or ra > rb
    if sb != sb:
        return False
    return sa < sb or (sa == sb and ra > rb)


@njit(cache=True, nogil=True)
def _sift_down(hs: np.ndarray, hr: np.ndarray, size: int, i: int) -> None:
    """Restore the heap (worst at the root) below ``i``."""
    while True:
        lo = i
        left, right = 2 * i + 1, 2 * i + 2
        if left < size and _worse(hs[left], hr[left], hs[lo], hr[lo]):
            lo = left
        if right < size and _worse(hs[right], hr[right], hs[lo], hr[lo]):
            lo = right
        if lo == i:
            return
        hs[i], hs[lo] = hs[lo], hs[i]
        hr[i], hr[lo] = hr[lo], hr[i]
        i = lo


@njit(cache=True, nogil=True)
def top_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``(B, n)`` float32 ``scores``, best first.

    ``k`` must be in ``[1, n]``. Returns ``(columns (B, k) int64, scores (B, k) float32)``.
    """
    b, n = scores.shape
    out_rows = np.empty((b, k), np.int64)
    out_scores = np.empty((b, k), np.float32)
    hs = np.empty(k, np.float32)
    hr = np.empty(k, np.int64)
    for u in range(b):
        row = scores[u]
        for j in range(k):
            hs[j] = row[j]
            hr[j] = j
        for i in range(k // 2 - 1, -1, -1):
            _sift_down(hs, hr, k, i)
        for j in range(k, n):
            s = row[j]
            # a later row with the root's score ranks below it: only a strictly better
            # score (or a number against a NaN root) takes its place
            root = hs[0]
            if s > root or (root != root and s == s):
                hs[0] = s
                hr[0] = j
                _sift_down(hs, hr, k, 0)
        # pop worst first into the back of the output
        size = k
        while size > 0:
            size -= 1
            out_scores[u, size] = hs[0]
            out_rows[u, size] = hr[0]
            hs[0] = hs[size]
            hr[0] = hr[size]
            _sift_down(hs, hr, size, 0)
    return out_rows, out_scores


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first search needs it."""
    top_rows(np.zeros((1, 2), np.float32), 1)
