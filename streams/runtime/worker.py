"""Wire one worker process: Faust app, Redis stores, processors, sinks and metrics."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.partitioner import murmur2

from freshet.settings import Settings
from freshet.wiring import limits_of, live_recommender, redis_of, rules_of
from inference.ann_index import set_search_threads
from inference.mmr_kernel import warm_up as warm_up_mmr
from inference.thread_limits import limit_blas_threads
from schemas.codec import encode
from schemas.dead_letter import DeadLetter
from schemas.topics import Topics, event_key
from streams.core.catalog import CatalogProcessor
from streams.core.ingest import BatchStats, IngestProcessor, Refresher, SourceRecord
from streams.core.publish import Committed, ListPublisher
from streams.redis_io.catalog_store import RedisCatalogStore
from streams.redis_io.generation import GenerationFollower
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import async_redis
from streams.redis_io.redis_state_store import RedisStateStore
from streams.redis_io.state_guard import add_state_guard
from streams.runtime.catalog_preload import Handover, PreloadedSnapshot
from streams.runtime.faust_app import add_batch_agent, create_app
from streams.runtime.live_recommender import LiveRecommender
from streams.runtime.metrics import WorkerMetrics, add_metrics_timer

__all__ = ["KafkaSinks", "Worker", "build_live", "build_worker", "limits_of", "rules_of"]

log = logging.getLogger("freshet.worker")


class KafkaSinks:
    """Dead letters and lists out through the Faust app's producer.

    ``lists`` and ``dead_letters`` return once the broker has the records. ``enqueue_lists``
    returns once they are handed to the producer; ``delivered()`` then gives an awaitable
    for everything enqueued since the last call (the batch agent acks after it). The agent
    calls it right after each handler returns, and the handler does not await after its
    ``enqueue_lists``, so with lanes side by side each lane's call holds its own sends.
    """

    def __init__(self, app: faust.App, topics: Topics) -> None:
        self.app = app
        self.topics = topics
        self._sent: list[asyncio.Future[list[Any]]] = []  # hand-overs not yet awaited
        self._handing: asyncio.Future[list[Any]] | None = None  # the latest hand-over

    async def _send(self, topic: str, pairs: Sequence[tuple[bytes | None, bytes]]) -> list[Any]:
        producer = self.app.producer
        return [await producer.send(topic, k, v, None, None, None) for k, v in pairs]

    def _send_lists(self, lists: Sequence[Committed]) -> asyncio.Future[list[Any]]:
        """Lists into the producer as record batches, one per partition; returns a task
        that ends once they are handed over, with one delivery future per batch.

        One batch per partition, where a send per list cost a coroutine, a partitioner
        call on the metadata, a future and Faust's send hooks per list. A list's
        partition is its key's, by the producer's own default rule (murmur2 of the key
        over all partitions), and each goes as committed: the bytes Redis holds.

        The hand-over runs in a task chained after the previous call's, so calls reach
        the producer in call order (a user's lists stay in order) without the caller
        waiting: aiokafka lets a partition hold one batch waiting to be sent, and a
        second ``send_batch`` waits until the first is on its way, which under load
        is a produce round trip.
        """
        faust_producer: Any = self.app.producer
        producer = faust_producer._ensure_producer()  # the aiokafka producer under it
        topic = self.topics.recommendations
        previous = self._handing

        async def hand_over() -> list[Any]:
            if previous is not None:
                # Its failure, or its cancelling, is its own caller's: wait() never raises,
                # where awaiting a cancelled one would cancel this one and each after it.
                await asyncio.wait({previous})
            parts = sorted(await producer.partitions_for(topic))
            by_part: dict[int, list[tuple[bytes, bytes]]] = {}
            for rec, raw in lists:
                key = event_key(rec.user_id)
                p = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
                by_part.setdefault(p, []).append((key, raw))
            sent: list[Any] = []
            for partition, pairs in by_part.items():
                batch = producer.create_batch()
                for key, raw in pairs:
                    if batch.append(key=key, value=raw, timestamp=None) is None:  # full
                        sent.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        batch.append(key=key, value=raw, timestamp=None)  # a first one fits
                sent.append(await producer.send_batch(batch, topic, partition=partition))
            return sent

        self._handing = task = asyncio.ensure_future(hand_over())
        return task

    async def enqueue_lists(self, lists: Sequence[Committed]) -> None:
        self._sent.append(self._send_lists(lists))

    def delivered(self) -> Awaitable[Any]:
        """An awaitable that ends when every list enqueued so far is on the broker.

        A batch that enqueued once (every batch at light load) is followed by done
        callbacks on its hand-over and its deliveries, not a task of its own: a task
        cost a step of the loop each time it woke.
        """
        sent, self._sent = self._sent, []
        if len(sent) == 1:
            return _chained(sent[0])
        return asyncio.ensure_future(_on_broker(sent))

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        sent = await self._send(self.topics.dead_letter, [(d.key, encode(d)) for d in letters])
        await asyncio.gather(*sent)

    async def lists(self, lists: Sequence[Committed]) -> None:
        await _on_broker([self._send_lists(lists)])


def _chained(handing: asyncio.Future[list[Any]]) -> asyncio.Future[None]:
    """A future that ends as ``_on_broker([handing])`` does: once the hand-over is done
    and the broker has each batch it handed over; it fails as the first of them fails."""
    out: asyncio.Future[None] = handing.get_loop().create_future()

    def settle(done: asyncio.Future[Any]) -> None:
        if out.done():
            return
        if done.cancelled():
            out.cancel()
        elif (exc := done.exception()) is not None:
            out.set_exception(exc)
        elif done is handing:
            batches = done.result()
            if not batches:
                out.set_result(None)
            else:
                on_broker = batches[0] if len(batches) == 1 else asyncio.gather(*batches)
                on_broker.add_done_callback(settle)
        else:
            out.set_result(None)

    handing.add_done_callback(settle)
    return out


async def _on_broker(handing: Sequence[asyncio.Future[list[Any]]]) -> None:
    """Wait for hand-overs, then for every batch they handed to the broker."""
    for task in handing:
        await asyncio.gather(*await task)


@dataclass
class Worker:
    """A configured worker: call ``run()`` to start consuming."""

    settings: Settings
    app: faust.App
    redis: Any
    ingest: IngestProcessor
    catalog: CatalogProcessor
    live: LiveRecommender | None = None
    metrics: WorkerMetrics | None = None

    def run(self) -> None:
        """Run until stopped (SIGINT/SIGTERM), through Faust's worker."""
        tune_collector()
        worker = faust.Worker(self.app, loglevel=self.settings.log_level.lower())
        worker.execute_from_commandline()


YOUNG_COLLECTION_EVERY = 10_000
"""Net allocations of container objects between two young collections (CPython: 700,
a young pass about every 30 events in the worker: 2,262 in a run of about 70k). The
objects a pass finds alive are the same either way; the many short-lived ones are
freed by reference counting before it comes."""


def tune_collector() -> None:
    """Set the garbage collector for a long-lived streaming process, once, at start-up.

    What start-up built (the modules: numpy, numba, Faust, redis-py and ours, about
    130k objects; the app and the stores) lives as long as the worker, yet each full
    collection walked it again. It is frozen, out of every later pass, after the
    garbage is collected (nothing dead is kept); and young passes come every
    ``YOUNG_COLLECTION_EVERY`` allocations. Measured by ``gc.callbacks`` in the worker
    while it drained backlogs (ingest only, 100k items, loaded host): the collector took
    5.7-7.2 % of its CPU before, 3.4-5.0 % frozen, 1.1-2.4 % frozen with young passes
    every 10,000.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


def build_live(
    settings: Settings,
    store: RedisStateStore,
    catalog: RedisCatalogStore,
    handover: Handover | None = None,
) -> LiveRecommender:
    """The real-time path, reading trending, counts and catalog changes from Redis
    (its first catalog read takes ``handover``, a bulk load's records, when given)."""
    partitions = list(range(settings.topic_partitions))

    async def trending(k: int) -> list[tuple[str, float]]:
        return await store.trending(partitions, k)

    async def counts() -> dict[str, int]:
        return await store.counts(partitions)

    async def changes() -> tuple[str, ...]:
        return await store.change_token(partitions)

    return live_recommender(
        settings,
        trending_source=trending,
        counts_source=counts,
        catalog_log=catalog.read_log,
        change_source=changes,
        catalog_snapshot=catalog
        if handover is None
        else PreloadedSnapshot(catalog, lambda: catalog.keys.generation, handover),
    )


def build_worker(
    settings: Settings,
    *,
    refresher: Refresher | None = None,
    keyspace: Keyspace | None = None,
    app_id: str | None = None,
    handover: Handover | None = None,
) -> Worker:
    """Assemble a worker from settings; nothing connects until it runs (``handover``:
    the catalog a bulk load stored, for the first catalog read)."""
    topics = Topics(settings.topic_prefix)
    app = create_app(settings, app_id=app_id)
    redis = async_redis(redis_of(settings))
    keys = keyspace or Keyspace(settings.redis_namespace)
    store = RedisStateStore(
        redis,
        keys,
        cluster=settings.redis_cluster,
        trending_half_life_s=settings.trending_half_life_s,
    )
    catalog_store = RedisCatalogStore(redis, keys)
    sinks = KafkaSinks(app, topics)
    live: LiveRecommender | None = None
    if refresher is None and settings.realtime:
        set_search_threads(settings.ann_threads)
        log.info("BLAS threads: %s", limit_blas_threads(settings.blas_threads))
        warm_up_mmr()  # compile the MMR kernel now, not inside the first batch
        live = build_live(settings, store, catalog_store, handover)
        refresher = live
    ingest = IngestProcessor(
        store,
        rules_of(settings),
        limits_of(settings),
        dead_letter_sink=sinks.dead_letters,
        list_sink=sinks.enqueue_lists,  # the agent acks once they are delivered
        refresher=refresher,
    )
    catalog = CatalogProcessor(
        catalog_store, limits_of(settings), dead_letter_sink=sinks.dead_letters
    )

    metrics = WorkerMetrics(live=None if live is None else live.scorer, store=store)

    def on_retry(exc: BaseException, attempt: int) -> None:
        metrics.observe_retry()
        log.warning("batch failed (attempt %d), retrying: %s", attempt, _safe(exc))

    def switch_generation(generation: str) -> None:
        log.warning("switching to Redis generation %s", generation)
        store.keys = keys.with_generation(generation)
        catalog_store.keys = keys.with_generation(generation)
        if live is not None:
            live.catalog_cursor = "0"  # re-read the new generation's catalog log

    follower = GenerationFollower(redis, settings.redis_namespace, switch_generation)
    store.guard = follower  # an ingest batch's generation check rides in its state read

    async def catalog_batch(records: Sequence[SourceRecord]) -> BatchStats:
        await follower.before_batch()
        return await catalog.process(records)

    add_batch_agent(
        app,
        topics.events,
        ingest.process,
        name="ingest",
        max_events=settings.batch_max_events,
        within_s=settings.batch_max_ms / 1000.0,
        on_batch=metrics.observe_events,
        on_retry=on_retry,
        delivered=sinks.delivered,
        lanes=settings.batch_lanes,
    )
    add_batch_agent(
        app,
        topics.catalog,
        catalog_batch,
        name="catalog",
        max_events=settings.batch_max_events,
        within_s=settings.batch_max_ms / 1000.0,
        on_batch=metrics.observe_catalog,
        on_retry=on_retry,
    )
    if live is not None:
        publisher = ListPublisher(store, sinks.lists)
        add_live_timers(app, live, publisher, on_published=metrics.observe_published)
    add_metrics_timer(app, metrics, [topics.events, topics.catalog], settings.metrics_port)
    add_state_guard(app, redis, keys)  # logs an ERROR if Redis comes back without our state
    return Worker(settings, app, redis, ingest, catalog, live, metrics)


def add_live_timers(
    app: faust.App,
    live: LiveRecommender,
    publisher: ListPublisher,
    on_published: Callable[[list[int]], None] | None = None,
) -> None:
    """Background duties of the real-time path, as app tasks that never raise.

    Each is a plain loop that sleeps ``interval`` between runs, not a Faust timer: a
    Faust timer tick costs several times a plain sleep (its drift bookkeeping and
    stop checks), and the 50 ms debounce flush ticked 20 times a second on an idle
    worker. ``on_published`` gets the source record timestamps of each trailing-edge
    list sent.
    """

    def guarded(name: str, interval: float, fn: Callable[[], Awaitable[Any]]) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await fn()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("%s failed: %s", name, _safe(exc))

        loop.__name__ = loop.__qualname__ = f"live_{name}"
        app.task(loop)

    async def flush_debounced() -> None:
        await live.owing()  # no tick while no user is owed a list
        served = await live.flush(publisher, int(time.time() * 1000))
        if served and on_published is not None:
            on_published([u.source_timestamp_ms for u in served])

    async def first_load() -> None:
        await live.check_bundle()
        await live.sync_catalog()

    guarded("bundle", 2.0, live.check_bundle)
    guarded("catalog", 0.5, live.sync_catalog)
    guarded("trending", 1.0, live.sync_trending)
    guarded("popularity", 10.0, live.sync_popularity)
    guarded("debounce", max(0.05, live.debounce.window_ms / 4000.0), flush_debounced)

    @app.task
    async def warm_up() -> None:
        try:
            await first_load()
            await live.sync_trending()
        except Exception as exc:
            log.warning("warm-up failed: %s", _safe(exc))


def _safe(exc: BaseException) -> str:
    """An error line for logs: type and message, cut short."""
    return f"{type(exc).__name__}: {str(exc)[:300]}"
