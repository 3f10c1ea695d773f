"""Reading a topic once for training, against the real broker."""

from __future__ import annotations

from freshet.settings import Settings
from freshet.wiring import kafka_of, training_consumer
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics
from streams.kafka_io.event_producer import EventProducer, ensure_topics
from training.kafka_source import ReadStats, read_topic

T0 = 1_700_000_000_000


def test_reads_a_time_range_of_events_and_the_catalog(settings: Settings) -> None:
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings))
    events = [
        InteractionEvent(f"e{i}", f"u{i % 7}", f"i{i % 5}", "view", T0 + 1000 * i)
        for i in range(60)
    ]
    with EventProducer(kafka_of(settings)) as producer:
        for ev in events:
            producer.send(ev)
        producer.send(CatalogEvent("c1", "upsert", "i1", T0, ("shoes",)))
        producer.send_raw(b"not json")
        producer.flush()
    stats = ReadStats()
    connect = training_consumer(settings)
    got = list(read_topic(connect, topics.events, T0 + 10_000, T0 + 20_000, stats=stats))
    assert sorted(e.event_id for e in got) == sorted(f"e{i}" for i in range(10, 20))
    assert stats.refused == 1 and stats.reasons == {"invalid_json": 1}
    assert len(list(read_topic(connect, topics.events))) == 60
    catalog = list(read_topic(connect, topics.catalog, catalog=True))
    assert [c.item_id for c in catalog] == ["i1"]
