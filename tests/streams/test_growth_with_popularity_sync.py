"""A popularity sync that lands while a catalog page's column growth is prepared lets the
growth finish: the real path (``LiveRecommender``), counts read from the real Redis.

The sync counts every item. Journalled row by row into the growth, that went past the
rows a growth copies again under the lock (``GROWTH_REDO_MAX``), the growth was refused
and the page prepared (the catalog copied) again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from live_over_fake_bundle import live_over_fake_bundle

import streams.runtime.live_recommender as live_module
from inference.catalog_columns import GROWTH_REDO_MAX
from streams.core.catalog import CatalogRecord
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import RedisConfig, async_redis
from streams.redis_io.redis_state_store import RedisStateStore

BUNDLE_ITEMS = GROWTH_REDO_MAX + 904  # every one counted: more rows than a growth redoes
NEW_ITEMS = 2_000  # past the bundle catalog's spare quarter: the columns must grow


def test_a_popularity_sync_during_a_growth_does_not_restart_it(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = [
        (f"{i + 1}-0", CatalogRecord(f"n{i}", ("c",), {}, f"item {i}", 5_000 + i, 5_000 + i))
        for i in range(NEW_ITEMS)
    ]
    keys = Keyspace("growth-sync")
    counts = {f"b{r}": r + 1 for r in range(BUNDLE_ITEMS)}
    growths: list[int] = []  # the capacity of each growth a page was prepared with

    async def scenario() -> None:
        client = async_redis(RedisConfig(url=redis_url))
        await client.delete(keys.counts(0))
        await client.hset(keys.counts(0), mapping=counts)  # type: ignore[arg-type]
        store = RedisStateStore(client, keys)

        async def catalog_log(after: str) -> list[tuple[str, CatalogRecord]]:
            return page if after == "0" else []

        live = live_over_fake_bundle(tmp_path, BUNDLE_ITEMS, catalog_log, lambda: store.counts([0]))
        loop = asyncio.get_running_loop()
        prepare = live_module.prepare_catalog
        synced: list[bool] = []

        def prepare_then_sync(*args: Any) -> Any:
            """The page's growth copied; before its first chunk adopts it, a sync lands."""
            prepared = prepare(*args)
            if prepared.growth is not None:
                growths.append(prepared.growth.capacity)
                if not synced:
                    sync = asyncio.run_coroutine_threadsafe(live.sync_popularity(), loop)
                    synced.append(sync.result(timeout=60))
            return prepared

        monkeypatch.setattr(live_module, "prepare_catalog", prepare_then_sync)
        try:
            assert await live.check_bundle()
            assert live.scorer.catalog.room < NEW_ITEMS
            assert await live.sync_catalog() == NEW_ITEMS
        finally:
            await client.aclose()
        assert synced == [True]
        catalog = live.scorer.catalog
        assert catalog.size == BUNDLE_ITEMS + NEW_ITEMS
        popularity = catalog.table(10_000).popularity
        rows = catalog.rows(list(counts))
        assert popularity[rows].tolist() == list(counts.values())  # the sync's counts
        assert not popularity[BUNDLE_ITEMS:].any()  # the new items have none yet

    asyncio.run(scenario())
    assert len(growths) == 1, f"the growth was prepared {len(growths)} times"
