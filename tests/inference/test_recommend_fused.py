"""The compiled re-rank pipeline gives the lists of the numpy composition it replaced.

``rerank_reference.reference_recommend`` is ``inference.recommend.recommend`` as of
5e66c59 (blend_scores, slot_quotas, shortlist, mmr_select_at, assign_reasons in
numpy). On random catalogs, users and options the two must agree on every list: the
same items in the same order, the same float32 scores to the bit, the same reasons and
reason items, the same strategy. The one computation done in another order is the
reasons' cosine (a loop here, a matrix product there): a cosine within float32
rounding of ``similar_threshold`` could flip, which random inputs do not hit.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rerank_reference import reference_recommend

from inference.ann_index import AnnIndex
from inference.candidates import ItemTable
from inference.recommend import RecommendConfig, UserList, recommend

N, D, N_CATS = 1_500, 8, 7


def catalog(seed: int, new_share: float) -> tuple[ItemTable, AnnIndex, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CATS, D))
    cats = rng.integers(-1, N_CATS, N)  # -1: unknown category
    vecs = (centres[np.maximum(cats, 0)] + 0.5 * rng.normal(size=(N, D))).astype(np.float32)
    vecs[rng.random(N) < 0.02] = 0.0  # items without a vector
    pop = np.floor(3e3 / (1 + rng.permutation(N)) ** 1.1).astype(np.float32)
    age = np.where(rng.random(N) < new_share, 3_600.0, 40 * 86_400.0)
    items = ItemTable.create(
        vecs, [f"i{r}" for r in range(N)], cats, pop, age, removed=rng.random(N) < 0.03
    )
    return items, AnnIndex.build(vecs, np.arange(N), exact_below=10_000), centres


def same_lists(new: list[UserList], old: list[UserList]) -> None:
    assert len(new) == len(old)
    for a, b in zip(new, old, strict=True):
        assert a.strategy == b.strategy
        assert a.rows.tolist() == b.rows.tolist()
        assert a.items == b.items  # ids, float scores, reasons, reason items


OPTIONS = st.fixed_dictionaries(
    {
        "list_size": st.integers(1, 25),
        "candidates": st.integers(5, 120),
        "mmr_lambda": st.floats(0, 1),
        "longtail_share": st.floats(0, 0.6),
        "exploration_slots": st.integers(0, 3),
        "trending_slots": st.integers(0, 4),
        "category_weight": st.sampled_from([0.0, 0.5, 1.0]),
        "category_cap": st.none() | st.integers(1, 4),
        "popularity_beta": st.sampled_from([0.0, 0.1]),
        "new_item_slots": st.integers(0, 2),
        "new_item_quantile": st.floats(0, 1),
        "similar_threshold": st.floats(0.3, 0.95),
        "explore_pool": st.integers(0, 40),
        "max_overfetch": st.integers(0, 60),
        "mmr_pool": st.integers(0, 60),
        "trending_pool": st.integers(0, 30),
        "covisit_weight": st.sampled_from([0.0, 0.5, 1.0]),
        "model_weight": st.sampled_from([0.0, 0.25, 1.0]),
        "popularity_weight": st.sampled_from([0.0, 0.2, -0.1]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 100_000),
    b=st.integers(1, 12),
    options=OPTIONS,
    cold_share=st.floats(0, 1),
    new_share=st.sampled_from([0.0, 0.05, 0.3]),
    with_ranker=st.booleans(),
    with_allow=st.booleans(),
)
def test_fused_pipeline_equals_the_numpy_pipeline(
    seed: int,
    b: int,
    options: dict,
    cold_share: float,
    new_share: float,
    with_ranker: bool,
    with_allow: bool,
) -> None:
    items, index, centres = catalog(seed % 7, new_share)
    rng = np.random.default_rng(seed)
    config = replace(RecommendConfig(), **options)
    users = (centres[rng.integers(0, N_CATS, b)] + rng.normal(size=(b, D))).astype(np.float32)
    users[rng.random(b) < cold_share] = 0.0
    known = rng.random(b) < 0.9
    seen = [rng.choice(N, rng.integers(0, 60), replace=False) for _ in range(b)]
    # history: seen items, repeats, and rows outside the catalog
    history = [np.concatenate([s[:10], s[:2], [N + 5, -1]]).astype(np.int64) for s in seen]
    n_trend = int(rng.integers(0, 40))
    trending = np.concatenate([rng.choice(N, n_trend), [N + 3, -2]])  # repeats, unknown rows
    t_scores = np.sort(rng.random(trending.size).astype(np.float32))[::-1].copy()
    cv_rows = rng.integers(-1, N, (b, 30))
    cv_scores = rng.random((b, 30)).astype(np.float32)
    cv_scores[rng.random((b, 30)) < 0.1] = 0.0

    def ranker(u: np.ndarray, cand: np.ndarray, features: dict) -> np.ndarray:
        out = np.einsum("wcd,wd->wc", cand, u) + 0.1 * features["log_popularity"]
        out[:, ::17] = np.nan  # non-finite scores drop the candidate
        return out

    def allow(rows: np.ndarray) -> np.ndarray:
        return rows % 11 != 3

    kwargs = {
        "known": known,
        "model_free": rng.random(b) < 0.3,
        "exclude": seen,
        "history": history,
        "trending": trending,
        "trending_scores": t_scores,
        "ranker": ranker if with_ranker else None,
        "allow": allow if with_allow else None,
        "seed": seed,
        "covisit": (cv_rows, cv_scores),
    }
    new = recommend(users, items, index, config, **kwargs)  # type: ignore[arg-type]
    old = reference_recommend(users, items, index, config, **kwargs)  # type: ignore[arg-type]
    same_lists(new, old)


def test_fused_pipeline_equals_the_numpy_pipeline_at_stream_batch_size() -> None:
    """128 users, default options, co-visitation and a few cold users: the live shape."""
    items, index, centres = catalog(1, 0.02)
    rng = np.random.default_rng(5)
    b = 128
    users = (centres[rng.integers(0, N_CATS, b)] + rng.normal(size=(b, D))).astype(np.float32)
    users[::20] = 0.0
    seen = [rng.choice(N, rng.integers(1, 80), replace=False) for _ in range(b)]
    kwargs = {
        "exclude": seen,
        "history": [s[-20:] for s in seen],
        "trending": rng.choice(N, 50, replace=False),
        "covisit": (rng.integers(-1, N, (b, 50)), rng.random((b, 50)).astype(np.float32)),
        "seed": 9,
    }
    config = RecommendConfig()
    new = recommend(users, items, index, config, **kwargs)  # type: ignore[arg-type]
    same_lists(new, reference_recommend(users, items, index, config, **kwargs))  # type: ignore[arg-type]
    assert sum(len(x.items) for x in new) == b * config.list_size
    assert {x.strategy for x in new} == {"cold_start", "personalised"}
