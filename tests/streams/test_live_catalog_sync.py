"""How the live recommender follows the catalog log, at start-up and after.

A worker that starts behind a large catalog must catch up in one go, must not build
the catalog and its index twice while its first bundle loads, and must leave the ANN
index alone for records that change nothing searchable (at a million items each of
these cost minutes of start-up; see docs/benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_bundle import Bundle, D

import streams.runtime.live_recommender as live_module
from freshet.settings import Settings
from freshet.wiring import live_recommender
from inference.item_catalog import ItemCatalog
from streams.core.catalog import CatalogRecord
from streams.core.live_catalog import apply_records
from streams.runtime.live_recommender import LiveRecommender


def _record(item: str, removed: bool = False, ts: int = 1) -> CatalogRecord:
    return CatalogRecord(item, ("cat",), {}, "", ts, ts, removed)


class Log:
    """The catalog log: entries after a cursor, at most ``page`` per read."""

    def __init__(self, records: list[CatalogRecord], page: int) -> None:
        self.records, self.page, self.reads = records, page, 0

    async def __call__(self, after: str) -> list[tuple[str, CatalogRecord]]:
        self.reads += 1
        start = int(after)
        chunk = self.records[start : start + self.page]
        return [(str(start + i + 1), r) for i, r in enumerate(chunk)]


async def _nothing(*_: Any) -> Any:
    return None


def _live(log: Log, tmp_path: Path, loader: Any = None) -> LiveRecommender:
    return live_recommender(
        Settings(bundle_dir=tmp_path),
        trending_source=_nothing,
        counts_source=_nothing,
        catalog_log=log,
        bundle_loader=loader,
    )


def test_a_full_page_is_followed_by_the_next_read_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(live_module, "CATALOG_LOG_PAGE", 10)
    log = Log([_record(f"n{i}") for i in range(25)], page=10)
    live = _live(log, tmp_path)
    assert asyncio.run(live.sync_catalog()) == 25
    assert log.reads == 3  # 10 + 10 + 5: the short page says the log is drained
    assert live.scorer.catalog.size == 25 and live.catalog_cursor == "25"
    assert asyncio.run(live.sync_catalog()) == 0


def test_nothing_is_applied_while_the_first_bundle_loads_and_everything_after(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Records read during the first load wait for it; none is lost, none built twice."""
    monkeypatch.setattr(live_module, "CATALOG_LOG_PAGE", 4)
    records = [_record(f"b{i}") for i in range(6)] + [_record("new1"), _record("b2", True)]
    log = Log(records, page=4)
    release = threading.Event()
    loads: list[str] = []

    def loader(bundle_dir: Path, version: str) -> Bundle:
        loads.append(version)
        assert release.wait(10)
        return Bundle(6)

    (tmp_path / "CURRENT").write_text("v1\n")
    live = _live(log, tmp_path, loader)

    async def scenario() -> tuple[bool, int, bool]:
        load = asyncio.create_task(live.check_bundle())
        await asyncio.sleep(0.05)  # the load is under way in its thread
        during = await live.sync_catalog()
        overlapping = await live.check_bundle()  # the timer firing meanwhile
        release.set()
        assert await load
        return overlapping, during, bool(live.scorer.catalog.size)

    overlapping, during, _ = asyncio.run(scenario())
    assert during == 0 and log.reads == 0 and not overlapping and loads == ["v1"]
    assert live.scorer.catalog.size == 6  # the bundle's items only, so far
    assert asyncio.run(live.sync_catalog()) == 8
    assert live.scorer.catalog.size == 7 and live.scorer.catalog.row_of["new1"] == 6
    assert live.scorer.catalog.is_removed(2) and not live.scorer.catalog.is_removed(3)
    assert live.scorer.index is not None
    ids, _ = live.scorer.index.search(np.eye(1, D, dtype=np.float32), 7)
    assert 6 in ids[0].tolist()  # the new item is searchable
    assert 2 not in ids[0].tolist()  # the removed one is not


def test_the_index_hears_only_of_records_that_change_what_is_searchable() -> None:
    catalog = ItemCatalog(["a", "b"], np.eye(2, D, dtype=np.float32))
    bundle = Bundle(2)
    flags = apply_records(
        catalog,
        [
            _record("a"),  # already searchable, same vector: nothing to do
            _record("c"),  # new row
            _record("b", removed=True),  # removal
            _record("b"),  # back from removal
        ],
        bundle,
    )
    assert sorted(flags.live.tolist()) == [1, 2] and flags.gone.size == 0  # b: back, c: new
    again = apply_records(catalog, [_record("c")], bundle)  # same again: nothing to do
    assert again.live.size == 0 and again.gone.size == 0


def test_users_touched_while_the_first_bundle_loads_get_their_list_after_it(
    tmp_path: Path,
) -> None:
    """No catalog yet to score against: the users wait, and are owed a list, not dropped."""
    from streams.core.ingest import TouchedUser
    from streams.core.state_rules import HistoryEntry, UserState

    release = threading.Event()

    def loader(bundle_dir: Path, version: str) -> Bundle:
        assert release.wait(10)
        return Bundle(6)

    def touched(user: str, item: str, ts: int) -> TouchedUser:
        state = UserState(history=(HistoryEntry(item, "view", ts),), seen=(item,), n_events=1)
        return TouchedUser(user, 0, state, None, None, ts)

    (tmp_path / "CURRENT").write_text("v1\n")
    live = _live(Log([], page=10), tmp_path, loader)

    async def scenario() -> tuple[dict[str, Any], list[str], dict[str, Any]]:
        load = asyncio.create_task(live.check_bundle())
        await asyncio.sleep(0.05)
        during = await live.compute_async(
            [touched("u1", "b0", 1_000), touched("u2", "b1", 1_000)], 1_000
        )
        held_early = [u.user_id for u in live.due_pending(1_100)]  # still loading
        release.set()
        assert await load
        newer = await live.compute_async([touched("u2", "b3", 2_000)], 2_000)  # u2 again
        owed = live.due_pending(2_100)
        after = await live.compute_async(owed, 2_100)
        return (
            during.lists | {"held_early": held_early},
            [u.user_id for u in owed],
            {
                **after.lists,
                "newer": newer.lists,
            },
        )

    during, owed, after = asyncio.run(scenario())
    assert during == {"held_early": []}  # nothing scored, nothing released mid-load
    assert owed == ["u1"]  # u2's newer event superseded its held state
    assert set(after) == {"u1", "newer"} and set(after["newer"]) == {"u2"}
    assert live.due_pending(3_000) == []  # owed once


async def test_a_restart_reads_the_stored_records_even_past_the_capped_log(
    redis_url: str, tmp_path: Path
) -> None:
    """The log keeps its newest entries only: a restart that replayed it alone would miss
    the oldest items (the path before the snapshot read); the stored records hold all."""
    from redis.asyncio import Redis

    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace

    client = Redis.from_url(redis_url)
    store = RedisCatalogStore(client, Keyspace("snap", "g1"), log_maxlen=100)
    items = [_record(f"i{n}", ts=n + 1) for n in range(3_000)]
    for start in range(0, len(items), 500):
        await store.put(items[start : start + 500])
    await store.put([_record("i7", removed=True, ts=9_999)])
    logged = {r.item_id for _, r in await store.read_log("0", count=10_000)}
    assert len(logged) < 1_000  # the log was trimmed

    live = live_recommender(
        Settings(bundle_dir=tmp_path),
        trending_source=_nothing,
        counts_source=_nothing,
        catalog_log=store.read_log,
        catalog_snapshot=store,
    )
    await live.sync_catalog()
    catalog = live.scorer.catalog
    assert catalog.size == 3_000 and set(catalog.ids) == {r.item_id for r in items}
    assert catalog.is_removed(catalog.row_of["i7"]) and not catalog.is_removed(0)
    assert live.scorer.ready and live.scorer.index is not None
    assert live.scorer.index.size == 2_999

    await store.put([_record("new", ts=10_000), _record("i8", removed=True, ts=10_001)])
    assert await live.sync_catalog() == 2  # followed from the log's head, not re-read
    assert catalog.size == 3_001 and catalog.is_removed(catalog.row_of["i8"])
    assert live.scorer.index.size == 2_999
    await client.aclose()


def test_the_catalog_gauges_read_the_online_catalog_at_each_scrape() -> None:
    """A start-up bench times the catalog to the scrape, not to the 5 s metrics timer."""
    from streams.core.live_scorer import LiveScorer
    from streams.runtime.metrics import WorkerMetrics

    scorer = LiveScorer()
    metrics = WorkerMetrics(live=scorer)
    read = metrics.registry.get_sample_value
    assert read("freshet_catalog_items") == 0 and read("freshet_catalog_records") == 0
    scorer.apply_catalog([_record("a"), _record("b"), _record("a", removed=True, ts=2)])
    assert read("freshet_catalog_items") == 2 and read("freshet_catalog_records") == 2


def test_the_start_up_task_and_the_timer_read_the_catalog_once(tmp_path: Path) -> None:
    """Both call ``sync_catalog`` at start-up; the second waits, then reads the tail."""
    from collections.abc import AsyncIterator

    from streams.core.catalog import InMemoryCatalogStore

    class SlowStore(InMemoryCatalogStore):
        scans = 0

        async def scan(self, page: int = 2) -> AsyncIterator[list[CatalogRecord]]:
            SlowStore.scans += 1
            async for chunk in super().scan(page):
                await asyncio.sleep(0)  # a round trip: the other caller may run
                yield chunk

    store = SlowStore()
    asyncio.run(store.put([_record(f"i{n}") for n in range(10)]))
    live = live_recommender(
        Settings(bundle_dir=tmp_path),
        trending_source=_nothing,
        counts_source=_nothing,
        catalog_log=store.read_log,
        catalog_snapshot=store,
    )

    async def both() -> list[int]:
        return list(await asyncio.gather(live.sync_catalog(), live.sync_catalog()))

    assert asyncio.run(both()) == [10, 0]
    assert SlowStore.scans == 1 and live.scorer.catalog.size == 10
