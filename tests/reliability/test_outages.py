"""The worker rides out Redis and broker outages mid-stream, on private real services.

It also starts in any order: started while the broker or Redis is down, it waits for
them (logging what it waits for) and ends with every event applied once.

Redis stopped for seconds (AOF on) and the broker restarted: the worker must neither
exit nor crash-loop, must resume on its own, and must end with state equal to the
offline replay. Redis restarted *empty* cannot be ridden out: the worker must say so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability_harness import (
    Audit,
    FaultRecord,
    PacedProducer,
    Workload,
    assert_exactly_once,
    build_workload,
    time_to_reach,
    wait_log,
)
from stream_under_test import StreamUnderTest
from worker_harness import WorkerProcess, wait_for

from freshet.services.kafka_local import LocalKafka
from freshet.services.redis_local import LocalRedis
from freshet.settings import Settings
from streams.redis_io.state_guard import EPOCH_FIELD

pytestmark = [pytest.mark.services, pytest.mark.slow]

PARTITIONS = 4
LOSS_LINE = "Redis lost freshet state"
ENV = {"FRESHET_REALTIME": "false"}  # default group settings (static membership, 10 s session)


def _settings(bootstrap: str, redis_url: str, prefix: str, home: Path) -> Settings:
    return Settings.from_env(
        {},
        kafka_bootstrap=bootstrap,
        redis_url=redis_url,
        topic_prefix=prefix,
        home=home,
        topic_partitions=PARTITIONS,
    )


def _stay_alive(worker: WorkerProcess, seconds: float) -> None:
    """Sleep, failing at once if the worker exits meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert worker.alive(), f"worker exited during the outage:\n{worker.tail()}"
        time.sleep(0.2)


def test_redis_outage_mid_stream(
    kafka: LocalKafka, make_redis: Callable[..., LocalRedis], topic_prefix: str, tmp_path: Path
) -> None:
    server = make_redis(appendonly=True)
    settings = _settings(kafka.bootstrap, server.url, topic_prefix, tmp_path)
    stream = StreamUnderTest.open(settings, PARTITIONS)
    workload = build_workload(events=12_000, seed=31)
    rng = random.Random(31)
    outage_s = rng.uniform(10.0, 15.0)
    producer = PacedProducer(settings, workload, rate=500)

    worker = WorkerProcess(settings, tmp_path / "worker.log", **ENV)
    producer.start()
    try:
        stream.first_batch(worker, 90)
        time.sleep(rng.uniform(2.0, 4.0))
        server.stop()
        _stay_alive(worker, outage_s)
        server.start()
        back = time.monotonic()
        backlog = stream.backlog()
        recovery = time_to_reach(
            stream.marks, backlog, 90, "catch-up after the outage", [worker], back
        )
        stream.drain(producer, worker)
        assert worker.alive()
        log_text = worker.log_path.read_text(errors="replace")
    finally:
        producer.join(timeout=1)
        worker.stop()

    result = stream.audit()
    retries = log_text.count("batch failed (attempt")
    FaultRecord(
        fault="redis-down-aof",
        audit=result,
        recovery_s=[recovery],
        notes=f"Redis (AOF) stopped {outage_s:.1f} s mid-stream, restarted on the same port "
        "and data; recovery = Redis back to backlog applied",
        extra={"outage_s": round(outage_s, 1), "batch_retries": retries},
    ).write()
    assert retries > 0  # the outage was really hit mid-batch
    assert LOSS_LINE not in log_text  # an AOF restart keeps the epoch: no false alarm
    assert_exactly_once(result)


def test_redis_restarted_empty_is_detected(
    kafka: LocalKafka, make_redis: Callable[..., LocalRedis], topic_prefix: str, tmp_path: Path
) -> None:
    server = make_redis(appendonly=False)
    settings = _settings(kafka.bootstrap, server.url, topic_prefix, tmp_path)
    stream = StreamUnderTest.open(settings, PARTITIONS)
    workload = build_workload(events=6_000, seed=33, malformed=50)
    producer = PacedProducer(settings, workload, rate=600)

    worker = WorkerProcess(settings, tmp_path / "worker.log", **ENV)
    producer.start()
    try:
        stream.first_batch(worker, 90)
        # The guard has established the store epoch (it writes the marker, then keeps it).
        meta = stream.keys.meta
        wait_for(lambda: stream.client.hget(meta, EPOCH_FIELD) is not None, 30, "epoch", worker)
        server.stop()
        _stay_alive(worker, 3.0)
        server.start()  # no AOF, no RDB: it comes back empty
        detected = wait_log(worker, LOSS_LINE, 20)
        assert worker.alive()
        stream.drain(producer, worker)
        log_text = worker.log_path.read_text(errors="replace")
    finally:
        producer.join(timeout=1)
        worker.stop()

    result = stream.audit()
    FaultRecord(
        fault="redis-restarted-empty",
        audit=result,
        recovery_s=[detected],
        notes="Redis without persistence restarted mid-stream: state before it is lost by "
        "construction; recovery = Redis back to the ERROR line (detection)",
        extra={"loss_detected": True},
    ).write()
    assert log_text.count(LOSS_LINE) == 1  # said once, not on every check
    assert result.lost > 0  # the loss is real; the guard is what makes it visible
    assert result.applied_twice == 0


def test_broker_restart_mid_stream(
    make_kafka: Callable[..., LocalKafka], redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    broker = make_kafka(partitions=PARTITIONS)
    settings = _settings(broker.bootstrap, redis_url, topic_prefix, tmp_path)
    stream = StreamUnderTest.open(settings, PARTITIONS)
    workload = build_workload(events=12_000, seed=35)
    producer = PacedProducer(settings, workload, rate=500)

    worker = WorkerProcess(settings, tmp_path / "worker.log", **ENV)
    producer.start()
    try:
        stream.first_batch(worker, 120)
        time.sleep(random.Random(35).uniform(2.0, 5.0))
        down = time.monotonic()
        broker.restart()
        back = time.monotonic()
        assert worker.alive(), worker.tail()
        backlog = stream.backlog(timeout=30)
        recovery = time_to_reach(
            stream.marks, backlog, 120, "catch-up after the restart", [worker], back
        )
        stream.drain(producer, worker)
    finally:
        producer.join(timeout=1)
        worker.stop()

    result = stream.audit()
    FaultRecord(
        fault="broker-restart",
        audit=result,
        recovery_s=[recovery],
        notes=f"broker stopped and started on the same port and data ({back - down:.1f} s "
        "down); recovery = broker back to backlog applied",
        extra={"producer_resent_chunks": producer.resent_chunks},
    ).write()
    assert_exactly_once(result)


# --- start order: a service that is down when the worker starts -------------------------

LATE_S = 30.0  # how long the service stays down after the worker starts


def _halves(workload: Workload) -> tuple[Workload, Workload]:
    """The catalog and the first half of the events; the second half of the events."""
    half = len(workload.events) // 2
    first = Workload(workload.catalog, workload.events[:half], workload.malformed)
    return first, Workload([], workload.events[half:], 0)


def _start_late(
    settings: Settings,
    seed: int,
    service: str,
    stop: Callable[[], None],
    start: Callable[[], None],
) -> tuple[Audit, str]:
    """Send half a workload, stop ``service``, start the worker, wait ``LATE_S``, start
    the service and send the rest; record the fault and return the audit and the log.

    Recovery is measured from the service being ready to the worker's first batch.
    """
    stream = StreamUnderTest.open(settings, PARTITIONS)
    first, rest = _halves(build_workload(events=6_000, seed=seed))
    before = PacedProducer(settings, first, rate=10_000)
    before.run()  # in this thread: everything is on the topic before the outage
    assert before.error is None, before.error
    stop()
    worker = WorkerProcess(settings, settings.home / "worker.log", **ENV)
    try:
        _stay_alive(worker, LATE_S)
        start()
        back = time.monotonic()
        stream.first_batch(worker, 120)
        first_batch = time.monotonic() - back
        after = PacedProducer(settings, rest, rate=1_000)
        after.run()
        assert after.error is None, after.error
        last = time_to_reach(stream.marks, stream.ends(), 120, "the last event", [worker], back)
        assert worker.alive()
    finally:
        worker.stop()
    result = stream.audit()
    FaultRecord(
        fault=f"start-order-{service.lower()}-late",
        audit=result,
        recovery_s=[first_batch],
        notes=f"worker started with {service} down, {service} started {LATE_S:.0f} s later; "
        f"recovery = {service} ready to first batch applied ({last:.1f} s to the last event)",
        extra={"late_s": LATE_S, "to_last_event_s": round(last, 1)},
    ).write()
    return result, worker.log_path.read_text(errors="replace")


def test_worker_started_while_the_broker_is_down(
    make_kafka: Callable[..., LocalKafka], redis_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    broker = make_kafka(partitions=PARTITIONS)
    settings = _settings(broker.bootstrap, redis_url, topic_prefix, tmp_path)
    result, log_text = _start_late(settings, 51, "broker", broker.stop, broker.start)
    assert_exactly_once(result)
    assert "waiting for Kafka at" in log_text


def test_worker_started_while_redis_is_down(
    kafka: LocalKafka, make_redis: Callable[..., LocalRedis], topic_prefix: str, tmp_path: Path
) -> None:
    server = make_redis(appendonly=True)
    settings = _settings(kafka.bootstrap, server.url, topic_prefix, tmp_path)
    result, log_text = _start_late(settings, 53, "Redis", server.stop, server.start)
    assert_exactly_once(result)
    assert "waiting for Redis at" in log_text
    assert LOSS_LINE not in log_text
