"""Candidate retrieval by inner product: exact for small catalogs, faiss IVF above that.

``AnnIndex`` keeps the catalog searchable while items are added and removed, and
answers a whole micro-batch of user vectors in one call. Ids are int64 (the caller's row
numbers in its item table); a missing result is id ``-1`` with score ``-inf``.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Final, cast

import faiss
import numpy as np
import numpy.typing as npt

from inference.topk_kernel import top_rows

# Below this many items a matmul over the whole catalog is fast and exact, so no ANN.
EXACT_BELOW: Final = 20_000

# nprobe is tuned at build time: the smallest step of this ladder whose recall@TUNE_K on
# sample queries reaches TARGET_RECALL (the issue asks for >= 0.95; the margin covers
# queries unlike the sample). Lists visited is most of the search cost.
NPROBE_LADDER: Final = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
TARGET_RECALL: Final = 0.97
TUNE_K: Final = 200
TUNE_QUERIES: Final = 256

# Build cost, which a worker pays at start-up and on every bundle swap: k-means costs
# (training points x lists x dim) per iteration and assigning the catalog (items x
# lists x dim). At a million items the old 4*sqrt(n) = 4,000 lists trained on every
# item took 346 s; 2,048 lists trained on 64 points each took 96 s in the same run
# (45 s in a worker on an otherwise idle core) and reach the recall target at a
# similar search cost (bench/ann_build_bench.py, docs/benchmarks/README.md). faiss
# wants at least 39 training points per list.
MAX_LISTS: Final = 2048
TRAIN_POINTS_PER_LIST: Final = 64

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]

log = logging.getLogger("freshet.ann")

# faiss's SWIG entry points for a search into our arrays (``AnnIndex.search_matrix``):
# ``faiss.swig_ptr`` and ``IndexIVF.search`` are Python functions that only forward here.
_SWIG_PTR = faiss._swigfaiss.swig_ptr  # type: ignore[attr-defined]  # not in the stub
_IVF_SEARCH = faiss._swigfaiss.IndexIVF_search  # type: ignore[attr-defined]


def set_search_threads(n: int) -> None:
    """Threads faiss may use per search (process-wide; call once at the entry point)."""
    faiss.omp_set_num_threads(max(1, int(n)))


def exact_topk(
    queries: npt.ArrayLike, vectors: npt.ArrayLike, k: int, ids: npt.ArrayLike | None = None
) -> tuple[IdArray, FloatArray]:
    """Exact top-``k`` rows of ``vectors`` by inner product with each query, best first.

    Args:
        queries: ``(B, d)`` query vectors.
        vectors: ``(n, d)`` item vectors.
        k: How many results per query; slots beyond ``n`` hold id -1 and score -inf.
        ids: ``(n,)`` ids to report instead of row numbers.

    Returns:
        ``(ids (B, k) int64, scores (B, k) float32)``; equal scores keep the lower row
        first (NaN scores last).
    """
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    v = np.asarray(vectors, dtype=np.float32).reshape(-1, q.shape[1])
    b, n = q.shape[0], v.shape[0]
    kk = min(k, n)
    if kk <= 0 or b == 0:
        return np.full((b, k), -1, np.int64), np.full((b, k), -np.inf, np.float32)
    # One compiled pass per query (``inference.topk_kernel``): ties by lower row first.
    rows, scores = top_rows(np.ascontiguousarray(q @ v.T, np.float32), kk)
    id_map = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    if kk == k:  # the usual case: nothing to pad
        return id_map[rows], scores
    out_ids = np.full((b, k), -1, dtype=np.int64)
    out_scores = np.full((b, k), -np.inf, dtype=np.float32)
    out_ids[:, :kk] = id_map[rows]
    out_scores[:, :kk] = scores
    return out_ids, out_scores


class AnnIndex:
    """Inner-product search over a changing catalog, batch-first.

    Small catalogs (fewer than ``exact_below`` items) are searched exactly; once the
    catalog reaches that size an ``IndexIVFFlat`` (inner-product metric) is trained on
    the vectors present and takes adds and removals from then on. IVF centroids are not
    retrained as items arrive: rebuild with ``AnnIndex.build`` when the catalog has
    drifted far from the one it was trained on.

    Build with ``AnnIndex.build``; the constructor is not part of the API.
    """

    def __init__(
        self,
        dim: int,
        seed: int,
        nlist: int | None,
        nprobe: int | None,
        exact_below: int,
        train_points_per_list: int = TRAIN_POINTS_PER_LIST,
    ) -> None:
        self.dim = dim
        self.seed = seed
        self._nlist = nlist
        self._nprobe = nprobe
        self.exact_below = exact_below
        self.train_points_per_list = train_points_per_list
        # Exact mode: the vectors themselves. ANN mode: the faiss index.
        self._ids: IdArray = np.empty(0, dtype=np.int64)
        self._vecs: FloatArray = np.empty((0, dim), dtype=np.float32)
        self._ivf: faiss.IndexIVFFlat | None = None
        self._present: npt.NDArray[np.bool_] = np.zeros(0, bool)  # IVF mode: ids held
        self.tuned_recall: float | None = None  # recall@200 on sample queries, once IVF

    @classmethod
    def build(
        cls,
        vectors: npt.ArrayLike,
        ids: npt.ArrayLike,
        seed: int = 0,
        nlist: int | None = None,
        nprobe: int | None = None,
        exact_below: int = EXACT_BELOW,
        train_points_per_list: int = TRAIN_POINTS_PER_LIST,
    ) -> AnnIndex:
        """Index ``vectors`` (``(n, d)``) under int64 ``ids`` (``(n,)``, unique).

        Args:
            vectors: Item vectors; the IVF quantiser is trained on them.
            ids: One id per row; ``-1`` is reserved for "no result".
            seed: Seed for k-means training, so builds repeat exactly.
            nlist: IVF lists; default about ``4·sqrt(n)``, at most ``MAX_LISTS``.
            nprobe: Lists visited per query; default: tuned on sample queries (see
                ``tune_nprobe``) to the fewest lists giving recall@200 >= 0.97.
            exact_below: Catalog size under which search is exact.
            train_points_per_list: k-means trains on a seeded sample of this many items
                per list (all of them when the catalog is smaller).
        """
        v = _as_matrix(vectors)
        index = cls(v.shape[1], seed, nlist, nprobe, exact_below, train_points_per_list)
        index.add(ids, v)
        return index

    @property
    def size(self) -> int:
        """Number of items currently searchable."""
        return int(self._ivf.ntotal) if self._ivf is not None else int(self._ids.size)

    @property
    def is_exact(self) -> bool:
        """True while the index answers by brute force."""
        return self._ivf is None

    @property
    def nlist(self) -> int | None:
        """IVF lists, or ``None`` in exact mode."""
        return int(self._ivf.nlist) if self._ivf is not None else None

    @property
    def nprobe(self) -> int | None:
        """IVF lists visited per query, or ``None`` in exact mode."""
        return int(self._ivf.nprobe) if self._ivf is not None else None

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add items, or replace the vectors of ids already present (catalog upserts)."""
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        v = _as_matrix(vectors, self.dim)
        if id_arr.size != v.shape[0]:
            raise ValueError(f"{id_arr.size} ids for {v.shape[0]} vectors")
        if np.unique(id_arr).size != id_arr.size:
            raise ValueError("duplicate ids in one add")
        if (id_arr < 0).any():
            raise ValueError("ids must be >= 0")
        if id_arr.size == 0:
            return
        self.remove(id_arr)
        if self._ivf is not None:
            self._ivf.add_with_ids(v, id_arr)
            self._mark(id_arr, True)
            return
        self._ids = np.concatenate([self._ids, id_arr])
        self._vecs = np.concatenate([self._vecs, v])
        if self._ids.size >= self.exact_below:
            self._train_ivf()

    def remove(self, ids: npt.ArrayLike) -> int:
        """Remove items by id; unknown ids are ignored. Returns how many were removed."""
        id_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if id_arr.size == 0:
            return 0
        if self._ivf is not None:
            # faiss scans every list to remove (about a second at a million items), so
            # only ids the index holds are asked for: an add of new ids costs no scan.
            id_arr = id_arr[self._held(id_arr)]
            if id_arr.size == 0:
                return 0
            self._mark(id_arr, False)
            return int(self._ivf.remove_ids(faiss.IDSelectorBatch(id_arr)))
        keep = ~np.isin(self._ids, id_arr)
        removed = int(keep.size - keep.sum())
        if removed:
            self._ids, self._vecs = self._ids[keep], self._vecs[keep]
        return removed

    def to_bytes(self) -> npt.NDArray[np.uint8]:
        """The IVF index as faiss serialises it (lists, ids, nprobe); IVF mode only."""
        if self._ivf is None:
            raise ValueError("an exact-mode index is rebuilt, not saved")
        return np.asarray(faiss.serialize_index(self._ivf), np.uint8)

    @classmethod
    def from_bytes(
        cls,
        data: npt.ArrayLike,
        seed: int = 0,
        exact_below: int = EXACT_BELOW,
        train_points_per_list: int = TRAIN_POINTS_PER_LIST,
        tuned_recall: float | None = None,
    ) -> AnnIndex:
        """An index from ``to_bytes`` output; takes adds and removals as a built one does."""
        ivf = faiss.deserialize_index(np.asarray(data, np.uint8))
        if not isinstance(ivf, faiss.IndexIVFFlat) or ivf.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"not an inner-product IndexIVFFlat: {type(ivf).__name__}")
        index = cls(
            ivf.d, seed, int(ivf.nlist), int(ivf.nprobe), exact_below, train_points_per_list
        )
        index._ivf = ivf
        index.tuned_recall = tuned_recall
        lists = ivf.invlists
        assert lists is not None
        for lst in range(ivf.nlist):
            size = lists.list_size(lst)
            if size:
                index._mark(faiss.rev_swig_ptr(lists.get_ids(lst), size).copy(), True)
        return index

    def _held(self, ids: IdArray) -> npt.NDArray[np.bool_]:
        """Which of ``ids`` the IVF index holds."""
        inside = ids < self._present.size
        out = np.zeros(ids.size, bool)
        out[inside] = self._present[ids[inside]]
        return out

    def _mark(self, ids: IdArray, held: bool) -> None:
        if held and ids.size and int(ids.max()) >= self._present.size:
            grown = np.zeros(max(int(ids.max()) + 1, 2 * self._present.size), bool)
            grown[: self._present.size] = self._present
            self._present = grown
        self._present[ids[ids < self._present.size]] = held

    def copy(self) -> AnnIndex:
        """An independent copy: adds and removals on it leave this index as it is.

        The live recommender updates a copy off the scoring lock and swaps it in, so a
        search never meets an index half-way through a change (copy-on-write).
        """
        out = copy.copy(self)  # the exact mode's arrays are replaced, never written
        if self._ivf is not None:
            out._ivf = cast(faiss.IndexIVFFlat, faiss.clone_index(self._ivf))
            out._present = self._present.copy()
        return out

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IdArray, FloatArray]:
        """Top-``k`` ids by inner product for each of ``(B, d)`` queries, best first.

        Returns ``(ids (B, k) int64, scores (B, k) float32)``; empty slots hold id -1
        and score -inf.
        """
        return self.search_matrix(_as_matrix(queries, self.dim), k)

    def search_matrix(self, q: FloatArray, k: int) -> tuple[IdArray, FloatArray]:
        """``search`` for queries already checked: a C-contiguous finite ``(B, d)`` float32.

        Raises:
            ValueError: ``q`` is not ``(B, d)`` for this index's ``d`` (faiss's C search
                would read past the buffer).
        """
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (B, {self.dim}), got {q.shape}")
        if k <= 0:
            return (np.empty((q.shape[0], 0), np.int64), np.empty((q.shape[0], 0), np.float32))
        if self._ivf is None:
            return exact_topk(q, self._vecs, k, ids=self._ids)
        if q.dtype != np.float32 or not q.flags.c_contiguous:
            q = np.ascontiguousarray(q, np.float32)
        # faiss's ``search`` without its Python wrapper's copies and checks (``q`` is
        # checked): at a batch of one the wrapper cost a sixth of the search, cold. The
        # SWIG functions are called directly, not through their Python shims (one frame
        # each, four a search).
        n = q.shape[0]
        scores = np.empty((n, k), np.float32)
        ids = np.empty((n, k), np.int64)
        _IVF_SEARCH(self._ivf, n, _SWIG_PTR(q), k, _SWIG_PTR(scores), _SWIG_PTR(ids), None)
        missing = ids < 0
        if missing.any():
            scores[missing] = -np.inf
        return ids, scores

    def _train_ivf(self) -> None:
        n = self._ids.size
        nlist = self._nlist or min(MAX_LISTS, max(16, int(4 * math.sqrt(n))))
        nlist = min(nlist, max(1, n // 39))  # faiss wants ~39 training points per list
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = self.seed
        ivf.cp.niter = 10
        ivf.cp.max_points_per_centroid = self.train_points_per_list  # a seeded sample beyond
        ivf.train(self._vecs)
        ivf.add_with_ids(self._vecs, self._ids)
        self._mark(self._ids, True)
        self._ivf = ivf
        vecs, ids = self._vecs, self._ids
        self._ids = np.empty(0, dtype=np.int64)
        self._vecs = np.empty((0, self.dim), dtype=np.float32)
        ivf.nprobe = min(nlist, self._nprobe or self.tune_nprobe(vecs, ids))

    def tune_nprobe(
        self, vectors: FloatArray, ids: IdArray, target: float = TARGET_RECALL, k: int = TUNE_K
    ) -> int:
        """The fewest IVF lists per query whose recall@k reaches ``target``.

        Sample queries are item vectors with noise added (each component ± 10% of the
        catalog's typical vector norm), like users close to what they interacted with.
        Recall is measured against exact search over ``vectors`` (indexed under
        ``ids``); if no step of the ladder reaches the target, the largest is used.
        """
        assert self._ivf is not None
        rng = np.random.default_rng(self.seed)
        n, d = vectors.shape
        scale = float(np.median(np.linalg.norm(vectors, axis=1))) * 0.1
        noise = scale * rng.normal(size=(TUNE_QUERIES, d))
        queries: FloatArray = (vectors[rng.integers(0, n, TUNE_QUERIES)] + noise).astype(np.float32)
        kk = min(k, n)
        flat = faiss.IndexFlatIP(d)  # exact; blocked top-k, no (queries, n) score matrix
        flat.add(vectors)
        _, rows = flat.search(queries, kk)
        exact = np.asarray(ids, np.int64)[rows]
        del flat
        nlist = int(self._ivf.nlist)
        recall = 0.0
        for nprobe in NPROBE_LADDER:
            self._ivf.nprobe = min(nprobe, nlist)
            _, found = self._ivf.search(queries, kk)
            hits = [np.intersect1d(f, e).size for f, e in zip(found, exact, strict=True)]
            recall = float(np.mean(hits)) / kk
            if recall >= target or nprobe >= nlist:
                break
        self.tuned_recall = recall
        if recall < target:
            log.warning(
                "IVF recall@%d is %.3f at nprobe %d (target %.2f): a weakly clustered catalog",
                kk,
                recall,
                self._ivf.nprobe,
                target,
            )
        log.info(
            "IVF over %d items: nlist %d, nprobe %d, recall@%d %.3f",
            n,
            nlist,
            self._ivf.nprobe,
            kk,
            recall,
        )
        return int(self._ivf.nprobe)


class RepeatedSearch:
    """An ``AnnIndex`` that answers a repeated search from its last answer, row by row.

    A scoring call may search the same user vectors twice (the candidates, and the
    damping chooser's "found without co-visitation" for a sample of the same users).
    Each query's answer is its own: exact search orders by score, then lower row, and
    the IVF index keeps the best ``k`` of the same probed lists whatever ``k``, so the
    first ``k`` of a wider answer are the answer to ``k`` (for IVF, up to which of the
    items tied at the cut it keeps). A query that matches a row of the last batch (bit
    for bit), asked for at most as many results, gets that row's prefix: the answer it
    got in the batch it was searched in. The other queries are searched, only they
    (the batch remembered stays).
    """

    def __init__(self, index: AnnIndex) -> None:
        self.index = index
        self._last: tuple[int, IdArray, FloatArray, dict[bytes, int]] | None = None

    def search(self, queries: npt.ArrayLike, k: int) -> tuple[IdArray, FloatArray]:
        q = _as_matrix(queries, self.index.dim)  # (B, d): it reshapes or refuses
        last = self._last
        if last is None or k > last[0]:
            ids, scores = self.index.search_matrix(q, k)  # q checked above
            self._last = (k, ids, scores, {row.tobytes(): i for i, row in enumerate(q)})
            return ids, scores
        at = np.array([last[3].get(row.tobytes(), -1) for row in q], np.int64)
        ids, scores = last[1][at, :k], last[2][at, :k]
        new = np.flatnonzero(at < 0)
        if new.size:
            ids[new], scores[new] = self.index.search_matrix(q[new], k)
        return ids, scores


def _as_matrix(x: npt.ArrayLike, dim: int | None = None) -> FloatArray:
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim == 1 and dim is not None and arr.size % dim == 0:
        arr = arr.reshape(-1, dim)
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        raise ValueError(f"expected an (n, {dim or 'd'}) matrix, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("vectors must be finite")
    return arr
