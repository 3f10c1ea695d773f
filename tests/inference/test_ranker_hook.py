"""The ranker hook: shared feature rows, and the live recommender re-scoring through it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from inference.ranker_features import (
    SCALAR_FEATURES,
    candidate_features,
    feature_width,
    make_ranker,
)
from inference.recommend import RecommendConfig
from streams.core.ingest import TouchedUser
from streams.core.live_config import LiveConfig
from streams.core.live_scorer import LiveScorer
from streams.core.state_rules import HistoryEntry, UserState

N, D = 60, 8
ANN = SCALAR_FEATURES.index("ann_score")


def features_of(ann: np.ndarray, **over: np.ndarray) -> dict[str, np.ndarray]:
    w, c = ann.shape
    base: dict[str, np.ndarray] = {
        "ann_score": ann.astype(np.float32),
        "log_popularity": np.zeros((w, c), np.float32),
        "age_s": np.full((w, c), np.inf, np.float32),
        "is_trending": np.zeros((w, c), np.float32),
        "category": np.full((w, c), -1, np.int64),
    }
    return {**base, **over}


# --- Feature rows --------------------------------------------------------------------------


def test_rows_have_the_layout_width_and_known_values() -> None:
    rng = np.random.default_rng(0)
    u = rng.normal(size=(2, D)).astype(np.float32)
    v = rng.normal(size=(2, 4, D)).astype(np.float32)
    ann = np.einsum("wcd,wd->wc", v, u)
    cats = np.array([[3, 3, 5, -1], [7, 7, 7, 7]])
    pop = np.log1p(np.array([[0, 10, 100, 1000], [5, 5, 5, 5]], np.float32))
    age = np.array([[3600.0, np.inf, 10 * 86_400.0, 0.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    rows = candidate_features(u, v, features_of(ann, category=cats, log_popularity=pop, age_s=age))
    col = {name: rows[:, :, i] for i, name in enumerate(SCALAR_FEATURES)}

    assert rows.shape == (2, 4, feature_width(D)) and np.isfinite(rows).all()
    np.testing.assert_allclose(col["ann_score"], ann, rtol=1e-6)
    np.testing.assert_allclose(rows[:, :, len(SCALAR_FEATURES) :], u[:, None] * v, rtol=1e-6)
    # Category share counts the row's known categories; unknown is 0.
    share = np.array([[0.5, 0.5, 0.25, 0.0], [1.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(col["category_share"], share)
    np.testing.assert_allclose(col["category_affinity"][1], 1.0, rtol=1e-6)
    # Most popular ranks 0, least 1; unknown age counts as known=0.
    np.testing.assert_allclose(col["popularity_rank"][0], [1.0, 2 / 3, 1 / 3, 0.0], atol=1e-6)
    np.testing.assert_array_equal(col["age_known"][0], [1, 0, 1, 1])
    np.testing.assert_array_equal(col["is_new"][0], [1, 0, 0, 1])


def test_rows_do_not_depend_on_how_categories_are_numbered() -> None:
    rng = np.random.default_rng(1)
    u = rng.normal(size=(3, D)).astype(np.float32)
    v = rng.normal(size=(3, 30, D)).astype(np.float32)
    ann = np.einsum("wcd,wd->wc", v, u)
    cats = rng.integers(0, 5, size=(3, 30))
    renumbered = np.array([40_000, 2, 17, 9, 31_000])[cats]
    a = candidate_features(u, v, features_of(ann, category=cats))
    b = candidate_features(u, v, features_of(ann, category=renumbered))
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_hook_reshapes_rows_and_keeps_inner_product_without_a_ranker() -> None:
    rng = np.random.default_rng(2)
    u = rng.normal(size=(3, D)).astype(np.float32)
    v = rng.normal(size=(3, 5, D)).astype(np.float32)
    ann = np.einsum("wcd,wd->wc", v, u)
    seen: list[tuple[int, ...]] = []

    def negated(rows: np.ndarray) -> np.ndarray:
        seen.append(rows.shape)
        return -rows[:, ANN]

    out = make_ranker(negated)(u, v, features_of(ann))
    assert seen == [(15, feature_width(D))]
    np.testing.assert_allclose(out, -ann, rtol=1e-6)
    np.testing.assert_array_equal(make_ranker(lambda rows: None)(u, v, features_of(ann)), ann)


def test_hook_falls_back_to_inner_product_on_a_faulty_ranker() -> None:
    rng = np.random.default_rng(3)
    u = rng.normal(size=(2, D)).astype(np.float32)
    v = rng.normal(size=(2, 5, D)).astype(np.float32)
    ann = np.einsum("wcd,wd->wc", v, u).astype(np.float32)
    errors: list[Exception] = []

    def broken(rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    nan = make_ranker(lambda rows: np.full(rows.shape[0], np.nan), errors.append)
    np.testing.assert_array_equal(make_ranker(broken, errors.append)(u, v, features_of(ann)), ann)
    np.testing.assert_array_equal(nan(u, v, features_of(ann)), ann)
    assert len(errors) == 2
    with pytest.raises(RuntimeError):
        make_ranker(broken)(u, v, features_of(ann))


# --- Live recommender wiring -------------------------------------------------------------


@dataclass
class FakeManifest:
    has_ranker: bool

    def type_id(self, event_type: str) -> int:
        return 1


@dataclass
class FakeBundle:
    """A bundle whose encoder returns a fixed user vector and whose ranker is planted."""

    has_ranker: bool
    ranker: Any = None
    version: str = "v1"
    history_len: int = 4
    calls: list[tuple[int, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(5)
        vecs = rng.normal(size=(N, D)).astype(np.float32)
        self.item_vectors = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        self.item_ids = [f"i{r}" for r in range(N)]
        self.item_popularity = np.ones(N, np.float32)
        self.manifest = FakeManifest(self.has_ranker)
        self.user = self.item_vectors[0]

    def encode_users(self, vecs: np.ndarray, *rest: np.ndarray) -> np.ndarray:
        return np.tile(self.user, (vecs.shape[0], 1))

    def embed_catalog(self, items: list[Any]) -> np.ndarray:
        return np.zeros((len(items), D), np.float32)

    def rank(self, rows: np.ndarray) -> np.ndarray | None:
        self.calls.append(rows.shape)
        return None if self.ranker is None else self.ranker(rows)


def live_with(bundle: FakeBundle) -> LiveScorer:
    config = RecommendConfig(
        list_size=5,
        exploration_slots=0,
        new_item_slots=0,
        candidates=20,
        mmr_lambda=1.0,
        longtail_share=0.0,
        trending_slots=0,
    )
    rec = LiveScorer(LiveConfig(recommend=config, cold_user_events=1))
    rec.swap_bundle(bundle)
    return rec


def top_list(rec: LiveScorer) -> list[str]:
    state = UserState(history=(HistoryEntry("i0", "view", 1_000),), seen=("i0",), n_events=1)
    user = TouchedUser("u1", 0, state, None, None, 1_000)
    msg = rec.score([user], now_ms=2_000).lists["u1"]
    assert msg.strategy == "personalised"
    return [item.item_id for item in msg.items]


def test_live_recommender_rescores_candidates_with_the_bundle_ranker() -> None:
    plain = FakeBundle(has_ranker=False)
    by_ip = top_list(live_with(plain))
    ranked = FakeBundle(has_ranker=True, ranker=lambda rows: -rows[:, ANN])
    reversed_ = top_list(live_with(ranked))

    ip = plain.item_vectors @ plain.user
    ip[0] = -np.inf  # seen
    assert by_ip == [f"i{r}" for r in np.argsort(-ip)[:5]]
    assert plain.calls == []  # no ranker in the manifest: never asked
    # The planted ranker prefers the worst of the 21 ANN candidates (one is the seen i0).
    assert ranked.calls and ranked.calls[0][1] == feature_width(D)
    worst_of_candidates = [f"i{r}" for r in np.argsort(-ip)[:20][::-1][:5]]
    assert set(reversed_) == set(worst_of_candidates)
    assert not set(reversed_) & set(by_ip)


def test_live_recommender_keeps_serving_when_the_ranker_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("onnx says no")

    by_ip = top_list(live_with(FakeBundle(has_ranker=False)))
    with caplog.at_level(logging.ERROR, logger="freshet.live"):
        assert top_list(live_with(FakeBundle(has_ranker=True, ranker=broken))) == by_ip
    assert "ranker failed" in caplog.text
