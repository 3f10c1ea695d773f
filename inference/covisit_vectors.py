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
    nbr, weight, error = table.followers(r[inside])
    w = np.clip(weight - error, 0.0, None)
    if isinstance(known, (int, np.integer)):
        use = (nbr >= 0) & (nbr < min(int(known), v.shape[0]))
    else:
        ok_item = np.asarray(known, bool)
        use = (nbr >= 0) & (nbr < ok_item.size)
        use &= ok_item[np.where(use, nbr, 0)]
    w = np.where(use, w, 0.0).astype(np.float32)
    pulled = np.einsum("rk,rkd->rd", w, v[np.where(use, nbr, 0)])
    total = w.sum(axis=1, keepdims=True)
    mixed = (np.float32(prior) * out[inside] + pulled) / np.maximum(prior + total, 1e-12)
    out[inside] = np.where(total > 0, mixed, out[inside])
    return out.astype(np.float32)


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
        r = np.unique(np.asarray(changed, np.int64).reshape(-1))
        r = r[(r >= 0) & (r < min(v.shape[0], table.size))]
        n = self.trained.size
        r = r[(r >= n) | ~self.trained[np.minimum(r, max(n - 1, 0))]] if n else r
        if not r.size:
            return r, np.zeros((0, v.shape[1]), np.float32)
        content = self._content
        own = np.stack([content.setdefault(x, v[x].copy()) for x in r.tolist()])
        return r, covisit_vectors(table, r, v, self.trained, self.prior, own=own)

    def forget(self, rows: npt.ArrayLike) -> None:
        """Drop the remembered content of ``rows`` (their content vector was rewritten)."""
        for x in np.asarray(rows, np.int64).reshape(-1).tolist():
            self._content.pop(x, None)
