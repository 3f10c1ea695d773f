"""The dead-letter topic's I/O: read every letter, tally reasons, send a re-drive plan.

``freshet dlq`` and the web view's dead-letter panel both read and re-drive through
these functions; what to re-drive is decided by ``freshet.ops.dead_letters.plan_redrive``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from freshet.ops.dead_letters import Fix, RedrivePlan, plan_redrive, read_dead_letter
from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.dead_letter import DeadLetter
from schemas.topics import Topics
from streams.kafka_io.kafka_config import kafka_python_kwargs
from streams.kafka_io.topic_reader import TopicReader

Located = tuple[int, int, DeadLetter]  # dead-letter topic partition, offset, the letter


@dataclass
class LettersRead:
    """Every dead letter on the topic as it was when read, and what could not be read."""

    letters: list[Located] = field(default_factory=list)
    unreadable: int = 0


def read_letters(settings: Settings, client_id: str = "freshet-dlq") -> LettersRead:
    """Read the whole dead-letter topic as it is now (it does not wait for more).

    Raises:
        TopicMissing: No dead-letter topic yet.
        KafkaError: The broker could not be reached.
    """
    topic = Topics(settings.topic_prefix).dead_letter
    out = LettersRead()
    with TopicReader(kafka_of(settings), topic, from_beginning=True, client_id=client_id) as reader:
        for record in reader.records(until_caught_up=True):
            letter = read_dead_letter(record.value)
            if letter is None:
                out.unreadable += 1
            else:
                out.letters.append((record.partition, record.offset, letter))
    return out


@dataclass(frozen=True, slots=True)
class RedriveOutcome:
    """A re-drive's plan and, unless it was a dry run, what Kafka acknowledged."""

    plan: RedrivePlan
    delivered: int
    failed: int


def redrive(
    settings: Settings,
    letters: Sequence[DeadLetter],
    *,
    fixes: Sequence[Fix] = (),
    reasons: frozenset[str] | None = None,
    resend_originals: bool = False,
    transforms: Sequence[str] = (),
    dry_run: bool = False,
) -> RedriveOutcome:
    """Plan the re-drive of ``letters`` under the current limits and send what passes."""
    from streams.kafka_io.event_producer import EventProducer
    from streams.runtime.worker import limits_of

    plan = plan_redrive(
        letters,
        Topics(settings.topic_prefix),
        limits=limits_of(settings),
        now_ms=int(time.time() * 1000),
        reasons=reasons,
        fixes=fixes,
        resend_originals=resend_originals,
        transforms=transforms,
    )
    if dry_run or not plan.to_send:
        return RedriveOutcome(plan, 0, 0)
    with EventProducer(kafka_of(settings)) as producer:
        for item in plan.to_send:
            producer.send(item.event)
        stats = producer.flush()
    return RedriveOutcome(plan, stats.delivered, stats.failed)


class DeadLetterTally:
    """Counts dead letters per reason, reading only what is new at each ``update``.

    It keeps one consumer outside any group (nothing is committed) and picks up the
    dead-letter topic once it exists, so an overview's cost follows the letters written.
    """

    def __init__(self, settings: Settings) -> None:
        self.topic = Topics(settings.topic_prefix).dead_letter
        self.counts: Counter[str] = Counter()
        self.unreadable = 0
        self._consumer: Any = KafkaConsumer(
            **kafka_python_kwargs(
                kafka_of(settings),
                client_id="freshet-ui-dlq",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
        )
        self._assigned: list[TopicPartition] = []

    def update(self, max_wait_s: float = 1.0) -> Counter[str]:
        """Read up to the current end offsets (waiting at most ``max_wait_s``)."""
        if not self._assigned:
            found = self._consumer.partitions_for_topic(self.topic)
            if not found:
                return self.counts
            self._assigned = [TopicPartition(self.topic, p) for p in sorted(found)]
            self._consumer.assign(self._assigned)
            self._consumer.seek_to_beginning(*self._assigned)
        ends = self._consumer.end_offsets(self._assigned)
        deadline = time.monotonic() + max_wait_s
        while time.monotonic() < deadline and any(
            self._consumer.position(tp) < end for tp, end in ends.items()
        ):
            for records in self._consumer.poll(timeout_ms=200).values():
                for rec in records:
                    letter = read_dead_letter(rec.value or b"")
                    if letter is None:
                        self.unreadable += 1
                    else:
                        self.counts[letter.reason] += 1
        return self.counts

    def close(self) -> None:
        self._consumer.close(autocommit=False)
