"""Vectors for items that arrived since the last retrain, from their co-occurrences.

A bundle knows the items it was trained on; an item that arrives later gets a vector
from its content alone. Once users have visited it, the co-visitation table knows its
neighbours, and those the bundle knows carry trained vectors: the new item's vector is
their weighted mean, shrunk toward its content vector by a prior worth ``prior`` pair
weight (so one stray visit moves it little). No I/O; the per-row passes are compiled.

>>> table = CovisitTable(width=4)
>>> table.add([2, 2], [0, 1], [3.0, 1.0])
>>> vecs = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], np.float32)
>>> covisit_vectors(table, [2], vecs, known=np.array([True, True, False]), prior=0.0)
array([[0.75, 0.25]], dtype=float32)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from inference.covisit import CovisitTable

FloatArray = npt.NDArray[np.float32]


def covisit_vectors(
    table: CovisitTable,
    rows: npt.ArrayLike,
    vectors: npt.ArrayLike,
    known: npt.ArrayLike | int,
    prior: float = 1.0,
    own: npt.ArrayLike | None = None,
) -> FloatArray:
    """``(R, D)`` vectors for catalog ``rows``: content shrunk toward known neighbours.

    Args:
        table: The co-visitation table (rows are catalog rows).
        rows: ``(R,)`` the items to place (e.g. those that arrived since the bundle).
        vectors: ``(N, D)`` the catalog's vectors (content vectors for new items).
        known: ``(N,)`` items whose vectors were trained (only they pull), or an int:
            the rows below it are the trained ones (a bundle's items come first).
        prior: Pair weight that the item's own (content) vector counts as.
        own: ``(R, D)`` the rows' own (content) vectors; default ``vectors[rows]``.

    Returns:
        ``(prior · v_r + Σ_j w_rj · v_j) / (prior + Σ_j w_rj)`` over the row's known
        neighbours ``j``, with ``w`` the guaranteed pair weight (weight − error); a row
        without known neighbours keeps its vector.
    """
    r = np.asarray(rows, np.int64).reshape(-1)
    v = np.asarray(vectors, np.float32)
    out = (v[r] if own is None else np.asarray(own, np.float32).reshape(r.size, -1)).copy()
    inside = r < table.size
    if not inside.any():
        return out
    if isinstance(known, (int, np.integer)):
        ok_item = np.zeros(v.shape[0], bool)
        ok_item[: max(int(known), 0)] = True
    else:
        ok_item = np.ascontiguousarray(known, bool).reshape(-1)
    # the neighbours' guaranteed weights (np.clip(weight - error, 0, None), 0 where the
    # neighbour is not a known item) and their rows (0 there): one compiled pass
    w, at = _pulls(table.slot, table.nbr, table.weight, table.error, r[inside], ok_item)
    pulled = np.einsum("rk,rkd->rd", w, v[at])
    total = w.sum(axis=1, keepdims=True)
    mixed = (np.float32(prior) * out[inside] + pulled) / np.maximum(prior + total, 1e-12)
    out[inside] = np.where(total > 0, mixed, out[inside])
    return out.astype(np.float32)


@njit(cache=True, nogil=True)
def _pulls(
    slot_of: np.ndarray,
    nbr: np.ndarray,
    weight: np.ndarray,
    error: np.ndarray,
    rows: np.ndarray,
    ok_item: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``(w (R, K) float32, at (R, K))``: each row's followers' ``weight - error``
    clipped at 0 as ``np.clip`` does (NaN kept, -0.0 as 0.0) where the follower is an
    ``ok_item``, else 0; ``at`` the follower's row there, else 0."""
    r_n, width = rows.shape[0], nbr.shape[1]
    n, n_ok = slot_of.shape[0], ok_item.shape[0]
    w = np.zeros((r_n, width), np.float32)
    at = np.zeros((r_n, width), np.int64)
    for i in range(r_n):
        row = rows[i]
        st = slot_of[row] if row >= 0 and row < n else 0
        for j in range(width):
            d = nbr[st, j]
            if d >= 0 and d < n_ok and ok_item[d]:
                x = weight[st, j] - error[st, j]
                w[i, j] = x if x > 0 or x != x else np.float32(0.0)
                at[i, j] = d
    return w, at


@njit(cache=True, nogil=True)
def _untrained(changed: np.ndarray, limit: int, trained: np.ndarray) -> np.ndarray:
    """The distinct rows of ``changed`` in ``[0, limit)`` that ``trained`` does not mark
    (rows past it included), sorted."""
    n = trained.shape[0]
    keep = np.empty(changed.shape[0], np.int64)
    m = 0
    for r in changed:
        if r >= 0 and r < limit and (r >= n or not trained[r]):
            keep[m] = r
            m += 1
    return np.unique(keep[:m])


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first placement needs it."""
    one = np.ones(1, np.int64)
    _untrained(one, 2, np.zeros(1, np.bool_))
    nbr, weight = np.full((2, 1), -1, np.int64), np.ones((2, 1), np.float32)
    _pulls(one, nbr, weight, weight * 0, one, np.ones(2, np.bool_))


class NewItemVectors:
    """Keeps the vectors of items a bundle did not learn at their co-visitation placement.

    An item the bundle learnt from no interaction (one that arrived after it, or one
    it knew by content alone) is re-placed with ``covisit_vectors`` each time its
    table row changes; its vector when first placed (its content vector) stays the
    prior. Work follows the changed rows only.

    Args:
        trained: ``(M,)`` which of the first ``M`` rows have vectors learnt from
            interactions (a bundle's items with training counts); later rows have not.
        prior: Pair weight of the content vector (see ``covisit_vectors``).
    """

    def __init__(self, trained: npt.ArrayLike, prior: float = 1.0) -> None:
        self.trained = np.asarray(trained, bool).reshape(-1)
        self.prior = prior
        self._content: dict[int, np.ndarray] = {}

    def place(
        self, table: CovisitTable, vectors: npt.ArrayLike, changed: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """The untrained rows among ``changed`` table rows and their vectors now.

        ``vectors``: the catalog's current vectors (a content vector is read from it the
        first time its row is placed). The caller writes the result back.
        """
        v = np.asarray(vectors, np.float32)
        changed = np.ascontiguousarray(changed, np.int64).reshape(-1)
        r = _untrained(changed, min(v.shape[0], table.size), self.trained)
        if not r.size:
            return r, np.zeros((0, v.shape[1]), np.float32)
        content = self._content
        own = np.stack([content.setdefault(x, v[x].copy()) for x in r.tolist()])
        return r, covisit_vectors(table, r, v, self.trained, self.prior, own=own)

    def forget(self, rows: npt.ArrayLike) -> None:
        """Drop the remembered content of ``rows`` (their content vector was rewritten)."""
        for x in np.asarray(rows, np.int64).reshape(-1).tolist():
            self._content.pop(x, None)
