"""A worker's first read of a large catalog backlog, in bulk, before its agents start.

The catalog agent takes records through Faust one micro-batch at a time: about 1,400 a
second on this host, so a cold start on a million items took 738 s. When the catalog
topic holds at least ``PRELOAD_MIN`` records past the workers' committed offsets, the
worker first reads them with a plain consumer in large fetches and applies them with
the ``CatalogProcessor`` the agent runs (decode, dead letters, the newer record wins,
one Redis pipeline per batch), committing each batch's offsets for the workers' group;
the agent then starts at those offsets.

A loader killed midway has committed only batches it stored, so its successor reads
again at most the batch it was in: applying a catalog event again gives the same
record (``apply_catalog_event``). The broker takes a commit from outside the group only
while the group has no members: if another worker is running (or a static member has
not timed out yet) the commit is refused, and the loader stops and leaves the rest to
the agent (what it stored stays stored, and the agent applying it again changes nothing).

When the catalog hash was empty before the load (a cold start), the records the load
stored are the whole catalog: it hands them to the worker's first catalog read
(``PreloadedSnapshot``), which then follows the log from the load's last entry instead
of reading a million records back from Redis and decoding them again.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from freshet.settings import Settings
from freshet.wiring import kafka_of, limits_of, redis_of
from schemas.codec import encode
from schemas.dead_letter import DeadLetter
from schemas.topics import Topics
from streams.core.catalog import SNAPSHOT_PAGE, CatalogProcessor, CatalogRecord, CatalogSnapshot
from streams.core.ingest import BatchStats, SourceRecord
from streams.kafka_io.kafka_config import kafka_python_kwargs
from streams.kafka_io.kafka_wait import kafka_client_when_up
from streams.redis_io.catalog_store import RedisCatalogStore
from streams.redis_io.generation import GenerationFollower
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import async_redis

log = logging.getLogger("freshet.catalog")

PRELOAD_MIN = 20_000
"""Catalog records behind the committed offsets from which a start loads in bulk."""
PRELOAD_BATCH = 20_000
"""Records per bulk batch (one Redis pipeline, one offset commit)."""


class Handover(NamedTuple):
    """The whole catalog as a bulk load stored it, for the worker's first catalog read.

    ``records``: the newest record of every item, all the hash of ``generation`` held
    when the load ended; ``cursor``: the log entry of the last of them (the log is
    followed from there).
    """

    generation: str
    cursor: str
    records: list[CatalogRecord]

    def __repr__(self) -> str:
        """Without the records: ``asyncio.run`` (Python 3.11) formats the repr of the
        main task, whose result holds this, when it ends (``signal.getsignal`` on its
        SIGINT handler), and a million records' repr took 12 s of a cold start."""
        return f"Handover({self.generation!r}, {self.cursor!r}, {len(self.records)} records)"


@dataclass
class PreloadStats:
    """What a bulk load did (``backlog``: records behind the committed offsets at start)."""

    backlog: int = 0
    records: int = 0
    applied: int = 0
    dead_lettered: int = 0
    batches: int = 0
    seconds: float = 0.0
    refused: bool = False  # the group took no commit from outside: left to the agent
    handover: Handover | None = None  # set when the load stored the whole catalog

    def as_batch(self) -> BatchStats:
        """The counts as one catalog batch (for the worker's metrics)."""
        return BatchStats(
            records=self.records, applied=self.applied, dead_lettered=self.dead_lettered
        )


async def preload_catalog(
    settings: Settings,
    *,
    min_backlog: int = PRELOAD_MIN,
    batch: int = PRELOAD_BATCH,
    after_batch: Callable[[int], None] | None = None,
) -> PreloadStats:
    """Apply the catalog topic's backlog in bulk if it holds ``min_backlog`` records.

    ``after_batch(n)`` is called once batch ``n``'s offsets are committed (tests stop
    a load there).
    """
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import CommitFailedError, KafkaError
    from kafka.structs import OffsetAndMetadata

    started = time.monotonic()
    kafka = kafka_of(settings)
    topic = Topics(settings.topic_prefix).catalog
    stats = PreloadStats()
    kwargs = kafka_python_kwargs(
        kafka,
        client_id="freshet-catalog-preload",
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=16 << 20,
        max_poll_records=batch,
    )
    consumer: Any = await asyncio.to_thread(
        kafka_client_when_up, kafka, lambda: KafkaConsumer(**kwargs)
    )
    producer: Any = None
    redis = async_redis(redis_of(settings))
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return stats
        consumer.assign(tps)
        end = consumer.end_offsets(tps)
        start = consumer.beginning_offsets(tps)
        for tp in tps:
            at = consumer.committed(tp)
            consumer.seek(tp, at if at is not None else start[tp])
        stats.backlog = sum(end[tp] - consumer.position(tp) for tp in tps)
        if stats.backlog < min_backlog:
            return stats
        log.info("catalog backlog %d records: loading it in bulk", stats.backlog)
        follower = GenerationFollower(redis, settings.redis_namespace, lambda _g: None)
        generation = await follower.before_batch()
        store = RedisCatalogStore(redis, Keyspace(settings.redis_namespace, generation))
        producer = KafkaProducer(**kafka_python_kwargs(kafka, client_id="freshet-preload-dl"))
        dead_topic = Topics(settings.topic_prefix).dead_letter

        async def dead_letters(letters: Sequence[DeadLetter]) -> None:
            sent = [producer.send(dead_topic, key=d.key, value=encode(d)) for d in letters]
            await asyncio.to_thread(lambda: [f.get(timeout=30) for f in sent])

        # Nothing stored before: what the load stores is the whole catalog. Only the
        # catalog agent writes the hash, and while it runs the broker refuses the
        # load's commits, so a load that ends with every commit taken wrote alone.
        held: dict[str, CatalogRecord] | None = (
            {} if await redis.hlen(store.keys.catalog) == 0 else None
        )

        def hold(records: Sequence[CatalogRecord]) -> None:
            if held is not None:
                held.update((r.item_id, r) for r in records)

        processor = CatalogProcessor(
            store, limits_of(settings), dead_letter_sink=dead_letters, on_records=hold
        )
        while any(consumer.position(tp) < end[tp] for tp in tps):
            polled = await asyncio.to_thread(consumer.poll, 1_000, batch)
            records = [
                SourceRecord(topic, tp.partition, m.offset, m.key, m.value, m.timestamp)
                for tp, msgs in polled.items()
                for m in msgs
            ]
            if not records:
                continue
            done = await processor.process(records)
            commit = {
                TopicPartition(topic, p): OffsetAndMetadata(last + 1, "", -1)
                for p, last in _last_offsets(records).items()
            }
            try:
                await asyncio.to_thread(consumer.commit, commit)
            except (CommitFailedError, KafkaError) as exc:
                log.warning("catalog bulk load stopped, the agent goes on: %s", exc)
                stats.refused = True
                return stats
            stats.records += done.records
            stats.applied += done.applied
            stats.dead_lettered += done.dead_lettered
            stats.batches += 1
            # What the load holds lives on, as the worker's records: spare the collector
            # a walk over it at every full collection, now and for the worker's life (a
            # million records are millions of objects; one full walk of them took up to
            # 19 s on the loaded host). It stays frozen: the price is that cyclic garbage
            # alive at a freeze (the load's clients) is never collected, a few MB once.
            gc.freeze()
            if after_batch is not None:
                after_batch(stats.batches)
        if held and store.last_entry is not None:
            stats.handover = Handover(generation, store.last_entry, list(held.values()))
        return stats
    finally:
        stats.seconds = time.monotonic() - started
        if stats.records:
            log.info(
                "catalog bulk load: %d records (%d dead letters) in %.1f s",
                stats.records,
                stats.dead_lettered,
                stats.seconds,
            )
        await asyncio.to_thread(consumer.close, False)
        if producer is not None:
            await asyncio.to_thread(producer.close, 30)
        await redis.aclose()


def _last_offsets(records: Sequence[SourceRecord]) -> dict[int, int]:
    last: dict[int, int] = {}
    for r in records:
        last[r.partition] = max(r.offset, last.get(r.partition, -1))
    return last


class PreloadedSnapshot:
    """The catalog store, whose first snapshot is a bulk load's ``Handover``.

    The worker's first catalog read takes the handed-over records (in pages, as
    ``scan`` gives them) and follows the log from the load's last entry; a read in
    another generation, or any later one, reads the store.
    """

    def __init__(self, store: CatalogSnapshot, generation: Callable[[], str], handover: Handover):
        self.store = store
        self.generation = generation
        self.handover: Handover | None = handover
        self.serving: Handover | None = None

    async def log_head(self) -> str:
        """The load's last entry the first time (in its generation); then the store's."""
        taken, self.handover = self.handover, None
        if taken is not None and taken.generation == self.generation():
            self.serving = taken
            return taken.cursor
        self.serving = None
        return await self.store.log_head()

    async def log_entry(self, entry_id: str) -> str | None:
        return await self.store.log_entry(entry_id)

    async def scan(self, page: int = SNAPSHOT_PAGE) -> AsyncIterator[list[CatalogRecord]]:
        """The handed-over records after the first ``log_head``; else the store's."""
        serving, self.serving = self.serving, None
        if serving is None:
            async for part in self.store.scan(page):
                yield part
            return
        for start in range(0, len(serving.records), page):
            yield serving.records[start : start + page]
