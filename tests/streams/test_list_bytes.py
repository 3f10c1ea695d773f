"""A published list's bytes stay the contract's: stamped and encoded in one pass.

``ListPublisher`` stamps each list with ``stamped`` (not ``dataclasses.replace``) and
encodes it through ``Recommendation.to_dict``, whose slots are written inline. The
bytes must be those of the contract's field order with each slot's own ``to_dict``,
in Redis and on the list topic alike: same key, value, no headers, the key's partition.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.codec import encode
from schemas.recommendation import REASONS, STRATEGIES, Recommendation, RecommendedItem
from schemas.topics import Topics, event_key
from streams.core.publish import ListPublisher, Refresh, stamped
from streams.kafka_io.event_producer import ensure_topics
from streams.kafka_io.kafka_config import aiokafka_kwargs
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import RedisConfig, async_redis
from streams.redis_io.redis_state_store import RedisStateStore
from streams.runtime.faust_app import create_app
from streams.runtime.worker import KafkaSinks

NOW_MS = 1_800_000_000_123


def contract_bytes(rec: Recommendation, published_ts: int) -> bytes:
    """The list as the contract writes it, slot by slot through ``RecommendedItem.to_dict``
    (the encoding before the one-pass one)."""
    return orjson.dumps(
        {
            "schema_version": rec.schema_version,
            "user_id": rec.user_id,
            "items": [it.to_dict() for it in rec.items],
            "strategy": rec.strategy,
            "model_version": rec.model_version,
            "source_event_id": rec.source_event_id,
            "event_ts": rec.event_ts,
            "published_ts": published_ts,
        }
    )


names = st.text(min_size=1, max_size=12)
slots = st.builds(
    RecommendedItem,
    item_id=names,
    score=st.floats(allow_nan=False, allow_infinity=False, width=32),
    reason=st.sampled_from(REASONS),
    reason_item_id=st.none() | names,
)
lists = st.builds(
    Recommendation,
    user_id=names,
    items=st.lists(slots, max_size=25).map(tuple),
    strategy=st.sampled_from(STRATEGIES),
    model_version=st.none() | names,
    source_event_id=st.none() | names,
    event_ts=st.none() | st.integers(0, 2**53),
    published_ts=st.integers(0, 2**53),
    schema_version=st.integers(1, 3),
)


@settings(max_examples=300, deadline=None)
@given(lists, st.integers(0, 2**53))
def test_a_stamped_list_encodes_to_the_contracts_bytes(rec: Recommendation, now: int) -> None:
    out = stamped(rec, now)
    assert out == dataclasses.replace(rec, published_ts=now)  # every field carried
    assert encode(out) == contract_bytes(rec, now)


def test_stamped_carries_every_field() -> None:
    """A field added to the contract must be carried by ``stamped`` too."""
    values: dict[str, Any] = {
        "user_id": "u",
        "items": (RecommendedItem("i", 0.5, "new_item", "j"),),
        "strategy": "model_free",
        "model_version": "v9",
        "source_event_id": "e",
        "event_ts": 7,
        "published_ts": 8,
        "schema_version": 2,
    }
    assert [f.name for f in dataclasses.fields(Recommendation)] == list(values)
    assert stamped(Recommendation(**values), 8) == Recommendation(**values)


async def read_all(settings: Settings, topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, **aiokafka_kwargs(kafka_of(settings)), auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[Any] = []
    try:
        while len(out) < count:
            got = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
            for records in got.values():
                out += records
    finally:
        await consumer.stop()
    return out


async def test_published_lists_are_the_contracts_bytes_in_redis_and_on_kafka(
    settings: Settings,
) -> None:
    settings = settings.with_(topic_partitions=4)
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings), [topics.recommendations])
    app = create_app(settings, app_id=f"{settings.topic_prefix}-bytes")
    client = async_redis(RedisConfig(url=settings.redis_url))
    store = RedisStateStore(client, Keyspace(settings.topic_prefix))
    await app.producer.start()
    sinks = KafkaSinks(app, topics)
    publisher = ListPublisher(store, sinks.lists, clock=lambda: NOW_MS / 1000)
    recs = {
        f"user-{u}": Recommendation(
            f"user-{u}",
            tuple(
                RecommendedItem(
                    f"i{u}-{j}", 1.0 - j / 7, REASONS[j % 5], f"r{j}" if j % 5 == 3 else None
                )
                for j in range(20)
            ),
            STRATEGIES[u % 3],
            None if u % 3 else "v1",
            f"e{u}",
            NOW_MS - 50 - u,
            NOW_MS - 40,  # the scorer's stamp, replaced at commit
        )
        for u in range(30)
    }
    owner = {uid: u % 4 for u, uid in enumerate(recs)}
    try:
        sent = await publisher.commit([], owner, Refresh(lists=recs))
    finally:
        await app.producer.stop()
    assert [r.published_ts for r in sent] == [NOW_MS] * len(recs)
    want = {uid: contract_bytes(r, NOW_MS) for uid, r in recs.items()}
    try:
        for uid, p in owner.items():
            stored = await store.user(p, uid)
            assert stored is not None and stored.latest == want[uid]
    finally:
        await client.aclose()
    got = await read_all(settings, topics.recommendations, len(recs))
    rule = DefaultPartitioner()
    all_partitions = [0, 1, 2, 3]
    assert sorted(r.key for r in got) == sorted(event_key(uid) for uid in recs)
    for r in got:
        uid = r.key.decode()
        assert r.value == want[uid]
        assert not r.headers
        assert r.partition == rule(r.key, all_partitions, all_partitions)
