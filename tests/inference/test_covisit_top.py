"""The fused follower sums and top ``k`` give what the two compiled calls gave, to the bit.

The reference is what ``CovisitTable.score_each`` called before ``inference.covisit_top``
(kept in ``tests/covisit_references.py``): ``follower_sums``, then ``found_top`` on the
reshaped sums with ``min(k, H·W)`` slots, padded; over random tables with ties, batches
of one and more, users with no known history (all -1), rows past the table (new items)
and several dampings at once. The references share the per-user loops with the fused
call, so this checks the fusing (buffers, padding, the tied rows handed back); the
loops, the tied rows' numpy order, and ``score_each`` against the array form, are
``test_covisit_kernels.py``'s (numpy references).
"""

from __future__ import annotations

import numpy as np
from covisit_references import follower_rows, follower_sums, found_top, table_sums
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.covisit import CovisitTable
from inference.covisit_top import followed_occurrences, follower_top


def random_table(seed: int, n_items: int, pairs: int, width: int, tied: bool) -> CovisitTable:
    rng = np.random.default_rng(seed)
    table = CovisitTable(width=width)
    src = rng.integers(0, n_items, size=pairs)
    dst = rng.integers(0, n_items, size=pairs)
    # equal weights plant tied sums; random ones mostly distinct
    w = np.ones(pairs, np.float32) if tied else rng.random(pairs).astype(np.float32)
    table.add(src.tolist(), dst.tolist(), w)
    return table


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_items=st.integers(1, 40),
    pairs=st.integers(1, 120),
    width=st.integers(1, 6),
    users=st.sampled_from([1, 1, 2, 5]),
    h_len=st.integers(1, 6),
    k=st.integers(1, 40),
    dampings=st.lists(st.sampled_from([0.0, 0.25, 0.35, 0.5, 1.0]), min_size=1, max_size=4),
    tied=st.booleans(),
)
def test_the_fused_call_is_the_two_calls_bit_for_bit(
    seed: int,
    n_items: int,
    pairs: int,
    width: int,
    users: int,
    h_len: int,
    k: int,
    dampings: list[float],
    tied: bool,
) -> None:
    table = random_table(seed, n_items, pairs, width, tied)
    rng = np.random.default_rng(seed + 1)
    # -1: no known item; n_items + 5: rows the table never learnt (new items)
    h = rng.integers(-1, n_items + 5, size=(users, h_len)).astype(np.int64)
    h[0, rng.random(h_len) < 0.3] = -1
    if users > 1:
        h[1] = -1  # a cold user: nothing known
    hw = rng.random(h.shape).astype(np.float32)
    damped = table._score_inputs(h, hw, dampings)[2]
    parts = (table.slot, table.nbr, table.weight, table.error, table.occ, h, hw, damped)
    item, total = follower_sums(*parts)
    rows_n = len(dampings) * users
    item, total = item.reshape(rows_n, -1), total.reshape(rows_n, -1)
    kk = min(k, total.shape[1])
    want_rows = np.full((rows_n, k), -1, np.int64)
    want_scores = np.zeros((rows_n, k), np.float32)
    want_rows[:, :kk], want_scores[:, :kk], want_unique = found_top(item, total, kk)
    rows, scores, tied, got_item, got_total = follower_top(*parts, k)
    np.testing.assert_array_equal(tied, np.flatnonzero(~want_unique))
    np.testing.assert_array_equal(rows, want_rows)
    assert scores.tobytes() == want_scores.tobytes()
    # only the tied rows' sums come back, in row order
    np.testing.assert_array_equal(got_item, item[tied])
    assert got_total.tobytes() == total[tied].tobytes()
    # and through the table: the same lists as each damping alone
    for d, (each_rows, each_scores) in zip(
        dampings, table.score_each(h, hw, k, dampings), strict=True
    ):
        table.damping = d
        alone_rows, alone_scores = table.score(h, hw, k)
        np.testing.assert_array_equal(each_rows, alone_rows)
        assert each_scores.tobytes() == alone_scores.tobytes()


def test_the_fused_call_flags_ties_and_pads_past_the_entries() -> None:
    """Planted: six followers of row 0 with equal weights tie; ``k`` past the ``H·W``
    entries pads with -1 / 0 as ``found_top`` with fewer slots did."""
    table = CovisitTable(width=8)
    table.add([0] * 6, [5, 3, 7, 1, 6, 2], [1.0] * 6)
    h, hw = np.array([[0]], np.int64), np.ones((1, 1), np.float32)
    parts = (table.slot, table.nbr, table.weight, table.error, table.occ, h, hw)
    rows, scores, tied, item, total = follower_top(*parts, table._score_inputs(h, hw, [0.5])[2], 4)
    assert tied.tolist() == [0]  # the tie is seen: the caller ranks the row
    assert rows[0].tolist() == [-1] * 4
    want_item, want_total = table_sums(table, h, hw, [0.5])
    np.testing.assert_array_equal(item, want_item.reshape(1, -1))
    assert total.tobytes() == want_total.reshape(1, -1).tobytes()
    table = CovisitTable(width=2)
    table.add([0, 0], [1, 2], [3.0, 1.0])
    parts = (table.slot, table.nbr, table.weight, table.error, table.occ, h, hw)
    rows, scores, tied, item, _ = follower_top(*parts, table._score_inputs(h, hw, [0.5])[2], 5)
    assert tied.size == 0 and item.shape == (0, 2)
    assert rows[0].tolist() == [1, 2, -1, -1, -1]
    assert scores[0, 0] > scores[0, 1] > 0 and scores[0, 2:].tolist() == [0.0] * 3


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_items=st.integers(1, 30),
    pairs=st.integers(1, 80),
    width=st.integers(1, 5),
    users=st.sampled_from([1, 3]),
    h_len=st.integers(1, 5),
)
def test_followed_occurrences_are_the_floored_gather(
    seed: int, n_items: int, pairs: int, width: int, users: int, h_len: int
) -> None:
    """``followed_occurrences`` is ``np.maximum(occ[follower_rows(...)], 1e-12)`` to the
    bit: rows without followers, unknown (-1) and unlearnt rows read row 0's; tiny and
    zero occurrences are floored."""
    table = random_table(seed, n_items, pairs, width, tied=False)
    rng = np.random.default_rng(seed + 2)
    table.occ[rng.random(table.occ.shape) < 0.2] = np.float32(1e-20)  # below the floor
    table.occ[0] = np.float32(0.0) if seed % 2 else table.occ[0]
    h = rng.integers(-1, n_items + 5, size=(users, h_len)).astype(np.int64)
    want = np.maximum(table.occ[follower_rows(table.slot, table.nbr, h)], 1e-12)
    got = followed_occurrences(table.slot, table.nbr, table.occ, h)
    assert got.dtype == want.dtype == np.float32
    assert got.tobytes() == want.tobytes()
