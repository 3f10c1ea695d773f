"""A start-up's bulk catalog load holds the scoring lock for a chunk's work, no more.

The worker's first catalog read takes a bulk load's records (``PreloadedSnapshot`` over
a ``Handover``) and writes them through ``LiveRecommender`` chunk by chunk, each chunk
under its own hold of the scoring lock (``streams.core.copy_on_write``). These tests run
that real path on a known catalog while a task scores without pause, and check the
structure that keeps each hold short, not its duration: no hold writes more than
``CATALOG_CHUNK`` records; none grows a catalog-sized array, writes the records
mapping (a dict that grows with the catalog) or runs the garbage collector; scoring
gets the lock between holds; and every record is applied exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_bundle import Bundle

import streams.core.copy_on_write as cow
from freshet.settings import Settings
from freshet.wiring import live_recommender
from inference.item_catalog import ItemCatalog
from streams.core.catalog import CatalogRecord
from streams.core.ingest import TouchedUser
from streams.core.state_rules import HistoryEntry, UserState
from streams.runtime.catalog_preload import Handover, PreloadedSnapshot
from streams.runtime.live_recommender import LiveRecommender

BUNDLE_ITEMS = 400
NEW_ITEMS = 3_000  # past the bundle catalog's spare rows: the columns must grow


class NoStore:
    """The catalog store behind the handover: the first read never reaches it."""

    async def log_head(self) -> str:
        raise AssertionError("the handover's generation is current")

    async def log_entry(self, entry_id: str) -> str | None:
        raise AssertionError("not read")

    def scan(self, page: int = 0) -> Any:
        raise AssertionError("not read")


class Records(dict[str, CatalogRecord]):
    """The scorer's records by item id, noting each write made inside a hold."""

    def __init__(self, in_hold: list[bool]) -> None:
        super().__init__()
        self.in_hold, self.written_in_hold = in_hold, 0

    def __setitem__(self, key: str, value: CatalogRecord) -> None:
        self.written_in_hold += self.in_hold[0]
        super().__setitem__(key, value)


def _records() -> list[CatalogRecord]:
    """Every bundle item (categorised), then new items; ts known for each."""
    known = [CatalogRecord(f"b{r}", (f"c{r % 7}",), {}, "", 10 + r, 10 + r) for r in range(400)]
    new = [
        CatalogRecord(f"n{i}", (f"c{i % 5}",), {}, f"item {i}", 5_000 + i, 5_000 + i)
        for i in range(NEW_ITEMS)
    ]
    return known + new


def _user(i: int) -> TouchedUser:
    items = [f"b{(i + j) % BUNDLE_ITEMS}" for j in range(3)]
    history = tuple(HistoryEntry(item, "view", 1_000 + j) for j, item in enumerate(items))
    state = UserState(history=history, seen=tuple(items), n_events=len(items))
    return TouchedUser(f"u{i}", 0, state, None, None, 2_000)


@contextlib.contextmanager
def _collector_eager() -> Iterator[None]:
    """Young collections every 50 allocations: any hold that allocates would see one."""
    was = gc.get_threshold()
    gc.set_threshold(50, *was[1:])
    try:
        yield
    finally:
        gc.set_threshold(*was)


def test_a_start_up_bulk_load_holds_the_lock_for_one_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _records()
    (tmp_path / "CURRENT").write_text("v1\n")
    settings = Settings(bundle_dir=tmp_path, home=tmp_path / "home")
    handover = Handover("g1", "7-0", records)

    async def no_log(after: str) -> list[tuple[str, CatalogRecord]]:
        assert after == "7-0"  # followed from the load's last entry
        return []

    async def nothing() -> dict[str, int]:
        return {}

    async def no_trending(k: int) -> list[tuple[str, float]]:
        return []

    live: LiveRecommender = live_recommender(
        settings,
        trending_source=no_trending,
        counts_source=nothing,
        catalog_log=no_log,
        bundle_loader=lambda _dir, version: Bundle(BUNDLE_ITEMS, version=version),
        catalog_snapshot=PreloadedSnapshot(NoStore(), lambda: "g1", handover),
    )
    in_hold = [False]
    events: list[str] = []  # "hold" / "score", in the order they happened
    per_hold: list[int] = []  # records each catalog hold wrote
    grown_in_hold, collected_in_hold = [0], [0]
    own = type(live)._housekeeping.__wrapped__  # type: ignore[attr-defined]

    @contextlib.asynccontextmanager
    async def watched(duty: str) -> AsyncIterator[None]:
        async with contextlib.asynccontextmanager(own)(live, duty):
            in_hold[0] = True
            events.append("hold")
            try:
                yield
            finally:
                in_hold[0] = False

    monkeypatch.setattr(live, "_housekeeping", watched)
    write_chunk = cow.write_chunk

    def counted_chunk(scorer: Any, page: Any, i: int) -> Any:
        change = write_chunk(scorer, page, i)
        per_hold.append(0 if change is None else len(page.chunks[i]))
        applied.update(r.item_id for r in page.chunks[i]) if change is not None else None
        return change

    applied: Counter[str] = Counter()
    monkeypatch.setattr("streams.runtime.live_recommender.write_chunk", counted_chunk)
    grow = ItemCatalog._grow

    def watched_grow(self: ItemCatalog, need: int = 0) -> None:
        grown_in_hold[0] += in_hold[0]
        grow(self, need)

    monkeypatch.setattr(ItemCatalog, "_grow", watched_grow)

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collected_in_hold[0] += in_hold[0]

    users = [_user(i) for i in range(16)]

    async def scenario() -> None:
        assert await live.check_bundle()  # the first load: the bundle's items alone
        live.scorer.records = Records(in_hold)
        stop = asyncio.Event()

        async def score() -> None:
            i = 0
            while not stop.is_set():
                await live.compute_async(users[i % 16 : i % 16 + 2], 2_000)
                events.append("score")
                i += 2
                await asyncio.sleep(0)

        async def load() -> None:
            while "score" not in events:  # scoring under way before the load starts
                await asyncio.sleep(0.001)
            try:
                assert await live.sync_catalog() == len(records)
            finally:
                stop.set()

        await asyncio.gather(score(), load())

    gc.callbacks.append(on_gc)
    try:
        with _collector_eager():
            asyncio.run(scenario())
    finally:
        gc.callbacks.remove(on_gc)

    catalog_holds = [n for n in per_hold if n]
    assert sum(catalog_holds) == len(records)
    assert max(catalog_holds) <= cow.CATALOG_CHUNK  # the design's bound on a hold's work
    assert len(catalog_holds) >= len(records) // cow.CATALOG_CHUNK
    assert applied == Counter({r.item_id: 1 for r in records})  # each exactly once
    assert grown_in_hold[0] == 0  # the columns grew off the lock (``ItemCatalog.grown``)
    assert live.scorer.records.written_in_hold == 0  # type: ignore[attr-defined]
    assert collected_in_hold[0] == 0
    # Scoring kept going: between any two holds of the load, at most one other hold.
    first, last = events.index("hold"), len(events) - events[::-1].index("hold")
    runs = "".join("h" if e == "hold" else "s" for e in events[first:last]).split("s")
    assert max(len(run) for run in runs) <= 2, runs
    assert events[first:last].count("score") >= len(catalog_holds) // 2
    # The result: every record in, in log order, each item's own category and time.
    cat = live.scorer.catalog
    assert cat.ids == [f"b{r}" for r in range(BUNDLE_ITEMS)] + [f"n{i}" for i in range(NEW_ITEMS)]
    table = cat.table(10_000_000)
    codes = {name: code for name, code in cat.category_code.items()}
    want = [codes[r.categories[0]] for r in records]
    assert np.array_equal(table.categories, want)
    assert not table.removed.any()
    assert dict(live.scorer.records) == {r.item_id: r for r in records}
    assert live.catalog_cursor == "7-0"
    assert live.scorer.index is not None and live.scorer.index.size == len(records)
