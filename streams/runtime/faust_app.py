"""The Faust app and its agents: a thin adapter around the batch processors.

Agents read raw bytes (no Faust codecs, so a bad message can never crash the stream),
take micro-batches with ``noack_take`` while earlier ones are processed, and ack only
after the processor has written state durably and sent what it had to send. If Redis or
Kafka fail mid-batch the processor retries the same batch with backoff; meanwhile the
queue of waiting batches and then Faust's stream buffer fill and the consumer stops
fetching, so nothing is skipped and nothing crash-loops.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.sensors import Monitor
from faust.tables import TableManager
from mode import Service

from freshet.settings import Settings
from freshet.wiring import kafka_of
from streams.core.ingest import SourceRecord
from streams.core.micro_batches import ChunkQueue
from streams.kafka_io.kafka_config import DEAD_LETTER_MAX_BYTES, KafkaConfig, ssl_context
from streams.runtime.batch_agent import (  # the agents, with the app's callers' names
    BatchHandler,
    Delivered,
    _record,
    add_batch_agent,
    run_until_done,
    take_wait_s,
)
from streams.runtime.faust_batches import BatchDeliveryTransport, LoopBatchDeliveryTransport
from streams.runtime.faust_fetch import FetchSettings, FetchTunedTransport
from streams.runtime.faust_loop_consumer import LoopConsumerTransport

log = logging.getLogger("freshet.worker")

LIST_BATCH_BYTES = 256 * 1024
"""The producer's record batch size (aiokafka's default is 16 KiB). A saturated
micro-batch publishes hundreds of ~1.5 KiB lists; at 16 KiB a partition's share went
out as tens of batches, each waiting for the one before it to reach the broker. Under
the broker's default 1 MiB message limit."""

__all__ = [
    "BatchHandler",
    "Delivered",
    "_record",
    "add_batch_agent",
    "broker_credentials",
    "create_app",
    "run_until_done",
    "take_wait_s",
]


def broker_credentials(kafka: KafkaConfig) -> Any:
    """Faust credentials for SSL / SASL, or None for PLAINTEXT."""
    proto = kafka.security_protocol.strip().upper()
    context = ssl_context(kafka) if proto in {"SSL", "SASL_SSL"} else None
    if proto.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class _TableManager(TableManager):
    """Faust's table manager, without its fixed 1 s pause at start when there are no tables.

    Faust waits a second so that tables may still be declared; this app declares none
    (its state lives in Redis), and the pause was about a fifth of a restarted worker's
    time from ``kill -9`` to work resumed. With tables it behaves as Faust's own.
    """

    async def on_start(self) -> None:
        if self:
            await super().on_start()
        elif not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class _Monitor(Monitor):
    """Faust's monitor without its once-a-second sampler.

    The sampler only derives rates (events/s, messages/s, the median event runtime)
    that nothing in freshet reads; what the worker does read, the committed offsets
    (``metric_sources``), the monitor keeps on each commit as before. The sampler's
    tick was about a twentieth of an idle worker's CPU.
    """

    @Service.task
    async def _sampler(self) -> None:
        """Not started: see the class."""


class _App(faust.App):
    """A Faust app that, as a static group member, leaves its group once it has stopped.

    aiokafka sends no LeaveGroup for a static member, so without this an orderly stop
    would leave its partitions idle for the session timeout. ``on_shutdown`` runs after
    the app's consumer stopped and before the worker's final clean-up (about 2 s), so
    the other workers take the partitions over as soon as they can.
    """

    leave_with: KafkaConfig | None = None
    fetch: FetchSettings | None = None  # the worker consumer's (``faust_fetch``)
    consumer_on_loop = False  # aiokafka on the app's loop (``faust_loop_consumer``)
    batch_delivery = False  # batch agents' topics fetched in chunks (``faust_batches``)
    batch_feeds: dict[str, ChunkQueue[SourceRecord]]

    def _new_transport(self) -> Any:
        if self.batch_delivery:
            if self.consumer_on_loop:
                return LoopBatchDeliveryTransport(self.conf.broker_consumer, self)
            return BatchDeliveryTransport(self.conf.broker_consumer, self)
        if self.consumer_on_loop:
            return LoopConsumerTransport(self.conf.broker_consumer, self)
        return FetchTunedTransport(self.conf.broker_consumer, self)

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        instance = self.conf.consumer_group_instance_id
        if instance and self.leave_with is not None:
            from streams.kafka_io.group_member import leave_group

            await asyncio.to_thread(leave_group, self.leave_with, self.conf.id, instance)


def create_app(settings: Settings, *, app_id: str | None = None) -> faust.App:
    """A Faust app configured from settings (raw bytes, manual acks, no web server)."""
    kafka = kafka_of(settings)
    brokers = [f"kafka://{hp.strip()}" for hp in kafka.bootstrap.split(",") if hp.strip()]
    app_id = app_id or settings.consumer_group
    datadir = settings.home / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = _App(
        app_id,
        datadir=str(datadir),
        broker=brokers,
        broker_credentials=broker_credentials(kafka),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.topic_partitions,
        topic_disable_leader=True,
        producer_acks=-1,
        producer_linger=kafka.linger_ms / 1000.0,
        broker_max_poll_records=kafka.max_poll_records or None,
        producer_max_request_size=DEAD_LETTER_MAX_BYTES,  # a dead letter outgrows its source
        producer_max_batch_size=LIST_BATCH_BYTES,
        broker_commit_interval=kafka.commit_interval_s,
        # A static member (KIP-345) takes its partitions back at once after a restart;
        # the session timeout is then only how long a worker that never returns holds
        # them (docs/reliability.md).
        consumer_group_instance_id=(
            settings.group_instance_id or None if settings.static_membership else None
        ),
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=max(4 * settings.batch_max_events, 1000),
        stream_wait_empty=False,
        web_enabled=False,
        autodiscover=False,
        TableManager=_TableManager,
        Monitor=_Monitor,
    )
    app.leave_with = kafka
    app.fetch = FetchSettings(kafka.fetch_max_wait_ms, kafka.fetch_min_bytes)
    app.consumer_on_loop = kafka.consumer_on_loop
    app.batch_delivery = kafka.batch_delivery
    app.batch_feeds = {}
    where = "the app's event loop" if kafka.consumer_on_loop else "Faust's consumer thread"
    how = "in chunks per fetch" if kafka.batch_delivery else "as Faust events"
    log.info("Kafka consumer of %s: on %s, batch agents fed %s", app_id, where, how)
    return app
