"""A model-free worker with the default debounce, on the real Kafka and Redis.

- A user whose first event comes before the worker has any catalog is held, and gets
  a list once the catalog arrives (no user left without a list).
- A burst of events for one user gives a list at once (leading edge) and one more when
  the window closes (trailing edge), naming the newest event: none is lost, and no two
  lists of the user go out within one window.
- The list stored in Redis and the last one on the topic are the same bytes
  (``published_ts`` is stamped once).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from redis import Redis
from worker_harness import WorkerProcess, wait_for

from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.codec import decode_recommendation, encode
from schemas.events import CatalogEvent, InteractionEvent
from schemas.recommendation import Recommendation
from schemas.topics import Topics, catalog_key, event_key, partition_for
from streams.kafka_io.event_producer import ensure_topics
from streams.redis_io.keyspace import Keyspace

pytestmark = [pytest.mark.services]

PARTITIONS = 2


class Lists:
    """Every list on the recommendations topic, raw bytes kept."""

    def __init__(self, settings: Settings) -> None:
        topic = Topics(settings.topic_prefix).recommendations
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            consumer_timeout_ms=200,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        self.seen: list[tuple[Recommendation, bytes]] = []

    def of(self, user: str) -> list[tuple[Recommendation, bytes]]:
        self.seen += [(decode_recommendation(m.value), m.value) for m in self.consumer]
        return [(r, raw) for r, raw in self.seen if r.user_id == user]


def test_held_users_and_a_debounced_burst(settings: Settings, tmp_path: Path) -> None:
    assert settings.debounce_ms == Settings().debounce_ms > 0  # the default
    settings = settings.with_(topic_partitions=PARTITIONS, bundle_dir=tmp_path / "none")
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings))
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    client = Redis.from_url(settings.redis_url)
    keys = Keyspace(settings.redis_namespace)
    t0 = int(time.time() * 1000)

    def send(ev: InteractionEvent | CatalogEvent) -> None:
        if isinstance(ev, InteractionEvent):
            producer.send(topics.events, key=event_key(ev.user_id), value=encode(ev))
        else:
            producer.send(topics.catalog, key=catalog_key(ev.item_id), value=encode(ev))
        producer.flush()

    def applied(partition: int) -> int:
        w = client.get(keys.watermark(partition))
        return -1 if w is None else int(w)

    # The operator's fixed window (at most one list per user per window); the adaptive
    # default opens no window at this light load.
    worker = WorkerProcess(settings, tmp_path / "worker.log", FRESHET_DEBOUNCE_MODE="fixed")
    lists = Lists(settings)
    try:
        # 1. Before any catalog: the early user's event is applied, no list yet.
        send(InteractionEvent("early-1", "early", "item-3", "view", t0))
        send(InteractionEvent("early-2", "early", "item-4", "view", t0 + 1))
        p_early = partition_for(event_key("early"), PARTITIONS)
        wait_for(lambda: applied(p_early) >= 1, 120, "the early events applied", worker)
        assert lists.of("early") == []
        for n in range(30):
            cats = (f"c{n % 3}",)
            send(CatalogEvent(f"cat-{n}", "upsert", f"item-{n}", t0, cats, {}, f"item {n}"))
        wait_for(lambda: bool(lists.of("early")), 60, "the held user's list", worker)
        (rec, _), *more = lists.of("early")
        assert not more and rec.source_event_id == "early-2"
        # model-free, or cold-start if its items were not yet in the catalog it first saw
        assert rec.strategy in {"model_free", "cold_start"} and rec.items
        assert not {"item-3", "item-4"} & {i.item_id for i in rec.items}  # seen

        # 2. A burst of five events within a fraction of the window.
        burst = [
            InteractionEvent(f"b-{j}", "burst", f"item-{10 + j}", "click", t0 + 1_000 + j)
            for j in range(5)
        ]
        started = time.monotonic()
        for ev in burst:
            send(ev)
        span_ms = (time.monotonic() - started) * 1000
        wait_for(
            lambda: any(r.source_event_id == "b-4" for r, _ in lists.of("burst")),
            30,
            "a list naming the newest burst event",
            worker,
        )
        got = lists.of("burst")
        assert got[-1][0].source_event_id == "b-4"
        # Leading edge, then at most one list per window that the burst spans.
        assert len(got) <= 2 + int(span_ms // settings.debounce_ms), (len(got), span_ms)
        sources = [r.source_event_id for r, _ in got]
        assert len(set(sources)) == len(sources)  # no list repeats what one before showed
        p_burst = partition_for(event_key("burst"), PARTITIONS)
        stored = client.hget(keys.user(p_burst, "burst"), "r")
        assert stored == got[-1][1]  # the same bytes in Redis and on Kafka
    finally:
        worker.stop()
        producer.close()
        lists.consumer.close()
