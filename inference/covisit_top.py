"""The co-visitation scores' followers summed and their top ``k`` taken in one compiled call.

``CovisitTable.score_each`` called ``follower_sums`` then ``found_top``, two compiled
calls with the sums boxed into numpy arrays between them and reshaped in Python. At a
batch of one after an idle gap every such crossing is paid cold (a compiled call with a
few arrays: 20-70 us there, 1-3 us back to back); here the two loops run in one call,
and the top ``k`` come back with the sums (read only where sums tie). The loops are the
same functions, so the rows and scores are theirs to the bit; rows whose best sums tie
are flagged, as ``found_top`` flags them, for the caller's numpy tie order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from inference.covisit_kernels import follower_rows, follower_sums, found_top


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
    """``found_top(follower_sums(...), k)`` over the ``(D·B, H·W)`` rows, in one call.

    Returns ``(rows (D·B, k), scores (D·B, k) float32, unique (D·B,), items, totals)``:
    past the ``H·W`` entries a row has, -1 and 0 (as ``found_top`` with ``min(k, H·W)``,
    padded); a row that is not ``unique`` holds -1 / 0 and is to be ranked by the caller
    from ``items`` and ``totals``, the sums as ``(D·B, H·W)``.
    """
    items, totals = follower_sums(slot_of, nbr, weight, error, occ, history, history_weight, damped)
    n_d, b, e = items.shape
    flat_items, flat_totals = items.reshape(n_d * b, e), totals.reshape(n_d * b, e)
    rows, scores, unique = found_top(flat_items, flat_totals, k)
    return rows, scores, unique, flat_items, flat_totals


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first real call needs it."""
    slot_of = np.array([1, 0], np.int64)
    nbr = np.full((2, 2), -1, np.int64)
    weight, error = np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32)
    occ = np.zeros(2, np.float32)
    h = np.zeros((1, 1), np.int64)
    damped = follower_rows(slot_of, nbr, h).astype(np.float32)[None]
    hw = np.ones((1, 1), np.float32)
    follower_top(slot_of, nbr, weight, error, occ, h, hw, damped, 1)
