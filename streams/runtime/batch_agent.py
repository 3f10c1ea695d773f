"""The batch agents: micro-batches of raw records to a handler, acked once done.

Moved out of ``faust_app`` (which builds the app and re-exports these names). An agent
takes micro-batches (Faust events through ``quiet_take``, or with batch delivery whole
chunks per partition from a ``ChunkQueue``, in lanes of partitions), runs each through
the handler (retried with backoff until done), waits for what it sent to be delivered,
and acks in take order; see ``add_batch_agent``.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import faust

from streams.core.ingest import BatchStats, SourceRecord
from streams.core.micro_batches import ChunkQueue, quiet_take
from streams.runtime.faust_batches import current
from streams.runtime.swallowed_cancel import raise_swallowed_cancel

log = logging.getLogger("freshet.worker")

BatchHandler = Callable[[Sequence[SourceRecord]], Awaitable[BatchStats]]
Delivered = Callable[[], Awaitable[Any]]


_new = object.__new__
_RECORD_SETTERS = tuple(
    vars(SourceRecord)[name].__set__
    for name in ("topic", "partition", "offset", "key", "value", "timestamp_ms")
)


def _record(event: Any) -> SourceRecord:
    """The record of one Faust event, its slots set directly: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__`` (1.15 -> 0.66-0.80 us a
    record, alternated in one process), and this runs per event."""
    msg = event.message
    value = msg.value
    rec = _new(SourceRecord)
    s_topic, s_partition, s_offset, s_key, s_value, s_ts = _RECORD_SETTERS
    s_topic(rec, msg.topic)
    s_partition(rec, msg.partition)
    s_offset(rec, msg.offset)
    s_key(rec, msg.key)
    s_value(rec, b"" if value is None else value)
    s_ts(rec, int((msg.timestamp or 0) * 1000))
    return rec


async def run_until_done(
    handler: BatchHandler,
    records: Sequence[SourceRecord],
    *,
    on_retry: Callable[[BaseException, int], None] | None = None,
    max_backoff_s: float = 5.0,
) -> BatchStats:
    """Run one batch to completion, retrying the whole batch with backoff on failure.

    A batch is idempotent (watermarks and event-id dedup), so retrying it is safe.
    """
    attempt = 0
    while True:
        try:
            return await handler(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # store or broker failure: back off, keep the batch
            raise_swallowed_cancel()  # a cancel a failed call swallowed ends the retries
            attempt += 1
            if on_retry is not None:
                on_retry(exc, attempt)
            await asyncio.sleep(min(max_backoff_s, 0.1 * 2 ** min(attempt, 8)))


def _partition_of(tag: tuple[Any, int]) -> int:
    """A batch-delivery chunk's partition (its tag is (partition, generation))."""
    return tag[0].partition


def take_wait_s(events: Sequence[Any], taken: float) -> float:
    """How long the oldest event of a take waited in it: from the consumer handing it
    to the stream (Faust's monitor stamps ``message.time_in``, monotonic) to ``taken``."""
    times = [t for ev in events if (t := getattr(ev.message, "time_in", None)) is not None]
    return max(0.0, taken - min(times)) if times else 0.0


def add_batch_agent(
    app: faust.App,
    topic_name: str,
    handler: BatchHandler,
    *,
    name: str,
    max_events: int,
    within_s: float,
    on_batch: Callable[[BatchStats], None] | None = None,
    on_retry: Callable[[BaseException, int], None] | None = None,
    queued_batches: int = 8,
    delivered: Delivered | None = None,
    take: Callable[..., AsyncIterator[Sequence[Any]]] = quiet_take,
    lanes: int = 1,
) -> Any:
    """Register an agent that feeds micro-batches of raw records to ``handler``.

    Taking and processing overlap: the agent keeps taking micro-batches while the
    previous ones are processed, up to ``queued_batches`` waiting, and the processor
    merges whatever waits into one batch. Under light load batches stay as ``take``
    makes them; under heavy load they grow with the backlog, so per-batch costs (Redis
    round trips, the publish, one scoring pass) are paid once for many events.
    ``take(stream, max_events, within_s, free)`` yields the micro-batches of events,
    none acked; ``free`` is set while the processor waits for work, so a take need not
    wait out its window then (``quiet_take`` also sleeps while the topic is idle, where
    Faust's ``noack_take`` wakes every ``within_s``).

    Publishing and processing overlap too. ``delivered()``, called right after the
    handler returns, gives an awaitable for what the handler sent (lists enqueued on
    the producer, not yet acknowledged by the broker). While batch N waits for it,
    batch N+1 is decoded, read, scored and written (its Redis read comes after N's
    write: one handler call at a time); at most one batch waits so. Records are acked
    only after their batch's sends are delivered, and batches are acked and reported
    (``on_batch``) in take order, so what is unacked at a crash is redelivered as
    before. A failed delivery runs the batch again (its state is already written, so
    its users' lists are sent again from the current state), with backoff.

    With the app's batch delivery on (``faust_batches``), ``take`` is not used: the
    consumer puts each fetch's records of the topic, per partition, on the topic's
    ``ChunkQueue`` (at most ``stream_buffer_maxsize`` records wait), the processor
    takes the chunks that wait as one batch, up to ``max_events`` records (at least one
    chunk), and acks the batch's offsets in the consumer's bookkeeping at once. Taking,
    processing, delivery and acks overlap and keep their order as above.

    With batch delivery and ``lanes`` above one, the partitions are split into lanes
    (partition modulo ``lanes``), each with a processor of its own: a lane's batches run,
    are delivered and acked one after another in take order, as above, while lanes run
    side by side (one lane's Redis read, state rules, write and publish while another's
    scorer runs in its thread). A partition is always in the same lane, so its batches
    never overlap and each reads what the one before it wrote; its offsets are acked in
    order, and a partition's commit needs nothing of another's. The handler must not
    await between handing its lists to the producer and returning, so that ``delivered()``,
    called right after it, holds the lane's own sends (``worker.KafkaSinks``).
    """
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    feed: ChunkQueue[SourceRecord] | None = None
    if getattr(app, "batch_delivery", False):
        feed = ChunkQueue(app.conf.stream_buffer_maxsize, lanes, _partition_of)
        app.batch_feeds[topic_name] = feed  # type: ignore[attr-defined]  # an _App

    async def agent(stream: Any) -> None:
        # Each waiting micro-batch with the (monotonic) time take handed it over.
        waiting: asyncio.Queue[tuple[Sequence[Any], float]] = asyncio.Queue(
            maxsize=max(1, queued_batches)
        )
        free = asyncio.Event()

        async def run_batch(
            records: list[SourceRecord], one_at_a_time: asyncio.Lock
        ) -> tuple[BatchStats, Any]:
            async with one_at_a_time:  # a lane's batch N+1 reads what its batch N wrote
                stats = await run_until_done(handler, records, on_retry=on_retry)
                return stats, None if delivered is None else delivered()

        async def finish(
            ack: Callable[[], Awaitable[None]],
            records: list[SourceRecord],
            stats: BatchStats,
            delivery: Any,
            before: asyncio.Future[None] | None,
            one_at_a_time: asyncio.Lock,
        ) -> None:
            """Wait for the batch's sends, then for the batch before it; then ack."""
            sending = time.monotonic()
            attempt = 0
            while delivery is not None:
                try:
                    await delivery
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a send failed: run the batch again
                    attempt += 1
                    if on_retry is not None:
                        on_retry(exc, attempt)
                    await asyncio.sleep(min(5.0, 0.1 * 2 ** min(attempt, 8)))
                    delivery = (await run_batch(records, one_at_a_time))[1]
                    raise_swallowed_cancel()
            stages = stats.stages_s
            stages["publish"] = stages.get("publish", 0.0) + time.monotonic() - sending
            if before is not None:
                await before
            acking = time.monotonic()
            await ack()
            stages["ack"] = time.monotonic() - acking
            if on_batch is not None:
                try:
                    on_batch(stats)
                except Exception:  # metrics must never stop the stream
                    log.exception("batch callback failed")

        Batch = tuple[list[SourceRecord], Callable[[], Awaitable[None]], dict[str, float]]

        async def process(next_batch: Callable[[], Awaitable[Batch | None]]) -> None:
            """Run the batches ``next_batch`` gives (records, their ack, take stages) one
            at a time, at most one finishing while the next one is processed."""
            one_at_a_time = asyncio.Lock()
            finishing: collections.deque[asyncio.Future[None]] = collections.deque()
            try:
                while True:
                    while finishing and (finishing[0].done() or len(finishing) > 1):
                        await finishing.popleft()
                    batch = await next_batch()
                    if batch is None:
                        continue
                    records, ack, stages = batch
                    stats, delivery = await run_batch(records, one_at_a_time)
                    # A stop's cancel that a Redis send swallowed (redis-py's wait_for on
                    # 3.11, rediss:// and unix://) ends the loop here: the batch is not
                    # acked, so it is taken again after the restart.
                    raise_swallowed_cancel()
                    stats.stages_s.update(stages)
                    before = finishing[-1] if finishing else None
                    finishing.append(
                        asyncio.ensure_future(
                            finish(ack, records, stats, delivery, before, one_at_a_time)
                        )
                    )
            finally:
                for task in finishing:
                    task.cancel()

        if feed is not None:
            chunk_feed = feed

            async def next_chunks(lane: int) -> Batch | None:
                chunks = current(app, await chunk_feed.take(max_events, lane))
                if not chunks:
                    return None  # fetched before a rebalance: dropped, as Faust drops
                started = time.monotonic()
                records = [r for c in chunks for r in c[1]] if len(chunks) > 1 else chunks[0][1]

                async def ack() -> None:
                    app.consumer.ack_chunks(chunks)  # type: ignore[attr-defined]  # faust_batches'

                return records, ack, {"take": started - chunks[0][2], "queue": 0.0}

            lane_tasks = [
                asyncio.ensure_future(process(functools.partial(next_chunks, lane)))
                for lane in range(chunk_feed.lanes)
            ]
            try:
                await asyncio.gather(*lane_tasks)
            finally:
                for task in lane_tasks:
                    task.cancel()
            return

        async def next_events() -> Batch | None:
            if waiting.empty():
                free.set()
            first, taken = await waiting.get()
            free.clear()
            started = time.monotonic()
            events = list(first)
            while not waiting.empty():
                events += waiting.get_nowait()[0]

            async def ack() -> None:
                for ev in events:
                    await stream.ack(ev)

            stages = {"take": take_wait_s(first, taken), "queue": started - taken}
            return [_record(ev) for ev in events], ack, stages

        processor = asyncio.ensure_future(process(next_events))
        try:
            async for events in take(stream, max_events, within_s, free):
                if processor.done():  # only cancellation ends it; surface that
                    processor.result()
                if not waiting.full():  # no task per batch while there is room
                    waiting.put_nowait((events, time.monotonic()))
                    await asyncio.sleep(0)  # the processor takes it before the next take
                    continue
                put = asyncio.ensure_future(waiting.put((events, time.monotonic())))
                await asyncio.wait({put, processor}, return_when=asyncio.FIRST_COMPLETED)
                if processor.done():
                    put.cancel()
                    processor.result()
        finally:
            processor.cancel()

    agent.__name__ = name
    agent.__qualname__ = name
    return app.agent(topic, name=name, concurrency=1)(agent)
