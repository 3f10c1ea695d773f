"""Partition lanes of the batch delivery (``FRESHET_BATCH_LANES``, ``add_batch_agent(lanes=)``).

With lanes, a partition's chunks always go to the same lane (partition modulo lanes), a
lane's take waits only for its own chunks, and the bound counts every lane. On the real
broker, two lanes run their batches side by side (two handlers in flight at once, where
one lane never has two), each batch holds one lane's partitions, every partition's
records reach the handler once and in offset order, each batch is acked only after its
own sends are delivered (a slow lane's deliveries are not taken for the other's), and
Faust commits every partition to its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from kafka import KafkaProducer

from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.topics import Topics
from streams.core.ingest import BatchStats, SourceRecord
from streams.core.micro_batches import ChunkQueue
from streams.kafka_io.event_producer import ensure_topics
from streams.runtime.faust_app import add_batch_agent, create_app


async def test_a_lane_takes_only_its_own_chunks_in_order() -> None:
    q: ChunkQueue[int] = ChunkQueue(max_items=6, lanes=2, lane_of=lambda tag: tag[0])
    for tag, items in (((0, "a"), [1]), ((1, "b"), [2, 3]), ((2, "c"), [4]), ((3, "d"), [5])):
        q.put_nowait(tag, items, 0.0)
    assert q.has_room() and len(q) == 5  # the bound counts both lanes
    q.put_nowait((5, "e"), [6], 0.0)
    assert not q.has_room()
    assert [tag for tag, _, _ in await q.take(lane=1)] == [(1, "b"), (3, "d"), (5, "e")]
    assert q.has_room() and len(q) == 2
    # Lane 1 is empty now: its take waits, while lane 0 still holds chunks.
    later = asyncio.ensure_future(q.take(lane=1))
    await asyncio.sleep(0.01)
    assert not later.done()
    assert [tag for tag, _, _ in await q.take(1, lane=0)] == [(0, "a")]  # at most 1 item
    q.put_nowait((7, "f"), [7], 0.0)
    assert [tag for tag, _, _ in await asyncio.wait_for(later, 1)] == [(7, "f")]
    assert q.clear() == 1 and len(q) == 0


@pytest.mark.services
@pytest.mark.parametrize("lanes", [1, 2])
def test_lanes_run_side_by_side_in_order_and_ack_after_their_own_delivery(
    settings: Settings, lanes: int
) -> None:
    total, partitions = 2_000, 4
    settings = settings.with_(topic_partitions=partitions, kafka_batch_delivery=True)
    topic = Topics(settings.topic_prefix).events
    ensure_topics(kafka_of(settings))
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    for i in range(total):
        producer.send(topic, key=b"u%d" % (i % 101), value=b"x%d" % i)
    producer.flush()
    producer.close()

    async def run() -> dict[str, Any]:
        app = create_app(settings)
        loop = asyncio.get_running_loop()
        seen: dict[int, list[int]] = {}
        batch_lanes: list[set[int]] = []
        in_flight = [0, 0]  # now, most
        pending: list[asyncio.Future[None]] = []  # sends since the last delivered()
        own: dict[int, asyncio.Future[None]] = {}  # a batch's stats -> its delivery
        early_acks: list[int] = []

        async def handler(records: Sequence[SourceRecord]) -> BatchStats:
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
            try:
                await asyncio.sleep(0.003 if records[0].partition % 2 == 0 else 0.001)
            finally:
                in_flight[0] -= 1
            parts = {r.partition for r in records}
            batch_lanes.append({p % 2 for p in parts})
            for r in records:
                seen.setdefault(r.partition, []).append(r.offset)
            sent: asyncio.Future[None] = loop.create_future()
            # Lane 0's sends take far longer to be delivered than lane 1's.
            loop.call_later(0.03 if 0 in parts else 0.001, sent.set_result, None)
            pending.append(sent)
            stats = BatchStats(records=len(records))
            own[id(stats)] = sent
            return stats

        def delivered() -> Any:
            sent, pending[:] = list(pending), []
            return asyncio.gather(*sent)

        def on_batch(stats: BatchStats) -> None:
            if not own.pop(id(stats)).done():
                early_acks.append(stats.records)

        add_batch_agent(
            app,
            topic,
            handler,
            name="ingest",
            max_events=50,
            within_s=0.01,
            on_batch=on_batch,
            delivered=delivered,
            lanes=lanes,
        )
        await app.start()
        consumer = app.consumer
        try:
            for _ in range(600):  # up to 30 s
                await asyncio.sleep(0.05)
                if sum(map(len, seen.values())) >= total and not own:
                    break
            await consumer.commit()
            committed = {
                tp.partition: consumer._committed_offset[tp] for tp in consumer.assignment()
            }
        finally:
            await app.stop()
        return {
            "seen": seen,
            "batch_lanes": batch_lanes,
            "most_in_flight": in_flight[1],
            "early_acks": early_acks,
            "committed": committed,
        }

    got = asyncio.run(run())
    seen = got["seen"]
    assert sum(map(len, seen.values())) == total
    for offsets in seen.values():
        assert offsets == list(range(len(offsets)))  # once each, in offset order
    assert got["committed"] == {p: len(seen[p]) for p in range(partitions)}
    assert got["early_acks"] == []  # every batch acked after its own sends
    if lanes == 2:
        assert all(len(lanes_of) == 1 for lanes_of in got["batch_lanes"])
        assert got["most_in_flight"] == 2
    else:
        assert got["most_in_flight"] == 1
