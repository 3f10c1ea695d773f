"""Wire one worker process: Faust app, Redis stores, processors, sinks and metrics."""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust

from freshet.settings import Settings
from freshet.wiring import batch_lanes_of, limits_of, live_recommender, redis_of, rules_of
from inference.ann_index import set_search_threads
from inference.mmr_kernel import warm_up as warm_up_mmr
from inference.thread_limits import limit_blas_threads
from schemas.topics import Topics
from streams.core.catalog import CatalogProcessor
from streams.core.ingest import BatchStats, IngestProcessor, Refresher, SourceRecord
from streams.core.publish import ListPublisher
from streams.redis_io.catalog_store import RedisCatalogStore
from streams.redis_io.generation import GenerationFollower
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import async_redis
from streams.redis_io.redis_state_store import RedisStateStore
from streams.redis_io.state_guard import add_state_guard
from streams.runtime.catalog_preload import Handover, PreloadedSnapshot
from streams.runtime.collector import served_with_catalog, settle_after_swaps
from streams.runtime.faust_app import add_batch_agent, create_app
from streams.runtime.list_sinks import KafkaSinks
from streams.runtime.live_recommender import LiveRecommender
from streams.runtime.live_timers import add_live_timers, error_line
from streams.runtime.metrics import WorkerMetrics, add_metrics_timer

__all__ = ["KafkaSinks", "Worker", "build_live", "build_worker", "limits_of", "rules_of"]

log = logging.getLogger("freshet.worker")


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
freed by reference counting before it comes. The count is net of every deallocation,
old or frozen objects' included: while batches replace users' states it stays low and
the young generation grows past it (``bench/gc_gap_bench.py --young-sizes`` saw young
passes over 19-165k objects with the count at 2,000)."""


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
        catalog_wait=catalog.wait_log,
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
        log.warning("batch failed (attempt %d), retrying: %s", attempt, error_line(exc))

    def switch_generation(generation: str) -> None:
        log.warning("switching to Redis generation %s", generation)
        store.keys = keys.with_generation(generation)
        catalog_store.keys = keys.with_generation(generation)
        if live is not None:
            live.restart_catalog()  # read the new generation's catalog afresh

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
        lanes=batch_lanes_of(settings),
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
        recommender = live

        async def settle_collector() -> None:
            await settle_after_swaps(lambda: served_with_catalog(recommender))

        app.task(settle_collector)
    add_metrics_timer(app, metrics, [topics.events, topics.catalog], settings.metrics_port)
    add_state_guard(app, redis, keys)  # logs an ERROR if Redis comes back without our state
    return Worker(settings, app, redis, ingest, catalog, live, metrics)
