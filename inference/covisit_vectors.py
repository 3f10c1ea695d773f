"""Vectors for items that arrived since the last retrain, from their co-occurrences.

A bundle knows the items it was trained on; an item that arrives later gets a vector
from its content alone. Once users have visited it, the co-visitation table knows its
neighbours, and those the bundle knows carry trained vectors: the new item's vector is
their weighted mean, shrunk toward its content vector by a prior worth ``prior`` pair
weight (so one stray visit moves it little). Pure numpy; no I/O.

>>> table = CovisitTable(width=4)
>>> table.add([2, 2], [0, 1], [3.0, 1.0])
>>> vecs = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], np.float32)
>>> covisit_vectors(table, [2], vecs, known=np.array([True, True, False]), prior=0.0)
array([[0.75, 0.25]], dtype=float32)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from inference.covisit import CovisitTable

FloatArray = npt.NDArray[np.float32]


def covisit_vectors(
    table: CovisitTable,
    rows: npt.ArrayLike,
    vectors: npt.ArrayLike,
    known: npt.ArrayLike,
    prior: float = 1.0,
) -> FloatArray:
    """``(R, D)`` vectors for catalog ``rows``: content shrunk toward known neighbours.

    Args:
        table: The co-visitation table (rows are catalog rows).
        rows: ``(R,)`` the items to place (e.g. those that arrived since the bundle).
        vectors: ``(N, D)`` the catalog's vectors (content vectors for new items).
        known: ``(N,)`` items whose vectors were trained (only they pull).
        prior: Pair weight that the item's own (content) vector counts as.

    Returns:
        ``(prior · v_r + Σ_j w_rj · v_j) / (prior + Σ_j w_rj)`` over the row's known
        neighbours ``j``, with ``w`` the guaranteed pair weight (weight − error); a row
        without known neighbours keeps its vector.
    """
    r = np.asarray(rows, np.int64).reshape(-1)
    v = np.asarray(vectors, np.float32)
    ok_item = np.asarray(known, bool)
    out = v[r].copy()
    inside = r < table.size
    if not inside.any():
        return out
    rr = r[inside]
    nbr = table.nbr[rr]
    w = np.clip(table.weight[rr] - table.error[rr], 0.0, None)
    use = (nbr >= 0) & (nbr < ok_item.size)
    use &= ok_item[np.where(use, nbr, 0)]
    w = np.where(use, w, 0.0).astype(np.float32)
    pulled = np.einsum("rk,rkd->rd", w, v[np.where(use, nbr, 0)])
    total = w.sum(axis=1, keepdims=True)
    mixed = (np.float32(prior) * out[inside] + pulled) / np.maximum(prior + total, 1e-12)
    out[inside] = np.where(total > 0, mixed, out[inside])
    return out.astype(np.float32)
