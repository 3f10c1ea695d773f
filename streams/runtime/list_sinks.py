"""Lists and dead letters out through the Faust app's aiokafka producer.

Lists leave as committed bytes in one record batch per partition; the batch agent
acks a micro-batch once ``delivered()`` says the broker has its lists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust
from aiokafka.partitioner import murmur2

from schemas.codec import encode
from schemas.dead_letter import DeadLetter
from schemas.topics import Topics, event_key
from streams.core.publish import Committed
from streams.kafka_io.direct_produce import DirectProduce

__all__ = ["KafkaSinks"]

log = logging.getLogger("freshet.worker")


class KafkaSinks:
    """Dead letters and lists out through the Faust app's producer.

    ``lists`` and ``dead_letters`` return once the broker has the records. ``enqueue_lists``
    returns once they are handed to the producer; ``delivered()`` then gives an awaitable
    for everything enqueued since the last call (the batch agent acks after it). The agent
    calls it right after each handler returns, and the handler does not await after its
    ``enqueue_lists``, so with lanes side by side each lane's call holds its own sends.
    """

    def __init__(
        self,
        app: faust.App,
        topics: Topics,
        direct_produce: Callable[..., DirectProduce] = DirectProduce,
    ) -> None:
        self.app = app
        self.topics = topics
        self._sent: list[asyncio.Future[list[Any]]] = []  # hand-overs not yet awaited
        self._handing: asyncio.Future[list[Any]] | None = None  # the latest hand-over
        # The producer's own delivery futures of our batches, never given out: a waiter
        # cancelled while the producer still holds a batch must not mark it done here.
        self._in_producer: list[asyncio.Future[Any]] = []
        self._direct_produce = direct_produce  # DirectProduce's signature
        self._direct: DirectProduce | None = None
        self._direct_off = False  # the direct path failed other than by the broker

    async def _send(self, topic: str, pairs: Sequence[tuple[bytes | None, bytes]]) -> list[Any]:
        producer = self.app.producer
        return [await producer.send(topic, k, v, None, None, None) for k, v in pairs]

    def _send_lists(self, lists: Sequence[Committed]) -> asyncio.Future[list[Any]]:
        """Lists out as record batches, one per partition; returns a task that ends once
        they are on the broker or handed to the producer, with the delivery futures of
        the batches handed to it (none when they went straight to the broker).

        One batch per partition, where a send per list cost a coroutine, a partitioner
        call on the metadata, a future and Faust's send hooks per list. A list's
        partition is its key's, by the producer's own default rule (murmur2 of the key
        over all partitions), and each goes as committed: the bytes Redis holds.

        While the producer holds none of these lists (every call at light load), the
        batches go in one produce request per broker from this task (``DirectProduce``:
        from ``enqueue_lists`` to ``delivered()`` done, 6 passes of the event loop for a
        list, where the producer's accumulator and sender task took 12); what the broker
        refuses, or a request that fails, is then handed to the producer, which retries
        it as its own. Otherwise, and for lists that outgrow a batch, they are handed to
        the producer (``send_batch``). Any other error of the direct path (an aiokafka
        internal it leans on that changed) is logged once and turns it off for this
        object: the lists go to the producer, then and from then on.

        The task is chained after the previous call's, so calls reach the broker or the
        producer in call order (a user's lists stay in order, also when one is retried)
        without the caller waiting: aiokafka lets a partition hold one batch waiting to
        be sent, and a second ``send_batch`` waits until the first is on its way, which
        under load is a produce round trip.
        """
        faust_producer: Any = self.app.producer
        producer = faust_producer._ensure_producer()  # the aiokafka producer under it
        topic = self.topics.recommendations
        previous = self._handing

        async def hand_over() -> list[Any]:
            if previous is not None and not previous.done():
                # Its failure, or its cancelling, is its own caller's: wait() never raises,
                # where awaiting a cancelled one would cancel this one and each after it.
                await asyncio.wait({previous})
            parts = sorted(await producer.partitions_for(topic))
            by_part: dict[int, list[tuple[bytes, bytes]]] = {}
            for rec, raw in lists:
                key = event_key(rec.user_id)
                p = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
                by_part.setdefault(p, []).append((key, raw))
            held = self._in_producer = [f for f in self._in_producer if not f.done()]
            if (
                not held
                and not self._direct_off
                and faust_producer.acks != 0
                and not faust_producer.compression_type
            ):
                by_part = await self._direct_send(faust_producer, producer, by_part)
            sent: list[Any] = []  # each noted at once: a cancelled hand-over's count too

            async def hand(batch: Any, partition: int) -> None:
                on_broker = await producer.send_batch(batch, topic, partition=partition)
                self._in_producer.append(on_broker)
                sent.append(asyncio.shield(on_broker))  # waiters may cancel their shield

            for partition, pairs in by_part.items():
                batch = producer.create_batch()
                for key, raw in pairs:
                    if batch.append(key=key, value=raw, timestamp=None) is None:  # full
                        await hand(batch, partition)
                        batch = producer.create_batch()
                        batch.append(key=key, value=raw, timestamp=None)  # a first one fits
                await hand(batch, partition)
            return sent

        self._handing = task = asyncio.ensure_future(hand_over())
        return task

    async def _direct_send(
        self, faust_producer: Any, producer: Any, by_part: dict[int, list[tuple[bytes, bytes]]]
    ) -> dict[int, list[tuple[bytes, bytes]]]:
        """Send ``by_part`` on the direct path; returns what is left for the producer:
        what the broker refused or a failed request held, or all of it where the path
        declined it or failed in itself (then it is off for good, and a list it wrote
        before failing may land twice, as a retried one can)."""
        try:
            direct = self._direct_for(faust_producer, producer)
            batches = direct.batches(by_part)
            if batches is None:
                return by_part
            failed = await direct.send(batches)
        except Exception:  # not CancelledError: a cancelled hand-over stays cancelled
            self._direct_off = True
            log.exception("direct list produce failed; lists go through the producer now")
            return by_part
        return {p: by_part[p] for p in failed}

    def _direct_for(self, faust_producer: Any, producer: Any) -> DirectProduce:
        """The direct path on ``producer``'s client (a restarted app has a new one)."""
        if self._direct is None or self._direct.client is not producer.client:
            self._direct = self._direct_produce(
                producer.client,
                self.topics.recommendations,
                acks=faust_producer.acks,
                timeout_ms=int(faust_producer.request_timeout * 1000),
                batch_bytes=faust_producer.max_batch_size,
            )
        return self._direct

    async def enqueue_lists(self, lists: Sequence[Committed]) -> None:
        self._sent.append(self._send_lists(lists))

    def delivered(self) -> Awaitable[Any]:
        """An awaitable that ends when every list enqueued so far is on the broker.

        A batch that enqueued once (every batch at light load) is followed by done
        callbacks on its hand-over and its deliveries, not a task of its own: a task
        cost a step of the loop each time it woke.
        """
        sent, self._sent = self._sent, []
        if len(sent) == 1:
            return _chained(sent[0])
        return asyncio.ensure_future(_on_broker(sent))

    async def dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        sent = await self._send(self.topics.dead_letter, [(d.key, encode(d)) for d in letters])
        await asyncio.gather(*sent)

    async def lists(self, lists: Sequence[Committed]) -> None:
        await _on_broker([self._send_lists(lists)])


def _chained(handing: asyncio.Future[list[Any]]) -> asyncio.Future[None]:
    """A future that ends as ``_on_broker([handing])`` does: once the hand-over is done
    and the broker has each batch it handed over; it fails as the first of them fails."""
    out: asyncio.Future[None] = handing.get_loop().create_future()

    def settle(done: asyncio.Future[Any]) -> None:
        if out.done():
            return
        if done.cancelled():
            out.cancel()
        elif (exc := done.exception()) is not None:
            out.set_exception(exc)
        elif done is handing:
            batches = done.result()
            if not batches:
                out.set_result(None)
            else:
                on_broker = batches[0] if len(batches) == 1 else asyncio.gather(*batches)
                on_broker.add_done_callback(settle)
        else:
            out.set_result(None)

    handing.add_done_callback(settle)
    return out


async def _on_broker(handing: Sequence[asyncio.Future[list[Any]]]) -> None:
    """Wait for hand-overs, then for every batch they handed to the broker."""
    for task in handing:
        await asyncio.gather(*await task)
