"""Read one topic outside any consumer group, for operator tools (tail, dead letters).

The reader assigns partitions itself and commits nothing, so inspecting a topic never
moves a worker's offsets or triggers a rebalance. Positions are resolved when the
reader opens: "from now" means the end offsets at that moment, and "caught up" means
the end offsets at that moment too, so a bounded read of a busy topic still ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from schemas.topics import partition_for
from streams.kafka_io.kafka_config import KafkaConfig, kafka_python_kwargs
from streams.kafka_io.kafka_wait import kafka_client_when_up


class TopicMissing(LookupError):
    """The topic does not exist (or this client may not see it)."""


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """One record as read: where it sits, its key and value bytes, its broker time."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


class TopicReader:
    """Reads a topic from the beginning or from now; use as a context manager."""

    def __init__(
        self,
        kafka: KafkaConfig,
        topic: str,
        *,
        from_beginning: bool,
        for_key: bytes | None = None,
        client_id: str = "freshet-reader",
    ) -> None:
        """Connect, waiting for a late broker (nothing is assigned until ``open``).

        Args:
            kafka: Where the brokers are.
            topic: The topic to read.
            from_beginning: Start at the earliest offsets; else at the end offsets as of
                ``open``.
            for_key: Only the partition that records with this key land on (Kafka's
                default partitioner over the topic's real partition count); all
                partitions when ``None``.
            client_id: Shown in broker logs.
        """
        self.topic = topic
        self.from_beginning = from_beginning
        self._for_key = for_key
        kwargs = kafka_python_kwargs(
            kafka,
            client_id=client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
        )
        self._consumer: Any = kafka_client_when_up(kafka, lambda: KafkaConsumer(**kwargs))
        self._assigned: list[TopicPartition] = []
        self._end: dict[TopicPartition, int] = {}

    def open(self) -> TopicReader:
        """Assign the partitions and fix the start and end positions.

        Raises:
            TopicMissing: The topic has no partitions the client can see.
        """
        found = self._consumer.partitions_for_topic(self.topic)
        if not found:
            raise TopicMissing(f"topic {self.topic!r} does not exist")
        chosen = sorted(found)
        if self._for_key is not None:
            chosen = [partition_for(self._for_key, len(found))]
        self._assigned = [TopicPartition(self.topic, p) for p in chosen]
        self._consumer.assign(self._assigned)
        if self._assigned:
            if self.from_beginning:
                self._consumer.seek_to_beginning(*self._assigned)
            else:
                self._consumer.seek_to_end(*self._assigned)
            for tp in self._assigned:
                # Resolve now, so "from now" cannot drift to the first poll's moment.
                self._consumer.position(tp)
            self._end = dict(self._consumer.end_offsets(self._assigned))
        return self

    @property
    def partitions(self) -> list[int]:
        """The partitions being read."""
        return [tp.partition for tp in self._assigned]

    def caught_up(self) -> bool:
        """Whether every partition has reached its end offset as of ``open``."""
        return all(self._consumer.position(tp) >= end for tp, end in self._end.items())

    def records(
        self,
        *,
        timeout_s: float | None = None,
        until_caught_up: bool = False,
        poll_ms: int = 500,
    ) -> Iterator[TopicRecord]:
        """Yield records in partition order until a bound is reached.

        Args:
            timeout_s: Stop after this many seconds; ``None`` runs until the caller
                stops iterating.
            until_caught_up: Stop once the end offsets as of ``open`` are reached.
            poll_ms: Longest single wait for the broker.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if until_caught_up and self.caught_up():
                return
            wait_ms = poll_ms
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                wait_ms = max(1, min(poll_ms, int(left * 1000)))
            batches = self._consumer.poll(timeout_ms=wait_ms)
            for tp in sorted(batches, key=lambda t: t.partition):
                for rec in batches[tp]:
                    yield TopicRecord(
                        rec.partition, rec.offset, rec.key, rec.value or b"", rec.timestamp
                    )

    def close(self) -> None:
        self._consumer.close(autocommit=False)

    def __enter__(self) -> TopicReader:
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()
