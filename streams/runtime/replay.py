"""Rebuild state from the topics into a fresh Redis generation, then switch to it.

The same processors the worker uses apply the records, so replayed state equals live
state by construction. Progress lives in the new generation's partition watermarks,
which makes a replay resumable (run it again with the same generation) and each record
applied once. Readers keep using the old generation until the switch, which is one
``SET`` of the generation pointer: they see the old state or the complete new one,
never a half-built one. See ``streams/redis_io/generation.py`` for the switch protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.dead_letter import DeadLetter
from schemas.topics import Topics
from streams.core.catalog import CatalogProcessor
from streams.core.ingest import IngestProcessor, SourceRecord
from streams.redis_io.catalog_store import RedisCatalogStore
from streams.redis_io.generation import next_generation, parse_generation, pause_key
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_state_store import RedisStateStore

PAUSE_TTL_S = 120  # a crashed replay cannot hold workers paused for longer


@dataclass
class ReplayProgress:
    """Running counts of one replay, passed to the progress callback."""

    generation: str
    phase: str = "catalog"
    records: int = 0
    applied: int = 0
    remaining: int = 0
    published: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.records / max(time.monotonic() - self.started, 1e-9)


class RateLimiter:
    """At most ``rate`` records per second on average (0: unlimited)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.count = 0

    async def take(self, n: int) -> None:
        self.count += n
        if self.rate <= 0:
            return
        ahead = self.count / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            await asyncio.sleep(ahead)


async def _drop_letters(letters: Sequence[DeadLetter]) -> None:
    """Dead letters were sent when the records were first consumed; not again."""


class Replayer:
    """Reads the events and catalog topics into one generation and switches to it."""

    def __init__(
        self,
        settings: Settings,
        redis: Any,
        *,
        generation: str | None = None,
        since_ms: int | None = None,
        rate: float = 0.0,
        batch: int = 2000,
        on_progress: Callable[[ReplayProgress], None] | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.requested = generation
        self.since_ms = since_ms
        self.limiter = RateLimiter(rate)
        self.batch = batch
        self.on_progress = on_progress
        self.topics = Topics(settings.topic_prefix)
        self.base = Keyspace(settings.redis_namespace)
        self.touched: dict[int, set[str]] = {}  # partition -> users seen in events

    async def target(self) -> tuple[str, str]:
        """(current generation, generation to build)."""
        current = parse_generation(await self.redis.get(self.base.generation_pointer))
        return current, self.requested or next_generation(current)

    async def run(
        self, *, switch: bool = True, keep_old: bool = False, republish: bool = False
    ) -> ReplayProgress:
        """Build the target generation up to the topics' ends; optionally switch to it.

        With ``republish``, every user the replay touched then gets a fresh list,
        computed from the rebuilt state and published to the recommendations topic.
        """
        from freshet.wiring import limits_of, rules_of

        current, gen = await self.target()
        if gen == current:
            raise ValueError(f"{gen} is the generation being served; replay into a new one")
        keys = self.base.with_generation(gen)
        store = RedisStateStore(self.redis, keys, cluster=self.settings.redis_cluster)
        ingest = IngestProcessor(
            store,
            rules_of(self.settings),
            limits_of(self.settings),
            dead_letter_sink=_drop_letters,
            check_future=False,
        )
        catalog = CatalogProcessor(
            RedisCatalogStore(self.redis, keys),
            limits_of(self.settings),
            dead_letter_sink=_drop_letters,
        )
        progress = ReplayProgress(gen)
        consumer = await self._consumer()
        try:
            await self._catch_up(consumer, catalog.process, ingest.process, store, progress)
            if switch:
                await self.redis.set(pause_key(self.base), gen, ex=PAUSE_TTL_S)
                try:
                    await asyncio.sleep(0.2)  # batches that already passed the check finish
                    progress.phase = "final"
                    await self._catch_up(consumer, catalog.process, ingest.process, store, progress)
                    await self.redis.set(self.base.generation_pointer, gen)
                finally:
                    await self.redis.delete(pause_key(self.base))
                progress.phase = "switched"
                if not keep_old:
                    await self.drop_generation(current)
            if republish:
                progress.published = await self.republish(store, keys)
        finally:
            await consumer.stop()
        self._report(progress)
        return progress

    async def republish(self, store: RedisStateStore, keys: Keyspace, chunk: int = 256) -> int:
        """Fresh lists for every user the replay touched, stored and published."""
        from aiokafka import AIOKafkaProducer

        from schemas.topics import event_key
        from streams.core.ingest import TouchedUser
        from streams.core.publish import Committed, ListPublisher
        from streams.core.state_store import PartitionRead
        from streams.kafka_io.kafka_config import aiokafka_kwargs
        from streams.runtime.worker import build_live

        live = build_live(self.settings, store, RedisCatalogStore(self.redis, keys))
        live.images = None  # a generation of its own: leave the workers' catalog image be
        live.debounce.window_ms = 0
        await live.check_bundle()
        await live.sync_catalog()
        await live.sync_trending()
        producer = AIOKafkaProducer(**aiokafka_kwargs(kafka_of(self.settings), acks="all"))

        async def send(lists: Sequence[Committed]) -> None:
            for rec, raw in lists:
                await producer.send(self.topics.recommendations, raw, key=event_key(rec.user_id))

        publisher = ListPublisher(store, send)
        await producer.start()
        sent = 0
        try:
            for partition, users in sorted(self.touched.items()):
                ordered = sorted(users)
                for lo in range(0, len(ordered), chunk):
                    ids = tuple(ordered[lo : lo + chunk])
                    snap = (await store.read([PartitionRead(partition, ids)]))[partition]
                    touched = [
                        TouchedUser(uid, partition, rec.state, rec.embedding, None, 0)
                        for uid, rec in snap.users.items()
                    ]
                    refresh = await live.compute_async(touched, int(time.time() * 1000))
                    owner = dict.fromkeys(refresh.lists, partition)
                    sent += len(await publisher.commit([], owner, refresh))
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    async def drop_generation(self, generation: str) -> int:
        """Delete every key of a generation no longer served; returns how many."""
        pattern = self.base.with_generation(generation).partition_pattern()
        deleted = 0
        async for batch in _scan_batches(self.redis, pattern):
            deleted += int(await self.redis.unlink(*batch))
        return deleted

    async def _consumer(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        from streams.kafka_io.kafka_config import aiokafka_kwargs

        consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(kafka_of(self.settings), enable_auto_commit=False, group_id=None)
        )
        await consumer.start()
        return consumer

    async def _catch_up(
        self,
        consumer: Any,
        catalog_handler: Callable[[Sequence[SourceRecord]], Any],
        events_handler: Callable[[Sequence[SourceRecord]], Any],
        store: RedisStateStore,
        progress: ReplayProgress,
    ) -> None:
        """Apply both topics up to the end offsets measured now (catalog first)."""
        from aiokafka import TopicPartition

        for topic, handler in (
            (self.topics.catalog, catalog_handler),
            (self.topics.events, events_handler),
        ):
            parts = await asyncio.to_thread(self._partitions, topic)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                continue
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            starts = await self._starts(
                consumer, tps, store if topic == self.topics.events else None
            )
            for tp in tps:
                consumer.seek(tp, starts[tp])
            progress.phase = f"{progress.phase.split(':')[0]}:{topic}"
            todo = {tp: ends[tp] for tp in tps if starts[tp] < ends[tp]}
            progress.remaining = sum(ends[tp] - starts[tp] for tp in todo)
            while todo:
                got = await consumer.getmany(*todo, timeout_ms=1000, max_records=self.batch)
                records: list[SourceRecord] = []
                for tp, msgs in got.items():
                    for m in msgs:
                        if m.offset < todo.get(tp, -1):
                            records.append(
                                SourceRecord(
                                    m.topic,
                                    m.partition,
                                    m.offset,
                                    m.key,
                                    m.value or b"",
                                    m.timestamp,
                                )
                            )
                    if msgs and msgs[-1].offset >= ends[tp] - 1:
                        todo.pop(tp, None)
                if topic == self.topics.events:
                    for rec in records:
                        if rec.key:
                            users = self.touched.setdefault(rec.partition, set())
                            users.add(rec.key.decode("utf-8", "replace"))
                if not records:
                    continue
                await self.limiter.take(len(records))
                stats = await handler(records)
                progress.records += len(records)
                progress.applied += stats.applied
                progress.remaining = max(0, progress.remaining - len(records))
                self._report(progress)

    def _partitions(self, topic: str) -> set[int]:
        """The topic's partition ids (kafka-python: aiokafka only knows assigned ones)."""
        from kafka import KafkaConsumer

        from streams.kafka_io.kafka_config import kafka_python_kwargs

        # No group, so no offsets to commit: saying so keeps kafka-python from warning
        # "group_id is None: disabling auto-commit" on every replay.
        probe = KafkaConsumer(
            **kafka_python_kwargs(kafka_of(self.settings), group_id=None, enable_auto_commit=False)
        )
        try:
            return set(probe.partitions_for_topic(topic) or ())
        finally:
            probe.close()

    async def _starts(
        self, consumer: Any, tps: list[Any], store: RedisStateStore | None
    ) -> dict[Any, int]:
        """Where to begin: the time bound or the beginning, but past what is applied."""
        begins = await consumer.beginning_offsets(tps)
        starts = dict(begins)
        if self.since_ms is not None:
            found = await consumer.offsets_for_times({tp: self.since_ms for tp in tps})
            ends = await consumer.end_offsets(tps)
            starts = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in tps}
        if store is not None:
            from streams.core.state_store import PartitionRead

            snaps = await store.read([PartitionRead(tp.partition, ()) for tp in tps])
            for tp in tps:
                starts[tp] = max(starts[tp], snaps[tp.partition].watermark + 1)
        return starts

    def _report(self, progress: ReplayProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)


async def _scan_batches(redis: Any, pattern: str, count: int = 1000) -> Any:
    """Yield batches of keys matching ``pattern``, for deletion.

    ``scan_iter`` walks every master of a Redis Cluster (a plain SCAN sees one node).
    """
    batch: list[Any] = []
    async for key in redis.scan_iter(match=pattern, count=count):
        batch.append(key)
        if len(batch) >= count:
            yield batch
            batch = []
    if batch:
        yield batch
