"""Send events into freshet's topics with kafka-python, and make sure the topics exist.

Interaction events go to ``<prefix>.events`` keyed by user, catalog events to
``<prefix>.catalog`` keyed by item (``schemas.topics``), so one user's events stay in
order on one partition. Raw bytes can be sent too, for fault injection. Sends are
batched (``linger_ms``) and acknowledged by all in-sync replicas; delivery failures
are counted by error, never raised mid-stream, and reported by ``flush``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from schemas.codec import encode
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics, catalog_key, event_key
from streams.kafka_io.kafka_config import DEAD_LETTER_MAX_BYTES, KafkaConfig, kafka_python_kwargs

log = logging.getLogger(__name__)


def ensure_topics(
    kafka: KafkaConfig,
    topics: Iterable[str] | None = None,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the freshet topics that do not exist yet; returns the ones created.

    Args:
        kafka: Where the brokers are; ``topic_partitions`` sets the partition count.
        topics: Topic names; all four of ``Topics(kafka.topic_prefix)`` by default.
        replication_factor: Replicas per partition (1 for a single local broker).
        timeout_s: How long the broker may take to create them.

    Existing topics are left as they are, whatever their partition count; a topic that
    another process creates at the same moment counts as existing.
    """
    wanted = list(topics) if topics is not None else list(Topics(kafka.topic_prefix).all())
    admin = KafkaAdminClient(**kafka_python_kwargs(kafka, client_id="freshet-admin"))
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        created: list[str] = []
        dead_letter = Topics(kafka.topic_prefix).dead_letter
        for name in missing:
            configs = (
                {"max.message.bytes": str(DEAD_LETTER_MAX_BYTES)} if name == dead_letter else {}
            )
            topic = NewTopic(
                name, kafka.topic_partitions, replication_factor, topic_configs=configs
            )
            try:
                admin.create_topics(
                    [topic], timeout_ms=int(timeout_s * 1000), wait_for_metadata=True
                )
            except TopicAlreadyExistsError:
                continue
            created.append(name)
        if created:
            log.info("created topics %s with %d partitions", created, kafka.topic_partitions)
        return created
    finally:
        admin.close()


@dataclass
class DeliveryStats:
    """What happened to the messages handed to an ``EventProducer``.

    Attributes:
        sent: Messages handed to the client.
        delivered: Messages the broker acknowledged.
        failed: Messages that could not be sent or were not acknowledged.
        errors: Failure count by error class name.
        by_topic: Messages handed to the client, per topic.
    """

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)

    @property
    def pending(self) -> int:
        return self.sent - self.delivered - self.failed


class EventProducer:
    """kafka-python producer for freshet's input topics.

    Use as a context manager, or call ``close``; ``flush`` waits for every pending
    message and returns the delivery counts so far.
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        *,
        linger_ms: int = 5,
        batch_size: int = 64 * 1024,
        client: Any = None,
        **client_options: Any,
    ) -> None:
        """Connect a producer.

        Args:
            kafka: Where the brokers are, and the topic prefix.
            linger_ms: How long the client waits to fill a batch.
            batch_size: Largest batch per partition, in bytes.
            client: A ready producer-like object (``send``/``flush``/``close``) to use
                instead of connecting one; for tests.
            **client_options: More kafka-python ``KafkaProducer`` options.
        """
        self.topics = Topics(kafka.topic_prefix)
        self.stats = DeliveryStats()
        self._lock = threading.Lock()
        self._client = client or KafkaProducer(
            **kafka_python_kwargs(
                kafka,
                acks="all",
                linger_ms=linger_ms,
                batch_size=batch_size,
                client_id="freshet-producer",
                **client_options,
            )
        )

    def send(self, event: InteractionEvent | CatalogEvent) -> None:
        """Send one event to its topic, keyed by user (interactions) or item (catalog)."""
        if isinstance(event, InteractionEvent):
            self._send(self.topics.events, event_key(event.user_id), encode(event))
        else:
            self._send(self.topics.catalog, catalog_key(event.item_id), encode(event))

    def send_raw(self, value: bytes, key: bytes | None = None, topic: str | None = None) -> None:
        """Send bytes as they are (default: to the events topic); for fault injection."""
        self._send(topic or self.topics.events, key, value)

    def flush(self, timeout_s: float | None = None) -> DeliveryStats:
        """Wait until every message is acknowledged or failed; the counts so far."""
        try:
            self._client.flush(timeout=timeout_s)
        except KafkaError as exc:
            log.warning("flush did not complete: %s", type(exc).__name__)
        return self.stats

    def close(self, timeout_s: float | None = 30.0) -> DeliveryStats:
        """Flush, then disconnect."""
        stats = self.flush(timeout_s)
        self._client.close(timeout=timeout_s)
        return stats

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        with self._lock:
            self.stats.sent += 1
            self.stats.by_topic[topic] += 1
        try:
            future = self._client.send(topic, key=key, value=value)
        except KafkaError as exc:  # buffer full, metadata timeout, message too large
            self._failed(exc)
            return
        future.add_callback(self._delivered)
        future.add_errback(self._failed)

    def _delivered(self, _metadata: object) -> None:
        with self._lock:
            self.stats.delivered += 1

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.stats.failed += 1
            self.stats.errors[type(exc).__name__] += 1
