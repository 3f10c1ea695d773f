"""Per-row loops of candidate handling, compiled with numba.

At real-time batch sizes (one to a dozen users, a few hundred candidates each) the
numpy forms of these steps are a dozen sorts, gathers and scatters each, whose fixed
cost outweighs the work. These kernels give the same masks and flags (integers and
booleans only, so equal to the bit) in one pass per row; ``inference.rerank`` and
``inference.candidates`` hold the API and the tests compare with the numpy forms.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "allowed_first_copies",
    "candidate_rows",
    "covisit_lookup",
    "known_trending",
    "later_duplicates_kernel",
    "merge_sources",
    "merged_flags",
    "stable_order",
    "warm_up",
]


@njit(cache=True, nogil=True)
def stable_order(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values, kind="stable")`` of a 1-D integer array.

    A plain sort of the unique keys ``(value - min) * len + position``: numba's merge
    sort is several times slower at a few hundred entries.
    """
    c = values.shape[0]
    keys = np.empty(c, np.int64)
    if c == 0:
        return keys
    lo = values.min()
    if values.max() - lo > (2**62) // c:  # keys would overflow
        return np.argsort(values, kind="mergesort")
    for j in range(c):
        keys[j] = (values[j] - lo) * c + j
    keys.sort()
    for j in range(c):
        keys[j] = keys[j] % c
    return keys


@njit(cache=True, nogil=True)
def later_duplicates_kernel(cand: np.ndarray) -> np.ndarray:
    """``(B, C)`` mask of entries equal to an earlier entry in the same row."""
    b, c = cand.shape
    out = np.zeros((b, c), np.bool_)
    for i in range(b):
        order = stable_order(cand[i])
        for t in range(1, c):
            if cand[i, order[t]] == cand[i, order[t - 1]]:
                out[i, order[t]] = True
    return out


@njit(cache=True, nogil=True)
def merged_flags(rows: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Each entry's flags: the union over all entries of its row with the same item.

    Empty entries (negative rows) get 0.
    """
    b, c = rows.shape
    out = np.zeros((b, c), np.uint8)
    for i in range(b):
        order = stable_order(rows[i])
        lo = 0
        while lo < c:
            item = rows[i, order[lo]]
            hi = lo
            union = np.uint8(0)
            while hi < c and rows[i, order[hi]] == item:
                union |= source[i, order[hi]]
                hi += 1
            if item >= 0:
                for t in range(lo, hi):
                    out[i, order[t]] = union
            lo = hi
    return out


@njit(cache=True, nogil=True)
def _column_flags(w1: int, w2: int, ws: int, w3: int, source: np.ndarray) -> np.ndarray:
    """The source flag of each column of a joined row: four blocks of those widths."""
    col_flag = np.empty(w1 + w2 + ws + w3, np.uint8)
    col_flag[:w1] = source[0]
    col_flag[w1 : w1 + w2] = source[1]
    col_flag[w1 + w2 : w1 + w2 + ws] = source[2]
    col_flag[w1 + w2 + ws :] = source[3]
    return col_flag


@njit(cache=True, nogil=True)
def _merge_row(r: np.ndarray, col_flag: np.ndarray, flags: np.ndarray) -> None:
    """One joined row in place: later copies of an item set to -1, every copy's
    ``flags`` the union of its item's column flags (0 for empty entries)."""
    c = r.shape[0]
    order = stable_order(r)
    lo = 0
    while lo < c:
        item = r[order[lo]]
        hi = lo
        union = np.uint8(0)
        while hi < c and r[order[hi]] == item:
            union |= col_flag[order[hi]]
            hi += 1
        if item >= 0:
            for t in range(lo, hi):
                flags[order[t]] = union
        for t in range(lo + 1, hi):
            r[order[t]] = -1  # a later copy (the stable order puts the first first)
        lo = hi


@njit(cache=True, nogil=True)
def merge_sources(
    ann: np.ndarray,
    covisit: np.ndarray,
    trending: np.ndarray,
    explore: np.ndarray,
    source: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate rows joined from the sources, each item once per row, and their flags.

    ``ann``, ``covisit`` and ``explore`` are ``(B, w)`` rows per user (-1 padded),
    ``trending`` ``(s,)`` rows offered to every user, ``source`` the four blocks'
    flags. The same as ``np.concatenate([ann, covisit, trending, explore])`` with
    ``later_duplicates`` set to -1 and ``merged_flags`` of the joined rows (a later
    copy keeps its item's union of flags), in one sort per row.
    """
    b = ann.shape[0]
    w1, w2, w3, ws = ann.shape[1], covisit.shape[1], explore.shape[1], trending.shape[0]
    c = w1 + w2 + ws + w3
    rows = np.empty((b, c), np.int64)
    flags = np.zeros((b, c), np.uint8)
    col_flag = _column_flags(w1, w2, ws, w3, source)
    for i in range(b):
        r = rows[i]
        r[:w1] = ann[i]
        r[w1 : w1 + w2] = covisit[i]
        r[w1 + w2 : w1 + w2 + ws] = trending
        r[w1 + w2 + ws :] = explore[i]
        _merge_row(r, col_flag, flags[i])
    return rows, flags


@njit(cache=True, nogil=True)
def _allowed_row(r: np.ndarray, exclude: np.ndarray, removed: np.ndarray, out: np.ndarray) -> None:
    """``out[j]``: entry ``j`` of a row without repeats is in the catalog, not removed
    and not in ``exclude`` (a row's excluded rows, -1 padded)."""
    n = removed.shape[0]
    ex = np.sort(exclude)
    for j in range(r.shape[0]):
        x = r[j]
        if x < 0 or x >= n or removed[x]:
            continue
        at = np.searchsorted(ex, x)
        out[j] = not (at < ex.shape[0] and ex[at] == x)


@njit(cache=True, nogil=True)
def _fits(r: np.ndarray, n: int) -> bool:
    """Every entry of ``r`` is -1 or a row below ``n``: the marks can stand for a sort."""
    lo, hi = -1, n - 1
    for j in range(r.shape[0]):  # numba has no all() over a generator
        lo, hi = min(lo, r[j]), max(hi, r[j])
    return lo == -1 and hi < n


@njit(cache=True, nogil=True)
def _merge_row_marked(
    r: np.ndarray, col_flag: np.ndarray, flags: np.ndarray, mark: np.ndarray, orig: np.ndarray
) -> None:
    """``_merge_row`` without the sort, for a row that ``_fits`` ``mark`` (all zeros on
    entry and on return): ``mark[item]`` holds the item's first column + 1 meanwhile."""
    c = r.shape[0]
    orig[:c] = r
    for j in range(c):
        x = orig[j]
        if x < 0:
            continue
        if mark[x] == 0:
            mark[x] = j + 1
        flags[mark[x] - 1] |= col_flag[j]
    for j in range(c):
        x = orig[j]
        if x >= 0 and mark[x] - 1 != j:  # a later copy: its item's flags, then dropped
            flags[j] = flags[mark[x] - 1]
            r[j] = -1
    for j in range(c):
        if orig[j] >= 0:
            mark[orig[j]] = 0


@njit(cache=True, nogil=True)
def _allowed_row_marked(
    r: np.ndarray, exclude: np.ndarray, removed: np.ndarray, out: np.ndarray, mark: np.ndarray
) -> None:
    """``_allowed_row`` with the excluded rows marked instead of sorted (``mark`` as
    long as the catalog, all zeros on entry and on return)."""
    n = removed.shape[0]
    for x in exclude:
        if 0 <= x < n:
            mark[x] = 1
    for j in range(r.shape[0]):
        x = r[j]
        out[j] = 0 <= x < n and not removed[x] and mark[x] == 0
    for x in exclude:
        if 0 <= x < n:
            mark[x] = 0


@njit(cache=True, nogil=True)
def candidate_rows(
    found: np.ndarray,
    warm: np.ndarray,
    width: int,
    cv_rows: np.ndarray,
    cv_scores: np.ndarray,
    trending: np.ndarray,
    explore: np.ndarray,
    source: np.ndarray,
    exclude: np.ndarray,
    removed: np.ndarray,
    mark: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A batch's candidates from its sources, in one pass per user.

    The same as validating the co-visitation candidates (kept where the row is not
    negative and the score finite and positive; else -1 and 0), ``merge_sources`` of
    ``width`` ANN columns (``found``'s rows for the ``warm`` users in order, -1 for
    the others), the valid co-visitation rows, ``trending`` and ``explore``, then
    ``allowed_first_copies(..., unique=True)`` against ``exclude`` and ``removed``.

    ``mark``: zeros as long as the catalog (``removed``), or empty. Given, a row whose
    entries are all -1 or catalog rows finds its repeats and exclusions by marking
    items in it (a few passes over the row) instead of sorting; the same result. The
    caller pays for the zeros, so it gives them when the batch's rows outnumber the
    catalog's by enough.

    Returns:
        ``(rows, flags, valid, cv_rows, cv_scores)``.
    """
    b, k_cv = cv_rows.shape
    ws, w3 = trending.shape[0], explore.shape[1]
    c = width + k_cv + ws + w3
    rows = np.empty((b, c), np.int64)
    flags = np.zeros((b, c), np.uint8)
    valid = np.zeros((b, c), np.bool_)
    cv_out = np.empty((b, k_cv), np.int64)
    cv_score_out = np.empty((b, k_cv), np.float32)
    col_flag = _column_flags(width, k_cv, ws, w3, source)
    orig = np.empty(c, np.int64)
    w = 0
    for i in range(b):
        r = rows[i]
        if warm[i]:
            r[:width] = found[w]
            w += 1
        else:
            r[:width] = -1
        for t in range(k_cv):
            s = cv_scores[i, t]
            ok = cv_rows[i, t] >= 0 and np.isfinite(s) and s > 0
            cv_out[i, t] = cv_rows[i, t] if ok else -1
            cv_score_out[i, t] = s if ok else np.float32(0.0)
        r[width : width + k_cv] = cv_out[i]
        r[width + k_cv : width + k_cv + ws] = trending
        r[width + k_cv + ws :] = explore[i]
        if mark.shape[0] == removed.shape[0] and _fits(r, mark.shape[0]):
            _merge_row_marked(r, col_flag, flags[i], mark, orig)
            _allowed_row_marked(r, exclude[i], removed, valid[i], mark)
        else:
            _merge_row(r, col_flag, flags[i])
            _allowed_row(r, exclude[i], removed, valid[i])
    return rows, flags, valid, cv_out, cv_score_out


@njit(cache=True, nogil=True)
def allowed_first_copies(
    cand: np.ndarray, exclude: np.ndarray, removed: np.ndarray, unique: bool = False
) -> np.ndarray:
    """``(B, C)``: present, in the catalog, not removed, not excluded, first copy in its row.

    ``exclude`` is ``(B, E)`` rows per user, -1 padded (entries outside the catalog
    exclude nothing). ``unique``: the caller knows no row holds an item twice (merged
    candidates), so the sort that finds later copies is skipped.
    """
    b, c = cand.shape
    n = removed.shape[0]
    out = np.zeros((b, c), np.bool_)
    for i in range(b):
        if unique:
            _allowed_row(cand[i], exclude[i], removed, out[i])
            continue
        ex = np.sort(exclude[i])
        order = stable_order(cand[i])
        for t in range(c):
            j = order[t]
            r = cand[i, j]
            if r < 0 or r >= n or removed[r]:
                continue
            if t > 0 and cand[i, order[t - 1]] == r:
                continue  # a later copy
            at = np.searchsorted(ex, r)
            if at < ex.shape[0] and ex[at] == r:
                continue
            out[i, j] = True
    return out


@njit(cache=True, nogil=True)
def known_trending(rows: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The trending rows in the catalog (``0 <= row < n``) with finite scores, and those
    scores, in their order (numpy's three masks and two gathers in one pass)."""
    keep = np.empty(rows.shape[0], np.int64)
    m = 0
    for j in range(rows.shape[0]):
        if 0 <= rows[j] < n and np.isfinite(scores[j]):
            keep[m] = j
            m += 1
    return rows[keep[:m]], scores[keep[:m]]


@njit(cache=True, nogil=True)
def covisit_lookup(
    rows: np.ndarray, valid: np.ndarray, cv_rows: np.ndarray, cv_scores: np.ndarray
) -> np.ndarray:
    """``(B, C)`` each valid candidate's co-visitation score (its row's first entry in
    ``cv_rows``, ``(B, K)`` -1 padded), 0 elsewhere."""
    b, c = rows.shape
    out = np.zeros((b, c), np.float32)
    for i in range(b):
        for j in range(c):
            r = rows[i, j]
            if r < 0 or not valid[i, j]:
                continue
            for t in range(cv_rows.shape[1]):
                if cv_rows[i, t] == r:
                    out[i, j] = cv_scores[i, t]
                    break
    return out


def warm_up() -> None:
    """Compile (or load from the on-disk cache) before the first real batch needs it.

    Only the kernels the live path calls: ``merge_sources``, ``merged_flags`` and
    ``allowed_first_copies`` (through ``rerank.exclusion_mask``) are the passes that
    ``candidate_rows`` replaced, kept as the tests' reference forms, and compile when a
    test first calls them.
    """
    rows = np.array([[1, -1, 1]], np.int64)
    later_duplicates_kernel(rows)
    covisit_lookup(rows, np.ones((1, 3), np.bool_), rows, np.ones((1, 3), np.float32))
    known_trending(np.ones(2, np.int64), np.ones(2, np.float32), 3)
    candidate_rows(
        rows,
        np.ones(1, np.bool_),
        3,
        rows,
        np.ones((1, 3), np.float32),
        np.ones(2, np.int64),
        rows,
        np.arange(4, dtype=np.uint8),
        rows,
        np.zeros(2, np.bool_),
        np.zeros(2, np.int32),
    )
