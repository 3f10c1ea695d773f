"""A stable argsort of non-negative integers by radix, compiled with numba.

The co-visitation kernels group ~2,000 followers by row per user and order a call's
pairs by key; numba's comparison sort of the 64-bit keys (``stable_order``) took most
of those calls. Counting digits instead gives the same permutation in a few passes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from inference.rerank_kernels import stable_order

__all__ = ["RADIX_FROM", "radix_order"]

RADIX_FROM = 512
"""Entries from which ``radix_order`` sorts by digits; below it a comparison sort wins."""


@njit(cache=True, nogil=True)
def radix_order(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` of a 1-D int64 array.

    A least-significant-digit radix sort in passes of at most 11 bits over the bits the
    largest value uses (two for row numbers of a 9.7k or a 1M catalog); short arrays and
    ones holding a negative value take the comparison sort (``stable_order``).
    """
    c = values.shape[0]
    if c < RADIX_FROM or values.min() < 0:
        return stable_order(values)
    top, hi = 0, values.max()
    while (hi >> top) > 0:
        top += 1
    passes = max(1, -(-top // 11))
    bits = max(1, -(-top // passes))
    mask = (1 << bits) - 1
    counts = np.empty(mask + 1, np.int64)
    src = np.arange(c)
    dst = np.empty(c, np.int64)
    for p in range(passes):
        shift = p * bits
        counts[:] = 0
        for j in range(c):
            counts[(values[src[j]] >> shift) & mask] += 1
        total = 0
        for d in range(mask + 1):
            here = counts[d]
            counts[d] = total
            total += here
        for j in range(c):
            i = src[j]
            d = (values[i] >> shift) & mask
            dst[counts[d]] = i
            counts[d] += 1
        src, dst = dst, src
    return src
