"""The worker's Kafka consumer on its event loop (``FRESHET_KAFKA_CONSUMER_ON_LOOP``).

The switch picks the transport; with it on, no consumer thread is started and the
consumer runs on the app's loop with the worker's fetch settings. On the real broker,
a worker with it on commits what it applied and, restarted, resumes from the committed
offsets: it takes exactly the records sent while it was down, none again. Both run
with Faust's per-event delivery and with the batch delivery
(``FRESHET_KAFKA_BATCH_DELIVERY``, ``streams.runtime.faust_batches``). The two-member
rebalance and the kill -9 runs with them on are in tests/reliability.
"""

from __future__ import annotations

import asyncio
import re
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from reliability_harness import PacedProducer, Workload, assert_exactly_once, build_workload
from stream_under_test import StreamUnderTest
from worker_harness import WorkerProcess, wait_for

from freshet.services.ports import free_port
from freshet.settings import Settings
from streams.runtime.faust_app import create_app
from streams.runtime.faust_fetch import FetchTunedTransport
from streams.runtime.faust_loop_consumer import ConsumerOnLoop, LoopConsumerTransport

PARTITIONS = 4


def _build(settings: Settings) -> tuple[Any, Any, Any]:
    async def build() -> tuple[Any, Any, Any]:
        app = create_app(settings)
        worker_consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await worker_consumer.stop()  # never started: only its settings are looked at
        return app, app.consumer._thread, worker_consumer

    return asyncio.run(build())


def test_the_switch_chooses_the_consumer(tmp_path: Path) -> None:
    on = Settings().with_(
        home=tmp_path,
        kafka_consumer_on_loop=True,
        kafka_fetch_max_wait_ms=25,
        kafka_batch_delivery=False,  # its transports: tests/streams/test_batch_delivery.py
    )
    app, delegate, consumer = _build(on)
    assert isinstance(app.transport, LoopConsumerTransport)
    assert isinstance(delegate, ConsumerOnLoop)
    assert delegate.thread_loop is app.loop  # no second event loop
    assert consumer._fetch_max_wait_ms == 25  # the worker's fetch settings still apply

    off = Settings().with_(
        home=tmp_path / "off", kafka_consumer_on_loop=False, kafka_batch_delivery=False
    )
    app, delegate, _ = _build(off)
    assert type(app.transport) is FetchTunedTransport
    assert not isinstance(delegate, ConsumerOnLoop)


def test_the_loop_consumer_starts_no_thread_and_stops_cleanly(settings: Settings) -> None:
    """Started against the real broker, the consumer service adds no thread, and its
    aiokafka consumer, connected, is closed when the service stops."""
    settings = settings.with_(kafka_consumer_on_loop=True)

    async def run() -> tuple[int, int, bool, bool]:
        app = create_app(settings)
        delegate = app.consumer._thread
        before = threading.active_count()
        await delegate.start()
        started = threading.active_count()
        running = delegate._consumer is not None and not delegate._consumer._closed
        await delegate.stop()
        return before, started, running, delegate._consumer._closed

    before, started, running, closed = asyncio.run(run())
    assert started == before
    assert running and closed


def _events_taken(port: int) -> dict[str, int]:
    """The worker's interaction records by outcome, from its metrics endpoint."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    found = re.findall(r'^freshet_events_total\{outcome="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {name: int(float(n)) for name, n in found}


def _committed(settings: Settings, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}-worker",  # the worker harness's group
        enable_auto_commit=False,
    )
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)}
    finally:
        consumer.close()


BATCHES = pytest.mark.parametrize("batches", [False, True], ids=["events", "batch-delivery"])


@pytest.mark.services
@pytest.mark.slow
@BATCHES
def test_a_worker_on_the_loop_consumer_commits_and_resumes_from_its_commits(
    settings: Settings, tmp_path: Path, batches: bool
) -> None:
    settings = settings.with_(topic_partitions=PARTITIONS)
    stream = StreamUnderTest.open(settings, PARTITIONS)
    workload = build_workload(events=4_000, seed=19, malformed=20)
    half = len(workload.events) // 2
    first = Workload(workload.catalog, workload.events[:half], 0)
    second = Workload([], workload.events[half:], 0)
    log = tmp_path / "worker.log"
    env = {
        "FRESHET_REALTIME": "false",
        "FRESHET_KAFKA_CONSUMER_ON_LOOP": "true",
        "FRESHET_KAFKA_BATCH_DELIVERY": str(batches).lower(),
    }

    port = free_port()
    worker = WorkerProcess(settings, log, FRESHET_METRICS_PORT=str(port), **env)
    try:
        producer = PacedProducer(settings, first, rate=2_000)
        producer.start()
        stream.drain(producer, worker)
        ends = stream.ends()
        wait_for(lambda: _committed(settings, stream.topics.events) == ends, 30, "the commits")
        text = log.read_text()
        assert "Kafka consumer of" in text and "on the app's event loop" in text
        assert ("in chunks per fetch" in text) == batches
        assert sum(_events_taken(port).values()) == half
    finally:
        worker.stop()

    producer = PacedProducer(settings, second, rate=2_000)
    producer.start()  # sent while no worker runs
    producer.join(timeout=120)
    assert producer.error is None, producer.error
    port = free_port()
    worker = WorkerProcess(settings, log, FRESHET_METRICS_PORT=str(port), **env)
    try:
        stream.drain(producer, worker)
        n = len(second.events)  # the last batch's metrics follow its ack
        wait_for(lambda: sum(_events_taken(port).values()) >= n, 10, "the metrics", worker)
        taken = _events_taken(port)
    finally:
        worker.stop()

    # Restarted, it took exactly what was sent while it was down: nothing again.
    assert sum(taken.values()) == len(second.events), taken
    assert taken.get("redelivered", 0) == 0, taken
    result = stream.audit()
    assert_exactly_once(result)
    assert result.dead_lettered == workload.malformed


@pytest.mark.services
@pytest.mark.slow
@BATCHES
def test_a_worker_stopped_in_order_commits_what_it_took(
    settings: Settings, tmp_path: Path, batches: bool
) -> None:
    """With the commit timer out of reach (600 s), nothing is committed while the worker
    runs; stopped in order, the loop consumer commits every offset it acked."""
    settings = settings.with_(topic_partitions=PARTITIONS)
    stream = StreamUnderTest.open(settings, PARTITIONS)
    workload = build_workload(events=1_000, seed=23, malformed=0)
    env = {
        "FRESHET_REALTIME": "false",
        "FRESHET_KAFKA_CONSUMER_ON_LOOP": "true",
        "FRESHET_KAFKA_COMMIT_INTERVAL_S": "600",
        "FRESHET_KAFKA_BATCH_DELIVERY": str(batches).lower(),
    }
    port = free_port()
    worker = WorkerProcess(settings, tmp_path / "worker.log", FRESHET_METRICS_PORT=str(port), **env)
    try:
        producer = PacedProducer(settings, workload, rate=2_000)
        producer.start()
        stream.drain(producer, worker)
        n = len(workload.events)  # the last batch's metrics follow its ack
        wait_for(lambda: sum(_events_taken(port).values()) >= n, 10, "the metrics", worker)
        ends = stream.ends()
        assert _committed(settings, stream.topics.events) == dict.fromkeys(ends, 0)
    finally:
        worker.stop()
    assert _committed(settings, stream.topics.events) == ends
