"""A worker that starts behind drains its backlog in full micro-batches, state exactly once.

Under a backlog the agent's take waits past its 10 ms window while the consumer's lag
would fill the batch (``streams.core.micro_batches``), so each batch pays the fixed
costs (two Redis round trips, the acks' bookkeeping) once for ``batch_max_events``
records. The window alone made batches of what arrived in 10 ms.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest
from reliability_harness import (
    PacedProducer,
    assert_exactly_once,
    build_workload,
    time_to_reach,
)
from stream_under_test import StreamUnderTest
from worker_harness import WorkerProcess

from freshet.services.ports import free_port
from freshet.settings import Settings

pytestmark = [pytest.mark.services, pytest.mark.slow]

PARTITIONS = 4
MOST = 200  # records per micro-batch at most


def _ingest_batches(port: int) -> int:
    """Micro-batches the worker's ingest agent processed, from its metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
        text = resp.read()
    found = re.search(rb'^freshet_batches_total\{agent="ingest"\} (\S+)$', text, re.MULTILINE)
    assert found, "no ingest batch counted"
    return int(float(found.group(1)))


def test_a_backlog_is_drained_in_full_micro_batches(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(topic_partitions=PARTITIONS)
    stream = StreamUnderTest.open(settings, PARTITIONS)
    workload = build_workload(events=8_000, seed=13)
    producer = PacedProducer(settings, workload, rate=1e9)  # as fast as it goes: a backlog
    producer.start()
    producer.join(timeout=120)
    assert producer.error is None, producer.error
    ends = stream.ends()
    records = sum(ends.values())
    port = free_port()
    worker = WorkerProcess(
        settings,
        tmp_path / "worker.log",
        FRESHET_REALTIME="false",
        FRESHET_BATCH_MAX_EVENTS=str(MOST),
        FRESHET_METRICS_PORT=str(port),
    )
    try:
        time_to_reach(stream.marks, ends, 120, "the backlog", [worker])
        batches = _ingest_batches(port)
    finally:
        worker.stop()
    assert_exactly_once(stream.audit())
    # Full batches but the first (the lag is known from the first fetch on) and the
    # last of each stretch; a 10 ms window made batches of ~50-100 records here.
    assert records / batches >= 0.75 * MOST, f"{records} records in {batches} batches"
