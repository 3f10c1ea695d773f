"""The worker's Prometheus metrics: known values in, known samples out, and real HTTP."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP

from streams.core.ingest import BatchStats
from streams.runtime.live_recommender import LiveStats
from streams.runtime.metrics import WorkerMetrics, consumer_lag, watch_loop_lag

NOW_S = 1_700_000_000.0
NOW_MS = int(NOW_S * 1000)


def sample(m: WorkerMetrics, name: str, **labels: str) -> float:
    value = m.registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


@dataclass
class FakeCatalog:
    size: int = 0


@dataclass
class FakeLive:
    stats: LiveStats = field(default_factory=LiveStats)
    model_version: str | None = None
    catalog: FakeCatalog = field(default_factory=FakeCatalog)
    records: dict[str, object] = field(default_factory=dict)


@dataclass
class FakeStore:
    round_trips: int = 0


def test_event_batch_counts_outcomes_and_latency_per_published_list() -> None:
    m = WorkerMetrics(clock=lambda: NOW_S)
    stats = BatchStats(
        records=11,
        applied=5,
        duplicates=2,
        redelivered=1,
        dead_lettered=3,
        published=3,
        # 10 ms and 1 s old; 0 is a record without a timestamp (counted, not timed)
        published_source_ts_ms=[NOW_MS - 10, NOW_MS - 1000, 0],
    )
    m.observe_events(stats)
    m.observe_events(BatchStats(applied=1))

    assert sample(m, "freshet_events_total", outcome="applied") == 6
    assert sample(m, "freshet_events_total", outcome="duplicate") == 2
    assert sample(m, "freshet_events_total", outcome="redelivered") == 1
    assert sample(m, "freshet_events_total", outcome="dead_lettered") == 3
    assert sample(m, "freshet_dead_letters_total", source="events") == 3
    assert sample(m, "freshet_batches_total", agent="ingest") == 2
    assert sample(m, "freshet_lists_published_total") == 3
    h = "freshet_event_to_publish_seconds"
    assert sample(m, f"{h}_count") == 2
    assert sample(m, f"{h}_sum") == pytest.approx(1.010)
    assert sample(m, f"{h}_bucket", le="0.0075") == 0
    assert sample(m, f"{h}_bucket", le="0.01") == 1
    assert sample(m, f"{h}_bucket", le="0.75") == 1
    assert sample(m, f"{h}_bucket", le="1.0") == 2


def test_future_source_timestamp_counts_as_zero_latency() -> None:
    m = WorkerMetrics(clock=lambda: NOW_S)
    m.observe_published([NOW_MS + 500])
    assert sample(m, "freshet_event_to_publish_seconds_bucket", le="0.001") == 1


def test_catalog_batches_and_retries() -> None:
    m = WorkerMetrics()
    m.observe_catalog(BatchStats(records=4, applied=3, dead_lettered=1))
    m.observe_retry(RuntimeError("redis down"), 1)
    m.observe_retry()
    assert sample(m, "freshet_catalog_events_total", outcome="applied") == 3
    assert sample(m, "freshet_catalog_events_total", outcome="dead_lettered") == 1
    assert sample(m, "freshet_dead_letters_total", source="catalog") == 1
    assert sample(m, "freshet_batch_retries_total") == 2


def test_live_counters_are_mirrored_by_difference() -> None:
    live, store = FakeLive(), FakeStore()
    m = WorkerMetrics(live=live, store=store)  # type: ignore[arg-type]
    m.collect()
    assert sample(m, "freshet_model_info", version="none") == 1

    live.stats.lists, live.stats.cold_start, live.stats.model_free = 10, 3, 2
    live.stats.bundle_swaps, live.stats.deferred = 1, 7
    live.stats.encoder_ms.extend([2.0, 4.0])
    live.stats.recommend_ms.extend([30.0])
    live.model_version = "v7"
    live.catalog.size = 500
    store.round_trips = 40
    m.collect()
    live.stats.lists, live.stats.cold_start = 14, 4
    store.round_trips = 46
    m.collect()  # timings were taken once; nothing new to observe

    assert sample(m, "freshet_lists_total", strategy="cold_start") == 4
    assert sample(m, "freshet_lists_total", strategy="model_free") == 2
    assert sample(m, "freshet_lists_total", strategy="personalised") == 8
    assert sample(m, "freshet_bundle_swaps_total") == 1
    assert sample(m, "freshet_bundle_refusals_total") == 0
    assert sample(m, "freshet_debounce_pending") == 7
    assert sample(m, "freshet_catalog_items") == 500
    assert sample(m, "freshet_redis_round_trips_total") == 46
    assert sample(m, "freshet_encoder_seconds_count") == 2
    assert sample(m, "freshet_encoder_seconds_sum") == pytest.approx(0.006)
    assert sample(m, "freshet_recommend_seconds_count") == 1
    assert sample(m, "freshet_model_info", version="v7") == 1
    assert m.registry.get_sample_value("freshet_model_info", {"version": "none"}) is None


def test_a_scrape_mirrors_the_running_totals_and_a_batch_does_not() -> None:
    live, store = FakeLive(), FakeStore()
    m = WorkerMetrics(live=live, store=store)  # type: ignore[arg-type]
    m.observe_events(BatchStats(applied=1))
    live.stats.lists, live.stats.cold_start = 9, 4
    live.stats.encoder_ms.extend([2.0, 4.0])
    store.round_trips = 12
    # A batch leaves the mirror to the reader: its totals are read when scraped.
    m.observe_events(BatchStats(applied=1))
    assert store.round_trips == 12 and len(live.stats.encoder_ms) == 2
    text = m.exposition().decode()
    assert 'freshet_lists_total{strategy="cold_start"} 4.0' in text
    assert 'freshet_lists_total{strategy="personalised"} 5.0' in text
    assert "freshet_redis_round_trips_total 12.0" in text
    assert "freshet_encoder_seconds_count 2.0" in text
    assert not live.stats.encoder_ms  # taken once, by the scrape
    assert sample(m, "freshet_lists_total", strategy="cold_start") == 4  # read again: same


def test_a_batch_is_observed_when_read_with_the_latency_of_its_own_time() -> None:
    now = [NOW_S]
    m = WorkerMetrics(clock=lambda: now[0])
    stats = BatchStats(applied=2, published=1, published_source_ts_ms=[NOW_MS - 10])
    stats.stages_s = {"decode": 0.0004, "score": 0.002}
    m.observe_events(stats)
    # The batch touched no metric: its figures wait for the reader, as they were.
    assert m._stage["decode"]._sum.get() == 0.0 and m.latency._sum.get() == 0.0
    assert m._outcome["applied"]._value.get() == 0.0
    now[0] = NOW_S + 5.0  # read 5 s later: the latency is still the batch's 10 ms
    assert sample(m, "freshet_event_to_publish_seconds_sum") == pytest.approx(0.010)
    assert sample(m, "freshet_events_total", outcome="applied") == 2
    assert sample(m, "freshet_stage_seconds_sum", stage="score") == pytest.approx(0.002)
    assert sample(m, "freshet_stage_seconds_count", stage="decode") == 1  # read again: same
    m.collect()  # the timer's tick with nothing queued changes nothing
    assert sample(m, "freshet_lists_published_total") == 1


def test_lag_gauge_follows_the_assignment() -> None:
    m = WorkerMetrics()
    m.set_lag({("p.events", 0): 12, ("p.events", 1): 0})
    m.set_lag({("p.events", 1): 5})
    assert sample(m, "freshet_consumer_lag", topic="p.events", partition="1") == 5
    assert (
        m.registry.get_sample_value("freshet_consumer_lag", {"topic": "p.events", "partition": "0"})
        is None
    )


class FakeConsumer:
    def __init__(self, ends: dict[TP, int | None], positions: dict[TP, int]) -> None:
        self.ends = ends
        self.positions = positions

    def assignment(self) -> set[TP]:
        return set(self.ends)

    def highwater(self, tp: TP) -> int | None:
        return self.ends[tp]

    async def position(self, tp: TP) -> int | None:
        return self.positions.get(tp)


def test_consumer_lag_is_end_minus_committed_else_position() -> None:
    ev0, ev1, ev2, cat0 = TP("p.events", 0), TP("p.events", 1), TP("p.events", 2), TP("p.cat", 0)
    app: Any = type("App", (), {})()
    app.consumer = FakeConsumer({ev0: 100, ev1: 50, ev2: None, cat0: 9}, {ev1: 20})
    app.monitor = type("Monitor", (), {"tp_committed_offsets": {ev0: 90}})()
    lag = asyncio.run(consumer_lag(app, {"p.events"}))
    # ev0 from the commit, ev1 from the fetch position, ev2 has no end offset yet
    assert lag == {("p.events", 0): 10, ("p.events", 1): 30}


def test_endpoint_serves_the_metrics_over_http() -> None:
    m = WorkerMetrics(clock=lambda: NOW_S)
    m.observe_events(BatchStats(applied=2, published=1, published_source_ts_ms=[NOW_MS - 5]))
    port = m.serve(0, addr="127.0.0.1")  # port 0: the OS picks a free one
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert resp.status == 200
            body = resp.read().decode()
    finally:
        m.close()
    for name in (
        "freshet_events_total",
        "freshet_catalog_events_total",
        "freshet_batch_retries_total",
        "freshet_event_to_publish_seconds_bucket",
        "freshet_model_info",
        "freshet_lists_total",
        "freshet_lists_published_total",
        "freshet_dead_letters_total",
        "freshet_consumer_lag",
        "freshet_redis_round_trips_total",
        "freshet_bundle_swaps_total",
        "freshet_bundle_refusals_total",
        "freshet_encoder_seconds_bucket",
    ):
        assert name in body, name
    assert 'freshet_events_total{outcome="applied"} 2.0' in body


def test_the_loop_probe_sees_a_step_that_held_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    """A 0.4 s blocking step between two 50 ms probes is seen as >= 0.3 s of lag and
    warned about; the probes around it see almost none."""
    m = WorkerMetrics()
    seen: list[float] = []

    def observe(late: float) -> None:
        seen.append(late)
        m.loop_lag.observe(late)

    async def run() -> None:
        probe = asyncio.create_task(watch_loop_lag(observe, interval_s=0.05, warn_s=0.2))
        await asyncio.sleep(0.12)
        time.sleep(0.4)  # a synchronous step on the loop, as a long inline call would be
        await asyncio.sleep(0.12)
        probe.cancel()

    with caplog.at_level("WARNING", logger="freshet.metrics"):
        asyncio.run(run())
    held = [late for late in seen if late >= 0.2]
    assert len(held) == 1 and held[0] >= 0.3, seen
    assert sum(late < 0.05 for late in seen) >= 2, seen  # the unblocked probes
    assert sum("event loop was held" in r.getMessage() for r in caplog.records) == 1
    assert sample(m, "freshet_event_loop_lag_seconds_count") == len(seen)
    assert sample(m, "freshet_event_loop_lag_seconds_bucket", le="0.25") == len(seen) - 1
