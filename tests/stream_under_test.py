"""The set-up and drain every fault test repeats: one stream, its state, its watermarks.

A test names its settings; ``StreamUnderTest.open`` creates the topics and connects to
Redis, and its methods wait for the first batch, measure the backlog after a fault,
wait for the producer's last event and audit the state (``reliability_harness``).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from reliability_harness import (
    Audit,
    PacedProducer,
    Watermarks,
    audit,
    end_offsets,
    offsets_beyond,
    redis_client,
    time_to_reach,
)
from worker_harness import WorkerProcess, wait_for

from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.topics import Topics
from streams.kafka_io.event_producer import ensure_topics
from streams.redis_io.keyspace import Keyspace


@dataclass(frozen=True)
class StreamUnderTest:
    """One deployment's topics (created), Redis client, key space and watermarks."""

    settings: Settings
    partitions: int
    topics: Topics
    client: Redis
    keys: Keyspace
    marks: Watermarks

    @classmethod
    def open(cls, settings: Settings, partitions: int) -> StreamUnderTest:
        """Create the topics of ``settings`` and connect to its Redis."""
        ensure_topics(kafka_of(settings))
        client = redis_client(settings.redis_url)
        keys = Keyspace(settings.redis_namespace)
        marks = Watermarks(client, keys, partitions)
        return cls(settings, partitions, Topics(settings.topic_prefix), client, keys, marks)

    def first_batch(self, worker: WorkerProcess, timeout: float, what: str = "a batch") -> None:
        """Wait until some partition has a batch applied (failing if ``worker`` exits)."""
        wait_for(lambda: any(w >= 0 for w in self.marks.read().values()), timeout, what, worker)

    def backlog(
        self, applied: dict[int, int] | None = None, timeout: float = 10.0
    ) -> dict[int, int]:
        """End offsets past ``applied`` (default: the watermarks now) on every partition."""
        at = self.marks.read() if applied is None else applied
        return offsets_beyond(self.settings.kafka_bootstrap, self.topics.events, at, timeout)

    def ends(self) -> dict[int, int]:
        """The events topic's end offsets now."""
        return end_offsets(self.settings.kafka_bootstrap, self.topics.events, self.partitions)

    def drain(self, producer: PacedProducer, worker: WorkerProcess) -> None:
        """Wait for ``producer`` to finish cleanly and ``worker`` to apply the last event."""
        producer.join(timeout=120)
        assert producer.error is None, producer.error
        time_to_reach(self.marks, self.ends(), 120, "the last event", [worker])

    def audit(self) -> Audit:
        """The exactly-once audit of the state against the events topic."""
        return audit(self.settings, self.client, self.keys)
