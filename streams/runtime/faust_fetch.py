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
from typing import Any

from faust.transport.drivers import aiokafka as driver


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


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return FetchTunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FetchTunedTransport(driver.Transport):
    """``faust``'s aiokafka transport whose worker consumer takes ``app.fetch``."""

    Consumer = _Consumer
