"""Lists straight to the broker, past the producer's accumulator (real Kafka).

At light load ``KafkaSinks`` sends a call's record batches in one produce request from
its hand-over task (``streams.kafka_io.direct_produce``). What the broker refuses, or a
request that fails, goes to the producer, which retries it; calls after it go through
the producer too, behind it, until the producer holds none of the lists, so a user's
lists stay in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from freshet.services.kafka_local import LocalKafka
from freshet.settings import Settings
from schemas.topics import event_key
from streams.core.publish import Committed
from streams.kafka_io.direct_produce import DirectProduce
from tests.streams.test_kafka_sinks import committed, read_all, started_sinks


async def test_one_list_at_light_load_takes_few_loop_passes(settings: Settings) -> None:
    """From ``enqueue_lists`` to ``delivered()`` done, 6 passes (the median; bound at 7
    for one stray wake): the hand-over task, the reply's read and its reader, the task's
    end, the delivery callback, the caller. Through the producer's ``send_batch`` it took
    12 (its sender task woke twice, a produce task, the batch's shielded future, a wait
    on the finished hand-over before)."""
    app, sinks, _ = await started_sinks(settings, "direct")
    loop: Any = asyncio.get_running_loop()
    counts = [0]
    run_once = loop._run_once

    def counted() -> None:
        counts[0] += 1
        run_once()

    passes = []
    try:
        await sinks.lists([committed("user-0", 0, 0)])  # topic, metadata, connection
        loop._run_once = counted
        for n in range(1, 21):
            await asyncio.sleep(0.02)
            counts[0] = 0
            await sinks.enqueue_lists([committed(f"user-{n}", n, 0)])
            await sinks.delivered()
            passes.append(counts[0])
    finally:
        loop._run_once = run_once
        await app.producer.stop()
    assert sorted(passes)[len(passes) // 2] <= 7, passes


async def test_lists_sent_while_the_broker_is_down_arrive_in_order(
    settings: Settings, make_kafka: Callable[..., LocalKafka]
) -> None:
    """The broker stops: the direct request fails, the producer takes the lists and
    retries them, and the next call goes behind them through the producer. Once the
    broker is back each user's lists arrive in the order sent, and the call after them
    goes straight to the broker again."""
    broker = make_kafka(partitions=4)
    settings = settings.with_(kafka_bootstrap=broker.bootstrap, topic_partitions=4)
    app, sinks, topics = await started_sinks(settings, "down")
    users = [f"user-{u}" for u in range(8)]
    rounds = [[committed(u, n, 0) for u in users] for n in range(4)]
    try:
        await sinks.lists(rounds[0])  # straight to the broker
        broker.stop()
        await sinks.enqueue_lists(rounds[1])  # its request fails: the producer's to retry
        await sinks.enqueue_lists(rounds[2])  # behind them, through the producer
        first, second = sinks._sent
        delivery = asyncio.ensure_future(sinks.delivered())
        assert await asyncio.wait_for(first, 60), "failed: handed to the producer"
        assert await asyncio.wait_for(second, 60), "behind them: the producer's too"
        await asyncio.sleep(1.0)  # the producer retries meanwhile
        assert not delivery.done()
        await back_up(broker, sinks, delivery, rounds[3])
    finally:
        await stopped(app, broker)
    await assert_in_order(settings, topics.recommendations, users, rounds)


async def test_a_cancelled_wait_leaves_the_producers_batches_held(
    settings: Settings, make_kafka: Callable[..., LocalKafka], monkeypatch: Any
) -> None:
    """The broker stops and a call's lists go to the producer, which retries them; the
    caller waiting for them is cancelled (a flush timer, a finishing lane). The producer
    still holds them, so the next call must go through the producer behind them, not
    straight to the broker, and once the broker is back each user's lists arrive in the
    order sent. (A cancelled wait used to cancel the very futures that marked the
    batches held, and the next call went direct.)"""
    broker = make_kafka(partitions=4)
    settings = settings.with_(kafka_bootstrap=broker.bootstrap, topic_partitions=4)
    app, sinks, topics = await started_sinks(settings, "cancelled-wait")
    direct_sends = counted_direct_sends(monkeypatch)
    users = [f"user-{u}" for u in range(8)]
    rounds = [[committed(u, n, 0) for u in users] for n in range(4)]
    try:
        await sinks.lists(rounds[0])  # straight to the broker
        broker.stop()
        waiter = asyncio.ensure_future(sinks.lists(rounds[1]))  # fails: the producer's
        await asyncio.sleep(0)  # the waiter starts its hand-over
        assert sinks._handing is not None
        assert await asyncio.wait_for(sinks._handing, 60), "handed to the producer"
        await asyncio.sleep(0.5)  # the producer retries meanwhile
        assert not waiter.done()
        waiter.cancel()
        await asyncio.wait({waiter})
        assert len(direct_sends) == 2
        await behind_held(broker, sinks, direct_sends, rounds[2], rounds[3])
    finally:
        await stopped(app, broker)
    await assert_in_order(settings, topics.recommendations, users, rounds)


async def test_a_hand_over_cancelled_part_way_keeps_its_handed_batches_held(
    settings: Settings, make_kafka: Callable[..., LocalKafka], monkeypatch: Any
) -> None:
    """The broker is down and a call's lists outgrow one record batch: the hand-over
    gives the producer the first batch, then waits for it to drain before the second,
    and there its caller is cancelled. The batch it did hand over is the producer's to
    retry, so the next call must go behind it through the producer, not straight to
    the broker (which, once back, would take the newer list first). Each batch is
    noted as it is handed (9d0c786); before, a cancelled hand-over noted none.
    Once the broker is back, each user's lists arrive in the order sent (the
    cancelled call's lists that were never handed over are missing, not reordered)."""
    broker = make_kafka(partitions=1)
    settings = settings.with_(kafka_bootstrap=broker.bootstrap, topic_partitions=1)
    app, sinks, topics = await started_sinks(settings, "part-way")
    direct_sends = counted_direct_sends(monkeypatch)
    producer = app.producer._ensure_producer()
    send_batch = producer.send_batch
    handed: list[Any] = []  # the batches the producer was given, as it took each
    handed_lists: list[int] = []  # how many lists each held

    async def handing(batch: Any, *args: Any, **kwargs: Any) -> Any:
        on_broker = await send_batch(batch, *args, **kwargs)
        handed.append(on_broker)
        handed_lists.append(batch.record_count())
        return on_broker

    monkeypatch.setattr(producer, "send_batch", handing)
    users = [f"user-{u}" for u in range(20)]
    small = [committed(u, 0, 0) for u in users]
    big = [committed(u, 1, 1400) for u in users]  # ~28 KiB each: 3 batches of 256 KiB
    after = [[committed(u, n, 0) for u in users] for n in (2, 3)]
    try:
        await sinks.lists(small)  # straight to the broker
        assert len(direct_sends) == 1
        broker.stop()
        waiter = asyncio.ensure_future(sinks.lists(big))  # too big to go direct
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while not handed:
            assert loop.time() < deadline, "the producer never took the first batch"
            await asyncio.sleep(0)
        waiter.cancel()  # its hand-over waits for the first batch to drain
        await asyncio.wait({waiter})
        handing_task = sinks._handing
        assert handing_task is not None and handing_task.cancelled()
        assert len(handed) == 1, "cancelled part-way: one batch of three handed over"
        assert not handed[0].done(), "the producer still holds it (the broker is down)"
        await behind_held(broker, sinks, direct_sends, after[0], after[1])
    finally:
        await stopped(app, broker)
    arrive = 3 * len(users) + handed_lists[0]  # the handed batch's lists too
    await assert_in_order(settings, topics.recommendations, users, [small, big, *after], arrive)


async def behind_held(
    broker: LocalKafka,
    sinks: Any,
    direct_sends: list[list[int]],
    lists: list[Committed],
    last: list[Committed],
) -> None:
    """With the producer holding some of our batches (the broker down), the next call
    (``lists``) goes behind them through the producer, with no direct request; then
    the broker comes back (``back_up``)."""
    before = len(direct_sends)
    await sinks.enqueue_lists(lists)
    assert await asyncio.wait_for(sinks._sent[0], 60), "behind them: the producer's"
    assert len(direct_sends) == before, "the next call went direct past held batches"
    delivery = asyncio.ensure_future(sinks.delivered())
    await back_up(broker, sinks, delivery, last)


def counted_direct_sends(monkeypatch: Any) -> list[list[int]]:
    """Each direct request's partitions, noted as ``DirectProduce.send`` is called."""
    sends: list[list[int]] = []
    send = DirectProduce.send

    async def noted(self: DirectProduce, by_node: Any) -> list[int]:
        sends.append(sorted(p for parts in by_node.values() for p, _ in parts))
        return await send(self, by_node)

    monkeypatch.setattr(DirectProduce, "send", noted)
    return sends


async def stopped(app: Any, broker: LocalKafka) -> None:
    """The producer stopped with the broker up: with it down, the stop waits for the
    batches the producer holds, so a test that failed there hung instead."""
    broker.start()  # a no-op while it runs
    await asyncio.wait_for(app.producer.stop(), 60)


async def assert_in_order(
    settings: Settings,
    topic: str,
    users: list[str],
    rounds: list[list[Committed]],
    count: int | None = None,
) -> None:
    """Each user's lists arrived in the order sent; a retried list may land twice (acks
    all, not idempotent), back to back. ``count``: how many distinct lists arrive where
    some were never handed over (a call cancelled part-way): those are missing, and
    the rest keep their order."""
    sent = [c for r in rounds for c in r]
    count = len(sent) if count is None else count
    got = await read_all(settings, topic, count)
    kept = {v for _, _, v in got}
    assert len(kept) == count
    for u in users:
        arrived = [v for _, k, v in got if k == event_key(u)]
        deduped = [v for i, v in enumerate(arrived) if i == 0 or arrived[i - 1] != v]
        assert deduped == [c.raw for c in sent if c.rec.user_id == u and c.raw in kept], u


async def back_up(
    broker: LocalKafka, sinks: Any, delivery: asyncio.Future[Any], last: list[Committed]
) -> None:
    """The broker back: what the producer held is delivered, and the call after it goes
    straight to the broker again (the producer holds none of the lists)."""
    broker.start()
    await asyncio.wait_for(delivery, 120)
    await sinks.enqueue_lists(last)
    assert await sinks._sent[0] == []
    await sinks.delivered()
