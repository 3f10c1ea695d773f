"""The live path learns "what follows what" from touched users' stored histories.

Planted habit: whoever looks at ``i1`` looks at ``i2`` next. The bundle's vectors know
nothing of it (random), so only the co-visitation source can put ``i2`` first for a
user who just looked at ``i1``. The table is a function of the stored states: a
restarted process fed the same states rebuilds it, and a user seen twice with the same
state (a redelivered batch) is not counted twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inference.covisit import BACKWARD, FLATNESS
from inference.recommend import RecommendConfig
from streams.core.ingest import TouchedUser
from streams.core.live_config import LiveConfig
from streams.core.live_scorer import LiveScorer
from streams.core.state_rules import HistoryEntry, UserState

N, D = 60, 8


class Manifest:
    has_ranker = False

    def type_id(self, event_type: str) -> int:
        return 1


class Bundle:
    """Random item vectors; the user encoder averages the history's vectors."""

    def __init__(self, ids: list[str], version: str = "v1") -> None:
        rng = np.random.default_rng(7)
        vecs = rng.normal(size=(len(ids), D)).astype(np.float32)
        self.item_vectors = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        self.item_ids = ids
        self.item_popularity = np.ones(len(ids), np.float32)
        self.manifest = Manifest()
        self.version = version
        self.provider = "cpu"
        self.history_len = 4

    def encode_users(self, vecs: np.ndarray, *rest: np.ndarray) -> np.ndarray:
        return np.asarray(vecs.mean(axis=1), np.float32)

    def embed_catalog(self, items: list[Any]) -> np.ndarray:
        return np.zeros((len(items), D), np.float32)


def live() -> LiveScorer:
    rec = LiveScorer(
        LiveConfig(
            recommend=RecommendConfig(list_size=5, mmr_lambda=1.0),
            cold_user_events=1,
            covisit_window=3,
            covisit_width=N,  # room for every follower: no eviction, so no order effects
        )
    )
    rec.swap_bundle(Bundle([f"i{r}" for r in range(N)]))
    return rec


def user(uid: str, items: list[str]) -> TouchedUser:
    hist = tuple(HistoryEntry(it, "view", 1_000 + j) for j, it in enumerate(items))
    state = UserState(history=hist, seen=tuple(dict.fromkeys(items)), n_events=len(items))
    return TouchedUser(uid, 0, state, None, None, 1_000)


def habit_users(n: int = 30) -> list[TouchedUser]:
    rng = np.random.default_rng(1)
    return [
        user(f"u{u}", [f"i{rng.integers(3, N)}", "i1", "i2", f"i{rng.integers(3, N)}"])
        for u in range(n)
    ]


def first_item(rec: LiveScorer, who: TouchedUser) -> str:
    return rec.score([who], now_ms=2_000).lists[who.user_id].items[0].item_id


def content(rec: LiveScorer) -> set[tuple[int, int, float, float]]:
    """The table's entries, whatever slot each one landed in (float32 sums to 5 decimals:
    a pair's weight may be summed in another order, as ``occ`` below)."""
    nbr, weight, error = rec.covisit.followers(np.arange(rec.covisit.size))
    row, slot = np.nonzero(nbr >= 0)
    return set(
        zip(
            row.tolist(),
            nbr[row, slot].tolist(),
            np.round(weight[row, slot].astype(np.float64), 5).tolist(),
            np.round(error[row, slot].astype(np.float64), 5).tolist(),
            strict=True,
        )
    )


def test_a_planted_follower_comes_first_for_a_user_who_just_saw_its_leader() -> None:
    rec = live()
    newcomer = user("new", ["i1"])
    assert first_item(rec, newcomer) != "i2"  # the bundle alone does not know the habit
    rec.score(habit_users(), now_ms=2_000)
    assert first_item(rec, user("new2", ["i1"])) == "i2"


def test_the_table_is_rebuilt_from_stored_states_and_redelivery_counts_once() -> None:
    users = habit_users()
    a = live()
    a.score(users[:10], now_ms=2_000)
    a.score(users, now_ms=3_000)  # the first ten again, unchanged: no new pairs
    b = live()  # a restarted worker, given the same stored states
    b.score(users, now_ms=3_000)
    assert content(a) == content(b)
    np.testing.assert_allclose(a.covisit.occ, b.covisit.occ, rtol=1e-6)  # summing order
    # A user's later events add only the pairs that end in them.
    grown = user("u0", [*(h.item_id for h in users[0].state.history), "i5"])
    before = a.covisit.occ.sum()
    a.score([grown], now_ms=4_000)
    added = float(a.covisit.occ.sum() - before)
    # window 3, the reverse pairs too, each pair counted at both ends
    per_pair = sum(d ** (FLATNESS - 1) for d in (1, 2, 3))
    assert added == pytest.approx(2 * (1 + BACKWARD) * per_pair, rel=1e-5)


def test_followers_are_kept_by_item_across_a_bundle_swap() -> None:
    rec = live()
    rec.score(habit_users(), now_ms=2_000)
    rec.swap_bundle(Bundle([f"i{r}" for r in range(N)][::-1], version="v2"))
    assert first_item(rec, user("new", ["i1"])) == "i2"
