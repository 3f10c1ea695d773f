"""The worker's list sink sends committed lists as record batches (real Kafka).

Lists leave the worker as one record batch per partition (up to the producer's batch
size, ``LIST_BATCH_BYTES``), not one send per list. They
must land where a send per list would have put them (the producer's default
partitioner on the user key), as the very bytes committed, in order per user, also
when a batch outgrows the producer's batch size.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.codec import encode
from schemas.recommendation import Recommendation, RecommendedItem
from schemas.topics import Topics, event_key
from streams.core.publish import Committed
from streams.kafka_io.direct_produce import DirectProduce
from streams.kafka_io.event_producer import ensure_topics
from streams.kafka_io.kafka_config import aiokafka_kwargs
from streams.runtime.faust_app import create_app
from streams.runtime.list_sinks import KafkaSinks


def committed(user: str, n: int, pad: int) -> Committed:
    items = tuple(
        RecommendedItem(f"i{n}-{j}-" + "x" * pad, 1.0 - j / 100, "trending") for j in range(20)
    )
    rec = Recommendation(user, items, "cold_start", None, f"e{n}", 1_700_000_000_000 + n, 1)
    return Committed(rec, encode(rec))


async def started_sinks(settings: Settings, name: str) -> tuple[Any, KafkaSinks, Topics]:
    """The Faust app (its producer started), its ``KafkaSinks`` and the topics."""
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings), [topics.recommendations])
    app = create_app(settings, app_id=f"{settings.topic_prefix}-{name}")
    await app.producer.start()
    await leaders_known(app, topics.recommendations)
    return app, KafkaSinks(app, topics), topics


async def leaders_known(app: Any, topic: str, within_s: float = 30.0) -> None:
    """Wait until the producer's metadata names a leader for each of ``topic``'s
    partitions: the direct path declines a partition with none (right after the topic
    is created, on a loaded host), and the tests that count direct sends start after."""
    producer = app.producer._ensure_producer()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        parts = await producer.partitions_for(topic)
        leaders = [
            producer.client.cluster.leader_for_partition(TopicPartition(topic, p)) for p in parts
        ]
        if parts and all(leader is not None and leader >= 0 for leader in leaders):
            return
        assert loop.time() < deadline, f"no leader for some of {topic}'s partitions: {leaders}"
        producer.client.force_metadata_update()
        await asyncio.sleep(0.1)


async def read_all(settings: Settings, topic: str, count: int) -> list[tuple[int, bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic, **aiokafka_kwargs(kafka_of(settings)), auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[tuple[int, bytes, bytes]] = []
    try:
        while len(out) < count:
            got = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
            for tp, records in sorted(got.items()):
                out += [(tp.partition, r.key or b"", r.value or b"") for r in records]
    finally:
        await consumer.stop()
    return out


async def test_lists_land_on_their_key_partition_as_committed_bytes(settings: Settings) -> None:
    settings = settings.with_(topic_partitions=4)
    app, sinks, topics = await started_sinks(settings, "sinks")
    users = [f"user-{u}" for u in range(40)]
    # Three rounds, handed over back to back without waiting for the broker. The
    # first: one record batch per partition in one produce request, past the producer.
    # The second's lists are ~28 KiB each, so a partition's ~10 outgrow one batch and
    # go to the producer, which splits them.
    first = [committed(u, 0, 0) for u in users]
    second = [committed(u, 1, 1400) for u in users]
    third = [committed(u, 2, 0) for u in users]
    try:
        await sinks.enqueue_lists(first)
        await sinks.enqueue_lists(second)
        assert await sinks._sent[0] == []  # straight to the broker, nothing left to the producer
        assert len(await sinks._sent[1]) >= 5  # 1.1 MiB: the producer's 256 KiB batches
        await sinks.delivered()
        await sinks.lists(third)  # the trailing-edge path: returns once on the broker
    finally:
        await app.producer.stop()
    got = await read_all(settings, topics.recommendations, 3 * len(users))
    assert len(got) == 3 * len(users)
    sent = {c.raw: c.rec.user_id for c in first + second + third}
    rule = DefaultPartitioner()
    for partition, key, value in got:
        assert sent[value] == key.decode()  # the committed bytes, under the user key
        assert partition == rule(event_key(sent[value]), [0, 1, 2, 3], [0, 1, 2, 3])
    by_user = [(key, value) for _, key, value in got]
    for u in users:
        mine = [v for k, v in by_user if k == event_key(u)]
        assert mine == [c.raw for c in first + second + third if c.rec.user_id == u]


async def test_a_cancelled_hand_over_leaves_the_later_ones_to_deliver(settings: Settings) -> None:
    """Each hand-over waits for the one before it; one that was cancelled must not
    cancel those after it (the lane's loop would end on the cancelled delivery)."""
    app, sinks, topics = await started_sinks(settings, "sinks-cancel")
    dropped = [committed("user-a", 0, 0)]
    kept = [committed("user-b", 1, 0), committed("user-c", 1, 0)]
    try:
        await sinks.enqueue_lists(dropped)
        sinks._sent[0].cancel()  # before it ran: none of its lists is handed over
        sinks.delivered()  # the cancelled one's delivery: its own caller's
        await sinks.enqueue_lists(kept)
        await asyncio.wait_for(sinks.delivered(), 30)  # raised CancelledError before
    finally:
        await app.producer.stop()
    got = await read_all(settings, topics.recommendations, len(kept))
    assert sorted(value for _, _, value in got) == sorted(c.raw for c in kept)


class BrokenDirect(DirectProduce):
    """The direct path as if an aiokafka internal it leans on had changed."""

    sends = 0

    async def send(self, by_node: Any) -> list[int]:
        BrokenDirect.sends += 1
        raise TypeError("an aiokafka internal changed")


async def test_a_direct_path_that_fails_in_itself_hands_every_list_to_the_producer(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """An error of the direct path other than the broker's (here a ``TypeError``) must
    not fail the deliveries (the agent would rerun its batch without end): it is logged
    once, the path is off for this sinks object, and every list goes through the
    producer, in order per user."""
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings), [topics.recommendations])
    app = create_app(settings, app_id=f"{settings.topic_prefix}-broken-direct")
    await app.producer.start()
    sinks = KafkaSinks(app, topics, direct_produce=BrokenDirect)
    users = [f"user-{u}" for u in range(6)]
    rounds = [[committed(u, n, 0) for u in users] for n in range(3)]
    BrokenDirect.sends = 0
    try:
        with caplog.at_level(logging.ERROR, logger="freshet.worker"):
            await asyncio.wait_for(sinks.lists(rounds[0]), 30)
            for lists in rounds[1:]:
                await sinks.enqueue_lists(lists)
                assert await sinks._sent[-1], "handed to the producer"
                await asyncio.wait_for(sinks.delivered(), 30)
    finally:
        await app.producer.stop()
    assert BrokenDirect.sends == 1, "off after its first failure"
    assert len([r for r in caplog.records if r.name == "freshet.worker"]) == 1
    sent = [c for r in rounds for c in r]
    got = await read_all(settings, topics.recommendations, len(sent))
    for u in users:
        assert [v for _, k, v in got if k == event_key(u)] == [
            c.raw for c in sent if c.rec.user_id == u
        ]
