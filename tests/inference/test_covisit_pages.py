"""The co-visitation table's memory follows the rows that have followers.

A bundle swap re-numbers (``remap``) the table for the new catalog off the scoring
lock. Dense storage made that allocate and write ``rows × width`` entries (3.2 GB at
1M items and width 200) before a restarted worker could serve; storage per row with
followers makes it cost what the stream has touched. What storage there is, is written
when it is made, not inside a scoring call: pages left unmapped (``np.zeros`` is
calloc: mapped on first write) were faulted in by the first pair rows written in
scoring calls, 7-62 ms of CPU each at 100k items.
"""

from __future__ import annotations

import resource

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.covisit import CovisitTable


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _follower_bytes(table: CovisitTable) -> int:
    return table.nbr.nbytes + table.weight.nbytes + table.error.nbytes


def test_a_table_renumbered_for_a_large_catalog_holds_only_rows_with_followers() -> None:
    table = CovisitTable(200)
    table.add([0, 1, 2], [1, 2, 0], [1.0, 1.0, 1.0])
    moved = table.remap(np.arange(3), 200_000)  # dense: 200k x 200 x 16 B = 640 MB
    assert moved.size >= 200_000
    assert moved.rows_held == 3
    assert _follower_bytes(moved) < 1_000_000
    assert moved.followers([199_999])[0].tolist() == [[-1] * 200]
    rows, _ = moved.score([[0, 199_999]], [[1.0, 1.0]], k=2)
    assert rows[0].tolist() == [1, -1]


def test_rows_claimed_within_the_reserve_fault_no_pages() -> None:
    table = CovisitTable(200)
    rng = np.random.default_rng(0)
    src = rng.choice(200_000, 5_000, replace=False)
    table.add(src, (src + 1) % 200_000, np.ones(src.size))
    moved = table.remap(np.arange(200_000), 200_000)  # reserves twice the rows held
    fresh = np.setdiff1d(np.arange(200_000), src)[:4_000]
    before = _minor_faults()
    moved.add(fresh, (fresh + 7) % 200_000, np.ones(fresh.size))
    faults = _minor_faults() - before
    # calloc'd storage faults here once per page (800-byte rows): about a thousand.
    assert faults < 100, f"{faults} page faults writing rows within the reserve"


def test_grow_keeps_rows_and_zeroes_the_rest() -> None:
    table = CovisitTable(4)
    table.add([0, 1, 1], [1, 2, 0], [1.0, 2.0, 0.5])
    old = table.size
    rows = np.arange(old)
    nbr, weight, error = table.followers(rows)
    occ = table.occ.copy()
    table.grow(old + 1)
    assert table.size >= 2 * old
    for got, want in zip(table.followers(rows), (nbr, weight, error), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(table.occ[:old], occ)
    nbr, weight, error = table.followers(np.arange(old, table.size))
    assert (nbr == -1).all() and not weight.any() and not error.any()
    assert not table.occ[old:].any()


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 19), st.integers(0, 19)), min_size=1, max_size=60),
    data=st.data(),
)
def test_remap_moves_each_row_and_follower_to_its_new_row(
    pairs: list[tuple[int, int]], data: st.DataObject
) -> None:
    src, dst = (np.array(c) for c in zip(*pairs, strict=True))
    table = CovisitTable(width=3)
    table.add(src, dst, np.arange(1, src.size + 1, dtype=np.float32))
    n_new = data.draw(st.integers(20, 40))
    new_row = np.array(data.draw(st.permutations(range(n_new)))[:20])
    gone = data.draw(st.lists(st.integers(0, 19), max_size=5))
    new_row[gone] = -1
    moved = table.remap(new_row, n_new)
    old_nbr, old_w, old_e = table.followers(np.arange(20))
    for r in np.flatnonzero(new_row >= 0):
        nbr, w, e = (a[0] for a in moved.followers([new_row[r]]))
        keep = (old_nbr[r] >= 0) & (new_row[np.clip(old_nbr[r], 0, 19)] >= 0)
        want = {
            (int(new_row[b]), float(x), float(y))
            for b, x, y in zip(old_nbr[r][keep], old_w[r][keep], old_e[r][keep], strict=True)
        }
        got = {(int(b), float(x), float(y)) for b, x, y in zip(nbr, w, e, strict=True) if b >= 0}
        assert got == want
        assert moved.occ[new_row[r]] == table.occ[r]
