"""The batch agent's driver loop, run in memory: take, merge, in-order ack, retry.

The agent function that ``add_batch_agent`` registers is driven with a stand-in for
Faust's stream (``noack_take`` and ``ack``), so these tests need no broker. They pin
what exactly-once rests on: no record is acked before its batch is done, acks come in
take order, batches that wait are merged into one call, and a failing batch is retried
whole, with growing backoff, until it goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import faust
import pytest

import streams.runtime.faust_app as faust_app
from streams.core.ingest import BatchStats, SourceRecord
from streams.runtime.faust_app import add_batch_agent, run_until_done


@dataclass
class Event:
    message: Any


def event(offset: int) -> Event:
    msg = SimpleNamespace(
        topic="events", partition=0, offset=offset, key=b"k", value=b"v", timestamp=1.5
    )
    return Event(msg)


class Stream:
    """Yields the given takes, then stays open until every record is acked."""

    def __init__(self, takes: list[list[int]], log: list[str]) -> None:
        self.takes = takes
        self.log = log
        self.acked: list[int] = []
        self.all_acked = asyncio.Event()
        self.total = sum(len(t) for t in takes)

    async def noack_take(self, max_events: int, within: float) -> AsyncIterator[list[Event]]:
        for take in self.takes:
            assert len(take) <= max_events
            self.log.append(f"take {take}")
            yield [event(o) for o in take]
        await asyncio.wait_for(self.all_acked.wait(), 10)

    async def ack(self, ev: Event) -> None:
        self.acked.append(ev.message.offset)
        self.log.append(f"ack {ev.message.offset}")
        if len(self.acked) == self.total:
            self.all_acked.set()


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff sleeps asked for, recorded instead of waited out."""
    asked: list[float] = []
    real_sleep = asyncio.sleep

    async def no_wait(delay: float, *args: Any) -> Any:
        asked.append(delay)
        return await real_sleep(0)

    monkeypatch.setattr(faust_app.asyncio, "sleep", no_wait)
    return asked


def agent_fun(handler: Any, **kwargs: Any) -> Any:
    app = faust.App("t", broker="kafka://127.0.0.1:1", autodiscover=False, web_enabled=False)
    # The takes come from the stand-in's ``noack_take``, exactly as scripted.
    kwargs.setdefault("take", lambda stream, most, within, free: stream.noack_take(most, within))
    return add_batch_agent(app, "events", handler, name="ingest", **kwargs).fun


async def test_waiting_takes_merge_and_acks_follow_their_batch_in_order() -> None:
    log: list[str] = []
    first_started, release = asyncio.Event(), asyncio.Event()
    calls: list[list[int]] = []
    seen_stats: list[int] = []

    async def handler(records: Sequence[SourceRecord]) -> BatchStats:
        offsets = [r.offset for r in records]
        calls.append(offsets)
        log.append(f"start {offsets}")
        if len(calls) == 1:
            first_started.set()
            await release.wait()  # slow: the next takes queue up meanwhile
        log.append(f"done {offsets}")
        return BatchStats(records=len(records))

    stream = Stream([[0, 1], [2], [3, 4]], log)
    run = asyncio.ensure_future(
        agent_fun(
            handler, max_events=2, within_s=0.01, on_batch=lambda s: seen_stats.append(s.records)
        )(stream)
    )
    await asyncio.wait_for(first_started.wait(), 5)
    for _ in range(20):  # let the agent take everything while the first batch runs
        await asyncio.sleep(0)
    assert stream.acked == []  # nothing acked while its batch is not done
    release.set()
    await asyncio.wait_for(run, 10)
    assert calls == [[0, 1], [2, 3, 4]]  # the two waiting takes merged
    assert stream.acked == [0, 1, 2, 3, 4]
    assert seen_stats == [2, 3]
    for offset, offsets in ((0, [0, 1]), (2, [2, 3, 4])):
        assert log.index(f"done {offsets}") < log.index(f"ack {offset}")


async def test_a_failing_batch_is_retried_whole_with_backoff_before_any_ack(
    delays: list[float],
) -> None:
    log: list[str] = []
    attempts: list[list[int]] = []
    retries: list[int] = []

    async def handler(records: Sequence[SourceRecord]) -> BatchStats:
        attempts.append([r.offset for r in records])
        log.append(f"attempt {len(attempts)}")
        if len(attempts) <= 3:
            raise ConnectionError("redis is away")
        return BatchStats(records=len(records))

    stream = Stream([[7, 8]], log)
    fun = agent_fun(handler, max_events=5, within_s=0.01, on_retry=lambda exc, n: retries.append(n))
    await asyncio.wait_for(fun(stream), 10)
    assert attempts == [[7, 8]] * 4 and retries == [1, 2, 3]
    assert [d for d in delays if d > 0] == [0.2, 0.4, 0.8]  # doubling
    assert stream.acked == [7, 8]
    assert log.index("attempt 4") < log.index("ack 7")  # acked only once it went through


async def test_backoff_is_capped(delays: list[float]) -> None:
    failures = iter(range(12))

    async def handler(records: Sequence[SourceRecord]) -> BatchStats:
        if next(failures, None) is not None:
            raise TimeoutError
        return BatchStats(records=len(records))

    await run_until_done(handler, [], max_backoff_s=5.0)
    assert max(delays) == 5.0 and delays[-1] == 5.0 and len(delays) == 12


class GatedStream(Stream):
    """Like ``Stream``, but each take after the first waits for its gate."""

    def __init__(self, takes: list[list[int]], log: list[str]) -> None:
        super().__init__(takes, log)
        self.gates = [asyncio.Event() for _ in takes]
        self.gates[0].set()

    async def noack_take(self, max_events: int, within: float) -> AsyncIterator[list[Event]]:
        for gate, take in zip(self.gates, self.takes, strict=True):
            await asyncio.wait_for(gate.wait(), 10)
            self.log.append(f"take {take}")
            yield [event(o) for o in take]
        await asyncio.wait_for(self.all_acked.wait(), 10)


class Deliveries:
    """The sink's side: each handler call "sends", and its delivery ends when told."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.pending: list[asyncio.Future[None]] = []
        self.sent: list[asyncio.Future[None]] = []

    def send(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append(fut)

    def delivered(self) -> Any:
        batch, self.sent = self.sent, []
        self.pending += batch

        async def wait() -> None:
            await asyncio.gather(*batch)

        return wait()


async def until(cond: Any) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition never held")


async def test_the_next_batch_runs_while_one_is_published_and_acks_keep_take_order() -> None:
    log: list[str] = []
    calls: list[list[int]] = []
    reported: list[list[int]] = []
    out = Deliveries(log)

    async def handler(records: Sequence[SourceRecord]) -> BatchStats:
        offsets = [r.offset for r in records]
        calls.append(offsets)
        log.append(f"handled {offsets}")
        out.send()
        return BatchStats(records=len(records), source_timestamps_ms=offsets)

    stream = GatedStream([[0, 1], [2], [3]], log)
    fun = agent_fun(
        handler,
        max_events=5,
        within_s=0.01,
        delivered=out.delivered,
        on_batch=lambda s: reported.append(s.source_timestamps_ms),
    )
    run = asyncio.ensure_future(fun(stream))
    await until(lambda: len(out.pending) == 1)
    stream.gates[1].set()  # batch [2] comes while [0, 1] is not yet delivered
    await until(lambda: len(out.pending) == 2)
    assert calls == [[0, 1], [2]] and stream.acked == []
    stream.gates[2].set()  # at most one batch waits on delivery: [3] waits for [0, 1]
    for _ in range(50):
        await asyncio.sleep(0)
    assert calls == [[0, 1], [2]]
    out.pending[1].set_result(None)  # [2] delivered first: still nothing acked before [0, 1]
    for _ in range(50):
        await asyncio.sleep(0)
    assert stream.acked == [] and reported == []
    out.pending[0].set_result(None)
    await until(lambda: len(out.pending) == 3)
    assert stream.acked == [0, 1, 2] and reported == [[0, 1], [2]]
    out.pending[2].set_result(None)
    await asyncio.wait_for(run, 10)
    assert calls == [[0, 1], [2], [3]]
    assert stream.acked == [0, 1, 2, 3] and reported == [[0, 1], [2], [3]]


async def test_a_failed_delivery_runs_the_batch_again_before_its_ack(delays: list[float]) -> None:
    log: list[str] = []
    calls: list[list[int]] = []
    retries: list[int] = []
    out = Deliveries(log)

    async def handler(records: Sequence[SourceRecord]) -> BatchStats:
        calls.append([r.offset for r in records])
        log.append(f"handled {len(calls)}")
        out.send()
        if len(calls) == 1:
            out.sent[-1].set_exception(ConnectionError("broker away"))
        else:
            out.sent[-1].set_result(None)
        return BatchStats(records=len(records))

    stream = Stream([[4, 5]], log)
    fun = agent_fun(
        handler,
        max_events=5,
        within_s=0.01,
        delivered=out.delivered,
        on_retry=lambda exc, n: retries.append(n),
    )
    await asyncio.wait_for(fun(stream), 10)
    assert calls == [[4, 5], [4, 5]] and retries == [1]
    assert stream.acked == [4, 5]
    assert log.index("handled 2") < log.index("ack 4")


def test_a_record_carries_its_message_field_by_field() -> None:
    """``_record`` sets its fields one by one: each lands in its own field, a
    missing value is empty bytes and a missing timestamp is 0 ms."""
    msg = SimpleNamespace(
        topic="events", partition=3, offset=41, key=b"u7", value=b"{}", timestamp=1.2345
    )
    assert faust_app._record(Event(msg)) == SourceRecord(
        topic="events", partition=3, offset=41, key=b"u7", value=b"{}", timestamp_ms=1234
    )
    bare = SimpleNamespace(topic="t", partition=0, offset=0, key=None, value=None, timestamp=None)
    assert faust_app._record(Event(bare)) == SourceRecord(
        topic="t", partition=0, offset=0, key=None, value=b"", timestamp_ms=0
    )


async def test_a_cancel_a_redis_send_swallowed_still_stops_the_agent() -> None:
    """redis-py sends under ``asyncio.wait_for`` on ``rediss://`` and ``unix://``; on
    Python 3.11 a cancel that lands as the send ends is swallowed and the call returns.
    The worker's stop must still end the agent: before, the batch finished, was acked,
    and the agent took the next one as if no stop had come."""
    log: list[str] = []
    started = asyncio.Event()

    async def handler(records: Sequence[SourceRecord]) -> BatchStats:
        started.set()
        # swallowed, as wait_for does when the cancel lands as the inner call finishes
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)  # the state read's send
        return BatchStats(records=len(records))

    stream = Stream([[0, 1], [2]], log)
    run = asyncio.ensure_future(agent_fun(handler, max_events=2, within_s=0.01)(stream))
    await asyncio.wait_for(started.wait(), 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
    assert stream.acked == []  # not acked: the batch is taken again after the restart
