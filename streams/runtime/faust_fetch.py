"""Faust's Kafka transport, with the worker consumer's fetch settings made settable.

faust-streaming 0.15 builds the worker's aiokafka consumer with ``fetch_max_wait_ms``
fixed at 1,500 and ``fetch_min_bytes`` left at aiokafka's default of 1, and has no
setting for either. This transport builds the same consumer and then sets both, before
the consumer starts (aiokafka reads them when ``start()`` creates its fetcher), and
lets the fetch routine's idle wake-up (``consumer_timeout_ms``) wait as long as a fetch. The
values come from the app's ``fetch`` attribute (``streams.runtime.faust_app``).
"""

from __future__ import annotations

from dataclasses import dataclass
from time import monotonic
from typing import Any

from faust.transport.drivers import aiokafka as driver
from mode import Service

STALL_CHECK_S = 15.0
"""How often the consumer looks for a stalled partition (Faust: every 2.5 commit
intervals, 2.5 s). Faust's thresholds for a stall are minutes (no fetch sent, no
highwater, no record taken, no commit: ``stream_processing_timeout``,
``broker_commit_livelock_soft_timeout``, 5 min by default), so a check every 15 s logs
a stall at most 15 s later."""


@dataclass(frozen=True)
class FetchSettings:
    """How the worker's consumer asks the broker for records.

    Attributes:
        max_wait_ms: Longest the broker holds a fetch that has less than ``min_bytes``.
        min_bytes: The broker answers a fetch as soon as it has this many bytes.
    """

    max_wait_ms: int = 1500
    min_bytes: int = 1


class FetchTunedConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, building its aiokafka consumer with ``app.fetch``."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        fetch: FetchSettings | None = getattr(self.app, "fetch", None)
        if fetch is not None:
            # aiokafka's own names for the constructor's arguments, read by start().
            consumer._fetch_max_wait_ms = fetch.max_wait_ms
            consumer._fetch_min_bytes = fetch.min_bytes
            # aiokafka's fetch routine also wakes every ``consumer_timeout_ms`` (200) when
            # nothing it waits on happened; everything that needs a new fetch (a fetch
            # done, records consumed, a seek, a reset, a resume, a new assignment,
            # metadata) already wakes it, so at idle that timer was 5 of the worker's
            # 44 loop passes a second. It now waits no longer than a fetch may.
            consumer._consumer_timeout = max(consumer._consumer_timeout, fetch.max_wait_ms / 1e3)
        return consumer


class StallCheckedConsumer(driver.Consumer):
    """Faust's aiokafka consumer, its stalled-partition checks every ``STALL_CHECK_S``,
    all partitions in one step.

    Faust checks every 2.5 s and yields with ``Service.sleep(0)`` between partitions,
    which starts and cancels a task on the stop event each time: at idle, with about
    ten partitions, four checks and a dozen loop passes a second for thresholds of
    minutes. The checks themselves (``verify_event_path``: log a partition with no fetch,
    no highwater, no record taken or no commit for too long) are Faust's, unchanged.
    """

    @Service.task
    async def _commit_livelock_detector(self) -> None:
        async for _ in self.itertimer(STALL_CHECK_S, name="livelock"):
            if not self.app.rebalancing:
                await self.verify_all_partitions_active()

    async def verify_all_partitions_active(self) -> None:
        now = monotonic()
        for tp in self.assignment():
            if self.should_stop:
                return
            self.verify_event_path(now, tp)


class _Consumer(StallCheckedConsumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return FetchTunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FetchTunedTransport(driver.Transport):
    """``faust``'s aiokafka transport whose worker consumer takes ``app.fetch``."""

    Consumer = _Consumer
