"""Vectors of items that arrived since the retrain, from their co-occurrences."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.covisit import CovisitTable, follow_pairs
from inference.covisit_vectors import NewItemVectors, covisit_vectors


def test_a_new_item_visited_with_one_cluster_lands_in_it() -> None:
    """Planted: two trained clusters; the new item (row 20) is visited after cluster B."""
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
    vecs = np.concatenate([centres[i // 10] + 0.05 * rng.standard_normal(3) for i in range(20)])
    vecs = np.vstack([vecs.reshape(20, 3), [[0.0, 0.0, 1.0]]]).astype(np.float32)  # content
    known = np.arange(21) < 20
    table = CovisitTable(width=16)
    sessions = [[int(rng.integers(10, 20)), 20] for _ in range(30)]
    sessions += [[int(rng.integers(0, 10)), int(rng.integers(0, 10))] for _ in range(30)]
    table.add(*follow_pairs(sessions, [2] * len(sessions), window=3))
    got = covisit_vectors(table, [20], vecs, known, prior=1.0)[0]
    sims = centres @ got / np.linalg.norm(got)
    assert sims[1] > 0.9 and sims[0] < 0.1  # cluster B, not A, and little content left
    alone = covisit_vectors(table, [20], vecs, known, prior=1e6)[0]
    assert np.allclose(alone, vecs[20], atol=1e-3)  # a heavy prior keeps the content


def test_unknown_neighbours_and_unseen_rows_keep_the_content_vector() -> None:
    """Known answer: only trained neighbours pull, with the prior as one more pair."""
    table = CovisitTable(width=4)
    table.add([3, 3, 3], [0, 1, 2], [2.0, 1.0, 5.0])
    vecs = np.array([[1, 0], [0, 1], [9, 9], [0, 0], [5, 5]], np.float32)
    known = np.array([True, True, False, False, True])
    got = covisit_vectors(table, [3, 4, 7 % 5], vecs, known, prior=1.0)
    assert np.allclose(got[0], [2 / 4, 1 / 4])  # (1·[0,0] + 2·[1,0] + 1·[0,1]) / 4
    assert np.allclose(got[1], vecs[4]) and np.allclose(got[2], vecs[2])  # no neighbours


def test_known_as_a_row_count_and_an_own_prior_give_the_mask_s_answer() -> None:
    """Rows below ``known`` pull; ``own`` replaces the row's vector as the prior."""
    table = CovisitTable(width=4)
    table.add([3, 3, 3], [0, 1, 2], [2.0, 1.0, 5.0])
    vecs = np.array([[1, 0], [0, 1], [9, 9], [7, 7]], np.float32)
    by_mask = covisit_vectors(table, [3], vecs, np.array([True, True, False, False]))
    by_count = covisit_vectors(table, [3], vecs, 2)
    assert np.allclose(by_mask, by_count)
    got = covisit_vectors(table, [3], vecs, 2, prior=1.0, own=[[0.0, 0.0]])
    assert np.allclose(got[0], [2 / 4, 1 / 4])  # (1·[0,0] + 2·[1,0] + 1·[0,1]) / 4


def _reference_vectors(table, rows, vectors, known, prior=1.0, own=None):  # type: ignore[no-untyped-def]
    """``covisit_vectors`` in numpy, as it was before its passes were compiled."""
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


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 14), st.integers(0, 14), st.floats(0.01, 50.0)), max_size=60
    ),
    trained=st.lists(st.booleans(), min_size=1, max_size=16),  # empty: the old form raised
    rows=st.lists(st.integers(-2, 18), max_size=10),
    known_count=st.integers(-1, 20),
    seed=st.integers(0, 5),
)
def test_compiled_passes_give_the_numpy_form_s_bits(
    pairs: list[tuple[int, int, float]],
    trained: list[bool],
    rows: list[int],
    known_count: int,
    seed: int,
) -> None:
    """Vectors, row for row and bit for bit, with a mask or a row count for ``known``;
    ``NewItemVectors.place`` picks the rows the numpy filters picked."""
    table = CovisitTable(width=3)  # width 3 of 15 items: evictions leave errors
    if pairs:
        src, dst, w = (np.array(c) for c in zip(*pairs, strict=True))
        table.add(src, dst, w.astype(np.float32))
    vecs = np.random.default_rng(seed).normal(size=(15, 4)).astype(np.float32)
    mask = np.array(trained + [False] * (15 - len(trained)), bool)[:15]
    inside = [r for r in rows if 0 <= r < 15]
    for known in (mask, known_count):
        got = covisit_vectors(table, inside, vecs, known, prior=0.5)
        want = _reference_vectors(table, inside, vecs, known, prior=0.5)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    placer = NewItemVectors(np.array(trained, bool))
    got_rows, got_vecs = placer.place(table, vecs, np.array(rows, np.int64))
    r = np.unique(np.array(rows, np.int64))
    r = r[(r >= 0) & (r < min(vecs.shape[0], table.size))]
    n = len(trained)
    r = r[(r >= n) | ~np.array(trained, bool)[np.minimum(r, max(n - 1, 0))]] if n else r
    assert got_rows.tolist() == r.tolist()
    want = _reference_vectors(table, r, vecs, placer.trained, placer.prior)
    assert np.array_equal(got_vecs.view(np.uint32), want.view(np.uint32))
