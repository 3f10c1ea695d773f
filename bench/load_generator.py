"""The stream bench's paced load generator: events at a steady rate, from a process of its own.

Event ``i`` of a phase is due ``i / rate`` seconds after the start. The sender wakes once a
*tick* (``TICK_MS``, 2 ms) and sends every event that is due by then, each stamped with the
wall clock (``ts``) just before its own ``send``, so the time a record waits in the
producer's linger is inside every latency figure. Events are therefore spread evenly in
time to within a tick (plus the event loop's timer slack, about 1 ms); one ``asyncio.sleep``
per event, as before, woke the loop once an event and cost 0.26 ms of CPU per event at 800/s.

It runs in a spawned child process with its own event loop, so the bench's list
consumer (``tail``) neither shares its loop nor hides in its CPU: the child reports its
own CPU per event over the send, from the ``go`` to the last acknowledgement. The
producer is aiokafka's with ``acks=all`` and the bench's linger; topics, keys
(``event_key``) and partitioning are the ones freshet's own producer uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import multiprocessing
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from schemas.codec import encode
from schemas.events import InteractionEvent
from schemas.topics import event_key

TICK_MS = 2.0
"""How often the sender wakes to send the events that are due."""


class Placed(NamedTuple):
    """Where one event landed: its partition and offset."""

    partition: int
    offset: int


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to send: ``events`` to ``topic`` at ``rate``/s, with the producer's linger."""

    bootstrap: str
    topic: str
    events: Sequence[InteractionEvent]
    rate: float
    linger_ms: int
    tick_ms: float = TICK_MS


@dataclasses.dataclass(frozen=True)
class SendReport:
    """One paced send: each event's ``ts`` and place, and how the generator kept pace."""

    ts: list[int]
    placed: list[Placed]
    offered_rate: float
    tick_ms: float
    linger_ms: int
    cpu_s: float
    wall_s: float
    max_behind_ms: float
    acked_ms: list[float] = dataclasses.field(default_factory=list)
    """Each event's acknowledgement by the broker (wall clock, ms), as the producer saw it."""

    @property
    def sent_events_per_s(self) -> float:
        """Rate achieved: events after the first over the first-to-last ``ts`` span."""
        span_ms = max(self.ts) - min(self.ts) if self.ts else 0
        return 1000.0 * (len(self.ts) - 1) / span_ms if span_ms > 0 else float("nan")

    def figures(self) -> dict[str, float]:
        """The generator's figures as the bench writes them to its JSON."""
        n = len(self.ts)
        return {
            "load_offered_rate": self.offered_rate,
            "load_sent_events_per_s": round(self.sent_events_per_s, 1),
            "load_cpu_ms_per_event": round(1000.0 * self.cpu_s / n, 4) if n else float("nan"),
            "load_cores": round(self.cpu_s / self.wall_s, 3) if self.wall_s > 0 else float("nan"),
            "load_max_behind_schedule_ms": round(self.max_behind_ms, 2),
            "load_tick_ms": self.tick_ms,
            "load_linger_ms": self.linger_ms,
        }


def due(elapsed_s: float, rate: float, n: int) -> int:
    """How many of ``n`` events are due ``elapsed_s`` after the start at ``rate``/s.

    Event ``i`` is due at ``i / rate``, so the first is due at once.

    >>> due(0.0, 1000.0, 10), due(0.0049, 1000.0, 10), due(1.0, 1000.0, 10)
    (1, 5, 10)
    """
    if elapsed_s < 0:
        return 0
    return min(n, int(elapsed_s * rate) + 1)


def counts_per_window(ts: Sequence[int], window_ms: int) -> list[int]:
    """Events per ``window_ms`` from the first ``ts``, the last partial window dropped.

    >>> counts_per_window([0, 3, 9, 10, 12, 25], 10)
    [3, 2]
    """
    if not ts:
        return []
    first = min(ts)
    windows = (max(ts) - first) // window_ms
    out = [0] * windows
    for t in ts:
        i = (t - first) // window_ms
        if i < windows:
            out[i] += 1
    return out


async def send_paced(plan: Plan, ready: Any = None) -> SendReport:
    """Send the plan's events at its rate, a tick at a time; ``ts`` = each event's send time.

    ``ready``: an awaitable factory called once the producer is connected; the send
    starts when it returns (the parent's ``go``).
    """
    from aiokafka import AIOKafkaProducer

    events, rate, tick_ms = plan.events, plan.rate, plan.tick_ms
    producer = AIOKafkaProducer(
        bootstrap_servers=plan.bootstrap, acks="all", linger_ms=plan.linger_ms
    )
    await producer.start()
    n = len(events)
    ts: list[int] = []
    futures = []
    acked = [0.0] * n
    behind = 0.0

    def on_ack(i: int, future: Any) -> None:
        if not future.cancelled() and future.exception() is None:  # a failed send: no ack
            acked[i] = time.time() * 1000.0

    try:
        if ready is not None:
            await ready()
        cpu0 = time.process_time()
        start = time.perf_counter()
        while len(ts) < n:
            for i in range(len(ts), due(time.perf_counter() - start, rate, n)):
                behind = max(behind, time.perf_counter() - (start + i / rate))
                stamp = int(time.time() * 1000)
                value = encode(dataclasses.replace(events[i], ts=stamp))
                key = event_key(events[i].user_id)
                future = await producer.send(plan.topic, value, key=key)
                future.add_done_callback(functools.partial(on_ack, i))
                futures.append(future)
                ts.append(stamp)
            if len(ts) < n:
                # The next event's due time, but at least a tick away: at low rates one
                # wake per event, at high rates one per tick.
                wake = max(start + len(ts) / rate, time.perf_counter() + tick_ms / 1000.0)
                await asyncio.sleep(wake - time.perf_counter())
        landed = await asyncio.gather(*futures)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu0
    finally:
        await producer.stop()
    return SendReport(
        ts=ts,
        placed=[Placed(md.partition, md.offset) for md in landed],
        offered_rate=rate,
        tick_ms=tick_ms,
        linger_ms=plan.linger_ms,
        cpu_s=cpu,
        wall_s=wall,
        max_behind_ms=1000.0 * behind,
        acked_ms=acked,
    )


def _child(conn: Connection, plan: Plan) -> None:
    """The generator process: connect, say ready, wait for go, send, hand the report back."""

    async def ready() -> None:
        conn.send("ready")
        await asyncio.to_thread(conn.recv)

    try:
        conn.send(asyncio.run(send_paced(plan, ready)))
    except BaseException as exc:  # the parent re-raises it
        conn.send(exc)
        raise
    finally:
        conn.close()


class LoadGenerator:
    """One paced send in a spawned process: ``start`` connects it, ``run`` sends.

    Spawned, not forked: the bench process has threads (its list tails) and an event
    loop running, which a fork would copy half-way.
    """

    def __init__(self, plan: Plan) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        plan = dataclasses.replace(plan, events=list(plan.events))  # a picklable sequence
        self._proc = ctx.Process(target=_child, args=(child, plan), daemon=True)
        self._child_end = child

    def start(self, timeout_s: float = 60.0) -> None:
        """Spawn the process and wait until its producer is connected."""
        self._proc.start()
        self._child_end.close()
        self._receive(timeout_s)

    def run(self, timeout_s: float = 600.0) -> SendReport:
        """Send the events at the rate; blocks until every one is acknowledged."""
        self._conn.send("go")
        try:
            report = self._receive(timeout_s)
        finally:
            self._proc.join(timeout=30)
            self._conn.close()
        if not isinstance(report, SendReport):
            raise RuntimeError(f"load generator sent {report!r}")
        return report

    def _receive(self, timeout_s: float) -> Any:
        if not self._conn.poll(timeout_s):
            self._proc.kill()
            raise TimeoutError(f"load generator silent for {timeout_s:.0f} s")
        msg = self._conn.recv()
        if isinstance(msg, BaseException):
            raise msg
        return msg


async def paced_in_process(plan: Plan) -> SendReport:
    """``LoadGenerator`` from async code: the caller's loop (its tails) keeps running."""
    gen = LoadGenerator(plan)
    await asyncio.to_thread(gen.start)
    return await asyncio.to_thread(gen.run)


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    """The generator alone, against a topic no worker reads, one rate after another."""
    import argparse
    import json
    import os
    import tempfile
    from pathlib import Path

    from bench.host import cpu_model
    from bench.stream_bench import simulate_shop
    from freshet.services.kafka_local import LocalKafka
    from freshet.settings import Settings
    from freshet.wiring import kafka_of
    from streams.kafka_io.event_producer import ensure_topics

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--rates", default="400,800,1600,3200,6400")
    parser.add_argument("--events", type=int, default=3000, help="per rate")
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--tick-ms", type=float, default=TICK_MS)
    parser.add_argument("--bootstrap", help="an external broker (else a local one)")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    shop = simulate_shop(20_000, 100_000, 0, args.events * len(rates), seed=0)
    events = [*shop.live, *shop.saturate]
    print(f"conditions: {os.cpu_count()} cores ({cpu_model()}), {args.events:,} events a rate,")
    print(f"  acks=all, linger {args.linger_ms} ms, tick {args.tick_ms:g} ms, 4 partitions,")
    print(f"  no worker; load average {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        kafka = None
        if args.bootstrap is None:
            home = Settings.from_env().home
            kafka = LocalKafka(Path(tmp), partitions=4, home=home, die_with_parent=True).start()
        bootstrap = args.bootstrap or kafka.bootstrap  # type: ignore[union-attr]
        try:
            settings = Settings.from_env({}, kafka_bootstrap=bootstrap, topic_partitions=4)
            topic = f"loadgen-{os.getpid()}"
            ensure_topics(kafka_of(settings), [topic])
            for k, rate in enumerate(rates):
                chunk = events[k * args.events : (k + 1) * args.events]
                plan = Plan(bootstrap, topic, chunk, rate, args.linger_ms, args.tick_ms)
                report = asyncio.run(paced_in_process(plan))
                row = {**report.figures(), "max_per_10ms": max(counts_per_window(report.ts, 10))}
                print(json.dumps(row))
                rows.append(row)
        finally:
            if kafka is not None:
                kafka.stop()
    return rows


if __name__ == "__main__":
    main()
