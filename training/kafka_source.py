"""Read a Kafka topic once, fully or over a time range, as contract messages (kafka-python).

A thin adapter. The range ``[since_ms, until_ms)`` applies to *event* time (``ts``).
Kafka's ``offsets_for_times`` only narrows where each partition's read starts: a
record's timestamp (stamped when it was produced) is never earlier than the event's
time, so no record before that offset can hold an event at or after ``since_ms``. Each
partition is read up to its end offset as of the start of the read, so the read ends
even while producers keep writing. Messages that do not decode are counted and skipped;
training data needs no dead-letter trail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition

from schemas.codec import Refusal, decode_catalog, decode_interaction
from schemas.events import CatalogEvent, InteractionEvent

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], InteractionEvent | CatalogEvent | Refusal]


@dataclass
class ReadStats:
    """How a topic read went."""

    messages: int = 0
    refused: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def read_topic(
    connect: Callable[[], KafkaConsumer],
    topic: str,
    since_ms: int | None = None,
    until_ms: int | None = None,
    catalog: bool = False,
    stats: ReadStats | None = None,
) -> Iterator[InteractionEvent | CatalogEvent]:
    """Decoded messages of ``topic`` with event times in ``[since_ms, until_ms)``.

    Partitions are read one after another, so events are not in global time order;
    ``training.data.build_log`` sorts them. ``connect`` gives an unsubscribed consumer
    (``freshet.wiring.training_consumer`` builds it from settings, waiting for a late
    broker); it is closed when the read ends.
    """
    decode: Decoder = decode_catalog if catalog else decode_interaction
    stats = stats if stats is not None else ReadStats()
    consumer = connect()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise ValueError(f"topic {topic!r} does not exist or has no partitions")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        begin = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        start = _offsets_at(consumer, tps, since_ms, begin, end)
        stop = end
        for tp in tps:
            if start[tp] >= stop[tp]:
                continue
            consumer.assign([tp])
            consumer.seek(tp, start[tp])
            while consumer.position(tp) < stop[tp]:
                batch = consumer.poll(timeout_ms=1000, max_records=5000)
                if not batch:
                    log.warning("no progress reading %s; stopping at %s", tp, consumer.position(tp))
                    break
                for record in batch.get(tp, []):
                    if record.offset >= stop[tp]:
                        break
                    stats.messages += 1
                    value = record.value or b""
                    out = decode(value)
                    if isinstance(out, Refusal):
                        stats.refused += 1
                        stats.reasons[out.reason] = stats.reasons.get(out.reason, 0) + 1
                        continue
                    if (since_ms is None or out.ts >= since_ms) and (
                        until_ms is None or out.ts < until_ms
                    ):
                        yield out
    finally:
        consumer.close()


def _offsets_at(
    consumer: KafkaConsumer,
    tps: list[TopicPartition],
    ts_ms: int | None,
    default: dict[TopicPartition, int],
    end: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    if ts_ms is None:
        return dict(default)
    found = consumer.offsets_for_times(dict.fromkeys(tps, ts_ms))
    return {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in tps}
