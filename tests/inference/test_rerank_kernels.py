"""The compiled candidate and MMR steps give the numpy forms' results exactly.

The numpy forms (``exclusion_mask``, ``later_duplicates`` and the candidates' flag
merge as they were before the kernels, commit 3237e18) are kept here as references.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.list_metrics import unit_rows
from inference.rerank import (
    Quota,
    exclusion_mask,
    gather_unit_vectors,
    later_duplicates,
    mmr_select,
    mmr_select_at,
    shortlist,
    take_rows,
)
from inference.rerank_kernels import covisit_lookup, merge_sources, merged_flags, stable_order


def ref_later_duplicates(cand: np.ndarray) -> np.ndarray:
    order = np.argsort(cand, axis=1, kind="stable")
    s = np.take_along_axis(cand, order, axis=1)
    dup_sorted = np.zeros_like(s, dtype=bool)
    dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    return dup


def ref_exclusion(cand: np.ndarray, exclude: np.ndarray, removed: np.ndarray) -> np.ndarray:
    b = cand.shape[0]
    n = removed.shape[0]
    ok = (cand >= 0) & (cand < n)
    safe = np.where(ok, cand, 0)
    ok &= ~removed[safe]
    if exclude.size:
        user = np.arange(b, dtype=np.int64)[:, None]
        ex_keys = np.sort((user * n + exclude)[(exclude >= 0) & (exclude < n)])
        keys = user * n + safe
        pos = np.minimum(np.searchsorted(ex_keys, keys), max(ex_keys.size - 1, 0))
        found = ex_keys[pos] == keys if ex_keys.size else np.zeros(keys.shape, bool)
        ok &= ~found
    ok &= ~ref_later_duplicates(cand)
    return ok


def ref_merge_flags(rows: np.ndarray, source: np.ndarray) -> np.ndarray:
    b, c = rows.shape
    if rows.size == 0:
        return np.zeros_like(source)
    span = int(rows.max(initial=0)) + 2
    keys = (np.arange(b, dtype=np.int64)[:, None] * span + rows).reshape(-1)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    union = np.bitwise_or.reduceat(source.reshape(-1)[order], starts)
    group = np.cumsum(np.r_[False, sorted_keys[1:] != sorted_keys[:-1]])
    merged = np.empty(b * c, dtype=np.uint8)
    merged[order] = union[group]
    return np.where(rows >= 0, merged.reshape(b, c), 0).astype(np.uint8)


shapes = st.tuples(st.integers(1, 4), st.integers(0, 40), st.integers(0, 12), st.integers(1, 30))


@settings(max_examples=200, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_candidate_kernels_match_the_numpy_forms(
    shape: tuple[int, int, int, int], seed: int
) -> None:
    """Duplicates, -1 padding, rows past the catalog, removed and excluded items."""
    b, c, e, n = shape
    rng = np.random.default_rng(seed)
    cand = rng.integers(-1, n + 3, size=(b, c))  # -1: an empty slot
    exclude = rng.integers(-1, n + 2, size=(b, e))
    removed = rng.random(n) < 0.2
    source = rng.choice(np.array([1, 2, 4, 8], np.uint8), size=(b, c))
    np.testing.assert_array_equal(later_duplicates(cand), ref_later_duplicates(cand))
    np.testing.assert_array_equal(
        exclusion_mask(cand, exclude, removed), ref_exclusion(cand, exclude, removed)
    )
    np.testing.assert_array_equal(merged_flags(cand, source), ref_merge_flags(cand, source))


@settings(max_examples=200, deadline=None)
@given(widths=st.tuples(*[st.integers(0, 12)] * 4), b=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_merged_sources_are_the_joined_blocks_deduplicated_with_their_flags(
    widths: tuple[int, int, int, int], b: int, seed: int
) -> None:
    """One kernel for ``gather_candidates``' join, later copies and flag union (as before:
    ``np.concatenate``, ``later_duplicates`` then ``merged_flags`` of the joined rows)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 20))  # few items: many repeats within and across blocks
    ann, cov, explore = (rng.integers(-1, n, size=(b, w)) for w in widths[:3])
    trend = rng.integers(-1, n, size=widths[3])
    order = np.array([1, 8, 2, 4], np.uint8)
    rows, flags = merge_sources(ann, cov, trend, explore, order)
    joined = np.concatenate([ann, cov, np.broadcast_to(trend, (b, trend.size)), explore], axis=1)
    source = np.repeat(order, [ann.shape[1], cov.shape[1], trend.size, explore.shape[1]])
    source = np.broadcast_to(source, joined.shape)
    np.testing.assert_array_equal(rows, np.where(ref_later_duplicates(joined), -1, joined))
    np.testing.assert_array_equal(flags, ref_merge_flags(joined, source))
    # rows without repeats: the exclusion mask may skip its search for copies
    exclude, removed = rng.integers(-1, n, size=(b, 3)), rng.random(n) < 0.2
    np.testing.assert_array_equal(
        exclusion_mask(rows, exclude, removed, unique=True), exclusion_mask(rows, exclude, removed)
    )


def test_exclusion_known_answer() -> None:
    cand = np.array([[3, 1, 3, -1, 7, 2]])
    removed = np.array([False, False, True, False, False])
    # 3 first copy only; 1 excluded; 7 past the catalog; 2 removed.
    got = exclusion_mask(cand, np.array([[1, -1, 9]]), removed)
    assert got.tolist() == [[True, False, False, False, False, False]]


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(-(2**61), 2**61), max_size=60), small=st.booleans())
def test_stable_order_is_numpys_stable_argsort(values: list[int], small: bool) -> None:
    """Ties keep their positions; huge spreads fall back to a merge sort."""
    v = np.asarray(values, np.int64) % 7 if small else np.asarray(values, np.int64)
    np.testing.assert_array_equal(stable_order(v), np.argsort(v, kind="stable"))


def ref_covisit_lookup(
    rows: np.ndarray, valid: np.ndarray, cv_rows: np.ndarray, cv_scores: np.ndarray
) -> np.ndarray:
    """``recommend._blend_covisit``'s lookup as it was: one sorted (user, row) search."""
    b = rows.shape[0]
    have = cv_rows >= 0
    if not have.any():
        return np.zeros(rows.shape, np.float32)
    span = np.int64(max(int(rows.max(initial=0)), int(cv_rows.max())) + 1)
    user = np.arange(b, dtype=np.int64)[:, None]
    keys = (user * span + cv_rows)[have]
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], cv_scores[have][order]
    q = user * span + rows
    at = np.minimum(np.searchsorted(keys, q), keys.size - 1)
    hit = (rows >= 0) & valid & (keys[at] == q)
    return np.where(hit, vals[at], 0.0).astype(np.float32)


@settings(max_examples=200, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_covisit_lookup_matches_the_sorted_search(
    shape: tuple[int, int, int, int], seed: int
) -> None:
    """Repeated co-visitation rows read their first score; invalid candidates read 0."""
    b, c, kcv, n = shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(-1, n, size=(b, c))
    valid = rng.random((b, c)) < 0.8
    cv_rows = rng.integers(-1, n, size=(b, kcv))
    cv_scores = rng.random((b, kcv)).astype(np.float32)
    np.testing.assert_array_equal(
        covisit_lookup(rows, valid, cv_rows, cv_scores),
        ref_covisit_lookup(rows, valid, cv_rows, cv_scores),
    )


@settings(max_examples=150, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 12)),
    seed=st.integers(0, 2**31),
    lam=st.sampled_from([0.0, 0.5, 0.7, 1.0]),
    cap=st.sampled_from([None, 1, 2]),
)
def test_mmr_on_positions_picks_as_mmr_on_the_gathered_shortlist(
    shape: tuple[int, int, int], seed: int, lam: float, cap: int | None
) -> None:
    """The recommend path before the kernel: gather the shortlist, select, map back."""
    b, c, k = shape
    rng = np.random.default_rng(seed)
    n, d = 30, 4
    unit = unit_rows(rng.standard_normal((n, d)).astype(np.float32))
    unit[rng.random(n) < 0.1] = 0.0
    cats = rng.integers(-1, 4, size=n)
    rows = np.where(rng.random((b, c)) < 0.9, rng.integers(0, n, size=(b, c)), -1)
    rel = rng.standard_normal((b, c)).astype(np.float32)
    rel[rng.random((b, c)) < 0.05] = np.nan
    valid = (rng.random((b, c)) < 0.85) & (rows >= 0)
    quotas = [
        Quota(rng.random((b, c)) < 0.3, int(rng.integers(0, 3))),
        Quota(rng.random((b, c)) < 0.2, rng.integers(0, 3, size=b), int(rng.integers(1, 4))),
    ]
    pos = shortlist(rel, valid, quotas, int(rng.integers(1, c + 2)))
    present = pos >= 0
    at = np.maximum(pos, 0)
    sub_rows = np.where(present, take_rows(rows, at), -1)
    old = mmr_select(
        take_rows(rel, at),
        gather_unit_vectors(unit, sub_rows),
        np.where(sub_rows >= 0, cats[np.maximum(sub_rows, 0)], -1),
        take_rows(valid, at) & present,
        k,
        lam,
        0.5,
        quotas=[Quota(take_rows(q.members, at) & present, q.at_least, q.at_most) for q in quotas],
        category_cap=cap,
    )
    old = np.where(old >= 0, take_rows(pos, np.maximum(old, 0)), -1)
    new = mmr_select_at(rel, valid, pos, rows, unit, cats, k, lam, 0.5, quotas, cap)
    np.testing.assert_array_equal(new, old)
