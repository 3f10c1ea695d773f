"""The candidate front end in one compiled pass gives the old composition's batch exactly.

``candidates_reference.reference_candidate_batch`` is ``candidate_batch`` as of 9401bf6:
the co-visitation candidates validated in numpy, ``merge_sources``, then
``exclusion_mask``. ``candidate_rows`` does the three in one pass per user; integers,
booleans and copied floats only, so every field must match exactly.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from candidates_reference import reference_candidate_batch
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.ann_index import AnnIndex
from inference.candidates import SOURCE_ORDER, CandidateBatch, ItemTable, candidate_batch
from inference.recommend import RecommendConfig
from inference.rerank import exclusion_mask, pad_ragged
from inference.rerank_kernels import candidate_rows, known_trending, merge_sources

N, D = 400, 6


def same_batch(new: CandidateBatch, old: CandidateBatch) -> None:
    for name in ("user_vecs", "warm", "valid", "trend_rows", "trend_scores"):
        a, b = getattr(new, name), getattr(old, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    for name in ("cv_rows", "cv_scores"):
        a, b = getattr(new, name), getattr(old, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name
    assert new.cands.rows.tolist() == old.cands.rows.tolist()
    assert new.cands.flags.tolist() == old.cands.flags.tolist()


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    b=st.integers(1, 9),
    candidates=st.integers(0, 60),
    max_overfetch=st.integers(0, 30),
    explore_pool=st.integers(0, 20),
    trending_pool=st.integers(0, 30),
    covisit_weight=st.sampled_from([0.0, 1.0]),
    with_covisit=st.booleans(),
    with_allow=st.booleans(),
    cold_share=st.floats(0, 1),
    n_seen=st.integers(0, 50),
)
def test_candidate_batch_equals_the_old_composition(
    seed: int,
    b: int,
    candidates: int,
    max_overfetch: int,
    explore_pool: int,
    trending_pool: int,
    covisit_weight: float,
    with_covisit: bool,
    with_allow: bool,
    cold_share: float,
    n_seen: int,
) -> None:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(N, D)).astype(np.float32)
    vecs[rng.random(N) < 0.05] = 0.0
    items = ItemTable.create(
        vecs,
        [f"i{r}" for r in range(N)],
        popularity=np.floor(500 / (1 + rng.permutation(N))).astype(np.float32),
        removed=rng.random(N) < 0.05,
    )
    index = AnnIndex.build(vecs, np.arange(N), exact_below=10_000)
    config = replace(
        RecommendConfig(),
        candidates=candidates,
        max_overfetch=max_overfetch,
        explore_pool=explore_pool,
        trending_pool=trending_pool,
        covisit_weight=covisit_weight,
    )
    users = rng.normal(size=(b, D)).astype(np.float32)
    users[rng.random(b) < cold_share] = 0.0
    users[rng.random(b) < 0.1, 0] = np.nan  # not finite: served cold
    # seen items with repeats and rows outside the catalog; users of unequal lengths
    seen = [
        np.concatenate([rng.integers(0, N, rng.integers(0, n_seen + 1)), [N + 2, -1]])
        for _ in range(b)
    ]
    trending = np.concatenate([rng.integers(0, N, 25), [N + 3, -2]])
    t_scores = rng.random(trending.size).astype(np.float32)
    t_scores[rng.random(trending.size) < 0.1] = np.nan
    cv_rows = rng.integers(-2, N, (b, 12))
    cv_scores = rng.normal(size=(b, 12)).astype(np.float32)  # negative: dropped
    cv_scores[rng.random((b, 12)) < 0.1] = np.inf
    cv_scores[rng.random((b, 12)) < 0.1] = np.nan
    cv_scores[rng.random((b, 12)) < 0.1] = 0.0

    def allow(rows: np.ndarray) -> np.ndarray:
        return rows % 7 != 3

    args = (
        users,
        items,
        index,
        config,
        rng.random(b) < 0.9,
        seen,
        trending,
        t_scores,
        allow if with_allow else None,
        seed,
        (cv_rows, cv_scores) if with_covisit else None,
    )
    same_batch(candidate_batch(*args), reference_candidate_batch(*args))  # type: ignore[arg-type]


@pytest.mark.parametrize("marks", [0, 20])
def test_candidate_rows_is_merge_then_exclusions(marks: int) -> None:
    """A planted row: copies across sources merge their flags, the first copy stays,
    and excluded, removed, empty and out-of-catalog entries are not valid (sorted, and
    marked: row 1 has 30, past the 20 marks, so it takes the sort)."""
    found = np.array([[5, 3, 9]], np.int64)
    cv_rows = np.array([[3, 7, 8, -1], [4, 4, 11, 2]], np.int64)
    cv_scores = np.array([[0.5, 0.0, np.nan, 1.0], [0.2, 0.3, 0.9, -1.0]], np.float32)
    trending = np.array([9, 2], np.int64)
    explore = np.array([[6, 5], [2, 30]], np.int64)
    exclude = np.array([[9, -1], [2, 4]], np.int64)
    removed = np.zeros(20, np.bool_)
    removed[6] = True
    warm = np.array([True, False])
    rows, flags, valid, cv_out, cv_score_out = candidate_rows(
        found,
        warm,
        3,
        cv_rows,
        cv_scores,
        trending,
        explore,
        SOURCE_ORDER,
        exclude,
        removed,
        np.zeros(marks, np.int32),
    )
    assert cv_out.tolist() == [[3, -1, -1, -1], [4, 4, 11, -1]]
    assert cv_score_out.tolist() == [
        [0.5, 0.0, 0.0, 0.0],
        [np.float32(0.2), np.float32(0.3), np.float32(0.9), 0.0],
    ]
    assert rows.tolist() == [
        [5, 3, 9, -1, -1, -1, -1, -1, 2, 6, -1],
        [-1, -1, -1, 4, -1, 11, -1, 9, 2, -1, 30],
    ]
    # ANN 1, trending 2, exploration 4, co-visitation 8; a later copy keeps the union
    assert flags.tolist() == [[5, 9, 3, 9, 0, 0, 0, 3, 2, 4, 5], [0, 0, 0, 8, 8, 8, 0, 2, 6, 6, 4]]
    assert valid.tolist() == [
        [True, True, False, False, False, False, False, False, True, False, False],
        [False, False, False, False, False, True, False, True, False, False, False],
    ]
    ann = np.array([[5, 3, 9], [-1, -1, -1]], np.int64)
    old_rows, old_flags = merge_sources(ann, cv_out, trending, explore, SOURCE_ORDER)
    assert rows.tolist() == old_rows.tolist() and flags.tolist() == old_flags.tolist()
    assert valid.tolist() == exclusion_mask(old_rows, exclude, removed, unique=True).tolist()


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    b=st.integers(1, 6),
    n=st.integers(1, 50),
    width=st.integers(0, 30),
    odd=st.booleans(),
)
def test_marks_give_the_sorted_rows(seed: int, b: int, n: int, width: int, odd: bool) -> None:
    """The marked merge and exclusions equal the sorted ones, rows outside the marks
    (below -1 or past the catalog) falling back to the sort; the marks end as zeros."""
    rng = np.random.default_rng(seed)
    lo, hi = (-3, n + 3) if odd else (-1, n)
    found = rng.integers(lo, hi, (b, width))
    warm = rng.random(b) < 0.7
    found = found[: int(warm.sum())]
    cv_rows = rng.integers(lo, hi, (b, 7))
    cv_scores = rng.random((b, 7)).astype(np.float32)
    trending = rng.integers(0, n, 5)
    explore = rng.integers(lo, hi, (b, 6))
    exclude = rng.integers(-2, n + 2, (b, int(rng.integers(0, 12))))
    removed = rng.random(n) < 0.1
    args = (found, warm, width, cv_rows, cv_scores, trending, explore, SOURCE_ORDER, exclude)
    mark = np.zeros(n, np.int32)
    marked = candidate_rows(*args, removed, mark)
    sorted_ = candidate_rows(*args, removed, np.zeros(0, np.int32))
    for a, s in zip(marked, sorted_, strict=True):
        assert a.tobytes() == s.tobytes()
    assert not mark.any()


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.integers(-3, 30), max_size=40),
    nan_at=st.sets(st.integers(0, 39)),
    n=st.integers(0, 25),
)
def test_known_trending_is_the_numpy_masks(rows: list[int], nan_at: set[int], n: int) -> None:
    """The trending rows in the catalog with finite scores, as 9401bf6's masks kept them."""
    trend = np.array(rows, np.int64)
    scores = np.linspace(1.0, 0.1, trend.size, dtype=np.float32)
    scores[[i for i in nan_at if i < trend.size]] = np.nan
    scores[trend == 7] = np.inf
    keep = (trend >= 0) & (trend < n) & np.isfinite(scores)
    got_rows, got_scores = known_trending(trend, scores, n)
    assert got_rows.tolist() == trend[keep].tolist()
    assert got_scores.tobytes() == scores[keep].tobytes()


@given(st.lists(st.integers(-5, 10**12), max_size=30) | st.integers(-5, 50))
def test_pad_ragged_of_one_row_is_that_row(row: list[int] | int) -> None:
    """Batch 1 returns the row itself, as the padding did (a copy, int64, (1, len))."""
    flat = np.asarray(row, np.int64).reshape(-1)
    want = np.full((1, flat.size), -1, np.int64)
    want[0, : flat.size] = flat
    got = pad_ragged([row], 1)  # type: ignore[list-item]
    assert got.dtype == np.int64 and got.shape == want.shape
    assert got.tolist() == want.tolist()
    source = np.array(flat)
    pad_ragged([source], 1)[0, :] = 99  # the result is not a view of the input
    assert source.tolist() == flat.tolist()
