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
import time
from pathlib import Path
from typing import Any

import pytest

import streams.runtime.live_recommender as live_module
from freshet.settings import Settings
from freshet.wiring import live_recommender, redis_of
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


async def test_a_cancel_swallowed_under_the_catalog_read_still_ends_the_follower(
    tmp_path: Path,
) -> None:
    """redis-py's own connections send under ``asyncio.wait_for``, which on Python 3.11
    returns normally when the cancel comes as the send ends; the follower must end all
    the same (else the worker's shutdown waits on it for ever)."""
    shared = Shared()
    reading = asyncio.Event()

    async def swallowing_log(after: str) -> list[tuple[str, CatalogRecord]]:
        reading.set()
        with contextlib.suppress(asyncio.CancelledError):  # as wait_for's race does
            await asyncio.sleep(3600)
        return await shared.catalog(after)

    async def never(cursor: str, wait_s: float) -> bool:
        await asyncio.sleep(wait_s)
        return False

    live = live_recommender(
        Settings(bundle_dir=tmp_path),
        trending_source=shared.trending,
        counts_source=shared.counts,
        catalog_log=swallowing_log,
        catalog_wait=never,
    )
    follower = asyncio.ensure_future(live.follow_catalog(3600.0, 0.5))
    await asyncio.wait_for(reading.wait(), 30.0)
    follower.cancel()
    done, _ = await asyncio.wait({follower}, timeout=30.0)
    assert follower in done and follower.cancelled()


async def test_a_restart_during_a_page_keeps_the_cursor_at_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new generation announced while a page of the old log is applied: the page's
    chunks must not move the cursor off "0", or the new snapshot is never read
    (review finding 11; fails on the code before)."""
    shared = Shared()
    shared.log.extend(_record(f"i{n}") for n in range(3))
    live = _live(shared, tmp_path)
    prepare = live_module.prepare_catalog

    def restart_then_prepare(*args: Any) -> Any:
        live.restart_catalog()  # as the generation switch does, mid-page
        return prepare(*args)

    monkeypatch.setattr(live_module, "prepare_catalog", restart_then_prepare)
    assert await live.sync_catalog() == 3
    assert live.catalog_cursor == "0" and live.catalog_restarts == 1


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


LONG_READS_S = 120.0
"""The read timeout of the clients below: the log waits block up to 72 s (``BLOCK_SHARE``),
so a wait that returns within seconds was woken by an entry, however slow the host."""
WAIT_S = 60.0


def _client(redis_url: str, **kwargs: Any) -> Any:
    """A client as the worker builds it (``connection_class_of``: hiredis packing and no
    ``asyncio.wait_for`` per send, whose Python 3.11 version swallows a cancel that
    comes as the send ends) with reads bounded at ``LONG_READS_S``."""
    from redis.asyncio import Redis

    from streams.redis_io.redis_client import connection_class_of

    kwargs.setdefault("connection_class", connection_class_of(redis_url)["connection_class"])
    return Redis.from_url(redis_url, socket_timeout=LONG_READS_S, **kwargs)


async def test_a_log_wait_returns_when_an_entry_comes(redis_url: str) -> None:
    from streams.redis_io.catalog_store import RedisCatalogStore, read_timeout_of
    from streams.redis_io.keyspace import Keyspace

    client = _client(redis_url)
    store = RedisCatalogStore(client, Keyspace("wait", "g1"))
    try:
        assert read_timeout_of(client) == LONG_READS_S
        start = time.perf_counter()
        assert not await store.wait_log("0", 0.2)  # no log yet: the wait runs out
        assert time.perf_counter() - start >= 0.15  # Redis held it: a block, no poll
        await store.put([_record("a")])
        assert await store.wait_log("0", WAIT_S)  # an entry after "0" already: at once
        head = await store.log_head()
        waiting = asyncio.ensure_future(store.wait_log(head, WAIT_S))
        await asyncio.sleep(0.2)
        assert not waiting.done()  # blocked on Redis
        start = time.perf_counter()
        await store.put([_record("b")])
        assert await waiting  # True: woken by the entry (a wait that runs out is False)
        assert time.perf_counter() - start < WAIT_S / 4
        assert await client.get("probe") is None  # the pool still serves other calls
    finally:
        await client.aclose()


async def test_a_log_wait_blocks_under_the_client_s_read_timeout(redis_url: str) -> None:
    """redis-py drops a read past ``socket_timeout``: the block is kept well under it, so
    a long wait on a short-timeout client runs out (False) instead of raising."""
    from streams.redis_io.catalog_store import BLOCK_SHARE, RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace

    client = _client(redis_url)
    client.connection_pool.connection_kwargs["socket_timeout"] = 1.0
    store = RedisCatalogStore(client, Keyspace("short", "g1"))
    try:
        start = time.perf_counter()
        assert not await store.wait_log("0", WAIT_S)  # 60 s asked, 0.6 s blocked
        assert BLOCK_SHARE * 0.9 <= time.perf_counter() - start < WAIT_S / 4
    finally:
        await client.aclose()


async def test_a_logged_record_reaches_the_scorer_woken_by_its_entry(
    redis_url: str, tmp_path: Path
) -> None:
    """With the follower blocked for a minute at a time, each record put by a producer
    reaches the scorer's catalog within seconds (woken by its entry, not the block's end);
    a new generation's catalog is read at once on ``restart_catalog``; a cancel ends it."""
    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace

    client = _client(redis_url)
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
    follower = asyncio.ensure_future(live.follow_catalog(WAIT_S, 0.5))

    async def lands(item: str) -> float:
        start = time.perf_counter()
        while item not in live.scorer.catalog.row_of:
            assert time.perf_counter() - start < WAIT_S / 4, f"{item}: the block ran out"
            await asyncio.sleep(0.002)
        return time.perf_counter() - start

    try:
        await lands("first")
        for n in range(5):
            while live._catalog_waiting is None:  # the follower is blocked on Redis
                await asyncio.sleep(0.005)
            await store.put([_record(f"new{n}", ts=n + 2)])
            await lands(f"new{n}")
        store.keys = Keyspace("follow", "g2")  # a flushed Redis, a new generation
        await store.put([_record("other")])
        live.restart_catalog()
        await lands("other")  # not the block on the old log
        assert not follower.done()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(follower, WAIT_S / 4)
        await client.aclose()
    assert follower.cancelled()


def _counting_class(redis_url: str) -> tuple[Any, list[str]]:
    """A connection class that notes each command its client sends (the name; for
    ``XREAD`` whether it blocks), and that list: other clients of the shared server,
    left over from other tests, do not count."""
    from streams.redis_io.redis_client import connection_class_of

    base = connection_class_of(redis_url)["connection_class"]
    sent: list[str] = []

    class Counting(base):  # type: ignore[misc, valid-type]
        def pack_command(self, *args: Any) -> Any:
            words = [a.decode() if isinstance(a, bytes) else str(a) for a in args]
            name = words[0].upper() if words else ""
            if name == "XREAD":
                name += " BLOCK" if "BLOCK" in map(str.upper, words) else ""
            sent.append(name)
            return super().pack_command(*args)

    return Counting, sent


async def test_an_idle_worker_s_duties_make_about_one_redis_call_a_second(
    redis_url: str, tmp_path: Path
) -> None:
    """The worker's own wiring (``build_live``, ``live_duties``) on real Redis, idle
    for 3 s after warm-up: the change token at most once a second and a blocked log read
    or two, nothing else; no log read without a block (the old poll made 2 a second and
    trending 1 more). Only this client's commands are counted."""
    from redis.asyncio import Redis

    from streams.core.publish import ListPublisher
    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace
    from streams.redis_io.redis_state_store import RedisStateStore
    from streams.runtime.live_timers import live_duties
    from streams.runtime.worker import build_live

    counting, sent = _counting_class(redis_url)
    client = Redis.from_url(redis_url, connection_class=counting)
    keys = Keyspace("idle", "g1")
    settings = Settings(bundle_dir=tmp_path, home=tmp_path, redis_url=redis_url)
    catalog = RedisCatalogStore(client, keys)
    await catalog.put([_record("a")])
    live = build_live(settings, RedisStateStore(client, keys), catalog)
    publisher = ListPublisher(None, None)  # type: ignore[arg-type]  # nothing is owed
    tasks = [asyncio.ensure_future(d()) for d in live_duties(live, publisher).values()]
    try:
        start = time.perf_counter()
        while "a" not in live.scorer.catalog.row_of or "XREAD BLOCK" not in sent:
            assert time.perf_counter() - start < 30.0, "warm-up never read the catalog"
            await asyncio.sleep(0.01)
        before = len(sent)
        start = time.perf_counter()
        await asyncio.sleep(3.0)
        window = time.perf_counter() - start
        calls = [c for c in sent[before:] if c not in ("HELLO", "CLIENT")]  # a new connection
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
    assert set(calls) <= {"MGET", "XREAD BLOCK"}, calls  # no poll, no data read
    assert 1 <= calls.count("MGET") <= window + 1, calls  # the token, at most 1 a second
    assert calls.count("XREAD BLOCK") <= 2, calls  # 3 s blocks (5 s read timeout)


@pytest.mark.parametrize("duty", ["changes", "catalog"])
async def test_a_cancel_swallowed_under_a_duty_s_read_still_ends_the_duty(
    tmp_path: Path, duty: str
) -> None:
    """The swallowed cancel (see the follower's test above) under the other duty loops:
    ``changes`` (the change token's read) and a ``guarded`` duty (here the catalog poll,
    a worker without a blocking log read). Each must end once cancelled; both went on
    reading for ever before (``live_duties``' loops checked nothing after a call)."""
    from streams.core.publish import ListPublisher
    from streams.runtime.live_timers import live_duties

    shared = Shared()
    reading = asyncio.Event()
    read = shared.changes if duty == "changes" else shared.catalog

    async def swallowing(*args: Any) -> Any:
        if not reading.is_set():  # the first read swallows the cancel, once
            reading.set()
            with contextlib.suppress(asyncio.CancelledError):  # as wait_for's race does
                await asyncio.sleep(3600)
        return await read(*args)

    live = live_recommender(
        Settings(bundle_dir=tmp_path),
        trending_source=shared.trending,
        counts_source=shared.counts,
        catalog_log=swallowing if duty == "catalog" else shared.catalog,
        change_source=swallowing if duty == "changes" else shared.changes,
    )
    publisher = ListPublisher(None, None)  # type: ignore[arg-type]  # nothing is owed
    task = asyncio.ensure_future(live_duties(live, publisher)[duty]())
    try:
        await asyncio.wait_for(reading.wait(), 30.0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=10.0)
        assert task in done, f"the {duty} duty went on after its cancel"
        assert task.cancelled()
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=10.0)


async def test_duties_on_a_unix_socket_client_end_on_every_cancel(
    make_redis: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's own wiring on a ``unix://`` client, whose connections send under
    ``asyncio.wait_for``: the ``changes`` duty reading the change token back to back
    (its pauses set to 0), cancelled at random 200 times, ends every time. Without the
    check after its read it went on after some cancels (the count is in the message)."""
    import random
    import tempfile

    from streams.core.publish import ListPublisher
    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace
    from streams.redis_io.redis_client import async_redis
    from streams.redis_io.redis_state_store import RedisStateStore
    from streams.runtime import live_timers
    from streams.runtime.worker import build_live

    sock_dir = Path(tempfile.mkdtemp(prefix="fr-", dir="/tmp"))  # a socket path's limit
    server = make_redis(appendonly=False, unix_socket=sock_dir / "r.sock")
    settings = Settings(bundle_dir=tmp_path, home=tmp_path, redis_url=server.unix_url)
    client = async_redis(redis_of(settings))
    keys = Keyspace("swallow", "g1")
    live = build_live(settings, RedisStateStore(client, keys), RedisCatalogStore(client, keys))
    monkeypatch.setattr(live_timers, "CHANGES_EVERY_S", 0.0)
    monkeypatch.setattr(live_timers, "CHANGES_IDLE_S", 0.0)
    publisher = ListPublisher(None, None)  # type: ignore[arg-type]  # nothing is owed
    changes = live_timers.live_duties(live, publisher)["changes"]
    rng = random.Random(7)
    went_on = 0
    try:
        for _ in range(200):
            task = asyncio.ensure_future(changes())
            await asyncio.sleep(rng.uniform(0.0, 0.004))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=1.0)
            if task not in done:
                went_on += 1
                while not task.done():  # each cancel may be swallowed again
                    task.cancel()
                    await asyncio.wait({task}, timeout=0.01)
                if went_on == 5:
                    break
    finally:
        await client.aclose()
        server.stop()
        for leftover in sock_dir.iterdir():
            leftover.unlink()
        sock_dir.rmdir()
    assert went_on == 0, f"the duty went on after {went_on} cancels"


@pytest.mark.parametrize("during", ["log", "snapshot"])
async def test_a_generation_switch_during_a_catalog_read_reads_the_new_snapshot(
    redis_url: str, tmp_path: Path, during: str
) -> None:
    """Real Redis, a real switch: replay's generation g2 (built while g1 was live, so its
    log ids are older than g1's last; its log trimmed, as ``log_maxlen`` does) becomes
    current while the follower reads g1's log, or its snapshot. The worker's switch
    (``worker.switch_generation``: the stores' keys, then ``restart_catalog``) must
    leave the cursor at "0", so the next call reads g2's snapshot. Before, the page
    (``log``) or the next log read (``snapshot``) moved the cursor onto a log id, and
    g2's stored records missing from its log were never read (review finding 11)."""
    from redis.asyncio import Redis

    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.generation import GenerationFollower
    from streams.redis_io.keyspace import Keyspace

    client = Redis.from_url(redis_url)
    g1 = Keyspace("switch", "g1")
    g2 = g1.with_generation("g2")
    built = RedisCatalogStore(client, g2)
    await built.put([_record(f"new{n}") for n in range(5)])  # replay's, first
    await client.xtrim(g2.catalog_log, maxlen=1, approximate=False)
    store = RedisCatalogStore(client, g1)
    await store.put([_record("old0")])
    await asyncio.sleep(0.002)  # g1's ids come after g2's
    switched: list[str] = []

    def switch_generation(generation: str) -> None:
        store.keys = g1.with_generation(generation)
        live.restart_catalog()
        switched.append(generation)

    follower = GenerationFollower(client, "switch", switch_generation)

    async def switch() -> None:
        await client.set(g1.generation_pointer, "g2")
        assert await follower.before_batch() == "g2"

    class Snapshot:
        """The store as the follower's snapshot; g2 goes live once ``scan`` is read."""

        async def log_head(self) -> str:
            return await store.log_head()

        async def scan(self) -> Any:
            async for page in store.scan():
                yield page
            if during == "snapshot" and not switched:
                await switch()

    async def log_read(after: str) -> list[tuple[str, CatalogRecord]]:
        page = await store.read_log(after)
        if during == "log" and page and not switched:
            await switch()  # as the page comes back: g1's entries
        return page

    live = live_recommender(
        Settings(bundle_dir=tmp_path),
        trending_source=Shared().trending,
        counts_source=Shared().counts,
        catalog_log=log_read,
        catalog_snapshot=Snapshot(),  # type: ignore[arg-type]
    )
    try:
        if during == "log":  # the snapshot read, then a g1 entry logged while it ran
            await live.sync_catalog()
            await store.put([_record("old1")])
        await live.sync_catalog()  # the switch comes in this call
        assert switched == ["g2"]
        assert live.catalog_cursor == "0", "the cursor moved onto a log id"
        await live.sync_catalog()
        read = set(live.scorer.catalog.row_of)
    finally:
        await client.aclose()
    assert {f"new{n}" for n in range(5)} <= read, sorted(read)
