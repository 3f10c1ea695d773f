"""Micro-batches that sleep while idle: order, size, timing and back-pressure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.micro_batches import kafka_lag, micro_batches


async def paced(gaps_ms: list[int]) -> AsyncIterator[int]:
    for i, gap in enumerate(gaps_ms):
        if gap:
            await asyncio.sleep(gap / 1000)
        yield i


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0, 0, 0, 1, 3]), max_size=40), st.integers(1, 7))
def test_every_item_once_in_order_and_no_batch_too_big(gaps: list[int], most: int) -> None:
    async def run() -> list[list[int]]:
        return [b async for b in micro_batches(paced(gaps), most, 0.002)]

    batches = asyncio.run(run())
    assert [i for b in batches for i in b] == list(range(len(gaps)))
    assert all(1 <= len(b) <= most for b in batches)


async def test_a_batch_waits_within_s_after_its_first_item_then_goes() -> None:
    async def source() -> AsyncIterator[int]:
        await asyncio.sleep(0.3)  # idle first: no batch, however long
        yield 1
        yield 2
        await asyncio.sleep(1.0)  # past the window: the next batch
        yield 3

    t0 = time.monotonic()
    out = []
    async for batch in micro_batches(source(), 10, 0.1):
        out.append((batch, time.monotonic() - t0))
    assert [b for b, _ in out] == [[1, 2], [3]]
    assert 0.4 <= out[0][1] < 0.9  # 0.3 s idle + the 0.1 s window (loaded machine: slack)
    assert out[1][1] >= 1.3


async def test_a_full_batch_goes_at_once() -> None:
    async def source() -> AsyncIterator[int]:
        for i in range(6):
            yield i
        await asyncio.sleep(10)

    gen = micro_batches(source(), 3, 5.0)
    t0 = time.monotonic()
    assert await anext(gen) == [0, 1, 2]
    assert await anext(gen) == [3, 4, 5]
    assert time.monotonic() - t0 < 1.0  # never waited out the 5 s window
    await gen.aclose()


async def test_it_stops_pulling_when_the_consumer_does_not_take() -> None:
    pulled: list[int] = []

    async def source() -> AsyncIterator[int]:
        for i in range(100):
            pulled.append(i)
            yield i

    gen = micro_batches(source(), 4, 0.01)
    assert await anext(gen) == [0, 1, 2, 3]
    await asyncio.sleep(0.1)  # the consumer is busy: the source is not drained
    assert len(pulled) <= 4 + 4 + 1
    await gen.aclose()


async def test_a_source_error_comes_after_the_items_before_it() -> None:
    async def source() -> AsyncIterator[int]:
        yield 1
        raise ConnectionError("broker gone")

    gen = micro_batches(source(), 10, 0.01)
    assert await anext(gen) == [1]
    with pytest.raises(ConnectionError):
        await anext(gen)


async def test_sparse_items_go_at_once_to_a_free_processor_or_when_it_frees() -> None:
    async def source() -> AsyncIterator[int]:
        await asyncio.sleep(1.0)
        yield 1
        await asyncio.sleep(1.0)
        yield 2
        await asyncio.sleep(10)

    free = asyncio.Event()
    free.set()
    gen = micro_batches(source(), 10, 0.8, free)
    t0 = time.monotonic()
    assert await anext(gen) == [1]
    assert time.monotonic() - t0 < 1.0 + 0.4  # no 0.8 s window: the processor waits
    free.clear()  # busy now: the next batch waits for its window or a free processor
    nxt = asyncio.ensure_future(anext(gen))
    while time.monotonic() - t0 < 2.2:  # item 2 came at 2.0 s
        await asyncio.sleep(0.05)
    assert not nxt.done()
    free.set()
    assert await asyncio.wait_for(nxt, 1.0) == [2]
    assert time.monotonic() - t0 < 2.0 + 0.6  # before its window would have closed
    await gen.aclose()


async def test_while_items_keep_coming_a_free_processor_still_gets_a_window() -> None:
    async def source() -> AsyncIterator[int]:
        for i in range(150):
            await asyncio.sleep(0.01)  # 100 items/s: a gap of 10 ms, under the window
            yield i

    free = asyncio.Event()
    free.set()  # the processor is always free: only the arrival rate keeps the window
    sizes = [len(b) async for b in micro_batches(source(), 500, 0.1, free)]
    assert sum(sizes) == 150
    later = sizes[len(sizes) // 2 :]  # past the first arrivals, which follow an idle spell
    assert sum(later) / len(later) >= 4  # ~0.1 s of items each, not one batch per item


def _backlog_sizes(behind: bool, stall_after: int | None = None) -> list[int]:
    """Batch sizes of 100 items arriving 1 ms apart (a backlog the source drains), with a
    10 ms window and batches of at most 20; ``behind`` tells the take how many remain."""
    total = 100

    async def source() -> AsyncIterator[int]:
        for i in range(total):
            if i == stall_after:
                await asyncio.sleep(1.0)  # the backlog stops coming mid-batch
            await asyncio.sleep(0.001)
            yield i

    def remaining(items: Sequence[int], n: int) -> bool:
        return behind and total - 1 - items[-1] >= n

    async def run() -> list[int]:
        return [len(b) async for b in micro_batches(source(), 20, 0.01, None, remaining)]

    return asyncio.run(run())


def test_under_a_backlog_a_batch_fills_up_past_its_window() -> None:
    grown = _backlog_sizes(behind=True)
    assert grown == [20] * 5  # every batch full: the backlog alone fills each
    windowed = _backlog_sizes(behind=False)
    assert sum(windowed) == 100 and len(windowed) > 5  # the window alone cuts them short


def test_a_backlog_that_stalls_still_hands_its_batch_over() -> None:
    t0 = time.monotonic()
    sizes = _backlog_sizes(behind=True, stall_after=10)
    assert sizes[0] == 10  # waited at most BACKLOG_WINDOWS windows, not for the stall
    assert sum(sizes) == 100
    assert time.monotonic() - t0 < 3.0


class _Consumer:
    """Partitions t0..t3 of topic "events" assigned, each with high watermark 110."""

    def assignment(self) -> set[SimpleNamespace]:
        return {SimpleNamespace(topic="events", partition=p) for p in range(4)}

    def highwater(self, tp: str) -> int:
        if tp == "gone":
            raise RuntimeError("partition not assigned")
        return 110  # the next offset the broker will write


def _event(tp: str, offset: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(topic="events", tp=tp, offset=offset))


def test_kafka_lag_reads_the_partitions_high_watermark() -> None:
    behind = kafka_lag(_Consumer())
    assert behind([_event("t0", 99)], 10)  # offsets 100..109 wait: ten
    assert not behind([_event("t0", 99)], 11)
    assert not behind([_event("t0", 109)], 1)  # the newest record: nothing after it
    assert not behind([_event("gone", 0)], 1)  # revoked: no lag known, no extra wait
    assert not behind([], 1)


def test_kafka_lag_sums_the_buffered_partitions_from_their_newest_records() -> None:
    behind = kafka_lag(_Consumer())
    # t0's newest buffered record is 105 (4 after it), t1's 99 (10), t2's 109 (none);
    # t3 has none buffered and counts none: 14 wait in all.
    spread = [_event("t0", 97), _event("t1", 99), _event("t0", 105), _event("t2", 109)]
    assert behind(spread, 14)
    assert not behind(spread, 15)
    # A revoked partition adds nothing to the others' lag.
    assert behind([_event("gone", 0), *spread], 14)
    assert not behind([_event("gone", 0), *spread], 15)
    # The scan stops once every assigned partition is found: an older record of t0
    # before t0's newest changes nothing.
    every = [_event("t0", 50), *spread, _event("t3", 100)]
    assert behind(every, 23) and not behind(every, 24)
