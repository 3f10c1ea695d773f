"""Re-ranking: filters, MMR, quotas and reasons, as properties and planted answers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from inference.list_metrics import intra_list_diversity, unit_rows
from inference.reasons import assign_reasons
from inference.rerank import (
    FROM_ANN,
    FROM_EXPLORATION,
    FROM_TRENDING,
    REASON_CODE,
    Quota,
    debias,
    exclusion_mask,
    longtail_quota,
    mmr_select,
    pad_ragged,
)

scores = st.floats(-100, 100, width=32)


@st.composite
def batches(draw: st.DrawFn) -> dict[str, np.ndarray]:
    b = draw(st.integers(1, 4))
    c = draw(st.integers(1, 25))
    d = 4
    return {
        "rel": draw(arrays(np.float32, (b, c), elements=scores)),
        "vecs": unit_rows(draw(arrays(np.float32, (b, c, d), elements=st.floats(-1, 1, width=32)))),
        "cats": draw(arrays(np.int64, (b, c), elements=st.integers(-1, 3))),
        "tail": draw(arrays(np.bool_, (b, c))),
    }


@settings(max_examples=150, deadline=None)
@given(data=batches(), k=st.integers(1, 30))
def test_lambda_one_keeps_the_k_best_scored(data: dict[str, np.ndarray], k: int) -> None:
    rel = data["rel"]
    valid = np.ones(rel.shape, dtype=bool)
    picked = mmr_select(rel, data["vecs"], data["cats"], valid, k, mmr_lambda=1.0)
    for row in range(rel.shape[0]):
        got = picked[row][picked[row] >= 0]
        assert got.size == min(k, rel.shape[1])
        expected = np.sort(rel[row])[::-1][: got.size]
        np.testing.assert_array_equal(np.sort(rel[row, got])[::-1], expected)
        # ...and in relevance order.
        assert np.all(np.diff(rel[row, got]) <= 0)


@settings(max_examples=150, deadline=None)
@given(
    data=batches(),
    k=st.integers(1, 30),
    lam=st.floats(0, 1),
    share=st.floats(0, 1),
    cap=st.none() | st.integers(1, 5),
    n_items=st.integers(1, 40),
    seed=st.integers(0, 2**16),
)
def test_output_has_no_excluded_removed_or_duplicate_items(
    data: dict[str, np.ndarray],
    k: int,
    lam: float,
    share: float,
    cap: int | None,
    n_items: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    b, c = data["rel"].shape
    cand = rng.integers(-1, n_items, size=(b, c))
    removed = rng.random(n_items) < 0.2
    exclude = pad_ragged([rng.choice(n_items, rng.integers(0, n_items + 1)) for _ in range(b)], b)
    deny = rng.integers(0, n_items)
    valid = exclusion_mask(cand, exclude, removed, allow=lambda rows: rows != deny)
    quota = Quota(data["tail"], longtail_quota(share, k))
    rel = np.where(rng.random((b, c)) < 0.1, np.nan, data["rel"])
    picked = mmr_select(
        rel, data["vecs"], data["cats"], valid, k, lam, quotas=[quota], category_cap=cap
    )
    for row in range(b):
        pos = picked[row][picked[row] >= 0]
        items = cand[row, pos]
        assert (items >= 0).all()
        assert len(set(items.tolist())) == items.size
        assert not removed[items].any()
        assert not np.isin(items, exclude[row]).any()
        assert deny not in items
        assert np.isfinite(rel[row, pos]).all()
        # Picks are packed at the front: no -1 between two picks.
        assert (picked[row, : pos.size] >= 0).all()
        if cap is not None:
            cats = data["cats"][row, pos]
            known = cats[cats >= 0]
            assert (np.bincount(known, minlength=4) <= cap).all() if known.size else True


@settings(max_examples=150, deadline=None)
@given(data=batches(), k=st.integers(1, 30), lam=st.floats(0, 1), share=st.floats(0, 1))
def test_longtail_share_meets_target_when_tail_is_available(
    data: dict[str, np.ndarray], k: int, lam: float, share: float
) -> None:
    rel, tail = data["rel"], data["tail"]
    valid = np.ones(rel.shape, dtype=bool)
    need = longtail_quota(share, k)
    picked = mmr_select(rel, data["vecs"], data["cats"], valid, k, lam, quotas=[Quota(tail, need)])
    for row in range(rel.shape[0]):
        pos = picked[row][picked[row] >= 0]
        if tail[row].sum() >= need and rel.shape[1] >= k:
            assert pos.size == k
            assert tail[row, pos].mean() >= share - 1e-9


def test_quota_caps_the_group() -> None:
    rel = np.arange(10, dtype=np.float32)[None, ::-1].copy()
    group = np.zeros((1, 10), dtype=bool)
    group[0, :6] = True  # the six best
    picked = mmr_select(
        rel,
        np.zeros((1, 10, 2)),
        np.full((1, 10), -1),
        np.ones((1, 10), bool),
        5,
        1.0,
        quotas=[Quota(group, at_least=0, at_most=2)],
    )
    np.testing.assert_array_equal(picked[0], [0, 1, 6, 7, 8])


def test_low_lambda_diversifies_planted_clusters() -> None:
    # Four tight clusters (one per category); cluster 0 holds all of the most relevant.
    rng = np.random.default_rng(0)
    centres = np.eye(4, 16, dtype=np.float32)
    cluster = np.repeat(np.arange(4), 10)
    vecs = unit_rows(centres[cluster] + 0.05 * rng.normal(size=(40, 16)))
    rel = np.where(cluster == 0, 10.0, 1.0) + rng.random(40)
    valid = np.ones((1, 40), bool)
    args = (rel[None].astype(np.float32), vecs[None], cluster[None], valid, 8)
    plain = mmr_select(*args, mmr_lambda=1.0)[0]
    diverse = mmr_select(*args, mmr_lambda=0.3)[0]
    assert set(cluster[plain].tolist()) == {0}
    assert set(cluster[diverse].tolist()) == {0, 1, 2, 3}
    assert diverse[0] == plain[0]  # the first pick is always the most relevant
    assert (
        intra_list_diversity(vecs[diverse], cluster[diverse])
        > intra_list_diversity(vecs[plain], cluster[plain]) + 0.3
    )


def test_reasons_follow_precedence_and_name_the_history_item() -> None:
    e = np.eye(3, dtype=np.float32)
    flags = np.array(
        [
            [
                FROM_EXPLORATION,
                FROM_TRENDING | FROM_ANN,
                FROM_ANN,
                FROM_ANN,
                FROM_ANN,
                FROM_EXPLORATION | FROM_ANN,
            ]
        ],
        dtype=np.uint8,
    )
    is_new = np.array([[True, True, True, False, False, False]])
    picked_vecs = np.stack([e[0], e[0], e[0], e[1], e[2], e[2]])[None]
    history = np.stack([e[2], e[1]])[None]
    codes, hist = assign_reasons(flags, is_new, picked_vecs, history, np.ones((1, 2), bool), 0.9)
    names = [list(REASON_CODE)[c] for c in codes[0]]
    assert names == [
        "exploration",
        "trending",
        "new_item",
        "similar_to_item",
        "similar_to_item",
        "similar_to_item",
    ]
    np.testing.assert_array_equal(hist[0], [-1, -1, -1, 1, 0, 0])


def test_debias_demotes_popular_items() -> None:
    out = debias(np.array([1.0, 1.0]), np.array([1000.0, 0.0]), beta=0.1)
    assert out[0] < out[1] == 1.0
    np.testing.assert_array_equal(debias(np.array([2.0]), np.array([5.0]), 0.0), [2.0])
