"""The compiled co-visitation loops give bit-for-bit the array form's table and scores.

The array form (``CovisitTable.add`` and ``score`` as they were before the kernels,
commit 7cbec6b) is kept here as the reference: random batches with evictions, weights
with ties, repeated pairs and half-lives, then random histories to score.
"""

from __future__ import annotations

import copy

import numpy as np
from covisit_references import found_top, table_sums
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.covisit import CovisitTable, follow_pairs
from inference.covisit_kernels import unclaimed
from inference.radix_order import RADIX_FROM, radix_order


def reference_add(t: CovisitTable, src: list[int], dst: list[int], weight: np.ndarray) -> None:
    """``CovisitTable.add`` in numpy (np.unique, np.add.at, lexsort), as it was."""
    s = np.asarray(src, np.int64).reshape(-1)
    d = np.asarray(dst, np.int64).reshape(-1)
    w = t.decayed(weight, None)
    if s.size == 0:
        return
    t.grow(int(max(s.max(), d.max())) + 1)
    np.add.at(t.occ, s, w)
    np.add.at(t.occ, d, w)
    span = np.int64(t.size)
    keys, inv = np.unique(s * span + d, return_inverse=True)
    w = np.bincount(inv.reshape(-1), weights=w).astype(np.float32)
    s, d = keys // span, keys % span
    s = t.claim(s)
    match = t.nbr[s] == d[:, None]
    hit = match.any(axis=1)
    t.weight[s[hit], match[hit].argmax(axis=1)] += w[hit]
    s, d, w = s[~hit], d[~hit], w[~hit]
    order = np.lexsort((-w, s))
    s, d, w = s[order], d[order], w[order]
    while s.size:
        _, first = np.unique(s, return_index=True)
        rs, rd, rw = s[first], d[first], w[first]
        slot = t.weight[rs].argmin(axis=1)
        floor = t.weight[rs, slot]
        t.nbr[rs, slot] = rd
        t.weight[rs, slot] = floor + rw
        t.error[rs, slot] = floor
        rest = np.ones(s.size, bool)
        rest[first] = False
        s, d, w = s[rest], d[rest], w[rest]


def reference_sums(t: CovisitTable, h: np.ndarray, hw: np.ndarray) -> tuple[np.ndarray, ...]:
    """``CovisitTable.score``'s per-user follower sums in numpy, as they were."""
    b = h.shape[0]
    ok = (h >= 0) & (h < t.size)
    hs = np.where(ok, h, 0)
    sl = t.slot[hs]
    nb = t.nbr[sl]
    good = ok[:, :, None] & (nb >= 0)
    dst = np.where(good, nb, 0)
    est = t.weight[sl] - t.error[sl]
    norm = np.sqrt(np.maximum(t.occ[hs], 1e-12))[:, :, None] * np.maximum(
        t.occ[dst], 1e-12
    ) ** np.float32(t.damping)
    contrib = np.where(good, hw[:, :, None] * est / norm, 0.0)
    good &= contrib > 0
    item = np.where(good, dst, t.size).reshape(b, -1)
    order = np.argsort(item, axis=1, kind="stable")
    item = np.take_along_axis(item, order, axis=1)
    cum = np.cumsum(np.take_along_axis(contrib.reshape(b, -1), order, axis=1), axis=1)
    last = np.ones(item.shape, bool)
    last[:, :-1] = item[:, 1:] != item[:, :-1]
    ends = np.where(last, cum, -np.inf)
    before = np.maximum.accumulate(np.concatenate([np.zeros((b, 1)), ends[:, :-1]], axis=1), axis=1)
    total = np.where(last & (item < t.size), cum - before, -np.inf)
    return item, total


def same_table(a: CovisitTable, b: CovisitTable) -> None:
    for name in ("slot", "nbr", "weight", "error", "occ"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.used == b.used


batches = st.lists(
    st.tuples(
        st.lists(st.integers(0, 11), min_size=0, max_size=30),
        st.integers(0, 2**31),
        st.sampled_from(["ones", "halves", "random"]),
    ),
    min_size=1,
    max_size=6,
)


def weights_for(n: int, seed: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "ones":
        return np.ones(n, np.float32)
    if kind == "halves":  # many exact ties, as forward and reverse pairs give
        return rng.choice([0.5, 1.0, 0.70710677], size=n).astype(np.float32)
    return rng.random(n).astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(batches=batches, width=st.integers(1, 4))
def test_add_is_the_array_form_bit_for_bit_with_evictions(
    batches: list[tuple[list[int], int, str]], width: int
) -> None:
    """Small widths over 12 rows force evictions; every array must match exactly."""
    kernel, ref = CovisitTable(width=width), CovisitTable(width=width)
    for src, seed, kind in batches:
        rng = np.random.default_rng(seed)
        dst = rng.integers(0, 12, size=len(src)).tolist()
        w = weights_for(len(src), seed, kind)
        kernel.add(src, dst, w)
        reference_add(ref, src, dst, w)
        same_table(kernel, ref)
    assert kernel.rows_held == len({s for b, _, _ in batches for s in b})


histories = st.lists(st.lists(st.integers(-1, 14), min_size=1, max_size=5), min_size=1, max_size=4)


def scored_table(
    batches: list[tuple[list[int], int, str]], width: int, history: list[list[int]]
) -> tuple[CovisitTable, np.ndarray, np.ndarray]:
    """A table learnt from ``batches``, and ``history`` padded with random weights."""
    table = CovisitTable(width=width)
    for src, seed, kind in batches:
        dst = np.random.default_rng(seed).integers(0, 12, size=len(src)).tolist()
        table.add(src, dst, weights_for(len(src), seed, kind))
    h_len = max(len(h) for h in history)
    h = np.array([hh + [-1] * (h_len - len(hh)) for hh in history], np.int64)
    hw = np.random.default_rng(len(batches)).random(h.shape).astype(np.float32)
    return table, h, hw


@settings(max_examples=100, deadline=None)
@given(
    batches=batches,
    width=st.integers(1, 4),
    history=histories,
    k=st.integers(1, 12),
    damping=st.sampled_from([0.0, 0.35, 0.5]),
    more=st.lists(st.sampled_from([0.0, 0.25, 0.35, 0.5, 1.0]), max_size=3),
)
def test_score_is_the_array_form_bit_for_bit(
    batches: list[tuple[list[int], int, str]],
    width: int,
    history: list[list[int]],
    k: int,
    damping: float,
    more: list[float],
) -> None:
    """Same followers, same float32 scores; history rows past the table read nothing.
    ``score_each`` (one pass for several dampings) gives each what ``score`` gives."""
    table, h, hw = scored_table(batches, width, history)
    table.damping = damping
    before = copy.deepcopy(table)
    if table.size == 0:  # nothing learnt: score reads nothing
        assert (table.score(h, hw, k)[0] == -1).all()
        return
    item, total = table_sums(table, h, hw)
    want_item, want_total = reference_sums(table, h, hw)
    np.testing.assert_array_equal(item, want_item)
    np.testing.assert_array_equal(total, want_total)
    rows, scores = table.score(h, hw, k)
    for u in range(h.shape[0]):  # the k best of those sums, best first
        found = np.isfinite(want_total[u]) & (want_total[u] > 0)
        best = np.sort(want_total[u][found].astype(np.float32))[::-1][:k]
        assert scores[u, : best.size].tolist() == best.tolist()
        assert set(rows[u, : best.size].tolist()) <= set(want_item[u][found].tolist())
        assert (rows[u, best.size :] == -1).all()
    for d, (each_rows, each_scores) in zip(
        [damping, *more], table.score_each(h, hw, k, [damping, *more]), strict=True
    ):
        alone = copy.deepcopy(table)
        alone.damping = d
        want_rows, want_scores = alone.score(h, hw, k)
        np.testing.assert_array_equal(each_rows, want_rows)
        assert each_scores.tobytes() == want_scores.tobytes()
    same_table(table, before)  # scoring writes nothing


def test_half_life_batches_match_the_array_form() -> None:
    """With forward decay the same decayed weights reach both forms."""
    kernel = CovisitTable(width=3, half_life_ms=1000.0)
    ref = CovisitTable(width=3, half_life_ms=1000.0)
    rng = np.random.default_rng(5)
    for t in range(20):
        src = rng.integers(0, 8, size=7)
        dst = rng.integers(0, 8, size=7)
        now = float(t * 300)
        kernel.add(src, dst, np.ones(7), now)
        ref_w = ref.decayed(np.ones(7), now)
        reference_add(ref, src.tolist(), dst.tolist(), ref_w)
        same_table(kernel, ref)


def reference_follow_pairs(
    sequences: list[list[int]], new: list[int], window: int, backward: float, flatness: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``follow_pairs`` in numpy, as it was before the kernel (commit 7cbec6b)."""
    arrays = [np.asarray(q, dtype=np.int64).reshape(-1) for q in sequences]
    lengths = np.fromiter((a.size for a in arrays), np.int64, len(arrays))
    n_new = np.minimum(np.asarray(new, np.int64).reshape(-1), lengths)
    empty = np.zeros(0, np.int64)
    if window < 1 or not lengths.any():
        return empty, empty.copy(), np.zeros(0, np.float32)
    flat = np.concatenate(arrays)
    user = np.repeat(np.arange(lengths.size), lengths)
    step = np.ones(flat.size, bool)
    step[1:] = (flat[1:] != flat[:-1]) | (user[1:] != user[:-1])
    visit_no = np.cumsum(step) - 1
    visits, visit_user = flat[step], user[step]
    first_visit = np.zeros(lengths.size, np.int64)
    ends = np.cumsum(lengths)
    has = lengths > 0
    first_visit[has] = visit_no[ends[has] - lengths[has]]
    at = np.clip(ends - n_new, 0, max(flat.size - 1, 0))
    first_new = np.where(step[at], visit_no[at], visit_no[at] + 1)
    first_new = np.maximum(first_new, first_visit + 1)
    first_new = np.where((n_new > 0) & has, first_new, np.iinfo(np.int64).max)
    later = np.flatnonzero(np.arange(visits.size) >= first_new[visit_user])
    dist = np.arange(1, window + 1)
    j = later[:, None] - dist[None, :]
    lu = visit_user[later][:, None]
    ok = j >= first_visit[lu]
    a = visits[np.where(ok, j, 0)]
    b = np.broadcast_to(visits[later][:, None], j.shape)
    ok &= (a >= 0) & (b >= 0) & (a != b)
    w = (np.broadcast_to(dist, j.shape)[ok] ** (flatness - 1.0)).astype(np.float32)
    src, dst = a[ok], b[ok]
    if backward <= 0:
        return src, dst, w
    back = (w * np.float32(backward)).astype(np.float32)
    return np.concatenate([src, dst]), np.concatenate([dst, src]), np.concatenate([w, back])


@settings(max_examples=300, deadline=None)
@given(
    seqs=st.lists(st.lists(st.integers(-1, 5), max_size=25), min_size=1, max_size=4),
    data=st.data(),
    window=st.integers(0, 12),
    backward=st.sampled_from([0.0, 0.5, 1.0, 0.3]),
    flatness=st.sampled_from([0.0, 0.5, 1.0, 0.37]),
)
def test_follow_pairs_is_the_array_form_in_order(
    seqs: list[list[int]],
    data: st.DataObject,
    window: int,
    backward: float,
    flatness: float,
) -> None:
    """Same pairs, same order, same float32 weights: repeats, -1 rows, any ``new``."""
    new = [data.draw(st.integers(-1, len(s) + 2)) for s in seqs]
    got = follow_pairs(seqs, new, window, backward=backward, flatness=flatness)
    want = reference_follow_pairs(seqs, new, window, backward, flatness)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def test_many_misses_in_one_row_match_the_array_form() -> None:
    """More than 32 new followers of one row (the merge-sort path), with evictions."""
    rng = np.random.default_rng(11)
    kernel, ref = CovisitTable(width=40), CovisitTable(width=40)
    for _ in range(3):
        dst = rng.permutation(np.arange(1, 120))[:70]
        src = np.zeros(dst.size, np.int64)
        w = rng.choice([0.5, 1.0, 0.25], size=dst.size).astype(np.float32)
        kernel.add(src, dst, w)
        reference_add(ref, src.tolist(), dst.tolist(), w)
        same_table(kernel, ref)
    assert (kernel.error > 0).any()  # evictions happened


def test_score_each_regroups_when_a_damping_underflows_a_contribution() -> None:
    """A contribution that is > 0 under one damping and 0 under another (float32
    underflow) leaves that follower out of the second damping's sums only."""
    table = CovisitTable(width=2)
    table.add([0, 0], [1, 2], [1.0, 1.0])
    s = table.slot[0]
    j1 = int(np.flatnonzero(table.nbr[s] == 1)[0])
    table.weight[s, j1] = np.float32(1e-44)  # subnormal estimate for 0 -> 1
    table.occ[1] = np.float32(1e30)  # ... over 1e30 ** 0.5: rounds to 0
    h, hw = np.array([[0]]), np.ones((1, 1), np.float32)
    (low, _), (high, _) = table.score_each(h, hw, 2, (0.0, 0.5))
    assert sorted(low[0].tolist()) == [1, 2]
    assert high[0].tolist() == [2, -1]
    for damping, got in ((0.0, low), (0.5, high)):
        table.damping = damping
        np.testing.assert_array_equal(table.score(h, hw, 2)[0], got)
        item, total = table_sums(table, h, hw)
        ref_item, ref_total = reference_sums(table, h, hw)
        np.testing.assert_array_equal(item, ref_item)
        np.testing.assert_array_equal(total, ref_total)


def reference_tail(item: np.ndarray, total: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """``CovisitTable.score``'s top-k of the follower sums in numpy, as it was."""
    b = total.shape[0]
    rows, scores = np.full((b, k), -1, np.int64), np.zeros((b, k), np.float32)
    kk = min(k, total.shape[1])
    top = np.argpartition(-total, kk - 1, axis=1)[:, :kk]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(total, top, 1), 1), 1)
    best = np.take_along_axis(total, top, axis=1)
    found = np.isfinite(best) & (best > 0)
    rows[:, :kk] = np.where(found, np.take_along_axis(item, top, axis=1), -1)
    scores[:, :kk] = np.where(found, best, 0.0)
    return rows, scores


@settings(max_examples=150, deadline=None)
@given(batches=batches, width=st.integers(1, 6), history=histories, k=st.integers(1, 30))
def test_the_top_k_of_the_sums_is_numpys_with_and_without_ties(
    batches: list[tuple[list[int], int, str]], width: int, history: list[list[int]], k: int
) -> None:
    """Distinct sums take the compiled path, tied ones numpy's: both give what the numpy
    tail gave (its argpartition tie order included)."""
    table, h, hw = scored_table(batches, width, history)
    hw[:] = 1.0  # equal history weights: ties between followers are common
    if table.size == 0:
        return
    item, total = table_sums(table, h, hw)
    rows, scores = table.score(h, hw, k)
    want_rows, want_scores = reference_tail(item, total, k)
    np.testing.assert_array_equal(rows, want_rows)
    assert scores.tobytes() == want_scores.tobytes()


def test_tied_sums_keep_numpys_order() -> None:
    """Followers with equal sums (planted: the same pair weight and occurrence) are
    ranked by numpy's tail, not by the compiled one."""
    table = CovisitTable(width=8)
    table.add([0] * 6, [5, 3, 7, 1, 6, 2], [1.0] * 6)
    h, hw = np.array([[0]]), np.ones((1, 1), np.float32)
    item, total = table_sums(table, h, hw)
    assert not found_top(item, total, 4)[2][0]  # the tie is seen
    rows, scores = table.score(h, hw, 4)
    want_rows, want_scores = reference_tail(item, total, 4)
    np.testing.assert_array_equal(rows, want_rows)
    assert scores.tobytes() == want_scores.tobytes()


@settings(max_examples=150, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 3 * RADIX_FROM),
    st.sampled_from([1, 2, 9_742, 1_000_000, 2**40, 2**62]),
)
def test_radix_order_is_the_stable_argsort(seed: int, c: int, top: int) -> None:
    """Both sides of ``RADIX_FROM``, few distinct values (long runs of equal ones) up to
    values that take four passes."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, top, size=c, dtype=np.int64, endpoint=True)
    np.testing.assert_array_equal(radix_order(values), np.argsort(values, kind="stable"))


def test_ties_below_the_k_best_take_the_compiled_path() -> None:
    """Equal sums after the ``k + 1`` best change nothing numpy would give: the compiled
    answer is kept (a real row ties somewhere in four rows of five), and it is numpy's."""
    table = CovisitTable(width=8)
    table.add([0] * 6, [5, 3, 7, 1, 6, 2], [4.0, 3.0, 2.0, 1.0, 1.0, 1.0])
    h, hw = np.array([[0]]), np.ones((1, 1), np.float32)
    item, total = table_sums(table, h, hw)
    # sums 0.71, 0.59, 0.45, then followers 1 and 2 tie (6 is a rounding below them)
    assert found_top(item, total, 3)[2][0]  # the tie is below the 4 best
    assert not found_top(item, total, 4)[2][0]  # the 4th best ties the 5th
    for k in (1, 2, 3, 4, 6):
        rows, scores = table.score(h, hw, k)
        want_rows, want_scores = reference_tail(item, total, k)
        np.testing.assert_array_equal(rows, want_rows)
        assert scores.tobytes() == want_scores.tobytes()


def reference_claim(t: CovisitTable, rows: np.ndarray) -> np.ndarray:
    """``CovisitTable.claim`` in numpy (np.unique of the rows without a slot), as it was."""
    r = np.asarray(rows, np.int64).reshape(-1)
    new = np.unique(r[t.slot[r] == 0])
    if new.size:
        t.reserve(t.rows_held + new.size)
        t.slot[new] = np.arange(t.used, t.used + new.size)
        t.used += int(new.size)
    return t.slot[r]


@settings(max_examples=80, deadline=None)
@given(
    batches=st.lists(st.lists(st.integers(0, 40), max_size=30), min_size=1, max_size=5),
)
def test_claim_gives_the_array_forms_slots(batches: list[list[int]]) -> None:
    """Batches of rows (repeats, rows claimed before, empty batches): the same slots,
    handed out in the same order, and the same storage as the numpy form."""
    t, ref = CovisitTable(width=3), CovisitTable(width=3)
    t.grow(41)
    ref.grow(41)
    for batch in batches:
        rows = np.asarray(batch, np.int64)
        held = t.slot[rows] == 0
        np.testing.assert_array_equal(
            unclaimed(t.slot, rows), np.unique(rows[held]) if rows.size else rows
        )
        np.testing.assert_array_equal(t.claim(rows), reference_claim(ref, rows))
        np.testing.assert_array_equal(t.slot, ref.slot)
        assert t.used == ref.used and t.nbr.shape == ref.nbr.shape
