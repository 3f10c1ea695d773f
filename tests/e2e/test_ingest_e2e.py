"""Ten thousand simulated events through the real broker into real Redis.

Duplicates and malformed messages are mixed in; afterwards Redis must equal a
recomputation from the valid, deduplicated events, and every malformed message must
sit in the dead-letter topic with its reason and original bytes.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from redis import Redis
from worker_harness import WorkerProcess, wait_for

from freshet.settings import Settings
from freshet.simulator.config import SimConfig
from freshet.simulator.faults import malformed_messages
from freshet.simulator.stream import simulate
from freshet.wiring import kafka_of
from schemas.codec import decode_dead_letter, encode
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics, catalog_key, event_key, partition_for
from streams.core.state_rules import UserState, replay_states
from streams.kafka_io.event_producer import ensure_topics
from streams.redis_io.keyspace import Keyspace
from streams.runtime.worker import rules_of

pytestmark = [pytest.mark.services, pytest.mark.slow]


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, expect: int, timeout_s: float = 30.0) -> list[bytes]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    out: list[bytes] = []
    try:
        for msg in consumer:
            out.append(msg.value)
            if len(out) >= expect:
                break
    finally:
        consumer.close()
    return out


def test_ingest_end_to_end(settings: Settings, tmp_path: Path) -> None:
    settings = settings.with_(topic_partitions=4)
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings))
    cfg = SimConfig(
        users=400, items=300, events=10_000, duplicates=0.03, new_item_rate=2.0, new_user_rate=3.0
    )
    stream = list(simulate(cfg, seed=7))
    interactions = [e for e in stream if isinstance(e, InteractionEvent)]
    catalog = [e for e in stream if isinstance(e, CatalogEvent)]
    faults = malformed_messages(300, seed=3)
    assert len(interactions) >= 10_000

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    for ev in catalog:
        producer.send(topics.catalog, key=catalog_key(ev.item_id), value=encode(ev))
    step = len(interactions) // len(faults)
    for i, ev in enumerate(interactions):
        producer.send(topics.events, key=event_key(ev.user_id), value=encode(ev))
        if i % step == 0 and i // step < len(faults):
            raw, _ = faults[i // step]
            producer.send(topics.events, key=b"u-bad", value=raw)
    producer.flush()
    producer.close()
    ends = end_offsets(settings.kafka_bootstrap, topics.events, 4)
    assert sum(ends.values()) == len(interactions) + len(faults)

    client = Redis.from_url(settings.redis_url)
    keys = Keyspace(settings.redis_namespace)

    def caught_up() -> bool:
        wms = [client.get(keys.watermark(p)) for p in range(4)]
        return all(
            (w is not None and int(w) >= ends[p] - 1) or ends[p] == 0 for p, w in enumerate(wms)
        )

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        wait_for(caught_up, 180, "the worker to apply every event", worker)
    finally:
        worker.stop()

    # Redis equals the offline recomputation from valid, deduplicated events.
    states, counts = replay_states(interactions, rules_of(settings))
    mismatches = 0
    for uid, expected in states.items():
        p = partition_for(event_key(uid), 4)
        blob = client.hget(keys.user(p, uid), "s")
        assert blob is not None, uid
        if UserState.from_obj(orjson.loads(blob)) != expected:
            mismatches += 1
    assert mismatches == 0
    stored_counts: dict[str, int] = {}
    for p in range(4):
        for item, n in client.hgetall(keys.counts(p)).items():
            stored_counts[item.decode()] = stored_counts.get(item.decode(), 0) + int(n)
    assert stored_counts == counts
    assert sum(counts.values()) == len({e.event_id for e in interactions})

    # Every malformed message is dead-lettered with its reason and original bytes.
    letters = [
        decode_dead_letter(v)
        for v in read_topic(settings.kafka_bootstrap, topics.dead_letter, len(faults))
    ]
    assert len(letters) >= len(faults)
    got = {(d.value, d.reason) for d in letters}
    assert {(raw, reason) for raw, reason in faults} <= got

    # The catalog agent stored every item.
    assert client.hlen(keys.catalog) == len({e.item_id for e in catalog})
