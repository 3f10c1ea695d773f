"""What the worker's metrics read from outside the registry: Kafka consumer lag and the
event loop's lag probe (``streams.runtime.metrics`` feeds them into its metrics)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

log = logging.getLogger("freshet.metrics")

LOOP_PROBE_S = 1.0
LOOP_LAG_WARN_S = 1.0
LOOP_LAG_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""How late the loop ran a probe. Kafka's heartbeat shares the worker's loop (the
consumer runs on it): a step near the group's session timeout (10 s) costs the
partitions."""


async def consumer_lag(app: faust.App, topics: Collection[str]) -> dict[tuple[str, int], int]:
    """Per assigned partition of ``topics``: log end offset minus the committed offset.

    The committed offset is the last one this worker committed (Faust's monitor records
    it); before its first commit on a partition, the consumer's fetch position stands in.
    """
    consumer = app.consumer
    committed = app.monitor.tp_committed_offsets
    out: dict[tuple[str, int], int] = {}
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        end = consumer.highwater(tp)
        if end is None:
            continue
        done = committed.get(tp)
        if done is None:
            done = await consumer.position(tp)
        if done is not None:
            out[(tp.topic, tp.partition)] = max(0, int(end) - int(done))
    return out


async def watch_loop_lag(
    observe: Callable[[float], None],
    interval_s: float = LOOP_PROBE_S,
    warn_s: float = LOOP_LAG_WARN_S,
) -> None:
    """Forever: sleep ``interval_s`` on the running loop and ``observe`` how much later
    than asked it woke; log a warning when that is over ``warn_s`` (one wake-up a
    second: a few microseconds of CPU)."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        late = max(0.0, loop.time() - asked)
        observe(late)
        if late > warn_s:
            log.warning(
                "the event loop was held %.2f s: Kafka's heartbeat and the micro-batches"
                " waited as long (the group's session timeout ends membership)",
                late,
            )
