"""Wait for the Kafka broker with capped backoff (``streams.core.backoff``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from streams.core.backoff import wait_until_up
from streams.kafka_io.kafka_config import KafkaConfig

T = TypeVar("T")


def kafka_transient(exc: BaseException) -> bool:
    """Whether a kafka-python error may go away by waiting (not auth, ACLs or config)."""
    from kafka.errors import KafkaError

    # An unreachable broker is KafkaTimeoutError("Unable to bootstrap"), a retriable one.
    if isinstance(exc, OSError):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


def kafka_where(kafka: KafkaConfig) -> str:
    return f"Kafka at {kafka.bootstrap}"


def kafka_client_when_up(kafka: KafkaConfig, connect: Callable[[], T]) -> T:
    """A kafka-python client from ``connect()`` once the broker answers its bootstrap."""
    return wait_until_up(connect, kafka_where(kafka), kafka_transient)


def wait_for_topics(kafka: KafkaConfig) -> list[str]:
    """Create freshet's missing topics once the broker answers; the topics created."""
    from streams.kafka_io.event_producer import ensure_topics

    return kafka_client_when_up(kafka, lambda: ensure_topics(kafka))
