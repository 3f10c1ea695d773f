"""The producer adapter: against the real broker, and its failure counting on a fake."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError

from freshet.settings import Settings
from freshet.simulator.faults import malformed_messages
from freshet.simulator.stream import SimConfig, simulate
from freshet.wiring import kafka_of
from schemas.codec import decode_catalog, decode_interaction
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics, partition_for
from streams.kafka_io.event_producer import EventProducer, ensure_topics


def _read_all(settings: Settings, topic: str, count: int, timeout_s: float = 30.0) -> list:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        out: list = []
        deadline = time.monotonic() + timeout_s
        while len(out) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


@pytest.mark.services
def test_ensure_topics_creates_the_four_topics_once(settings: Settings) -> None:
    settings = settings.with_(topic_partitions=3)
    topics = Topics(settings.topic_prefix)
    assert sorted(ensure_topics(kafka_of(settings))) == sorted(topics.all())
    assert ensure_topics(kafka_of(settings)) == []
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        described = admin.describe_topics(list(topics.all()))
    finally:
        admin.close()
    assert {t["name"]: len(t["partitions"]) for t in described} == dict.fromkeys(topics.all(), 3)


@pytest.mark.services
def test_events_land_keyed_and_partitioned_and_raw_bytes_arrive_unchanged(
    settings: Settings,
) -> None:
    settings = settings.with_(topic_partitions=4)
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings))
    config = SimConfig(users=60, items=40, categories=4, events=600, new_item_rate=5)
    stream = list(simulate(config, seed=9))
    interactions = [e for e in stream if isinstance(e, InteractionEvent)]
    catalog = [e for e in stream if isinstance(e, CatalogEvent)]
    faults = malformed_messages(20, seed=9)

    with EventProducer(kafka_of(settings)) as producer:
        for event in stream:
            producer.send(event)
        for raw, _ in faults:
            producer.send_raw(raw, key=b"u1")
        stats = producer.flush(30)
    assert (stats.sent, stats.delivered, stats.failed) == (len(stream) + 20, len(stream) + 20, 0)
    assert stats.by_topic == {
        topics.events: len(interactions) + 20,
        topics.catalog: len(catalog),
    }

    records = _read_all(settings, topics.events, len(interactions) + 20)
    assert len(records) == len(interactions) + 20
    decoded = []
    for rec in records:
        assert rec.partition == partition_for(rec.key, 4)
        got = decode_interaction(rec.value)
        if isinstance(got, InteractionEvent):
            assert rec.key == got.user_id.encode()
            decoded.append(got)
    assert sorted(decoded, key=lambda e: e.event_id) == sorted(
        interactions, key=lambda e: e.event_id
    )
    assert sorted(r.value for r in records if r.key == b"u1" and r.value in dict(faults)) == sorted(
        raw for raw, _ in faults
    )
    # One user's events keep their order within the partition.
    per_user: dict[str, list[str]] = {}
    for event in decoded:
        per_user.setdefault(event.user_id, []).append(event.event_id)
    for user, ids in per_user.items():
        assert ids == [e.event_id for e in interactions if e.user_id == user]

    catalog_records = _read_all(settings, topics.catalog, len(catalog))
    read_back = [decode_catalog(r.value) for r in catalog_records]
    assert all(isinstance(e, CatalogEvent) for e in read_back)
    by_id = sorted(read_back, key=lambda e: e.event_id if isinstance(e, CatalogEvent) else "")
    assert by_id == sorted(catalog, key=lambda e: e.event_id)
    assert [r.key for r in catalog_records] == [
        e.item_id.encode() for e in read_back if isinstance(e, CatalogEvent)
    ]


class _Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def add_callback(self, fn: Callable[[object], None]) -> None:
        if self.error is None:
            fn(object())

    def add_errback(self, fn: Callable[[Exception], None]) -> None:
        if self.error is not None:
            fn(self.error)


class _FakeClient:
    """Fails the 2nd send at once and the 3rd on delivery; the rest succeed."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, topic: str, key: bytes | None, value: bytes) -> _Future:
        self.calls += 1
        if self.calls == 2:
            raise KafkaTimeoutError("buffer full")
        return _Future(NotLeaderForPartitionError() if self.calls == 3 else None)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


def test_delivery_failures_are_counted_by_error_not_raised() -> None:
    producer = EventProducer(kafka_of(Settings()), client=_FakeClient())
    for n in range(5):
        producer.send_raw(b"{}", key=f"u{n}".encode())
    stats = producer.close()
    assert (stats.sent, stats.delivered, stats.failed, stats.pending) == (5, 3, 2, 0)
    assert stats.errors == {"KafkaTimeoutError": 1, "NotLeaderForPartitionError": 1}
