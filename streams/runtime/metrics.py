"""Prometheus metrics of one worker: what it consumed, published, refused and how fast.

``WorkerMetrics`` owns a private registry (so tests and several workers in one process
never collide) and is fed from three places: the agents' ``on_batch`` / ``on_retry``
hooks, the debounce flush (trailing-edge lists), and a 5 s Faust timer that reads
consumer lag. With ``FRESHET_METRICS_PORT`` > 0 the registry is served over HTTP at
``/metrics``.

Counters that the worker already keeps as running totals (Redis round trips, lists by
strategy, bundle swaps, the scorer's timings) are mirrored by adding the difference
since the last read. That mirror runs when the registry is read and on the 5 s timer,
not per micro-batch. A micro-batch's own figures (outcomes, stage times, its lists'
latencies) are queued as they are and observed by the same mirror: at light load every
batch runs cold, and a dozen locked observes cost it more than one append.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    start_http_server,
)

from streams.core.ingest import STAGES, BatchStats
from streams.runtime.metric_sources import (
    LOOP_LAG_BUCKETS_S,
    LOOP_LAG_WARN_S,
    LOOP_PROBE_S,
    consumer_lag,
    watch_loop_lag,
)

if TYPE_CHECKING:
    import faust

    from streams.core.live_scorer import LiveScorer

log = logging.getLogger("freshet.metrics")

__all__ = [
    "LOOP_LAG_BUCKETS_S",
    "LOOP_LAG_WARN_S",
    "LOOP_PROBE_S",
    "WorkerMetrics",
    "add_metrics_timer",
    "consumer_lag",
    "watch_loop_lag",
]

LATENCY_BUCKETS_S = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
)  # fmt: skip
"""Event-to-publish buckets: fine below 50 ms, where a healthy worker lives, then the
debounce window (200 ms by default) and backlog territory up to 5 s."""

COMPUTE_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
"""Per-micro-batch compute time (encoder, re-ranking)."""

EVENT_OUTCOMES = ("applied", "duplicate", "redelivered", "dead_lettered")
STRATEGIES = ("personalised", "cold_start", "model_free")

TIMER_INTERVAL_S = 5.0


class WorkerMetrics:
    """The worker's metrics in a private registry; see the module docstring."""

    def __init__(
        self,
        *,
        live: LiveScorer | None = None,
        store: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.live = live
        self.store = store
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        # First in the registry, so every read mirrors the running totals before the
        # metrics that hold them are read (a scrape's thread or the timer).
        self.registry.register(_Mirror(self))
        self._mirroring = threading.Lock()
        self._batches: deque[tuple[BatchStats, float]] = deque()  # (stats, seen at ms)
        self._totals: dict[str, int] = {}
        self._lag_labels: set[tuple[str, str]] = set()
        self._server: Any | None = None
        self._model_version = "none"
        reg = self.registry

        self.events = Counter(
            "freshet_events",
            "Interaction records by outcome (applied, duplicate, redelivered, dead_lettered).",
            ["outcome"],
            registry=reg,
        )
        self.catalog_events = Counter(
            "freshet_catalog_events",
            "Catalog records by outcome (applied, dead_lettered).",
            ["outcome"],
            registry=reg,
        )
        self.dead_letters = Counter(
            "freshet_dead_letters",
            "Records sent to the dead-letter topic, by source stream.",
            ["source"],
            registry=reg,
        )
        self.batches = Counter(
            "freshet_batches", "Micro-batches processed, by agent.", ["agent"], registry=reg
        )
        self.retries = Counter(
            "freshet_batch_retries",
            "Batch attempts that failed (Redis or Kafka) and were retried.",
            registry=reg,
        )
        self.published = Counter(
            "freshet_lists_published",
            "Recommendation lists published (batch and debounce trailing edge).",
            registry=reg,
        )
        self.latency = Histogram(
            "freshet_event_to_publish_seconds",
            "Publish time minus the source record's Kafka timestamp, per published list.",
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.lists = Counter(
            "freshet_lists",
            "Lists computed by the real-time path, by strategy (fallback share).",
            ["strategy"],
            registry=reg,
        )
        self.encoder = Histogram(
            "freshet_encoder_seconds",
            "User-vector time per micro-batch: ONNX encoder (fold-in without a bundle).",
            buckets=COMPUTE_BUCKETS_S,
            registry=reg,
        )
        self.recommend = Histogram(
            "freshet_recommend_seconds",
            "Candidates, filters and re-ranking time per micro-batch.",
            buckets=COMPUTE_BUCKETS_S,
            registry=reg,
        )
        self.stage = Histogram(
            "freshet_stage_seconds",
            "Time per micro-batch in each stage of the ingest path (its latency budget).",
            ["stage"],
            buckets=COMPUTE_BUCKETS_S,
            registry=reg,
        )
        self.lock_hold = Histogram(
            "freshet_lock_hold_seconds",
            "How long housekeeping (bundle, catalog, trending, popularity) held the scoring"
            " lock, per hold.",
            ["duty"],
            buckets=COMPUTE_BUCKETS_S,
            registry=reg,
        )
        self.model = Info("freshet_model", "The model bundle being served.", registry=reg)
        self.bundle_swaps = Counter(
            "freshet_bundle_swaps", "Model bundles swapped in.", registry=reg
        )
        self.bundle_refusals = Counter(
            "freshet_bundle_refusals", "Model bundles refused as invalid.", registry=reg
        )
        self.debounce_pending = Gauge(
            "freshet_debounce_pending",
            "Users waiting for a trailing-edge refresh.",
            registry=reg,
        )
        self.catalog_items = Gauge(
            "freshet_catalog_items",
            "Items in the real-time path's online catalog (removed ones included).",
            registry=reg,
        )
        self.catalog_records = Gauge(
            "freshet_catalog_records",
            "Catalog records applied to the online catalog (the newest per item).",
            registry=reg,
        )
        if live is not None:  # read at each scrape, so a start-up is timed to the scrape
            self.catalog_items.set_function(lambda: live.catalog.size)
            self.catalog_records.set_function(lambda: len(live.records))
        self.redis_round_trips = Counter(
            "freshet_redis_round_trips", "Round trips to Redis by the state store.", registry=reg
        )
        self.count_repairs = Counter(
            "freshet_item_count_repairs",
            "Item counts the state write found unusable (not an integer, past int64) and"
            " repaired: set to the batch's increment, or clamped.",
            registry=reg,
        )
        self.loop_lag = Histogram(
            "freshet_event_loop_lag_seconds",
            "How late the worker's event loop woke a 1 s probe: a loop step this long also"
            " held Kafka's heartbeat and the micro-batches.",
            buckets=LOOP_LAG_BUCKETS_S,
            registry=reg,
        )
        self.consumer_lag = Gauge(
            "freshet_consumer_lag",
            "Log end offset minus the committed offset, per assigned partition.",
            ["topic", "partition"],
            registry=reg,
        )
        # Labelled children bound once: a ``labels()`` lookup per use was most of the
        # cost of observing a batch.
        self._outcome = {outcome: self.events.labels(outcome) for outcome in EVENT_OUTCOMES}
        self._strategy = {strategy: self.lists.labels(strategy) for strategy in STRATEGIES}
        self._lock_hold: dict[str, Any] = {}
        self._stage = {stage: self.stage.labels(stage) for stage in STAGES}
        self._ingest_batches = self.batches.labels("ingest")
        self._ingest_dead_letters = self.dead_letters.labels("events")
        self.model.info({"version": "none"})

    # --- feeding ---------------------------------------------------------------------
    def observe_events(self, stats: BatchStats) -> None:
        """One interaction batch, queued as it is (with the time its lists' latency is
        taken at) for the next read or timer tick (``observe_batch``)."""
        self._batches.append((stats, self.clock() * 1000.0))

    def observe_batch(self, stats: BatchStats, now_ms: float | None = None) -> None:
        """One interaction batch into the metrics: outcomes, its published lists (their
        latency to ``now_ms``, default now), its stage times."""
        self._ingest_batches.inc()
        outcome = self._outcome
        for name, n in (
            ("applied", stats.applied),
            ("duplicate", stats.duplicates),
            ("redelivered", stats.redelivered),
            ("dead_lettered", stats.dead_lettered),
        ):
            if n:
                outcome[name].inc(n)
        if stats.dead_lettered:
            self._ingest_dead_letters.inc(stats.dead_lettered)
        self.observe_published(stats.published_source_ts_ms, now_ms)
        for stage, seconds in stats.stages_s.items():
            child = self._stage.get(stage)
            (child or self.stage.labels(stage)).observe(seconds)

    def observe_catalog(self, stats: BatchStats) -> None:
        """One catalog batch."""
        self.batches.labels("catalog").inc()
        self.catalog_events.labels("applied").inc(stats.applied)
        self.catalog_events.labels("dead_lettered").inc(stats.dead_lettered)
        self.dead_letters.labels("catalog").inc(stats.dead_lettered)

    def observe_retry(self, exc: BaseException | None = None, attempt: int = 0) -> None:
        """A failed batch attempt (the signature fits ``run_until_done``'s hook)."""
        self.retries.inc()

    def observe_published(self, source_ts_ms: Sequence[int], now_ms: float | None = None) -> None:
        """Lists published (at ``now_ms``, default now), given their source records'
        timestamps (ms; 0: unknown)."""
        if not source_ts_ms:
            return
        self.published.inc(len(source_ts_ms))
        if now_ms is None:
            now_ms = self.clock() * 1000.0
        for ts in source_ts_ms:
            if ts > 0:
                self.latency.observe(max(0.0, now_ms - ts) / 1000.0)

    def collect(self) -> None:
        """Mirror the real-time path's counters and the store's round trips (called
        when the registry is read and by the timer; safe from either thread)."""
        with self._mirroring:
            self._collect()

    def _collect(self) -> None:
        batches = self._batches
        while batches:
            stats, seen_ms = batches.popleft()
            self.observe_batch(stats, seen_ms)
        if self.store is not None:
            self._advance(self.redis_round_trips, "round_trips", self.store.round_trips)
            repairs = getattr(self.store, "count_repairs", 0)
            self._advance(self.count_repairs, "count_repairs", repairs)
        live = self.live
        if live is None:
            return
        s = live.stats
        strategy = self._strategy
        self._advance(strategy["cold_start"], "cold_start", s.cold_start)
        self._advance(strategy["model_free"], "model_free", s.model_free)
        personalised = s.lists - s.cold_start - s.model_free
        self._advance(strategy["personalised"], "personalised", personalised)
        self._advance(self.bundle_swaps, "swaps", s.bundle_swaps)
        self._advance(self.bundle_refusals, "refusals", s.bundle_refusals)
        self.debounce_pending.set(s.deferred)
        encoder_ms, recommend_ms = s.take_timings()
        for ms in encoder_ms:
            self.encoder.observe(ms / 1000.0)
        for ms in recommend_ms:
            self.recommend.observe(ms / 1000.0)
        while s.lock_hold_ms:
            duty, ms = s.lock_hold_ms.popleft()
            child = self._lock_hold.get(duty)
            if child is None:
                child = self._lock_hold[duty] = self.lock_hold.labels(duty)
            child.observe(ms / 1000.0)
        version = live.model_version or "none"
        if version != self._model_version:
            self._model_version = version
            self.model.info({"version": version})

    def set_lag(self, lag: dict[tuple[str, int], int]) -> None:
        """Replace the per-partition lag; partitions no longer assigned disappear."""
        labels = {(topic, str(p)) for topic, p in lag}
        for gone in self._lag_labels - labels:
            self.consumer_lag.remove(*gone)
        for (topic, p), behind in lag.items():
            self.consumer_lag.labels(topic, str(p)).set(behind)
        self._lag_labels = labels

    def _advance(self, counter: Any, key: str, total: int) -> None:
        # A source total that went down (a restarted component) restarts the mirror.
        last = self._totals.get(key, 0)
        if total > last:
            counter.inc(total - last)
        self._totals[key] = total

    # --- exposing --------------------------------------------------------------------
    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` over HTTP in a daemon thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        """Stop the HTTP server, if serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Mirror:
    """A collector with no metrics of its own: reading the registry runs the mirror."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        try:
            self.metrics.collect()
        except Exception:  # a scrape must never fail on the mirror
            log.exception("metrics mirror failed")
        return []


def add_metrics_timer(
    app: faust.App, metrics: WorkerMetrics, topics: Collection[str], port: int = 0
) -> None:
    """A 5 s Faust timer for lag and live counters, the loop's lag probe, and the HTTP
    endpoint when ``port`` > 0."""

    async def loop_lag() -> None:
        await watch_loop_lag(metrics.loop_lag.observe)

    app.task(loop_lag)

    async def metrics_tick() -> None:
        try:
            metrics.set_lag(await consumer_lag(app, topics))
        except Exception as exc:  # no assignment yet, or a rebalance in progress
            log.debug("consumer lag unavailable: %s", exc)
        metrics.collect()

    app.timer(TIMER_INTERVAL_S, name="metrics")(metrics_tick)
    if port > 0:

        async def serve_metrics() -> None:
            bound = metrics.serve(port)
            log.info("metrics on http://0.0.0.0:%d/metrics", bound)

        app.task(serve_metrics)
