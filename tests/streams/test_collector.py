"""The worker's collector settings: start-up's heap frozen out of full passes, its
garbage collected first, young passes less often; a served bundle (and the catalog's
first read) settled the same way
(streams/runtime/collector.py) without thawing what an earlier settle froze. A replaced
bundle is freed by reference counting: tests/streams/test_bundle_release.py."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from freshet.settings import Settings
from freshet.wiring import live_recommender
from streams.runtime.collector import served_with_catalog, settle, settle_after_swaps
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
    """A stand-in bundle: a few hundred tracked objects, no reference cycle."""

    def __init__(self) -> None:
        self.parts = [[object() for _ in range(100)] for _ in range(3)]


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()


def test_settle_freezes_what_was_loaded(unfrozen: None) -> None:
    loaded = [Bundle() for _ in range(50)]
    frozen = gc.get_freeze_count()
    took, _ = settle()
    assert took >= 0.0
    assert gc.get_freeze_count() >= frozen + 50 * 4
    tracked = {id(o) for g in range(3) for o in gc.get_objects(g)}
    assert not any(id(b) in tracked or id(b.parts) in tracked for b in loaded)


def test_a_later_settle_leaves_the_frozen_heap_alone(unfrozen: None) -> None:
    """The settle at a second bundle walks only what was made since the first: a cycle
    frozen then and dead since is not collected (d47379f+ffb0c63's settle unfroze
    everything and walked it all: this fails there), and nothing frozen is thawed."""
    dead = _Node()
    dead.other = _Node()
    dead.other.other = dead
    gone = weakref.ref(dead)
    settle()
    frozen = gc.get_freeze_count()
    del dead
    young = [_Node() for _ in range(200)]
    for node in young:
        node.other = node
    del young, node  # 200 young cycles: the later settle's pass finds these
    collected: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            collected.append(info["collected"])

    gc.callbacks.append(seen)
    try:
        _, found = settle()
    finally:
        gc.callbacks.remove(seen)
    assert found >= 200 and collected and collected[-1] == found
    assert gone() is not None  # frozen: out of the pass
    assert gc.get_freeze_count() >= frozen  # nothing thawed
    frozen_ids = {id(o) for o in gc.get_objects()}
    assert id(gone()) not in frozen_ids


def test_settle_after_swaps_settles_once_a_bundle_and_holds_none(unfrozen: None) -> None:
    first, second = Bundle(), Bundle()
    gone = weakref.ref(first)
    served: list[Any] = [None, first, first, first, second]
    settles: list[int] = []
    freed_at: list[int] = []

    def serving() -> Any:
        settles.append(gc.get_freeze_count())
        if gone() is None and not freed_at:
            freed_at.append(len(settles))
        bundle = served.pop(0) if len(served) > 1 else served[0]
        return None if bundle is None else (bundle, 1)

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
    # Freed by reference counting as soon as ``served`` stopped naming it: the settler
    # keeps only a weak reference (the fifth look named the second bundle).
    assert freed_at == [6]
    assert all(later == counts[5] for later in counts[6:])  # settled once
    tracked = {id(o) for g in range(3) for o in gc.get_objects(g)}
    assert id(second) not in tracked and id(second.parts) not in tracked  # frozen


def test_the_settle_waits_for_the_catalog_read_so_its_records_are_frozen(
    unfrozen: None,
) -> None:
    """The worker's first catalog read fills ``scorer.records`` after its first bundle
    is served: a settle on the bundle alone left those records (100k in the stream
    bench) to every later pass. With ``served_with_catalog`` the settle comes once the
    catalog was read whole once (``catalog_reads``), and freezes them."""
    scorer = SimpleNamespace(ready=True, bundle=Bundle(), records={})
    live = SimpleNamespace(scorer=scorer, catalog_reads=0)
    looks: list[Any] = []

    def serving() -> Any:
        looks.append(served_with_catalog(live))
        if len(looks) == 3:  # the snapshot's pages: records, then the cursor moves
            scorer.records.update((f"i{n}", Bundle()) for n in range(50))
            live.catalog_reads = 1
        return looks[-1]

    async def run() -> None:
        task = asyncio.create_task(settle_after_swaps(serving, every_s=0.001))
        while len(looks) < 6:
            await asyncio.sleep(0.002)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert looks[:3] == [None, None, None]  # served, but the catalog not read yet
    assert all(look == (scorer.bundle, 1) for look in looks[3:])
    tracked = {id(o) for g in range(3) for o in gc.get_objects(g)}
    assert id(scorer.records) not in tracked  # frozen with what it holds
    assert not any(id(r) in tracked for r in scorer.records.values())


def test_an_empty_catalog_log_and_a_new_generation_each_count_as_a_read(
    tmp_path: Path,
) -> None:
    """An empty log leaves the cursor at "0" (the store's head of an empty log), and the
    settle once waited for the cursor to move: a worker with no catalog records never
    settled. A new Redis generation's read brings new records: it settles again."""
    reads: list[str] = []

    async def empty_log(after: str) -> list[Any]:
        reads.append(after)
        return []

    async def nothing(*_: Any) -> Any:
        return None

    live = live_recommender(
        Settings(bundle_dir=tmp_path),
        trending_source=nothing,
        counts_source=nothing,
        catalog_log=empty_log,
    )
    served = SimpleNamespace(scorer=SimpleNamespace(ready=True, bundle=Bundle()), catalog_reads=0)
    assert served_with_catalog(served) is None  # nothing read yet
    modelless = SimpleNamespace(scorer=SimpleNamespace(ready=True, bundle=None), catalog_reads=1)
    assert served_with_catalog(modelless) is None  # ready with no model: nothing to settle on

    async def run() -> None:
        await live.sync_catalog()
        assert live.catalog_cursor == "0" and live.catalog_reads == 1
        for _ in range(5):  # the follower reads from "0" again after each wait
            await live.sync_catalog()
        assert live.catalog_reads == 1  # the same generation: no settle again
        live.restart_catalog()
        await live.sync_catalog()
        await live.sync_catalog()

    asyncio.run(run())
    assert reads == ["0"] * 8 and live.catalog_reads == 2
    served.catalog_reads = live.catalog_reads
    assert served_with_catalog(served) == (served.scorer.bundle, 2)
