"""Exactly-once state while workers die or hand partitions over, on the real services.

A paced producer streams 20k+ simulated events (3 % exact duplicates, some malformed)
while the worker is killed with SIGKILL at seeded random moments and started again, or
while a second worker joins and the first leaves. Afterwards every user's state blob
and every item count must equal the offline replay of the events topic: no event lost,
none applied twice, every malformed record dead-lettered.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest
from reliability_harness import (
    FaultRecord,
    PacedProducer,
    Watermarks,
    assert_exactly_once,
    build_workload,
    end_offsets,
    seeded_pauses,
    time_to_reach,
)
from stream_under_test import StreamUnderTest
from worker_harness import WorkerProcess, wait_for

from freshet.services.ports import free_port
from freshet.settings import Settings

pytestmark = [pytest.mark.services, pytest.mark.slow]

PARTITIONS = 4


def _applied(marks: Watermarks) -> int:
    """Records applied so far, over all partitions (from the watermarks)."""
    return sum(w + 1 for w in marks.read().values() if w >= 0)


def _applied_by(port: int) -> int:
    """Events one worker applied itself, from its metrics endpoint (0 before it answers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
            text = resp.read()
    except OSError:
        return 0
    found = re.search(rb'^freshet_events_total\{outcome="applied"\} (\S+)$', text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


@pytest.mark.parametrize(
    ("realtime", "batches"),
    [(False, False), (True, False), (True, True)],
    ids=["state-only", "realtime", "realtime-batch-delivery"],
)
def test_kill_9_at_random_points(
    settings: Settings, tmp_path: Path, realtime: bool, batches: bool
) -> None:
    settings = settings.with_(topic_partitions=PARTITIONS)
    stream = StreamUnderTest.open(settings, PARTITIONS)
    workload = build_workload(events=20_000, seed=21)
    assert len(workload.events) >= 20_000
    env = {  # default group settings; Faust's events or the batch delivery
        "FRESHET_REALTIME": str(realtime).lower(),
        "FRESHET_KAFKA_BATCH_DELIVERY": str(batches).lower(),
    }
    log = tmp_path / "worker.log"
    pauses = seeded_pauses(seed=5, n=5, low=0.3, high=4.0)
    producer = PacedProducer(settings, workload, rate=450)
    recoveries: list[float] = []

    worker = WorkerProcess(settings, log, **env)
    producer.start()
    try:
        stream.first_batch(worker, 90, "a first batch")
        for pause in pauses:
            time.sleep(pause)
            killed = time.monotonic()
            worker.kill()
            at_kill = stream.marks.read()
            worker = WorkerProcess(settings, log, **env)
            backlog = stream.backlog(at_kill)
            recoveries.append(
                time_to_reach(stream.marks, backlog, 90, "recovery after kill -9", [worker], killed)
            )
        stream.drain(producer, worker)
    finally:
        producer.join(timeout=1)
        worker.stop()

    result = stream.audit()
    recommendations = stream.topics.recommendations
    lists = sum(end_offsets(settings.kafka_bootstrap, recommendations, PARTITIONS).values())
    FaultRecord(
        fault=f"kill-9-x5-{'realtime' if realtime else 'state-only'}"
        + ("-batch-delivery" if batches else ""),
        audit=result,
        recovery_s=recoveries,
        notes="SIGKILL 5x at seeded random moments, restart at once, default settings (static "
        "membership, 10 s session); recovery = kill to backlog-at-kill applied",
        extra={"lists_published": lists, "kills": len(pauses)},
    ).write()
    assert_exactly_once(result)
    assert result.dead_lettered == workload.malformed
    if realtime:
        assert lists > 0  # the real-time path ran while being killed


@pytest.mark.parametrize(
    ("on_loop", "batches"),
    [(False, False), (True, False), (True, True)],
    ids=["consumer-thread", "consumer-on-loop", "batch-delivery"],
)
def test_rebalance_under_load(
    settings: Settings, tmp_path: Path, on_loop: bool, batches: bool
) -> None:
    settings = settings.with_(topic_partitions=PARTITIONS)
    stream = StreamUnderTest.open(settings, PARTITIONS)
    marks = stream.marks
    workload = build_workload(events=20_000, seed=41)
    env = {  # default group settings; Faust's consumer thread or the app's loop
        "FRESHET_REALTIME": "false",
        "FRESHET_KAFKA_CONSUMER_ON_LOOP": str(on_loop).lower(),
        "FRESHET_KAFKA_BATCH_DELIVERY": str(batches).lower(),
    }
    producer = PacedProducer(settings, workload, rate=700)
    recoveries: list[float] = []

    first = WorkerProcess(settings, tmp_path / "a.log", **env)
    second: WorkerProcess | None = None
    second_port = free_port()
    producer.start()
    try:
        stream.first_batch(first, 90, "a first batch")
        wait_for(lambda: _applied(marks) >= 2_000, 60, "the first worker alone mid-stream", first)
        # join: the 4 partitions split between the two workers
        second = WorkerProcess(
            settings, tmp_path / "b.log", FRESHET_METRICS_PORT=str(second_port), **env
        )
        # The second must be seen to own partitions (it applies events of its own)
        # before the first stops.
        wait_for(lambda: _applied_by(second_port) > 0, 90, "the second worker's own batch", second)
        left = time.monotonic()
        first.stop()  # leave: its partitions move to the second worker mid-stream
        backlog = stream.backlog()
        recoveries.append(
            time_to_reach(marks, backlog, 90, "the second worker to take over", [second], left)
        )
        stream.drain(producer, second)
    finally:
        producer.join(timeout=1)
        first.stop()
        if second is not None:
            second.stop()

    result = stream.audit()
    where = "on the app's event loop" if on_loop else "on Faust's consumer thread"
    for log in ("a.log", "b.log"):
        text = (tmp_path / log).read_text(errors="replace")
        assert where in text
        assert ("in chunks per fetch" in text) == batches
    FaultRecord(
        fault="rebalance-join-then-leave"
        + ("-consumer-on-loop" if on_loop else "")
        + ("-batch-delivery" if batches else ""),
        audit=result,
        recovery_s=recoveries,
        notes="2 workers, 1 group, 4 partitions: B joins mid-stream, A stops (SIGTERM) "
        "mid-stream; recovery = A stopping to backlog applied by B",
    ).write()
    assert result.lost == 0, result.summary()
    assert result.users_differing == 0, result.summary()
    # A revoked worker may still finish a buffered batch while the new owner applies the
    # same records; the store's write is fenced on the watermark the batch read, so the
    # second write is refused (StaleWatermark), retried, and finds the records done.
    assert_exactly_once(result)
