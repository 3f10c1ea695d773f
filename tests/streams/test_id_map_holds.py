"""No hold of the scoring lock copies a large id dict: the catalog log in the real Redis
read through ``LiveRecommender``, 24,000 new items past a 400-item bundle.

A dict copies itself whole when it outgrows its room. The catalog's id -> row map took
every chunk's new ids in the chunk's hold, so the hold in which it outgrew its room
copied it (0.9 ms of CPU at 87k ids, 28 ms at 1.4M). Each hold here is watched: every
id dict of the catalog is sized before and after (``sys.getsizeof``), and any that
grew inside the hold is noted with its length.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from live_over_fake_bundle import live_over_fake_bundle

from inference import item_ids
from inference.item_catalog import ItemCatalog
from streams.core import copy_on_write as cow
from streams.core.catalog import CatalogRecord
from streams.redis_io.catalog_store import RedisCatalogStore
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import RedisConfig, async_redis

BUNDLE_ITEMS = 400
NEW_ITEMS = 24_000  # the map passes 5,461, 10,922 and 21,845 ids: a dict's copy points
RECENT = 8_192  # folds due at this many new ids (the module's bound needs 50k new items)
SMALL = RECENT + cow.CATALOG_CHUNK  # the most ids the map written in a hold may hold


def id_dicts(catalog: ItemCatalog) -> list[dict[str, int]]:
    """The catalog's dicts of item ids to rows, wherever it keeps them."""
    owners = [catalog, *(v for v in vars(catalog).values() if hasattr(v, "__dict__"))]
    return [
        d
        for owner in owners
        for d in vars(owner).values()
        if isinstance(d, dict)
        and len(d) > 16  # not the category codes
        and isinstance(next(iter(d)), str)
        and isinstance(next(iter(d.values())), int)
    ]


def test_a_chunk_s_hold_never_copies_a_large_id_dict(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [
        CatalogRecord(f"n{i}", (f"c{i % 5}",), {}, f"item {i}", 5_000 + i, 5_000 + i)
        for i in range(NEW_ITEMS)
    ]
    monkeypatch.setattr(item_ids, "RECENT_IDS_MAX", RECENT)
    resized_in_hold: list[int] = []  # the length of each id dict that grew in a hold
    holds = [0]

    async def scenario() -> ItemCatalog:
        client = async_redis(RedisConfig(url=redis_url))
        store = RedisCatalogStore(client, Keyspace("id-map-holds"))
        await client.delete(store.keys.catalog, store.keys.catalog_log)
        await store.put(records)

        live = live_over_fake_bundle(tmp_path, BUNDLE_ITEMS, store.read_log)
        own = type(live)._housekeeping.__wrapped__  # type: ignore[attr-defined]

        @contextlib.asynccontextmanager
        async def watched(duty: str) -> AsyncIterator[None]:
            async with contextlib.asynccontextmanager(own)(live, duty):
                catalog = live.scorer.catalog
                before = {id(d): (d, sys.getsizeof(d)) for d in id_dicts(catalog)}
                holds[0] += 1
                try:
                    yield
                finally:
                    for d, size in before.values():
                        if sys.getsizeof(d) != size:
                            resized_in_hold.append(len(d))

        monkeypatch.setattr(live, "_housekeeping", watched)
        try:
            assert await live.check_bundle()
            assert await live.sync_catalog() == NEW_ITEMS
        finally:
            await client.aclose()
        return live.scorer.catalog

    catalog = asyncio.run(scenario())
    assert holds[0] >= NEW_ITEMS // cow.CATALOG_CHUNK
    assert catalog.size == BUNDLE_ITEMS + NEW_ITEMS
    rows = catalog.rows([r.item_id for r in records] + ["b7", "unknown"])
    assert rows.tolist() == [*range(BUNDLE_ITEMS, BUNDLE_ITEMS + NEW_ITEMS), 7, -1]
    assert catalog.row_of["n123"] == BUNDLE_ITEMS + 123 and "unknown" not in catalog.row_of
    assert resized_in_hold, "no id dict grew in any hold: the watch saw nothing"
    assert max(resized_in_hold) <= SMALL, f"ids when a dict was copied: {resized_in_hold}"
