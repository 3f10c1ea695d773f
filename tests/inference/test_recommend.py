"""The whole pure pipeline on a planted catalog: invariants, strategies, reasons, hooks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.ann_index import AnnIndex
from inference.candidates import ItemTable
from inference.recommend import RecommendConfig, recommend, trend_score_of

N, D, N_CATS = 3_000, 16, 10
TRENDING = np.arange(0, 300, 7)  # 43 popular items spread over the categories


def make_catalog(
    seed: int = 0, exact_below: int = 20_000
) -> tuple[ItemTable, AnnIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CATS, D))
    cats = np.arange(N) % N_CATS
    vecs = (centres[cats] + 0.4 * rng.normal(size=(N, D))).astype(np.float32)
    popularity = (1e4 / (1 + np.arange(N)) ** 1.1).astype(np.float32)  # Zipf: row 0 most popular
    items = ItemTable.create(
        vecs,
        [f"i{r}" for r in range(N)],
        categories=cats,
        popularity=popularity,
        age_s=np.full(N, 30 * 86_400.0),
    )
    return items, AnnIndex.build(vecs, np.arange(N), exact_below=exact_below), centres


ITEMS, INDEX, CENTRES = make_catalog()
CONFIG = RecommendConfig(list_size=20, candidates=100)


def rows_of(lst_items: tuple, items: ItemTable = ITEMS) -> list[int]:
    return [int(x.item_id[1:]) for x in lst_items]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 6),
    k=st.integers(1, 30),
    lam=st.floats(0, 1),
    share=st.floats(0, 0.6),
    cold_share=st.floats(0, 1),
    cap=st.none() | st.just(4),
)
def test_lists_are_clean_and_meet_the_long_tail_target(
    seed: int, b: int, k: int, lam: float, share: float, cold_share: float, cap: int | None
) -> None:
    rng = np.random.default_rng(seed)
    removed = rng.random(N) < 0.05
    items = replace(ITEMS, removed=removed)  # __post_init__ recomputes head and tail
    users = CENTRES[rng.integers(0, N_CATS, b)] + rng.normal(size=(b, D))
    users[rng.random(b) < cold_share] = 0.0
    exclude = [rng.choice(N, rng.integers(0, 200), replace=False) for _ in range(b)]
    config = replace(CONFIG, list_size=k, mmr_lambda=lam, longtail_share=share, category_cap=cap)
    lists = recommend(users, items, INDEX, config, exclude=exclude, trending=TRENDING, seed=seed)
    assert len(lists) == b
    for user_list, ex in zip(lists, exclude, strict=True):
        rows = user_list.rows
        assert rows_of(user_list.items) == rows.tolist()
        assert len(set(rows.tolist())) == rows.size
        assert not removed[rows].any()
        assert not np.isin(rows, ex).any()
        assert all(math.isfinite(x.score) for x in user_list.items)
        if user_list.strategy == "cold_start":
            assert {x.reason for x in user_list.items} <= {"trending", "exploration"}
            continue
        if cap is not None:
            # A cap can starve a list of candidates; it is then short, never over the cap.
            assert np.bincount(items.categories[rows]).max() <= cap
            continue
        assert rows.size == k
        assert np.mean(~items.head[rows]) >= share - 1e-9


def test_cold_users_get_trending_and_exploration() -> None:
    users = np.zeros((3, D), dtype=np.float32)
    users[2] = np.nan  # no usable embedding either
    lists = recommend(users, ITEMS, INDEX, CONFIG, trending=TRENDING, seed=1)
    for user_list in lists:
        assert user_list.strategy == "cold_start"
        reasons = [x.reason for x in user_list.items]
        assert len(reasons) == 20
        assert reasons.count("exploration") == CONFIG.exploration_slots
        assert reasons.count("trending") == 20 - CONFIG.exploration_slots
        assert not ITEMS.head[
            [
                r
                for r, x in zip(user_list.rows, user_list.items, strict=True)
                if x.reason == "exploration"
            ]
        ].any()
    # A user with history but flagged unknown is also cold.
    warm_vec = CENTRES[:1]
    assert recommend(warm_vec, ITEMS, INDEX, CONFIG, known=[False])[0].strategy == "cold_start"


def test_cold_users_without_trending_still_get_a_list_of_exploration() -> None:
    lists = recommend(np.zeros((1, D)), ITEMS, INDEX, CONFIG, seed=3)
    assert len(lists[0].items) == 20
    assert {x.reason for x in lists[0].items} == {"exploration"}


def test_warm_users_are_personalised_with_reserved_slots() -> None:
    users = CENTRES[[0, 3]]
    lists = recommend(
        users, ITEMS, INDEX, CONFIG, trending=TRENDING, model_free=[False, True], seed=2
    )
    assert [x.strategy for x in lists] == ["personalised", "model_free"]
    for c, user_list in zip([0, 3], lists, strict=True):
        reasons = [x.reason for x in user_list.items]
        assert reasons.count("exploration") == CONFIG.exploration_slots
        assert reasons.count("trending") >= CONFIG.trending_slots
        personal = [
            r
            for r, x in zip(user_list.rows, user_list.items, strict=True)
            if x.reason == "personalised"
        ]
        # Most personalised picks come from the user's own cluster.
        assert np.mean(ITEMS.categories[personal] == c) > 0.5
        assert np.mean(~ITEMS.head[user_list.rows]) >= CONFIG.longtail_share


def test_same_seed_same_lists() -> None:
    users = np.vstack([CENTRES[:2], np.zeros((1, D))])
    a = recommend(users, ITEMS, INDEX, CONFIG, trending=TRENDING, seed=7)
    b = recommend(users, ITEMS, INDEX, CONFIG, trending=TRENDING, seed=7)
    assert [x.items for x in a] == [x.items for x in b]


@pytest.mark.parametrize("exact_below", [20_000, 1_000])
def test_newly_added_item_is_recommended_as_new(exact_below: int) -> None:
    items, index, _ = make_catalog(seed=4, exact_below=exact_below)
    rng = np.random.default_rng(5)
    new_vec = (3 * rng.normal(size=D)).astype(np.float32)
    grown = ItemTable.create(
        np.vstack([items.vectors, new_vec]),
        np.append(items.ids, "fresh"),
        categories=np.append(items.categories, 0),
        popularity=np.append(items.popularity, 0.0),
        age_s=np.append(items.age_s, 60.0),
    )
    index.add([N], new_vec[None, :])
    user = new_vec + 0.05 * rng.normal(size=D)
    top = recommend(user[None], grown, index, replace(CONFIG, mmr_lambda=1.0))[0].items[0]
    assert top.item_id == "fresh" and top.reason == "new_item"


def test_similar_to_item_names_the_history_item() -> None:
    user = ITEMS.vectors[1_234] * 2
    lst = recommend(user[None], ITEMS, INDEX, CONFIG, exclude=[[1_234]], history=[[5, 1_234]])[0]
    similar = [x for x in lst.items if x.reason == "similar_to_item"]
    assert similar and {x.reason_item_id for x in similar} <= {"i5", "i1234"}
    assert "i1234" in {x.reason_item_id for x in similar}
    assert all(x.reason_item_id is None for x in lst.items if x.reason != "similar_to_item")


def test_ranker_hook_replaces_relevance_and_drops_non_finite() -> None:
    favourite = 2_999

    def ranker(
        user_vecs: np.ndarray, cand_vecs: np.ndarray, features: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        assert cand_vecs.shape[:2] == features["ann_score"].shape
        scores = -features["ann_score"].astype(np.float32)  # least similar first
        scores[features["category"] == 1] = np.nan
        return scores

    user = CENTRES[:1]
    config = replace(
        CONFIG, mmr_lambda=1.0, exploration_slots=0, trending_slots=0, longtail_share=0.0
    )
    plain = recommend(user, ITEMS, INDEX, config)[0]
    ranked = recommend(user, ITEMS, INDEX, config, ranker=ranker)[0]
    assert favourite not in ranked.rows
    assert not (ITEMS.categories[ranked.rows] == 1).any()
    assert ranked.rows.tolist() != plain.rows.tolist()
    scores = [x.score for x in ranked.items]
    assert scores == sorted(scores, reverse=True)


def test_allow_hook_and_removed_items_are_respected() -> None:
    user = CENTRES[:1]
    first = recommend(user, ITEMS, INDEX, CONFIG, trending=TRENDING)[0].rows
    removed = np.zeros(N, bool)
    removed[first[:5]] = True
    items = replace(ITEMS, removed=removed)
    banned = set(first[5:10].tolist())
    again = recommend(
        user,
        items,
        INDEX,
        CONFIG,
        trending=TRENDING,
        allow=lambda rows: ~np.isin(rows, list(banned)),
    )[0].rows
    assert not set(again.tolist()) & (set(first[:10].tolist()))


def test_covisitation_followers_join_the_candidates_and_lead_the_list() -> None:
    user = CENTRES[[0]]
    far = np.flatnonzero(ITEMS.categories == 5)[:3]  # another category: not ANN neighbours
    covisit = (far[None, :], np.array([[3.0, 2.5, 2.0]]))
    config = replace(CONFIG, mmr_lambda=1.0, covisit_weight=10.0)
    plain = recommend(user, ITEMS, INDEX, config, trending=TRENDING, seed=4)[0]
    led = recommend(user, ITEMS, INDEX, config, trending=TRENDING, seed=4, covisit=covisit)[0]
    assert not np.isin(far, plain.rows).any()
    # 10·(1, 5/6, 4/6) on top of relevance scaled to [0, 1]: steps wider than that range
    assert led.rows[:3].tolist() == far.tolist()
    assert led.strategy == "personalised"
    # Weight 0 turns the source off: the very list without it.
    off = recommend(
        user, ITEMS, INDEX, replace(config, covisit_weight=0.0), trending=TRENDING, seed=4,
        covisit=covisit,
    )[0]  # fmt: skip
    assert off.rows.tolist() == plain.rows.tolist()


def test_a_user_without_a_vector_but_with_followers_gets_them_and_the_usual_slots() -> None:
    far = np.flatnonzero(ITEMS.categories == 5)[5:15]
    covisit = (far[None, :], np.linspace(1.0, 0.1, 10)[None, :])
    config = replace(CONFIG, mmr_lambda=1.0, covisit_weight=2.0)
    lst = recommend(
        np.zeros((1, D)), ITEMS, INDEX, config, trending=TRENDING, seed=5, covisit=covisit
    )[0]
    assert lst.strategy == "cold_start"  # no model vector behind it
    assert lst.rows[0] in far
    reasons = [x.reason for x in lst.items]
    assert reasons.count("exploration") == CONFIG.exploration_slots
    assert reasons.count("trending") >= CONFIG.trending_slots
    assert np.isin(far, lst.rows).sum() >= 5


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 400),
    trend=st.lists(st.integers(0, 399), max_size=60),
    cands=st.lists(st.integers(0, 399), min_size=1, max_size=40),
    seed=st.integers(0, 1_000),
)
def test_trending_scores_by_search_equal_the_catalog_sized_table(
    n: int, trend: list[int], cands: list[int], seed: int
) -> None:
    """The search over trending rows gives what a catalog-sized lookup table gave."""
    rows = np.array([c % n for c in cands], np.int64).reshape(1, -1)
    t_rows = np.array([t % n for t in trend], np.int64)
    t_scores = np.random.default_rng(seed).random(t_rows.size).astype(np.float32)
    table = np.zeros(n + 1, np.float32)  # the reference: first (best) occurrence wins
    table[t_rows[::-1]] = t_scores[::-1]
    np.testing.assert_array_equal(trend_score_of(rows, t_rows, t_scores), table[rows])
