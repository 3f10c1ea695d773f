"""One contract suite for every catalog-store backend: the fake and real Redis.

``tests/cluster/test_cluster_catalog_store.py`` runs the same functions on a Redis
Cluster. The live scorer follows ``read_log`` from ``"0"`` and then from the last id
it saw, page by page; these tests pin what it relies on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from streams.core.catalog import CatalogRecord, CatalogStore, InMemoryCatalogStore
from streams.redis_io.catalog_store import RedisCatalogStore
from streams.redis_io.keyspace import Keyspace


@pytest.fixture(params=["memory", "redis"])
async def catalog(request: pytest.FixtureRequest) -> AsyncIterator[CatalogStore]:
    if request.param == "memory":
        yield InMemoryCatalogStore()
        return
    from redis.asyncio import Redis

    client = Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisCatalogStore(client, Keyspace("t", "g1"))
    await client.aclose()


def record(item: str, ts: int = 1, removed: bool = False, **attributes: object) -> CatalogRecord:
    return CatalogRecord(item, ("shoes", "red"), dict(attributes), f"about {item}", 1, ts, removed)


async def test_an_empty_store_has_no_items_and_no_log(catalog: CatalogStore) -> None:
    assert await catalog.get(["a"]) == {}
    assert await catalog.get([]) == {}
    assert await catalog.read_log("0") == []


async def test_records_round_trip_and_the_newest_put_wins(catalog: CatalogStore) -> None:
    await catalog.put([record("a", size=42), record("b")])
    await catalog.put([record("a", ts=2, removed=True, size=43)])
    got = await catalog.get(["a", "b", "missing"])
    assert got == {"a": record("a", ts=2, removed=True, size=43), "b": record("b")}


async def test_the_log_holds_every_change_in_order_and_pages_by_cursor(
    catalog: CatalogStore,
) -> None:
    changes = [record(f"i{n}", ts=n) for n in range(5)] + [record("i1", ts=9, removed=True)]
    await catalog.put(changes[:3])
    await catalog.put([])  # nothing to log
    await catalog.put(changes[3:])
    everything = await catalog.read_log("0")
    assert [r for _, r in everything] == changes
    ids = [i for i, _ in everything]
    assert len(set(ids)) == len(ids)
    cursor, seen = "0", []
    while page := await catalog.read_log(cursor, count=4):
        assert len(page) <= 4
        seen += page
        cursor = page[-1][0]
    assert seen == everything
    assert await catalog.read_log(ids[-1]) == []  # caught up
    assert [r for _, r in await catalog.read_log(ids[2])] == changes[3:]


async def test_a_snapshot_holds_each_item_newest_record_and_the_log_head(
    catalog: CatalogStore,
) -> None:
    assert await catalog.log_head() == "0"
    assert [page async for page in catalog.scan()] == []
    await catalog.put([record(f"i{n}") for n in range(7)])
    await catalog.put([record("i3", ts=5, removed=True)])
    head = await catalog.log_head()
    assert head == (await catalog.read_log("0"))[-1][0]
    assert await catalog.read_log(head) == []
    pages = [page async for page in catalog.scan(page=3)]
    newest = {r.item_id: r for page in pages for r in page}
    assert newest == {f"i{n}": record(f"i{n}") for n in range(7) if n != 3} | {
        "i3": record("i3", ts=5, removed=True)
    }
    await catalog.put([record("late")])
    assert [r for _, r in await catalog.read_log(head)] == [record("late")]


async def test_a_log_entry_names_its_item_while_the_log_holds_it(catalog: CatalogStore) -> None:
    assert await catalog.log_entry("1-0") is None
    await catalog.put([record("a"), record("b")])
    ids = [i for i, _ in await catalog.read_log("0")]
    assert [await catalog.log_entry(i) for i in ids] == ["a", "b"]
    head = await catalog.log_head()
    assert await catalog.log_entry(head) == "b"
    later = await catalog.read_log(head)
    assert later == [] and await catalog.log_entry("0") is None


async def test_a_put_of_several_log_chunks_logs_each_record_once_in_order(
    catalog: CatalogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.redis_io import catalog_store

    monkeypatch.setattr(catalog_store, "LOG_CHUNK", 3)  # 10 records: 4 script calls
    changes = [record(f"i{n}", ts=n, n=n) for n in range(10)]
    await catalog.put(changes)
    await catalog.put([record("i4", ts=20, removed=True)])
    everything = await catalog.read_log("0")
    assert [r for _, r in everything] == [*changes, record("i4", ts=20, removed=True)]
    assert await catalog.log_head() == everything[-1][0]
    assert [await catalog.log_entry(i) for i, _ in everything[:4]] == ["i0", "i1", "i2", "i3"]
    if isinstance(catalog, RedisCatalogStore):
        assert catalog.last_entry == everything[-1][0]
