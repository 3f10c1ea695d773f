"""An idle worker reads nothing: trending and counts are re-read only when they may
have changed (a batch moved a watermark, or the catalog changed under them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freshet.settings import Settings
from freshet.wiring import live_recommender
from streams.core.catalog import CatalogRecord
from streams.runtime.live_recommender import LiveRecommender


class Shared:
    """Redis as the syncs see it: a change token, trending, counts and a catalog log."""

    def __init__(self) -> None:
        self.token: tuple[str, ...] = ("ks", "5", "9")
        self.reads = {"trending": 0, "counts": 0}
        self.token_reads = 0
        self.log: list[CatalogRecord] = []

    async def changes(self) -> tuple[str, ...]:
        self.token_reads += 1
        return self.token

    def applied(self, records: int, partition: int = 1) -> None:
        """A batch on ``partition`` applied ``records`` records (its watermark moves)."""
        token = list(self.token)
        token[partition] = str(int(token[partition]) + records)
        self.token = tuple(token)

    async def trending(self, k: int) -> list[tuple[str, float]]:
        self.reads["trending"] += 1
        return [("i1", 2.0)]

    async def counts(self) -> dict[str, int]:
        self.reads["counts"] += 1
        return {"i1": 3}

    async def catalog(self, after: str) -> list[tuple[str, CatalogRecord]]:
        start = int(after)
        return [(str(start + i + 1), r) for i, r in enumerate(self.log[start:])]


EVERY_CHANGE = {"trending_sync_records": 1, "trending_sync_s": 0.0, "popularity_sync_s": 0.0}
"""Each sync reads at every change of the token (the way every tick read before the
policies of ``streams.core.sync_policy``; their defaults are tested there)."""


def _live(shared: Shared, tmp_path: Path, gated: bool = True, **policy: Any) -> LiveRecommender:
    return live_recommender(
        Settings(bundle_dir=tmp_path, **policy),
        trending_source=shared.trending,
        counts_source=shared.counts,
        catalog_log=shared.catalog,
        change_source=shared.changes if gated else None,
    )


async def test_ticks_with_nothing_changed_read_nothing(tmp_path: Path) -> None:
    shared = Shared()
    live = _live(shared, tmp_path)
    assert await live.sync_trending() and await live.sync_popularity()
    for _ in range(50):  # 50 idle ticks of each timer
        assert not await live.sync_trending()
        assert not await live.sync_popularity()
    assert shared.reads == {"trending": 1, "counts": 1}


async def test_a_batch_write_makes_the_next_tick_read(tmp_path: Path) -> None:
    shared = Shared()
    live = _live(shared, tmp_path, **EVERY_CHANGE)
    await live.sync_trending()
    await live.sync_popularity()
    shared.token = ("ks", "6", "9")  # partition 0 applied a batch
    assert await live.sync_trending() and await live.sync_popularity()
    assert not await live.sync_trending()
    assert shared.reads == {"trending": 2, "counts": 2}


async def test_a_catalog_change_makes_the_next_tick_read(tmp_path: Path) -> None:
    """Counts and trending of items the catalog did not know were skipped: read again."""
    shared = Shared()
    live = _live(shared, tmp_path, **EVERY_CHANGE)
    await live.sync_trending()
    await live.sync_popularity()
    shared.log.append(CatalogRecord("i1", ("cat",), {}, "", 1, 1, False))
    assert await live.sync_catalog() == 1
    assert await live.sync_trending() and await live.sync_popularity()
    assert live.scorer.catalog.table(0).popularity.tolist() == [3.0]
    assert await live.sync_catalog() == 0
    assert not await live.sync_trending()  # nothing new in the log: no reason to read


async def test_without_a_change_source_every_tick_reads(tmp_path: Path) -> None:
    shared = Shared()
    live = _live(shared, tmp_path, gated=False)
    for _ in range(3):
        assert await live.sync_trending()
    assert shared.reads["trending"] == 3


async def test_housekeeping_lock_holds_are_timed_and_exported(tmp_path: Path) -> None:
    from streams.runtime.metrics import WorkerMetrics

    shared = Shared()
    live = _live(shared, tmp_path)
    shared.log.append(CatalogRecord("i1", ("cat",), {}, "", 1, 1, False))
    await live.sync_catalog()
    await live.sync_trending()
    await live.sync_popularity()
    await live.sync_popularity()  # unchanged: no read, no hold
    holds = list(live.stats.lock_hold_ms)
    # The catalog page: one hold to write its chunk, one to swap the updated index in.
    assert [d for d, _ in holds] == ["catalog", "catalog", "trending", "popularity"]
    assert all(0 <= ms < 1000 for _, ms in holds)
    metrics = WorkerMetrics(live=live.scorer)
    metrics.collect()
    text = metrics.exposition().decode()
    for duty, holds_n in (("catalog", 2), ("trending", 1), ("popularity", 1)):
        assert f'freshet_lock_hold_seconds_count{{duty="{duty}"}} {holds_n}.0' in text
    assert not live.stats.lock_hold_ms  # drained into the histogram
