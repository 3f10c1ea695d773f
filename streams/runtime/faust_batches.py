"""Batch delivery: Faust's consumer hands an agent each fetch's records as one chunk.

Faust's fetcher (``Consumer._drain_messages``) turns every fetched record into a
``ConsumerMessage`` and awaits ``wait_first(callback(message), suspend_flow.wait())``
for it; the conductor's callback builds an ``Event`` and puts it on each subscribed
channel's queue, and the agent's stream takes it from there. In a saturated drain that
path held about half of the worker's GIL (docs/benchmarks, T2), for an agent that
handles whole micro-batches anyway.

``BatchDeliveryConsumer`` keeps Faust's consumer as it is (group membership, the
rebalance listener, fetch, flow control, seeks, the commit bookkeeping and its
commits) and replaces only the drain loop: for a topic that has a ``ChunkQueue`` in
``app.batch_feeds``, each partition's records of a fetch become one list of
``SourceRecord`` put on that queue, with the read-offset and gap bookkeeping Faust does
per record done once per chunk. Records of other topics take Faust's own per-message
path. The agent (``batch_agent.add_batch_agent``) takes whole chunks and, once a batch
is finished, acks its offsets with ``ack_chunks``, which marks the same bookkeeping
``Consumer.ack`` marks, so Faust's commits (interval, on stop, on revoke) commit
exactly what is done.

Flow control is Faust's: the fetcher waits while the queue is full (no further fetch
is asked for, so aiokafka's prefetch stays bounded), and gives the chunk up when the
flow is suspended for a rebalance; Faust then seeks to the committed offsets. A chunk
fetched in a consumer generation that is no longer current is dropped by the agent,
as Faust's stream skips such events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from mode import Service
from mode.utils.futures import notify

from streams.core.ingest import SourceRecord
from streams.core.micro_batches import ChunkQueue
from streams.runtime.faust_fetch import FetchTunedConsumerThread, StallCheckedConsumer
from streams.runtime.faust_loop_consumer import ConsumerOnLoop

Chunk = tuple[tuple[TP, int], list[SourceRecord], float]
"""A chunk as the queue holds it: ((partition, generation), records, put at)."""

_new = object.__new__
_SETTERS = tuple(
    vars(SourceRecord)[name].__set__
    for name in ("topic", "partition", "offset", "key", "value", "timestamp_ms")
)


def source_records(records: Sequence[Any]) -> list[SourceRecord]:
    """``SourceRecord`` of aiokafka ``ConsumerRecord``, their slots set directly (as
    ``batch_agent._record`` does for a Faust event: this runs per record)."""
    s_topic, s_partition, s_offset, s_key, s_value, s_ts = _SETTERS
    out: list[SourceRecord] = []
    append = out.append
    for r in records:
        rec = _new(SourceRecord)
        s_topic(rec, r.topic)
        s_partition(rec, r.partition)
        s_offset(rec, r.offset)
        s_key(rec, r.key)
        value = r.value
        s_value(rec, b"" if value is None else value)
        s_ts(rec, r.timestamp or 0)
        append(rec)
    return out


class BatchDeliveryConsumer(StallCheckedConsumer):
    """Faust's aiokafka consumer whose drain hands ``app.batch_feeds`` topics over in chunks."""

    async def _drain_messages(self, fetcher: Any) -> None:  # Faust's loop, per chunk
        feeds: Mapping[str, ChunkQueue[SourceRecord]] = getattr(self.app, "batch_feeds", {})
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        diag = self.diag
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                generation = self.app.consumer_generation_id
                # A bare yield: ``Service.sleep(0)`` (Faust's drain) starts and cancels a
                # task on the stop event each time, three loop callbacks per fetch.
                await asyncio.sleep(0)
                if not records or self.should_stop:
                    diag.unset_flag(CONSUMER_FETCHING)
                    continue
                if not self.flow_active:
                    await self._seek_back()
                    continue
                for tp, chunk in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break  # a rebalance began: Faust seeks back to the committed offsets
                    if active is not None and tp not in active | self._buffered_partitions:
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    feed = feeds.get(tp.topic)
                    if feed is None:
                        if not await self._deliver_each(tp, chunk):
                            break
                    elif not await self._deliver_chunk(tp, chunk, feed, generation):
                        break
                diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            diag.unset_flag(CONSUMER_FETCHING)

    @Service.task
    async def _commit_handler(self) -> None:
        """Faust's commit timer, asleep while nothing new is acked.

        Faust's own wakes on ``itertimer`` (a task per tick on the stop event, the timer's
        drift bookkeeping) and runs ``commit()`` every ``commit_interval`` even when no
        offset was acked since the last one (sensors, flags, a filter over the
        partitions): about a tenth of an idle worker's CPU. Here a tick with nothing
        acked does nothing; one with acks commits as Faust's does. The commits on stop
        and on revoke are Faust's, unchanged; stopping cancels this task.
        """
        interval = self.commit_interval
        while not self.should_stop:
            await asyncio.sleep(interval)
            if any(self._acked.values()):
                await self.commit()

    async def _seek_back(self) -> None:
        """Faust's ``getmany`` when records came while the flow was stopped."""
        try:
            await self.perform_seek()
        except Exception as ex:
            self.log.warning(f"exception performing seek when flow not active {ex}")

    async def _read(self, tp: TP, chunk: Sequence[Any]) -> Sequence[Any]:
        """The records of ``chunk`` past the read offset, their gaps marked as Faust's
        drain marks them (``_add_gap`` from the offset after the last read)."""
        r_offset = self._read_offset[tp]
        if r_offset is not None and chunk[0].offset < r_offset:
            chunk = [r for r in chunk if r.offset >= r_offset]
            if not chunk:
                return chunk
        first, last = chunk[0].offset, chunk[-1].offset
        if r_offset and first - r_offset > 1:
            await self._add_gap(tp, r_offset + 1, first)
        if last - first + 1 != len(chunk):  # compaction or transaction markers
            prev = first
            for r in chunk:
                if r.offset - prev > 1:
                    await self._add_gap(tp, prev + 1, r.offset)
                prev = r.offset
        return chunk

    async def _maybe_commit_every(self) -> None:
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()

    async def _deliver_chunk(
        self, tp: TP, chunk: Sequence[Any], feed: ChunkQueue[SourceRecord], generation: int
    ) -> bool:
        """Put ``chunk`` on ``feed``; False if the flow was suspended first (dropped)."""
        chunk = await self._read(tp, chunk)
        if not chunk:
            return True
        await self._maybe_commit_every()
        records = source_records(chunk)
        now = time.monotonic()
        if feed.has_room():
            feed.put_nowait((tp, generation), records, now)
        else:  # back-pressure: no further fetch until the agent takes what waits
            put = asyncio.ensure_future(feed.put((tp, generation), records, now))
            suspended = asyncio.ensure_future(self.suspend_flow.wait())
            try:
                await asyncio.wait({put, suspended}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                suspended.cancel()
                if not put.done():
                    put.cancel()
            if put.cancelled() or not put.done():
                return False
            now = time.monotonic()
        self.app.monitor.stream_inbound_time[tp] = now
        self._read_offset[tp] = chunk[-1].offset
        return True

    async def _deliver_each(self, tp: TP, chunk: Sequence[Any]) -> bool:
        """Faust's own per-message delivery, for a topic without a feed."""
        chunk = await self._read(tp, chunk)
        for record in chunk:
            await self._maybe_commit_every()
            message = self._to_message(tp, record)
            await self.wait_first(self.callback(message), self.suspend_flow.wait())
            if not self.flow_active:
                return False
            self._read_offset[tp] = record.offset
        return True

    def ack_chunks(self, chunks: Iterable[Chunk]) -> int:
        """Mark the records of finished chunks acked, as ``Consumer.ack`` marks one
        message: Faust's next commit covers them once every offset before them is acked.

        Offsets below the committed one, or acked already, are skipped as there. So are
        chunks fetched in an older consumer generation: a batch taken before a rebalance
        that finishes after it must not mark offsets in the bookkeeping of the partition
        assigned since, which fetches them again from the committed offset and acks them
        itself (tests/streams/test_batch_delivery.py). Returns how many offsets were marked.
        """
        marked = 0
        acks_enabled_for = self.app.topics.acks_enabled_for
        generation = self.app.consumer_generation_id
        for (tp, fetched_in), records, _at in chunks:
            if not records or fetched_in != generation or not acks_enabled_for(tp.topic):
                continue
            first, last = records[0].offset, records[-1].offset
            offsets: Sequence[int]
            if last - first + 1 == len(records):
                offsets = range(first, last + 1)
            else:
                offsets = [r.offset for r in records]
            committed = self._committed_offset[tp]
            index = self._acked_index[tp]
            if (committed is not None and first < committed) or not index.isdisjoint(offsets):
                offsets = [
                    o for o in offsets if (committed is None or o >= committed) and o not in index
                ]
            if not offsets:
                continue
            index.update(offsets)
            self._acked[tp].extend(offsets)
            marked += len(offsets)
        self._n_acked += marked
        notify(self._waiting_for_ack)
        return marked

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        # As Faust clears its agents' queues on a revoke: what waits will be fetched
        # again from the committed offsets.
        for feed in getattr(self.app, "batch_feeds", {}).values():
            feed.clear()
        await super().on_partitions_revoked(revoked)


class _ThreadBatchConsumer(BatchDeliveryConsumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return FetchTunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _LoopBatchConsumer(BatchDeliveryConsumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ConsumerOnLoop(self, loop=self.loop, beacon=self.beacon)


class BatchDeliveryTransport(driver.Transport):
    """Faust's aiokafka transport with batch delivery, its consumer in Faust's thread."""

    Consumer = _ThreadBatchConsumer


class LoopBatchDeliveryTransport(driver.Transport):
    """Faust's aiokafka transport with batch delivery, its consumer on the app's loop."""

    Consumer = _LoopBatchConsumer


def current(app: Any, chunks: list[Chunk]) -> list[Chunk]:
    """The chunks fetched in the consumer's current generation while the flow is on
    (Faust's stream skips the other events the same way)."""
    generation = app.consumer_generation_id
    if app.flow_control.is_active() and all(c[0][1] == generation for c in chunks):
        return chunks
    if not app.flow_control.is_active():
        return []
    return [c for c in chunks if c[0][1] == generation]
