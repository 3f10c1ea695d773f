"""The live timers at light load: what they read, how often, and how soon a change lands.

The syncs read trending and counts as their ``SyncPolicy`` says (enough records, or
an old enough read), on one read of the change token per tick; the bundle check
reads ``CURRENT`` only when its stat changed; the catalog follows the log by a
blocking read on real Redis, so a logged record reaches the scorer in about a round
trip, and an idle worker's duties make about one Redis call a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

import streams.runtime.live_recommender as live_module
from freshet.settings import Settings
from freshet.wiring import live_recommender
from streams.core.catalog import CatalogRecord
from streams.runtime.live_recommender import LiveRecommender

from .test_idle_sync import Shared


def _record(item: str, ts: int = 1) -> CatalogRecord:
    return CatalogRecord(item, ("cat",), {}, "", ts, ts, False)


AGE_S = 2.5
"""The policies' age in these tests: long enough that a loaded host's pause between
two calls does not make a read due, short enough to wait out."""


def _live(shared: Shared, tmp_path: Path, **settings: Any) -> LiveRecommender:
    return live_recommender(
        Settings(bundle_dir=tmp_path, **settings),
        trending_source=shared.trending,
        counts_source=shared.counts,
        catalog_log=shared.catalog,
        change_source=shared.changes,
    )


async def test_trending_waits_for_enough_records_or_an_old_enough_read(tmp_path: Path) -> None:
    shared = Shared()
    live = _live(shared, tmp_path, trending_sync_records=100, trending_sync_s=AGE_S)
    assert await live.sync_trending()  # the first read
    shared.applied(60)
    assert not await live.sync_trending()  # 60 of 100 records, well under AGE_S
    shared.applied(40, partition=2)  # 100 records over two partitions
    assert await live.sync_trending()
    shared.applied(1)
    assert not await live.sync_trending()
    await asyncio.sleep(AGE_S)
    assert await live.sync_trending()  # one record, but the read is old enough
    await asyncio.sleep(AGE_S)
    assert not await live.sync_trending()  # old, but nothing was applied since
    assert shared.reads["trending"] == 3


async def test_a_new_keyspace_or_a_watermark_going_back_reads_at_once(tmp_path: Path) -> None:
    shared = Shared()
    live = _live(shared, tmp_path, trending_sync_records=10**6, trending_sync_s=3600.0)
    assert await live.sync_trending()
    shared.token = ("ks2", "0", "0")  # a new Redis generation
    assert await live.sync_trending()
    shared.token = ("ks2", "0", "")  # a partition lost its watermark
    assert await live.sync_trending()
    assert shared.reads["trending"] == 3


async def test_both_syncs_ride_one_token_read_a_tick(tmp_path: Path) -> None:
    shared = Shared()
    live = _live(shared, tmp_path, popularity_sync_s=AGE_S)
    assert await live.sync_changes() == (True, True)
    for _ in range(5):
        assert await live.sync_changes() == (False, False)
    shared.applied(3)
    await asyncio.sleep(AGE_S)
    assert await live.sync_changes() == (False, True)  # counts: old enough; trending: 5 s
    assert shared.reads == {"trending": 1, "counts": 2} and shared.token_reads == 7


async def test_a_catalog_page_makes_the_syncs_due_once_old_enough(tmp_path: Path) -> None:
    """New items may have sums already: read them, but no sooner than the policy's age
    (a catalog written to every second would otherwise make every tick scan every count)."""
    shared = Shared()
    live = _live(shared, tmp_path, trending_sync_s=AGE_S, popularity_sync_s=AGE_S)
    await live.sync_changes()
    shared.log.append(_record("i1"))
    assert await live.sync_catalog() == 1
    assert await live.sync_changes() == (False, False)  # the token stood, AGE_S not yet
    await asyncio.sleep(AGE_S)
    assert await live.sync_changes() == (True, True)  # no record applied, yet read
    assert live.scorer.catalog.table(0).popularity.tolist() == [3.0]
    await asyncio.sleep(AGE_S)
    assert await live.sync_changes() == (False, False)


async def test_a_catalog_page_does_not_hold_back_a_read_enough_records_make_due(
    tmp_path: Path,
) -> None:
    """After a page, the records rule still reads at once (review finding 4: the page's
    age gate replaced it, so a live catalog feed kept trending up to its age stale)."""
    shared = Shared()
    live = _live(shared, tmp_path, trending_sync_records=100, trending_sync_s=60.0)
    await live.sync_changes()
    shared.log.append(_record("i1"))
    assert await live.sync_catalog() == 1
    shared.applied(1000)  # ten times min_records, long before the 60 s age
    assert await live.sync_changes() == (True, False)
    assert shared.reads["trending"] == 2


def _write_current(folder: Path, version: str) -> None:
    """``CURRENT`` replaced by rename, as ``inference.bundle.set_current`` does."""
    tmp = folder / ".CURRENT.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, folder / "CURRENT")


def _refusing(folder: Path, version: str) -> Any:
    raise RuntimeError(f"no bundle {version} here")


def _refusing_live(folder: Path) -> LiveRecommender:
    """A shell whose every bundle load fails (each version is refused once)."""
    shared = Shared()
    return live_recommender(
        Settings(bundle_dir=folder),
        trending_source=shared.trending,
        counts_source=shared.counts,
        catalog_log=shared.catalog,
        bundle_loader=_refusing,
    )


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real = live_module.read_current

    def read_current(folder: Path) -> str | None:
        reads.append(str(folder))
        return real(folder)

    monkeypatch.setattr(live_module, "read_current", read_current)
    return reads


async def test_the_bundle_check_reads_current_only_when_its_stat_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _counting_reads(monkeypatch)
    monkeypatch.setattr(live_module, "SETTLED_NS", 0)  # the file counts as settled at once
    live = _refusing_live(tmp_path)
    _write_current(tmp_path, "v1")
    for _ in range(5):
        assert not await live.check_bundle()
    assert len(reads) == 1 and live.refused_versions == {"v1"}
    _write_current(tmp_path, "v2")  # a new file: a new inode and change time
    for _ in range(5):
        assert not await live.check_bundle()
    assert len(reads) == 2 and live.refused_versions == {"v1", "v2"}


async def test_a_current_file_changed_just_now_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rewrite within one tick of the file system's clock could keep the same stat:
    a file changed within ``SETTLED_NS`` of a check is read at every check."""
    reads = _counting_reads(monkeypatch)
    monkeypatch.setattr(live_module, "SETTLED_NS", 3600 * 10**9)
    live = _refusing_live(tmp_path)
    _write_current(tmp_path, "v1")
    for _ in range(3):
        await live.check_bundle()
    assert len(reads) == 3


# --- on real Redis -----------------------------------------------------------------


async def test_a_log_wait_returns_when_an_entry_comes(redis_url: str) -> None:
    from redis.asyncio import Redis

    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace

    client = Redis.from_url(redis_url)
    store = RedisCatalogStore(client, Keyspace("wait", "g1"))
    try:
        start = time.perf_counter()
        assert not await store.wait_log("0", 0.2)  # no log yet: the wait runs out
        assert 0.15 < time.perf_counter() - start < 2.0
        await store.put([_record("a")])
        assert await store.wait_log("0", 4.0)  # an entry after "0" already: at once
        head = await store.log_head()

        async def later() -> None:
            await asyncio.sleep(0.2)
            await store.put([_record("b")])

        writer = asyncio.ensure_future(later())
        start = time.perf_counter()
        assert await store.wait_log(head, 4.0)
        assert time.perf_counter() - start < 2.0  # woken by the entry, not the 4 s
        await writer
        assert await client.get("probe") is None  # the pool still serves other calls
    finally:
        await client.aclose()


async def test_a_logged_record_reaches_the_scorer_within_a_round_trip(
    redis_url: str, tmp_path: Path
) -> None:
    """With the follower waiting 4 s at a time, each record put by a producer is in
    the scorer's catalog well within the old poll's half second; a new generation's
    catalog is read at once on ``restart_catalog``."""
    from redis.asyncio import Redis

    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace

    client = Redis.from_url(redis_url)
    store = RedisCatalogStore(client, Keyspace("follow", "g1"))
    await store.put([_record("first")])
    live = live_recommender(
        Settings(bundle_dir=tmp_path),
        trending_source=Shared().trending,
        counts_source=Shared().counts,
        catalog_log=store.read_log,
        catalog_snapshot=store,
        catalog_wait=store.wait_log,
    )
    follower = asyncio.ensure_future(live.follow_catalog(4.0, 0.5))

    async def lands(item: str) -> float:
        start = time.perf_counter()
        while item not in live.scorer.catalog.row_of:
            assert time.perf_counter() - start < 5.0, f"{item} never reached the scorer"
            await asyncio.sleep(0.002)
        return time.perf_counter() - start

    try:
        await lands("first")
        waits = []
        for n in range(5):
            await asyncio.sleep(0.1)
            await store.put([_record(f"new{n}", ts=n + 2)])
            waits.append(await lands(f"new{n}"))
        # A poll every 0.5 s waits 0.25 s on average; a wait missed, the block's 4 s.
        assert statistics.median(waits) < 0.25 and max(waits) < 1.0, waits
        store.keys = Keyspace("follow", "g2")  # a flushed Redis, a new generation
        await store.put([_record("other")])
        live.restart_catalog()
        assert await lands("other") < 1.0  # not the 4 s block on the old log
        assert not follower.done()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await client.aclose()


async def test_an_idle_worker_s_duties_make_about_one_redis_call_a_second(
    redis_url: str, tmp_path: Path
) -> None:
    """The worker's own wiring (``build_live``, ``live_duties``) on real Redis, idle
    for 3 s after warm-up: the change token once a second and a blocked log read or two.
    Before, the catalog poll alone made 2 calls a second and trending 1 more."""
    from redis.asyncio import Redis

    from streams.core.publish import ListPublisher
    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace
    from streams.redis_io.redis_state_store import RedisStateStore
    from streams.runtime.live_timers import live_duties
    from streams.runtime.worker import build_live

    client = Redis.from_url(redis_url)
    keys = Keyspace("idle", "g1")
    settings = Settings(bundle_dir=tmp_path, home=tmp_path, redis_url=redis_url)
    catalog = RedisCatalogStore(client, keys)
    await catalog.put([_record("a")])
    live = build_live(settings, RedisStateStore(client, keys), catalog)
    publisher = ListPublisher(None, None)  # type: ignore[arg-type]  # nothing is owed
    tasks = [asyncio.ensure_future(d()) for d in live_duties(live, publisher).values()]
    probe = Redis.from_url(redis_url)
    try:
        await asyncio.sleep(1.5)  # warm-up and the first ticks
        assert "a" in live.scorer.catalog.row_of
        before = await probe.info("commandstats")
        await asyncio.sleep(3.0)
        after = await probe.info("commandstats")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await probe.aclose()
        await client.aclose()
    calls = {
        name: stat["calls"] - before.get(name, {}).get("calls", 0)
        for name, stat in after.items()
        if name not in ("cmdstat_info", "cmdstat_client|setinfo")
    }
    calls = {name: n for name, n in calls.items() if n}
    assert sum(calls.values()) <= 5, calls  # 3 token reads, 1 or 2 log waits
    assert calls.get("cmdstat_mget", 0) in (2, 3, 4), calls
