"""The worker's collector settings: start-up's heap frozen out of full passes, none of
its garbage kept, young passes less often."""

from __future__ import annotations

import gc
import weakref

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
