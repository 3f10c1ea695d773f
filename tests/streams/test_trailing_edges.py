"""A user's trailing-edge list rides the first batch after their window closes.

Under the debounce a user with events inside their window is owed one more list when
it closes. That list goes out with the next micro-batch scored after the close (once
the worker catches up, at once), in the same scoring call, instead of waiting for the
timer's next tick and a scoring call of its own; its partition travels with it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fake_bundle import Bundle

from freshet.settings import Settings
from freshet.wiring import live_recommender
from schemas.events import InteractionEvent
from schemas.recommendation import Recommendation
from streams.core.ingest import TouchedUser
from streams.core.publish import ListPublisher, Refresh
from streams.core.state_rules import StateRules, UserState, apply_events
from streams.core.state_store import InMemoryStateStore
from streams.runtime.live_recommender import LiveRecommender

T0 = 1_700_000_000_000
RULES = StateRules(history_len=20, seen_max=50, dedup_window=128)


def shell(tmp_path: Path, **settings: Any) -> LiveRecommender:
    """A worker's real-time shell on a 12-item bundle; no trending, counts or catalog log."""
    nothing: Any = lambda *_: asyncio.sleep(0, {})  # noqa: E731
    live = live_recommender(
        Settings(bundle_dir=tmp_path, cold_user_events=1, list_size=5, **settings),
        trending_source=nothing,
        counts_source=nothing,
        catalog_log=lambda _: asyncio.sleep(0, []),
    )
    live.scorer.swap_bundle(Bundle(12, prefix="i"))
    return live


def touched(user: str, partition: int, ts_ms: int, waited_ms: int = 0) -> TouchedUser:
    """``user``'s event at ``ts_ms``, its record stamped ``waited_ms`` before it."""
    event = InteractionEvent(f"e-{user}-{ts_ms}", user, "i1", "view", ts_ms)
    state = apply_events({}, [event], RULES, ts_ms).states[user]
    assert isinstance(state, UserState)
    return TouchedUser(user, partition, state, None, event, ts_ms - waited_ms)


async def test_a_closed_fixed_window_rides_the_next_batch(tmp_path: Path) -> None:
    live = shell(tmp_path, debounce_mode="fixed", debounce_ms=200)
    first = await live.refresh([touched("u1", 3, T0)], T0)  # leading edge
    held = await live.refresh([touched("u1", 3, T0 + 50)], T0 + 50)  # inside the window
    assert set(first.lists) == {"u1"} and not held.lists
    early = await live.refresh([touched("u2", 1, T0 + 150)], T0 + 150)  # still open
    assert set(early.lists) == {"u2"} and set(live.debounce.pending) == {"u1"}
    late = await live.refresh([touched("u3", 1, T0 + 250)], T0 + 250)  # closed
    assert set(late.lists) == {"u3", "u1"}
    assert late.partitions == {"u1": 3}
    assert late.lists["u1"].source_event_id == f"e-u1-{T0 + 50}"  # the newest event
    assert not live.debounce.pending
    assert await live.flush(ListPublisher(InMemoryStateStore(), None), T0 + 400) == []


async def test_a_window_opened_while_behind_closes_when_the_worker_catches_up(
    tmp_path: Path,
) -> None:
    """Adaptive: a second batch in a row 80 ms behind opens an 80 ms window; the next
    batch, caught up, carries the deferred user's list 10 ms later, long before the
    window would close."""
    live = shell(tmp_path, debounce_mode="adaptive", debounce_ms=200, debounce_behind_ms=50)
    first = await live.refresh([touched("u1", 0, T0, waited_ms=80)], T0)
    assert set(first.lists) == {"u1"}  # one late batch: no window
    behind = await live.refresh([touched("u1", 0, T0 + 10, waited_ms=80)], T0 + 10)
    assert not behind.lists and set(live.debounce.pending) == {"u1"}
    caught_up = await live.refresh([touched("u2", 2, T0 + 20)], T0 + 20)
    assert set(caught_up.lists) == {"u2", "u1"} and caught_up.partitions == {"u1": 0}
    assert not live.debounce.pending


async def test_a_list_from_outside_the_batch_is_stored_on_its_own_partition() -> None:
    store = InMemoryStateStore()
    publisher = ListPublisher(store, None, clock=lambda: 5.0)
    lists = {u: Recommendation(u, (), "cold_start", None, f"e-{u}", 7, 0) for u in ("a", "b")}
    refresh = Refresh({"a": b"\0" * 4, "b": b"\1" * 4}, lists, partitions={"b": 3})
    sent = await publisher.commit([], {"a": 1}, refresh)
    assert {r.user_id for r in sent} == {"a", "b"}
    on_3, on_1 = await store.user(3, "b"), await store.user(1, "a")
    assert on_3 is not None and on_3.latest is not None and on_3.embedding is None
    assert on_1 is not None and on_1.latest is not None
    assert await store.user(1, "b") is None
