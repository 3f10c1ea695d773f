"""The batch delivery (``FRESHET_KAFKA_BATCH_DELIVERY``, ``streams.runtime.faust_batches``).

The switch picks the transport; a batch agent then gets a bounded chunk queue. Acks of
finished chunks mark Faust's own commit bookkeeping, so ``Consumer._new_offset`` (what
Faust commits) moves exactly past what is done: known answers with a gap, a committed
offset and a repeated chunk. Chunks fetched in an older consumer generation are
dropped. On the real broker a slow handler stops the fetcher: what was fetched and not
handled stays within the queue's bound while the topic holds far more. Commit, resume,
orderly stop, rebalance and kill -9 with it on: tests/streams/test_loop_consumer.py and
tests/reliability/test_crash_safety.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from kafka import KafkaProducer

from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.topics import Topics
from streams.core.ingest import BatchStats, SourceRecord
from streams.core.micro_batches import ChunkQueue
from streams.kafka_io.event_producer import ensure_topics
from streams.runtime.faust_app import add_batch_agent, create_app
from streams.runtime.faust_batches import (
    BatchDeliveryTransport,
    LoopBatchDeliveryTransport,
    current,
    source_records,
)
from streams.runtime.faust_fetch import FetchTunedTransport
from streams.runtime.faust_loop_consumer import LoopConsumerTransport

TOPIC = "t"


async def _noop(records: Sequence[SourceRecord]) -> BatchStats:
    return BatchStats()


def _app(settings: Settings) -> Any:
    async def build() -> Any:
        app = create_app(settings)
        add_batch_agent(app, TOPIC, _noop, name="ingest", max_events=10, within_s=0.01)
        app.consumer  # noqa: B018  # built on the loop
        return app

    return asyncio.run(build())


@pytest.mark.parametrize(
    ("on_loop", "batches", "transport"),
    [
        (True, True, LoopBatchDeliveryTransport),
        (False, True, BatchDeliveryTransport),
        (True, False, LoopConsumerTransport),
        (False, False, FetchTunedTransport),
    ],
)
def test_the_switch_chooses_the_transport(
    tmp_path: Path, on_loop: bool, batches: bool, transport: type
) -> None:
    settings = Settings().with_(
        home=tmp_path, kafka_consumer_on_loop=on_loop, kafka_batch_delivery=batches
    )
    app = _app(settings)
    assert type(app.transport) is transport
    if batches:
        feed = app.batch_feeds[TOPIC]
        assert feed.max_items == app.conf.stream_buffer_maxsize
    else:
        assert app.batch_feeds == {}


def _chunk(tp: TP, offsets: list[int], generation: int = 0) -> Any:  # 0: a new app's
    records = [SimpleNamespace(offset=o) for o in offsets]
    return ((tp, generation), records, 0.0)


def test_acks_move_faust_s_commit_offset_exactly_past_what_is_done(tmp_path: Path) -> None:
    app = _app(Settings().with_(home=tmp_path, kafka_batch_delivery=True))
    consumer = app.consumer
    consumer.app.topics.acks_enabled_for = lambda topic: True
    tp, other = TP(TOPIC, 0), TP(TOPIC, 1)

    assert consumer.ack_chunks([_chunk(tp, [0, 1, 2, 3, 4]), _chunk(other, [10, 11])]) == 7
    assert consumer._n_acked == 7
    assert consumer._new_offset(tp) == 5  # commit 5: the next to read
    assert consumer._new_offset(other) == 12

    # A chunk with a hole (a compacted or marker offset): Faust commits up to the hole
    # unless the drain marked it as a gap, as the batch drain does (``_read``).
    consumer.ack_chunks([_chunk(tp, [5, 6, 8])])
    assert consumer._new_offset(tp) == 7
    consumer.ack_chunks([_chunk(tp, [9])])
    asyncio.run(consumer._add_gap(tp, 7, 7))
    assert consumer._new_offset(tp) == 10

    # Offsets below the committed one, and offsets acked already, are not marked again.
    consumer._committed_offset[tp] = 10
    assert consumer.ack_chunks([_chunk(tp, [8, 9, 10, 11])]) == 2
    assert consumer.ack_chunks([_chunk(tp, [10, 11])]) == 0
    assert consumer._new_offset(tp) == 12


def test_an_unfinished_chunk_holds_the_commit_back(tmp_path: Path) -> None:
    """Chunks ack in take order; were a later one acked first, the commit must not pass
    the earlier one."""
    app = _app(Settings().with_(home=tmp_path, kafka_batch_delivery=True))
    consumer = app.consumer
    consumer.app.topics.acks_enabled_for = lambda topic: True
    tp = TP(TOPIC, 0)
    consumer.ack_chunks([_chunk(tp, [0, 1])])
    consumer.ack_chunks([_chunk(tp, [5, 6])])  # 2-4 not done
    assert consumer._new_offset(tp) == 2
    consumer._committed_offset[tp] = 2  # as ``_commit_offsets`` records the commit
    assert consumer._new_offset(tp) is None  # 5 waits for 2-4
    consumer.ack_chunks([_chunk(tp, [2, 3, 4])])
    assert consumer._new_offset(tp) == 7


def test_a_late_ack_from_a_revoked_generation_leaves_the_new_one_s_bookkeeping(
    tmp_path: Path,
) -> None:
    """A batch taken in generation 1 finishes after its partition was revoked and
    assigned again (generation 2, which fetches the same records again from the
    committed offset): its ack marks nothing, so what the new generation commits moves
    only with its own acks."""
    app = _app(Settings().with_(home=tmp_path, kafka_batch_delivery=True))
    consumer = app.consumer
    consumer.app.topics.acks_enabled_for = lambda topic: True
    tp = TP(TOPIC, 0)
    app.consumer_generation_id = 1
    assert consumer.ack_chunks([_chunk(tp, [0, 1], generation=1)]) == 2
    assert consumer._new_offset(tp) == 2
    consumer._committed_offset[tp] = 2  # committed on the revoke
    late = _chunk(tp, list(range(2, 50)), generation=1)  # taken, then the rebalance
    asyncio.run(consumer.on_partitions_revoked({tp}))  # drops the partition's bookkeeping
    assert tp not in consumer._acked and tp not in consumer._committed_offset
    app.consumer_generation_id = 2  # assigned again
    consumer._committed_offset[tp] = 2  # as the assignment's seek records it
    n_acked = consumer._n_acked

    assert consumer.ack_chunks([late]) == 0
    assert consumer._n_acked == n_acked
    assert not consumer._acked[tp] and not consumer._acked_index[tp]
    assert consumer._new_offset(tp) is None  # nothing to commit: 2-49 are not done here

    # The new generation's own batch of those records: its ack moves the commit.
    assert consumer.ack_chunks([_chunk(tp, [2, 3, 4], generation=2)]) == 3
    assert consumer._new_offset(tp) == 5


def test_chunks_of_an_old_generation_or_a_suspended_flow_are_dropped() -> None:
    active = [True]
    app = SimpleNamespace(
        consumer_generation_id=3, flow_control=SimpleNamespace(is_active=lambda: active[0])
    )
    tp = TP(TOPIC, 0)
    new, old = _chunk(tp, [4], generation=3), _chunk(tp, [2], generation=2)
    assert current(app, [new]) == [new]
    assert current(app, [old, new]) == [new]
    active[0] = False
    assert current(app, [new]) == []


def test_a_record_carries_the_kafka_record_field_by_field() -> None:
    r = SimpleNamespace(topic="t", partition=2, offset=7, key=b"k", value=None, timestamp=1234)
    (rec,) = source_records([r])
    assert rec == SourceRecord("t", 2, 7, b"k", b"", 1234)


async def test_the_chunk_queue_holds_its_putter_while_full() -> None:
    q: ChunkQueue[int] = ChunkQueue(max_items=4)
    await q.put("a", [1, 2, 3], 0.0)
    await q.put("b", [4, 5], 0.0)  # room when it began: the bound may be passed once
    put = asyncio.ensure_future(q.put("c", [6], 0.0))
    await asyncio.sleep(0.01)
    assert not put.done() and len(q) == 5
    assert [items for _, items, _ in await q.take()] == [[1, 2, 3], [4, 5]]
    await asyncio.wait_for(put, 1)
    assert [items for _, items, _ in q.take_nowait()] == [[6]]
    assert q.take_nowait() == [] and q.clear() == 0


async def test_a_take_stops_at_most_items_but_takes_one_chunk_at_least() -> None:
    q: ChunkQueue[int] = ChunkQueue(max_items=100)
    for tag, items in (("a", [1, 2]), ("b", [3, 4, 5]), ("c", [6]), ("d", list(range(10)))):
        q.put_nowait(tag, items, 0.0)
    assert [tag for tag, _, _ in await q.take(6)] == ["a", "b", "c"]  # 6 items
    assert len(q) == 10
    assert [tag for tag, _, _ in await q.take(4)] == ["d"]  # larger than most: alone
    assert len(q) == 0 and q.has_room()
    # Emptied so, the queue waits for the next put again (it spun here once: its ready
    # flag stayed set with nothing in it, and a take looped without yielding).
    assert not q._readies[0].is_set()  # the one lane's
    later = asyncio.ensure_future(q.take(4))
    await asyncio.sleep(0.01)
    assert not later.done()
    q.put_nowait("e", [7], 0.0)
    assert [tag for tag, _, _ in await asyncio.wait_for(later, 1)] == ["e"]


@pytest.mark.services
def test_a_slow_handler_stops_the_fetcher(settings: Settings) -> None:
    """20,000 records wait; the handler takes 1 ms a record. While it works, what was
    fetched and not yet handled stays within the queue's bound and one batch."""
    total, partitions = 20_000, 4
    settings = settings.with_(
        topic_partitions=partitions,
        kafka_batch_delivery=True,
        kafka_max_poll_records=200,
        batch_max_events=50,
    )
    topic = Topics(settings.topic_prefix).events
    ensure_topics(kafka_of(settings))
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20)
    for i in range(total):
        producer.send(topic, key=b"u%d" % (i % 97), value=b"x" * 60)
    producer.flush()
    producer.close()

    async def run() -> tuple[int, int, int, int]:
        app = create_app(settings)
        handled = [0]

        async def slow(records: Sequence[SourceRecord]) -> BatchStats:
            await asyncio.sleep(0.001 * len(records))
            handled[0] += len(records)
            return BatchStats()

        add_batch_agent(app, topic, slow, name="ingest", max_events=50, within_s=0.01)
        feed = app.batch_feeds[topic]
        await app.start()
        consumer = app.consumer
        most_waiting = most_outstanding = 0
        try:
            for _ in range(200):  # up to 10 s, sampled every 50 ms
                await asyncio.sleep(0.05)
                fetched = sum(o + 1 for tp, o in consumer._read_offset.items() if o is not None)
                most_waiting = max(most_waiting, len(feed))
                most_outstanding = max(most_outstanding, fetched - handled[0])
                if handled[0] >= 3_000:
                    break
        finally:
            fetched = sum(o + 1 for o in consumer._read_offset.values() if o is not None)
            await app.stop()
        return handled[0], fetched, most_waiting, most_outstanding

    handled, fetched, most_waiting, most_outstanding = asyncio.run(run())
    bound = max(4 * 50, 1000)  # the app's stream_buffer_maxsize
    assert fetched < total / 2  # the fetcher stopped: most of the topic still on the broker
    assert most_waiting <= bound + 200  # one fetch's chunk past the bound at most
    # Waiting, plus the batch in the handler (all that waited when it began).
    assert most_outstanding <= 2 * (bound + 200)
    assert handled >= 3_000  # it ran
