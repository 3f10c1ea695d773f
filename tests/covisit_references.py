"""The co-visitation scores' whole-batch calls, kept for the tests only.

``inference.covisit_top.follower_top`` sums a user's followers and takes their top ``k``
a user at a time; before it, ``CovisitTable.score_each`` made two calls over the whole
batch: the ``(D, B, H·W)`` sums (``follower_sums``, here ``table_sums`` through a
table), then the top ``k`` of every row (``found_top``). Both are built from the same
compiled per-user loops, so checking the fused call against them checks the fusing
(buffers, padding, which rows come back tied), not the loops: those are checked
against the array form in numpy (``test_covisit_kernels.reference_sums`` and
``reference_tail``). ``follower_rows`` is the array form's gather, in numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from inference.covisit import CovisitTable
from inference.covisit_top import _row_top, _scratch, _user_sums


def follower_rows(slot_of: np.ndarray, nbr: np.ndarray, history: np.ndarray) -> np.ndarray:
    """``(B, H, W)`` followers of each history row; 0 where the row or the entry is
    empty (unknown rows, rows past the table, unfilled slots)."""
    n = slot_of.shape[0]
    known = (history >= 0) & (history < n)
    followers = nbr[slot_of[np.where(known, history, 0)]]
    return np.where(known[..., None] & (followers >= 0), followers, 0)


@njit(nogil=True)
def follower_sums(
    slot_of: np.ndarray,
    nbr: np.ndarray,
    weight: np.ndarray,
    error: np.ndarray,
    occ: np.ndarray,
    history: np.ndarray,
    history_weight: np.ndarray,
    damped: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Every user's follower sums per damping, ``(D, B, H·W)`` items and totals: row
    ``[d, i]`` is what ``_user_sums`` gives user ``i`` under damping ``d``."""
    n_d = damped.shape[0]
    b, h = history.shape
    hw_len = h * nbr.shape[1]
    items = np.empty((n_d, b, hw_len), np.int64)
    totals = np.empty((n_d, b, hw_len), np.float64)
    scratch = _scratch(hw_len)
    table = (slot_of, nbr, weight, error, occ)
    inputs = (history, history_weight, damped)
    for u in range(b):
        _user_sums(u, table, inputs, items[:, u, :], totals[:, u, :], scratch)
    return items, totals


@njit(nogil=True)
def found_top(
    items: np.ndarray, totals: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``follower_sums``' ``(R, E)`` outputs, ``_row_top``'s ``k`` best:
    ``(rows (R, k), scores (R, k) float32, unique (R,))``; a row whose ``k + 1`` best sums
    tie is not ``unique`` and its outputs are -1 / 0."""
    r_n, e_n = totals.shape
    rows = np.full((r_n, k), -1, np.int64)
    scores = np.zeros((r_n, k), np.float32)
    unique = np.ones(r_n, np.bool_)
    at = np.empty(e_n, np.int64)
    for r in range(r_n):
        unique[r] = _row_top(items[r], totals[r], k, at, rows[r], scores[r])
    return rows, scores, unique


def table_sums(
    table: CovisitTable,
    history: np.ndarray,
    history_weight: np.ndarray,
    dampings: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(B, H·W)`` followers by row and their summed scores at each one's last entry,
    as ``table.score`` ranks them; ``(D, B, H·W)`` with ``dampings`` (default: the
    table's damping, unstacked). The damping's power is numpy's, as in scoring."""
    h, hw, damped = table._score_inputs(history, history_weight, dampings)
    item, total = follower_sums(
        table.slot, table.nbr, table.weight, table.error, table.occ, h, hw, damped
    )
    return (item[0], total[0]) if dampings is None else (item, total)
