"""The worker's collector settings: start-up's heap frozen out of full passes, none of
its garbage kept, young passes less often; a served bundle settled the same way
(streams/runtime/collector.py)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from streams.runtime.collector import settle, settle_after_swaps
from streams.runtime.worker import YOUNG_COLLECTION_EVERY, tune_collector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_garbage_is_collected_then_the_living_heap_is_frozen() -> None:
    dead = _Node()
    dead.other = _Node()
    dead.other.other = dead  # a cycle: only the collector frees it
    gone = weakref.ref(dead)
    alive = _Node()
    alive.other = alive
    del dead
    before = gc.get_threshold()
    try:
        tune_collector()
        assert gone() is None  # collected before the freeze, not kept for good
        assert gc.get_freeze_count() > 0
        assert not any(o is alive for o in gc.get_objects())  # frozen: no pass walks it
        assert gc.get_threshold() == (YOUNG_COLLECTION_EVERY, *before[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert any(o is alive for o in gc.get_objects())


class Bundle:
    """A stand-in bundle that holds a reference cycle (as a real one may)."""

    def __init__(self) -> None:
        self.parts = [self, [object() for _ in range(100)]]


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()


def test_settle_freezes_what_was_loaded(unfrozen: None) -> None:
    loaded = [Bundle() for _ in range(50)]
    frozen = gc.get_freeze_count()
    settle(again=False)
    assert gc.get_freeze_count() >= frozen + 50 * 3
    tracked = {id(o) for g in range(3) for o in gc.get_objects(g)}
    assert not any(id(b) in tracked or id(b.parts) in tracked for b in loaded)


def test_settle_again_collects_a_frozen_bundle_that_died(unfrozen: None) -> None:
    old = Bundle()
    gone = weakref.ref(old)
    settle(again=False)
    del old
    gc.collect()
    assert gone() is not None  # frozen: out of every pass
    settle(again=True)
    assert gone() is None


def test_settle_after_swaps_settles_once_a_bundle(unfrozen: None) -> None:
    first, second = Bundle(), Bundle()
    gone = weakref.ref(first)
    served: list[Any] = [None, first, first, first, second]
    settles: list[int] = []

    def serving() -> Any:
        settles.append(gc.get_freeze_count())
        return served.pop(0) if len(served) > 1 else served[0]

    async def run() -> None:
        task = asyncio.create_task(settle_after_swaps(serving, every_s=0.001))
        while len(served) > 1 or len(settles) < 7:
            await asyncio.sleep(0.002)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    del first
    asyncio.run(run())
    counts = settles
    assert counts[1] == counts[0]  # none served: nothing frozen
    assert counts[2] > counts[1]  # the first bundle's settle froze it
    assert counts[3] == counts[2] and counts[4] == counts[3]  # the same one: no settle
    assert gone() is None  # the second's settle unfroze and collected the first
    assert all(later == counts[-1] for later in counts[5:])
