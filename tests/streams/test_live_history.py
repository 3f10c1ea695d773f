"""The encoder's inputs, built for a whole batch at once, against a worked example."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.fold_in import EVENT_WEIGHTS
from inference.recommend import RecommendConfig
from streams.core import live_scorer
from streams.core.ingest import TouchedUser
from streams.core.live_config import LiveConfig
from streams.core.live_scorer import LiveScorer, _known
from streams.core.state_rules import HistoryEntry, UserState

D = 3
TYPES = {"view": 1, "click": 2, "purchase": 4}


class Manifest:
    has_ranker = False

    def type_id(self, event_type: str) -> int:
        return TYPES.get(event_type, 0)


class RecordingBundle:
    """Item ``iR`` has vector ``[R, R, R]``; the encoder records what it was given."""

    def __init__(self, history_len: int) -> None:
        self.item_ids = [f"i{r}" for r in range(10)]
        self.item_vectors = np.repeat(np.arange(10, dtype=np.float32)[:, None], D, axis=1)
        self.item_popularity = np.ones(10, np.float32)
        self.manifest = Manifest()
        self.version = "v1"
        self.history_len = history_len
        self.seen: list[np.ndarray] = []

    def encode_users(self, *arrays: np.ndarray) -> np.ndarray:
        self.seen = [a.copy() for a in arrays]
        return np.ones((arrays[0].shape[0], D), np.float32)

    def embed_catalog(self, items: list[Any]) -> np.ndarray:
        return np.zeros((len(items), D), np.float32)


def _live() -> LiveScorer:
    return LiveScorer(LiveConfig(recommend=RecommendConfig(list_size=3), cold_user_events=1))


def _user(uid: str, entries: list[tuple[str, str, int]]) -> TouchedUser:
    hist = tuple(HistoryEntry(i, t, ts) for i, t, ts in entries)  # type: ignore[arg-type]
    state = UserState(history=hist, seen=tuple(i for i, _, _ in entries), n_events=len(hist))
    return TouchedUser(uid, 0, state, None, None, 0)


def test_each_user_gets_their_last_known_items_right_aligned() -> None:
    live = _live()
    bundle = RecordingBundle(history_len=3)
    live.swap_bundle(bundle)
    users = [
        # 4 known entries and one unknown item: the last 3 known are kept.
        _user(
            "a",
            [
                ("i1", "view", 0),
                ("i2", "click", 1000),
                ("gone", "view", 1500),
                ("i3", "view", 2000),
                ("i4", "purchase", 5000),
            ],
        ),
        _user("b", []),  # no history: all padding, and a zero vector out
        _user("c", [("i7", "click", 10_000)]),
    ]
    out = live.embed([u.state for u in users])[0]
    vecs, types, gaps, mask = bundle.seen
    np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(vecs[0, :, 0], [2, 3, 4])
    np.testing.assert_array_equal(vecs[2, :, 0], [0, 0, 7])
    np.testing.assert_array_equal(types, [[2, 1, 4], [0, 0, 0], [0, 0, 2]])
    # gaps: log1p(seconds before the newest known entry)
    np.testing.assert_allclose(gaps[0], [math.log1p(4.0), math.log1p(3.0), 0.0], rtol=1e-6)
    np.testing.assert_array_equal(gaps[1:], 0.0)
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(out[0], 1.0)


def test_model_free_fold_in_sums_weighted_known_items() -> None:
    live = _live()
    live.swap_bundle(RecordingBundle(history_len=3))
    live.bundle = None  # serve model-free over the bundle's catalog
    users = [_user("a", [("i2", "view", 0), ("gone", "purchase", 0), ("i4", "click", 0)])]
    vec = live.embed([u.state for u in users])[0][0]
    # Same timestamps, so no decay: the type-weighted sum of the known items' vectors.
    expected = EVENT_WEIGHTS["view"] * 2.0 + EVENT_WEIGHTS["click"] * 4.0
    np.testing.assert_allclose(vec, np.full(D, expected), rtol=1e-6)


class RenumberedManifest(Manifest):
    def type_id(self, event_type: str) -> int:
        return {"view": 3, "click": 5, "purchase": 6}.get(event_type, 0)


def test_type_codes_follow_the_bundle_across_a_swap() -> None:
    """The codes are kept per bundle: a new bundle's vocabulary applies from its swap on."""
    live = _live()
    first, second = RecordingBundle(history_len=2), RecordingBundle(history_len=2)
    second.manifest = RenumberedManifest()
    user = _user("a", [("i1", "view", 0), ("i2", "click", 1000)])
    live.swap_bundle(first)
    live.embed([user.state])
    live.embed([user.state])
    np.testing.assert_array_equal(first.seen[1], [[1, 2]])
    live.swap_bundle(second)
    live.embed([user.state])
    np.testing.assert_array_equal(second.seen[1], [[3, 5]])


def _old_rows(live: LiveScorer, item_ids: tuple[str, ...]) -> np.ndarray:
    """The lookup each step made for itself before they shared one (the reference)."""
    rows = live.catalog.rows(list(item_ids))
    return rows[rows >= 0]


@settings(max_examples=60, deadline=None)
@given(
    seen=st.lists(st.sampled_from([f"i{r}" for r in range(10)] + ["gone", "new"]), max_size=8),
    purchased=st.lists(st.sampled_from(["i3", "i9", "gone"]), max_size=3),
)
def test_one_seen_lookup_gives_both_the_exclusions_and_the_seen_items(
    seen: list[str], purchased: list[str]
) -> None:
    """The exclusions and the chooser's seen items come from one lookup of seen then
    purchased items: each equals its own lookup (unknown items dropped, order kept)."""
    live = _live()
    live.swap_bundle(RecordingBundle(history_len=2))
    state = UserState(seen=tuple(seen), purchased=tuple(purchased), n_events=len(seen))
    looked = live._seen_purchased(state)
    np.testing.assert_array_equal(_known(looked), _old_rows(live, state.seen + state.purchased))
    np.testing.assert_array_equal(_known(looked[: len(state.seen)]), _old_rows(live, state.seen))


def test_score_excludes_the_seen_and_purchased_items(monkeypatch: Any) -> None:
    """What ``score`` hands the re-rank as exclusions: every known seen or purchased row."""
    live = _live()
    live.swap_bundle(RecordingBundle(history_len=2))
    given_exclude: list[list[np.ndarray]] = []
    original = live_scorer.recommend

    def spy(*args: Any, **kwargs: Any) -> Any:
        given_exclude.append(kwargs["exclude"])
        return original(*args, **kwargs)

    monkeypatch.setattr(live_scorer, "recommend", spy)
    user = _user("a", [("i1", "view", 0), ("gone", "view", 1), ("i5", "click", 2)])
    bought = UserState(
        history=user.state.history, seen=user.state.seen, purchased=("i8", "i1"), n_events=3
    )
    live.score([TouchedUser("a", 0, bought, None, None, 0)], 5_000)
    (exclude,) = given_exclude
    np.testing.assert_array_equal(exclude[0], [1, 5, 8, 1])
