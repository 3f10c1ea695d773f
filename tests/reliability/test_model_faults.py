"""A faulty model must not stop the stream, nor publish a list it cannot stand behind.

The live recommender is given small fake bundles whose user encoder misbehaves (NaN
rows, infinities, huge values, the wrong width, an exception). Every touched user must
still get a list with finite scores, marked ``model_free`` where the encoder's vector
was not used. A bundle that fails its load checks (the real loader refuses a wrong
item-vector dimension: ``tests/inference/test_bundle.py::
test_dimension_mismatch_is_refused``) is refused by the worker's swap, which keeps
serving what it had.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from freshet.settings import Settings
from freshet.wiring import live_recommender
from inference.bundle import BundleError
from schemas.codec import decode_recommendation, encode
from schemas.recommendation import Recommendation
from streams.core.ingest import TouchedUser
from streams.core.state_rules import HistoryEntry, UserState
from streams.runtime.live_recommender import LiveRecommender

N, D = 80, 8
Encoder = Callable[[np.ndarray], np.ndarray]


class FakeManifest:
    has_ranker = False

    def type_id(self, event_type: str) -> int:
        return 1


class FakeBundle:
    """A bundle of ``N`` unit item vectors whose user encoder is ``encoder``."""

    def __init__(self, encoder: Encoder, version: str = "v1") -> None:
        rng = np.random.default_rng(3)
        vecs = rng.normal(size=(N, D)).astype(np.float32)
        self.item_vectors = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        self.item_ids = [f"i{r}" for r in range(N)]
        self.item_popularity = np.ones(N, np.float32)
        self.manifest = FakeManifest()
        self.version = version
        self.history_len = 4
        self.encoder = encoder

    def encode_users(self, vecs: np.ndarray, *rest: np.ndarray) -> np.ndarray:
        return self.encoder(vecs)

    def embed_catalog(self, items: list[Any]) -> np.ndarray:
        return np.zeros((len(items), D), np.float32)


def _mean(vecs: np.ndarray) -> np.ndarray:
    return np.asarray(vecs.mean(axis=1), np.float32)


def _nan_for_odd_users(vecs: np.ndarray) -> np.ndarray:
    out = _mean(vecs)
    out[1::2] = np.nan
    return out


async def _nothing(*_: Any) -> Any:
    return None


def _live(settings: Settings | None = None, loader: Any = None) -> LiveRecommender:
    return live_recommender(
        settings or Settings(list_size=6, cold_user_events=1),
        trending_source=_nothing,
        counts_source=_nothing,
        catalog_log=_nothing,
        bundle_loader=loader,
    )


def _users(n: int) -> list[TouchedUser]:
    out = []
    for u in range(n):
        hist = tuple(HistoryEntry(f"i{(u * 7 + j) % N}", "view", 1_000 + j) for j in range(3))
        state = UserState(history=hist, seen=tuple(h.item_id for h in hist), n_events=3)
        out.append(TouchedUser(f"u{u}", 0, state, None, None, 1_000))
    return out


def _lists(live: LiveRecommender, n: int = 6) -> dict[str, Recommendation]:
    lists = live.scorer.score(_users(n), now_ms=2_000).lists
    assert set(lists) == {f"u{u}" for u in range(n)}  # everyone still gets a list
    for rec in lists.values():
        assert len(rec.items) == 6
        assert all(math.isfinite(it.score) for it in rec.items), rec
        assert decode_recommendation(encode(rec)) == rec  # no inf/NaN turned into null
    return lists


def test_nan_rows_from_the_encoder_fall_back_to_model_free_for_those_users() -> None:
    live = _live()
    live.scorer.swap_bundle(FakeBundle(_nan_for_odd_users))
    lists = _lists(live)
    strategies = {uid: rec.strategy for uid, rec in lists.items()}
    assert strategies == {
        f"u{u}": "model_free" if u % 2 else "personalised" for u in range(len(lists))
    }
    assert all(lists[f"u{u}"].model_version is None for u in (1, 3, 5))
    assert live.stats.model_free == 3


@pytest.mark.parametrize(
    "encoder",
    [
        pytest.param(lambda v: np.full((v.shape[0], D), np.nan, np.float32), id="all-nan"),
        pytest.param(lambda v: np.full((v.shape[0], D), np.inf, np.float32), id="all-inf"),
        pytest.param(lambda v: np.full((v.shape[0], D), -np.inf, np.float32), id="all-minus-inf"),
        pytest.param(lambda v: 1 / 0, id="raises"),
        pytest.param(lambda v: np.zeros((v.shape[0], D + 3), np.float32), id="wrong-width"),
        pytest.param(lambda v: np.zeros((v.shape[0] + 1, D), np.float32), id="wrong-batch"),
    ],
)
def test_a_broken_encoder_gives_model_free_lists_with_finite_scores(encoder: Encoder) -> None:
    live = _live()
    live.scorer.swap_bundle(FakeBundle(encoder))
    lists = _lists(live)
    assert {rec.strategy for rec in lists.values()} == {"model_free"}
    assert {rec.model_version for rec in lists.values()} == {None}


def test_huge_finite_encoder_outputs_still_give_finite_scores() -> None:
    live = _live()
    live.scorer.swap_bundle(FakeBundle(lambda v: np.full((v.shape[0], D), 3e38, np.float32)))
    lists = _lists(live)
    assert {rec.strategy for rec in lists.values()} <= {"personalised", "model_free"}


def test_a_bundle_that_fails_to_load_is_refused_and_the_old_one_kept(tmp_path: Path) -> None:
    good = FakeBundle(_mean, version="v1")
    attempts: list[str] = []

    def loader(bundle_dir: Path, version: str) -> Any:
        attempts.append(version)
        if version == "v1":
            return good
        raise BundleError("item_vectors.npy is float32 (80, 16), manifest says dim 8")

    settings = Settings(list_size=6, cold_user_events=1, bundle_dir=tmp_path)
    live = _live(settings, loader)
    (tmp_path / "CURRENT").write_text("v1\n")
    assert asyncio.run(live.check_bundle())
    (tmp_path / "CURRENT").write_text("v2\n")
    assert not asyncio.run(live.check_bundle())
    assert not asyncio.run(live.check_bundle())  # not tried again
    assert attempts == ["v1", "v2"]
    assert live.model_version == "v1" and live.stats.bundle_refusals == 1
    assert {rec.strategy for rec in _lists(live).values()} == {"personalised"}


def test_trending_rows_follow_items_across_a_bundle_swap() -> None:
    """After a swap the trending slots still name the same items, in the new catalog."""
    import asyncio

    import numpy as np

    class Bundle:
        version = "v"
        provider = "cpu"
        history_len = 4

        def __init__(self, ids: list[str]) -> None:
            self.item_ids = ids
            self.item_vectors = np.eye(len(ids), 8, dtype=np.float32)
            self.item_popularity = np.ones(len(ids), np.float32)

    async def trending(k: int) -> list[tuple[str, float]]:
        return [("c", 3.0), ("a", 2.0)]

    async def counts() -> dict[str, int]:
        return {}

    async def no_log(after: str) -> list[tuple[str, object]]:
        return []

    live = live_recommender(
        Settings.from_env({}),
        trending_source=trending,
        counts_source=counts,
        catalog_log=no_log,  # type: ignore[arg-type]
    )
    live.scorer.swap_bundle(Bundle(["a", "b", "c"]))
    asyncio.run(live.sync_trending())
    assert [live.scorer.catalog.ids[r] for r in live.scorer.trending_rows] == ["c", "a"]
    live.scorer.swap_bundle(Bundle(["c", "x", "y", "a"]))
    assert [live.scorer.catalog.ids[r] for r in live.scorer.trending_rows] == ["c", "a"]
