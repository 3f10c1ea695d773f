"""At light load the real-time shell does no work that the events did not ask for.

A batch of one or two users that comes after a pause is scored on the event loop (no
thread hop); larger ones, and small ones close on the last, in a worker thread. The
trailing-edge timer waits while no user is owed a list, and wakes for a user deferred
by the debounce or held until the scorer is ready.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fake_bundle import Bundle

from freshet.settings import Settings
from freshet.wiring import live_recommender
from schemas.events import InteractionEvent
from streams.core.ingest import Refresh, TouchedUser
from streams.core.publish import ListPublisher
from streams.core.state_rules import StateRules, UserState, apply_events
from streams.core.state_store import InMemoryStateStore
from streams.runtime.live_recommender import LiveRecommender

T0 = 1_700_000_000_000
RULES = StateRules(history_len=20, seen_max=50, dedup_window=128)


async def _empty(*_: Any) -> Any:
    return {}


async def _no_log(after: str) -> list[Any]:
    return []


def shell(tmp_path: Path, **settings: Any) -> LiveRecommender:
    return live_recommender(
        Settings(bundle_dir=tmp_path, cold_user_events=1, list_size=5, **settings),
        trending_source=_empty,
        counts_source=_empty,
        catalog_log=_no_log,
    )


def touched(user: str, ts_ms: int) -> TouchedUser:
    event = InteractionEvent(f"e-{user}-{ts_ms}", user, "i1", "view", ts_ms)
    state = apply_events({}, [event], RULES, ts_ms).states[user]
    assert isinstance(state, UserState)
    return TouchedUser(user, 0, state, None, event, ts_ms)


def scoring_threads(live: LiveRecommender) -> list[int]:
    """Record the thread each ``score`` call runs on."""
    threads: list[int] = []
    score = live.scorer.score

    def recorded(users: Sequence[TouchedUser], now_ms: int) -> Refresh:
        threads.append(threading.get_ident())
        return score(users, now_ms)

    live.scorer.score = recorded  # type: ignore[method-assign]
    return threads


async def test_small_batches_are_scored_on_the_loop_and_large_ones_in_a_thread(
    tmp_path: Path,
) -> None:
    live = shell(tmp_path)
    live.scorer.swap_bundle(Bundle(12, prefix="i"))
    live.inline_idle_s = 0.0  # every call counts as after a pause
    threads = scoring_threads(live)
    loop_thread = threading.get_ident()
    one = await live.compute_async([touched("u1", T0)], T0)
    two = await live.compute_async([touched("u1", T0), touched("u2", T0)], T0)
    three = await live.compute_async([touched(f"u{i}", T0) for i in range(3)], T0)
    assert threads[:2] == [loop_thread, loop_thread]
    assert threads[2] != loop_thread
    assert (len(one.lists), len(two.lists), len(three.lists)) == (1, 2, 3)


async def test_a_small_batch_close_on_the_last_goes_to_a_thread(tmp_path: Path) -> None:
    """Under load the loop keeps fetching and publishing while a batch is scored."""
    live = shell(tmp_path)
    live.scorer.swap_bundle(Bundle(12, prefix="i"))
    live.inline_idle_s = 30.0
    threads = scoring_threads(live)
    loop_thread = threading.get_ident()
    await live.compute_async([touched("u1", T0)], T0)  # the first: long after "the last"
    await live.compute_async([touched("u2", T0)], T0)  # at once after it
    assert threads[0] == loop_thread and threads[1] != loop_thread


async def _owed_within(live: LiveRecommender, seconds: float) -> bool:
    try:
        await asyncio.wait_for(live.owing(), seconds)
    except TimeoutError:
        return False
    return True


async def test_the_trailing_edge_timer_waits_until_a_user_is_owed_a_list(
    tmp_path: Path,
) -> None:
    live = shell(tmp_path, debounce_mode="fixed", debounce_ms=200)
    live.scorer.swap_bundle(Bundle(12, prefix="i"))
    publisher = ListPublisher(InMemoryStateStore(), None)
    assert not await _owed_within(live, 0.05)  # nothing owed: no tick
    await live.refresh([touched("u1", T0)], T0)  # leading edge: served now
    assert not await _owed_within(live, 0.05)
    waiting = asyncio.ensure_future(live.owing())
    await live.refresh([touched("u1", T0 + 50)], T0 + 50)  # inside the window: deferred
    await asyncio.wait_for(waiting, 1.0)  # the deferral wakes the waiting timer
    assert await live.flush(publisher, T0 + 100) == []  # the window is still open
    assert await _owed_within(live, 0.05)  # still owed: the timer keeps ticking
    served = await live.flush(publisher, T0 + 200)
    assert [u.user_id for u in served] == ["u1"]
    assert not await _owed_within(live, 0.05)  # paid: it waits again


async def test_users_held_before_the_scorer_is_ready_wake_the_timer(tmp_path: Path) -> None:
    live = shell(tmp_path)  # no bundle and no catalog: nothing can be scored
    assert not live.scorer.ready
    waiting = asyncio.ensure_future(live.owing())
    assert await live.compute_async([touched("u1", T0)], T0) == Refresh()
    await asyncio.wait_for(waiting, 1.0)
    assert [u.user_id for u in live.due_pending(T0)] == []  # held until it can score


@pytest.mark.parametrize("mode", ["adaptive", "fixed"])
async def test_an_idle_worker_owes_nothing(tmp_path: Path, mode: str) -> None:
    live = shell(tmp_path, debounce_mode=mode)
    assert not await _owed_within(live, 0.05)
