"""The reasons' cosines, summed in vector lanes across history items, are the old loop's.

``finish_lists`` used to compute each pick's cosine with each history item as one
float32 chain over the dimensions (a product rounded, then added, in order of ``e``).
The lanes keep that order per history item, so every cosine, and so every reason and
reason item, must match the old loop exactly, ties between equal cosines included.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.list_kernel import (
    EXPLORATION,
    NEW_ITEM,
    PERSONALISED,
    SIMILAR,
    TRENDING,
    _cosines,
    finish_lists,
)
from inference.list_metrics import unit_rows


def old_reason(
    row: int,
    flag: int,
    age: float,
    new_age: float,
    hist: np.ndarray,
    unit: np.ndarray,
    similar: float,
) -> tuple[int, int]:
    """The reason loop as it was (9401bf6), in numpy float32 scalars."""
    if (flag & 4) and not (flag & 1):
        return EXPLORATION, -1
    if flag & 2:
        return TRENDING, -1
    if np.float64(age) < new_age:
        return NEW_ITEM, -1
    best, best_cos = -1, np.float32(-np.inf)
    for s, hr in enumerate(hist):
        if hr < 0 or hr >= unit.shape[0]:
            continue
        cos = np.float32(0.0)
        if row >= 0:
            for e in range(unit.shape[1]):
                cos = np.float32(cos + np.float32(unit[row, e] * unit[hr, e]))
        if best < 0 or cos > best_cos:
            best, best_cos = s, cos
    if best >= 0 and np.float64(best_cos) >= similar:
        return SIMILAR, int(hist[best])
    return PERSONALISED, -1


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    b=st.integers(1, 4),
    d=st.sampled_from([1, 3, 8, 33, 64]),
    h=st.integers(0, 45),
    similar=st.floats(-0.2, 1.0),
)
def test_reasons_equal_the_sequential_loop(
    seed: int, b: int, d: int, h: int, similar: float
) -> None:
    rng = np.random.default_rng(seed)
    n, c, k = 60, 40, 12
    base = rng.normal(size=(12, d)).astype(np.float32)
    unit = unit_rows(base[rng.integers(0, 12, n)])  # repeated vectors: tied cosines
    unit[rng.random(n) < 0.05] = 0.0
    rows = np.stack([rng.permutation(n)[:c] for _ in range(b)]).astype(np.int64)
    flags = rng.choice(np.array([1, 1, 1, 3, 4, 5, 9], np.uint8), (b, c))
    rel = rng.random((b, c)).astype(np.float32)
    valid = np.ones((b, c), np.bool_)
    age = np.where(rng.random(n) < 0.1, 10.0, 1e6).astype(np.float32)
    hist = rng.integers(-1, n + 3, (b, h)).astype(np.int64)  # repeats, -1, past the catalog
    pos = np.tile(np.arange(c, dtype=np.int64), (b, 1))
    none = np.zeros((0, b, c), np.bool_), np.zeros((0, b), np.int64), np.zeros((0, b), np.int64)
    sim = float(np.float32(similar))
    out_rows, _, codes, reason_rows = finish_lists(
        rows,
        flags,
        rel,
        valid,
        pos,
        False,
        unit,
        np.full(n, -1, np.int64),
        age,
        100.0,
        *none,
        k,
        0.7,
        0.5,
        -1,
        hist,
        sim,
    )
    checked = 0
    for i in range(b):
        for t in range(k):
            row = int(out_rows[i, t])
            if row < 0:
                continue
            at = int(np.flatnonzero(rows[i] == row)[0])
            want = old_reason(row, int(flags[i, at]), float(age[row]), 100.0, hist[i], unit, sim)
            assert (int(codes[i, t]), int(reason_rows[i, t])) == want
            checked += 1
    assert checked == b * k


def test_a_planted_tie_names_the_first_history_item() -> None:
    """Two history items with the same vector tie on the cosine: the earlier one is named."""
    unit = unit_rows(np.array([[1, 0], [0.6, 0.8], [0.6, 0.8], [0, 1]], np.float32))
    rows = np.array([[1, 3]], np.int64)
    hist = np.array([[3, 2, 1, 0]], np.int64)  # items 2 and 1 share item 1's vector
    none = np.zeros((0, 1, 2), np.bool_), np.zeros((0, 1), np.int64), np.zeros((0, 1), np.int64)
    out_rows, _, codes, reason_rows = finish_lists(
        rows,
        np.ones((1, 2), np.uint8),
        np.array([[0.9, 0.1]], np.float32),
        np.ones((1, 2), np.bool_),
        np.array([[0, 1]], np.int64),
        False,
        unit,
        np.full(4, -1, np.int64),
        np.full(4, 1e6, np.float32),
        100.0,
        *none,
        2,
        1.0,
        0.5,
        -1,
        hist,
        0.8,
    )
    assert out_rows.tolist() == [[1, 3]]
    assert codes.tolist() == [[SIMILAR, SIMILAR]]
    assert reason_rows.tolist() == [[2, 3]]  # item 1: items 2 and 1 tie at 1.0, 2 comes first


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 100_000), d=st.integers(1, 70), h=st.integers(1, 50))
def test_cosines_are_the_sequential_sums_to_the_bit(seed: int, d: int, h: int) -> None:
    """Each lane sums in the loop's order: a reordered sum would differ in the last bits."""
    rng = np.random.default_rng(seed)
    unit = rng.normal(size=(20, d)).astype(np.float32) * np.float32(rng.uniform(0.01, 100))
    hist = rng.integers(0, 20, h)
    hist_unit = np.ascontiguousarray(unit[hist].T)
    out = np.empty(h, np.float32)
    row = int(rng.integers(0, 20))
    _cosines(unit, row, hist_unit, out)
    want = [_sequential(unit[row], unit[hr]) for hr in hist]
    assert out.tobytes() == np.array(want, np.float32).tobytes()


def _sequential(a: np.ndarray, b: np.ndarray) -> np.float32:
    total = np.float32(0.0)
    for x, y in zip(a, b, strict=True):
        total = np.float32(total + np.float32(x * y))
    return total
