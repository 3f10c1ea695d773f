"""Micro-batches from an async stream that sleep while it is idle.

Faust's ``Stream.noack_take(max, within)`` wakes every ``within`` seconds whether or not
anything arrived (a 10 ms timeout loop per agent: the largest part of an idle worker's
CPU). ``micro_batches`` waits for the first item with no timeout at all, and only then
up to ``within_s`` for more, so an idle agent costs nothing and a busy one batches as
before. It holds at most ``max_items`` items: past that it stops pulling from the
source, so back-pressure reaches the consumer as with Faust's take.

The window is worth waiting only while records keep coming or the processor is busy.
Given a ``free`` event (set while the processor waits for work), a batch goes as soon as
it is set if records are sparse: the mean gap between arrivals (exponentially weighted)
is at least ``within_s``. At light load no record waits for a window. While records
come faster than that, a batch waits its window (or until full) as before, so that a
free processor does not run one batch per record and pay its fixed costs each time.

Under a backlog the window is not what bounds a batch's wait: given ``behind`` (whether
the source holds at least ``n`` more items after the buffered ones, e.g. the consumer's lag),
a batch whose window ended keeps filling while the backlog alone would fill it, up to
``BACKLOG_WINDOWS`` windows. Each batch then pays the fixed costs of a batch (Redis
round trips, the acks' bookkeeping, one pass of the rules) once for ``max_items`` items
instead of once per window's worth; a worker that keeps up never waits longer than before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")

GAP_WEIGHT = 0.25
"""Weight of the newest gap in the mean gap between arrivals."""
MAX_GAP_S = 1.0
"""A longer pause counts as this long: after an idle spell, ~16 quick arrivals make a burst."""
BACKLOG_WINDOWS = 16
"""Under a backlog a batch waits to fill up for at most this many windows in all (a
source that stalls mid-backlog still hands its items over)."""

Behind = Callable[[Sequence[T], int], bool]
"""``behind(items, n)``: whether the source already holds at least ``n`` items after
``items`` (the buffered ones, in source order)."""


async def micro_batches(
    source: AsyncIterable[T],
    max_items: int,
    within_s: float,
    free: asyncio.Event | None = None,
    behind: Behind[T] | None = None,
) -> AsyncIterator[list[T]]:
    """Lists of at most ``max_items`` items in source order; each is handed over when
    full, ``within_s`` after its first item arrived, or, while items are sparse, as soon
    as ``free`` is set (the processor waits for work). While ``behind`` says the source
    holds enough to fill the batch, it waits on past its window until full (at most
    ``BACKLOG_WINDOWS`` windows). Ends when ``source`` does (an error of the source is
    raised once the items before it are handed over).
    """
    buffer: list[T] = []
    arrived, full, room = asyncio.Event(), asyncio.Event(), asyncio.Event()
    room.set()
    ended = False
    loop = asyncio.get_running_loop()
    gap_s, last = MAX_GAP_S, loop.time()  # the mean gap between arrivals; the last one

    async def feed() -> None:
        nonlocal ended, gap_s, last
        try:
            async for item in source:
                now = loop.time()
                gap_s += GAP_WEIGHT * (min(now - last, MAX_GAP_S) - gap_s)
                last = now
                while len(buffer) >= max_items:
                    room.clear()
                    await room.wait()
                buffer.append(item)
                arrived.set()
                if len(buffer) >= max_items:
                    full.set()
        finally:
            ended = True
            arrived.set()
            full.set()

    feeder = asyncio.ensure_future(feed())
    try:
        while True:
            await arrived.wait()  # no timeout: an idle consumer sleeps here
            if not buffer:
                feeder.result()  # ended: raises the source's error, if any
                return
            sparse = free if gap_s >= within_s else None  # else the window is worth it
            if len(buffer) < max_items and not ended and not (sparse and sparse.is_set()):
                await _first_of(full, sparse, within_s)
                windows = 1
                while (
                    behind is not None
                    and windows < BACKLOG_WINDOWS
                    and 0 < len(buffer) < max_items
                    and not ended
                    and behind(buffer, max_items - len(buffer))
                ):
                    await _first_of(full, None, within_s)
                    windows += 1
            batch = buffer[:max_items]
            del buffer[:max_items]
            if not buffer and not ended:
                arrived.clear()
            if len(buffer) < max_items and not ended:
                full.clear()
            room.set()
            yield batch
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder


async def _first_of(full: asyncio.Event, free: asyncio.Event | None, within_s: float) -> None:
    """Wait until ``full`` or ``free`` is set, or ``within_s`` has passed."""
    if free is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(full.wait(), within_s)
        return
    waits = {asyncio.ensure_future(full.wait()), asyncio.ensure_future(free.wait())}
    try:
        await asyncio.wait(waits, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def quiet_take(
    stream: Any, max_items: int, within_s: float, free: asyncio.Event | None = None
) -> AsyncIterator[list[Any]]:
    """``micro_batches`` of a Faust stream's events, none acked (the caller acks); a
    batch fills up past its window while the consumer's lag would fill it (``kafka_lag``)."""
    lag = kafka_lag(stream.app.consumer)
    return micro_batches(stream.noack().events(), max_items, within_s, free, lag)


def kafka_lag(consumer: Any) -> Behind[Any]:
    """``behind`` of a Faust consumer's events: the records past the buffered ones that
    the broker already holds (its high watermark, as of the latest fetch), summed over
    the partitions the buffer holds records of.

    A partition's lag counts from its newest buffered record, so what it counts comes
    after the buffer; partitions without a buffered record count none. The sum is a
    lower bound of what waits, so it never makes a batch wait for records that are not
    there (a backlog spread over the partitions fills a batch as one on a single
    partition does); a partition no longer assigned counts as no lag.
    """

    def behind(events: Sequence[Any], n: int) -> bool:
        newest: dict[Any, int] = {}  # each partition's newest buffered offset
        if not events:
            return False
        topic = events[-1].message.topic
        try:  # the buffer's topic's partitions: once each is found, the scan stops
            wanted = sum(1 for tp in consumer.assignment() if tp.topic == topic)
        except Exception:  # no assignment known: look at the whole buffer
            wanted = 0
        for event in reversed(events):
            msg = event.message
            if msg.tp not in newest:
                newest[msg.tp] = msg.offset
                if len(newest) == wanted:
                    break
        lag = 0
        for tp, offset in newest.items():
            try:
                lag += max(0, int(consumer.highwater(tp)) - offset - 1)
            except Exception:  # not assigned any more (a rebalance), or no fetch yet
                continue
            if lag >= n:
                return True
        return False

    return behind


class ChunkQueue(Generic[T]):
    """Chunks of items between one producer and one consumer per lane, bounded by item count.

    The batch delivery's hand-off (``streams.runtime.faust_batches``): the fetcher puts
    each partition's records of a fetch as one chunk, the agent takes every chunk that
    waits at once. ``put`` waits while ``max_items`` or more items wait, so a slow
    consumer stops the fetcher (one chunk may take it past the bound, as Faust's stream
    buffer takes one message past ``full``). Each chunk carries a tag (the fetch's
    partition and consumer generation) and the monotonic time it was put.

    With ``lanes`` above one, ``lane_of(tag)`` (modulo ``lanes``) puts each chunk in a
    lane of its own, and each lane's consumer takes only its lane's chunks, oldest first:
    chunks of one tag (one partition) stay in one lane and in order, while lanes are
    taken independently. The bound counts the items of every lane.

    >>> q = ChunkQueue[int](max_items=3)
    >>> q.put_nowait("a", [1, 2], 0.0); q.put_nowait("b", [3, 4], 0.0); q.has_room()
    False
    >>> [items for _, items, _ in q.take_nowait()], q.has_room()
    ([[1, 2], [3, 4]], True)
    >>> two = ChunkQueue[int](max_items=9, lanes=2, lane_of=len)
    >>> two.put_nowait("a", [1], 0.0); two.put_nowait("bb", [2], 0.0); two.put_nowait("c", [3], 0.0)
    >>> [items for _, items, _ in two.take_nowait(1)], len(two)
    ([[1], [3]], 1)
    """

    def __init__(
        self, max_items: int, lanes: int = 1, lane_of: Callable[[Any], int] | None = None
    ) -> None:
        self.max_items = max(1, max_items)
        self.lanes = max(1, lanes)
        self._lane_of = lane_of
        self._chunks: list[collections.deque[tuple[Any, list[T], float]]] = [
            collections.deque() for _ in range(self.lanes)
        ]
        self._sizes = [0] * self.lanes
        self._size = 0
        self._readies = [asyncio.Event() for _ in range(self.lanes)]
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        """The items that wait, in every lane."""
        return self._size

    def has_room(self) -> bool:
        return self._size < self.max_items

    def lane(self, tag: Any) -> int:
        """The lane of a chunk tagged ``tag``."""
        if self.lanes == 1 or self._lane_of is None:
            return 0
        return self._lane_of(tag) % self.lanes

    def put_nowait(self, tag: Any, items: list[T], at: float) -> None:
        """Add a chunk whatever the bound (the caller checked ``has_room``)."""
        lane = self.lane(tag)
        self._chunks[lane].append((tag, items, at))
        self._sizes[lane] += len(items)
        self._size += len(items)
        self._readies[lane].set()
        if self._size >= self.max_items:
            self._room.clear()

    async def put(self, tag: Any, items: list[T], at: float) -> None:
        """Add a chunk once fewer than ``max_items`` items wait."""
        while self._size >= self.max_items:
            self._room.clear()
            await self._room.wait()
        self.put_nowait(tag, items, at)

    def take_nowait(self, lane: int | None = None) -> list[tuple[Any, list[T], float]]:
        """Every waiting chunk of ``lane`` (of every lane, lane by lane, if None), oldest
        first (none if none waits)."""
        chunks: list[tuple[Any, list[T], float]] = []
        for i in range(self.lanes) if lane is None else (lane,):
            chunks += self._chunks[i]
            self._chunks[i].clear()
            self._size -= self._sizes[i]
            self._sizes[i] = 0
            self._readies[i].clear()
        if self._size < self.max_items:
            self._room.set()
        return chunks

    async def take(
        self, most: int | None = None, lane: int = 0
    ) -> list[tuple[Any, list[T], float]]:
        """The waiting chunks of ``lane``, oldest first, once at least one waits: all of
        them, or while their items stay within ``most`` (at least one chunk)."""
        waiting, ready = self._chunks[lane], self._readies[lane]
        while not waiting:
            ready.clear()
            await ready.wait()
        if most is None or self._sizes[lane] <= most:
            return self.take_nowait(lane)
        chunks = [waiting.popleft()]
        n = len(chunks[0][1])
        while waiting and n + len(waiting[0][1]) <= most:
            chunk = waiting.popleft()
            chunks.append(chunk)
            n += len(chunk[1])
        self._sizes[lane] -= n
        self._size -= n
        if not waiting:  # one chunk larger than ``most`` was all that waited
            ready.clear()
        if self._size < self.max_items:
            self._room.set()
        return chunks

    def clear(self) -> int:
        """Drop every waiting chunk of every lane; how many items were dropped."""
        return sum(len(items) for _, items, _ in self.take_nowait())
