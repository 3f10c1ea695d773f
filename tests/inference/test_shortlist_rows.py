"""The shortlist's batch-of-one path and the list records' flags equal the forms they replaced.

``_shortlist`` partitions one user's row in 1-D (the live loop's call) and reads the
groups' minimums from lists; ``old_shortlist`` below is the f1d3b61 form (2-D
partitions of every row). The positions must match in value and order, because their
order breaks MMR's ties: scores drawn from a few values make ties common.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.candidates import ItemTable
from inference.list_kernel import negated_scores
from inference.recommend import _assemble, _shortlist


def old_shortlist(
    rel: np.ndarray, valid: np.ndarray, members: np.ndarray, at_least: np.ndarray, size: int
) -> np.ndarray:
    need = at_least.max(axis=1, initial=0) if at_least.shape[1] else np.zeros(0, np.int64)
    groups = np.flatnonzero(need > 0)
    neg = negated_scores(rel, valid, members, groups)
    b, c = rel.shape
    parts = []
    for n, m in enumerate([size, *(2 * int(need[g]) for g in groups)]):
        # every row partitioned in one 2-D call, as f1d3b61 did for any batch
        whole = np.tile(np.arange(c, dtype=np.int64), (b, 1))
        parts.append(np.argpartition(neg[n], m - 1, axis=1)[:, :m] if m < c else whole)
    return np.hstack(parts).astype(np.int64)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    b=st.sampled_from([1, 1, 1, 2, 5]),
    c=st.integers(1, 400),
    g=st.integers(0, 5),
    size=st.integers(1, 120),
    levels=st.sampled_from([3, 20, 10_000]),
)
def test_shortlist_equals_the_2d_partitions(
    seed: int, b: int, c: int, g: int, size: int, levels: int
) -> None:
    rng = np.random.default_rng(seed)
    rel = (rng.integers(0, levels, size=(b, c)) / levels).astype(np.float32)
    rel[rng.random((b, c)) < 0.05] = np.nan
    valid = rng.random((b, c)) < 0.8
    members = rng.random((g, b, c)) < 0.3
    at_least = rng.integers(-1, 5, size=(g, b)).astype(np.int64)
    at_least[rng.random((g, b)) < 0.3] = 0
    expected = old_shortlist(rel, valid, members, at_least, size)
    got = _shortlist(rel, valid, members, at_least, size)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.flags.c_contiguous
    assert got.tolist() == expected.tolist()


def test_a_planted_tie_keeps_the_partitions_order() -> None:
    # 300 equal scores: which 100 come first, and in what order, is argpartition's
    rel = np.full((1, 300), 0.5, np.float32)
    valid = np.ones((1, 300), bool)
    members = np.zeros((2, 1, 300), bool)
    members[1, 0, ::3] = True
    at_least = np.array([[0], [4]], np.int64)
    expected = old_shortlist(rel, valid, members, at_least, 100)
    assert _shortlist(rel, valid, members, at_least, 100).tolist() == expected.tolist()
    assert expected.shape == (1, 108)


def test_records_flags_for_every_model_free_form() -> None:
    n = 6
    items = ItemTable(
        vectors=np.eye(n, 4, dtype=np.float32),
        ids=np.array([f"i{j}" for j in range(n)]),
        categories=np.zeros(n, np.int64),
        popularity=np.ones(n, np.float32),
        age_s=np.zeros(n, np.float32),
        removed=np.zeros(n, bool),
    )
    rows = np.array([[0, 3, -1], [5, -1, -1], [2, 1, 4]], np.int64)
    scores = np.ones((3, 3), np.float32)
    codes = np.zeros((3, 3), np.int8)
    reason_rows = np.array([[1, -1, -1], [-1, -1, -1], [0, 0, -1]], np.int64)
    warm = np.array([True, True, False])
    for free, expected in [
        (False, ["personalised", "personalised", "cold_start"]),
        (True, ["model_free", "model_free", "cold_start"]),
        (np.array([True, False, True]), ["model_free", "personalised", "cold_start"]),
        (np.array([True]), ["model_free", "model_free", "cold_start"]),
        ([False, True, False], ["personalised", "model_free", "cold_start"]),
    ]:
        lists = _assemble(rows, scores, codes, reason_rows, warm, free, items)
        assert [ul.strategy for ul in lists] == expected
        assert [[it.item_id for it in ul.items] for ul in lists] == [
            ["i0", "i3"],
            ["i5"],
            ["i2", "i1", "i4"],
        ]
        assert [it.reason_item_id for it in lists[2].items] == ["i0", "i0", None]
    for i in range(3):  # one user at a time: the batch-of-one count
        (one,) = _assemble(
            rows[i : i + 1],
            scores[i : i + 1],
            codes[i : i + 1],
            reason_rows[i : i + 1],
            warm[i : i + 1],
            False,
            items,
        )
        assert one.rows.tolist() == rows[i, rows[i] >= 0].tolist()
        assert len(one.items) == (rows[i] >= 0).sum()
