"""The floor at light load: CPU per event of Faust's no-op agent and a raw aiokafka pipe, paced.

At 10 ev/s every event is its own micro-batch, so what the worker spends per event is
mostly fixed cost per batch. This bench runs, each in a fresh process on the same
local broker, the consumers a worker is built from with no work of their own, and
offers them events at a fixed rate, as the stream bench's curve does:

- ``faust-ack``: a Faust app configured as the worker's (``create_app``), one agent
  that takes micro-batches with the worker's ``quiet_take`` and acks each event;
- ``agent-noop``: the worker's own agent shell (``add_batch_agent``: its queue,
  processor and in-order acks) around a handler that does nothing;
- ``agent-publish``: the same shell, and the handler sends one record per batch with
  the app's producer (acks all), the ack waiting for it as the worker's does;
- ``raw-consume``: a bare aiokafka consumer (assigned, no group) reading the topic;
- ``raw-pipe``: the bare consumer, and each record produced to a second topic (acks
  all) and awaited.

CPU is the child process's (every thread) from the first paced event taken to the
last, divided by the events: what the stream bench's ``worker_cpu_ms_per_event`` is
for the worker. The worker's figure minus ``agent-publish`` is what freshet's own
work (decode, Redis, scoring, timers) adds per event.

    .venv/bin/python -m bench.light_load_floor --rate 10 --events 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.host import cpu_model
from freshet.settings import Settings

RESULT = "FLOOR-RESULT "
READY = "FLOOR-READY"
MODES = ("faust-ack", "agent-noop", "agent-publish", "raw-consume", "raw-pipe")
PING = b"ping"


class _Clock:
    """Counts paced events (values other than ``PING``) and prints the result once
    ``events`` of them are taken: CPU and wall from the first to the last."""

    def __init__(self, mode: str, events: int) -> None:
        self.mode, self.events = mode, events
        self.seen = 0
        self.batches = 0
        self.ready = False
        self.start: tuple[float, float] | None = None

    def taken(self, values: list[bytes]) -> None:
        if not self.ready:
            self.ready = True
            print(READY, flush=True)
        paced = sum(1 for v in values if v != PING)
        if not paced:
            return
        if self.start is None:
            self.start = (time.perf_counter(), time.process_time())
            paced -= 1  # counted from the first event's arrival
        self.seen += paced
        self.batches += 1
        if self.seen >= self.events - 1:
            wall = time.perf_counter() - self.start[0]
            cpu = time.process_time() - self.start[1]
            out = {
                "mode": self.mode,
                "events": self.seen + 1,
                "batches": self.batches,
                "cpu_ms_per_event": 1000.0 * cpu / self.seen,
                "cores": cpu / wall,
                "wall_s": wall,
            }
            print(RESULT + json.dumps(out), flush=True)
            os._exit(0)  # a Faust worker does not return from its command line


def _faust_child(mode: str, settings: Settings, src: str, dst: str, clock: _Clock) -> None:
    import faust

    from streams.core.ingest import BatchStats
    from streams.core.micro_batches import quiet_take
    from streams.runtime.faust_app import add_batch_agent, create_app

    app = create_app(settings, app_id=f"{settings.topic_prefix}-floor")
    within = settings.batch_max_ms / 1000.0
    if mode == "faust-ack":
        topic = app.topic(src, key_serializer="raw", value_serializer="raw")

        @app.agent(topic, concurrency=1)
        async def take(stream: Any) -> None:
            async for batch in quiet_take(stream, settings.batch_max_events, within):
                for ev in batch:
                    await stream.ack(ev)
                clock.taken([ev.value for ev in batch])

    else:
        sent: list[Any] = []

        async def handler(records: Any) -> BatchStats:
            if mode == "agent-publish":
                sent.append(await app.producer.send(dst, b"k", b"x" * 1500, None, None, None))
            clock.taken([r.value for r in records])
            return BatchStats(records=len(records))

        async def delivered() -> Any:
            if sent:
                await sent.pop()

        add_batch_agent(
            app,
            src,
            handler,
            name="floor",
            max_events=settings.batch_max_events,
            within_s=within,
            delivered=delivered if mode == "agent-publish" else None,
        )
    faust.Worker(app, loglevel="warning").execute_from_commandline()


async def _raw_child(mode: str, settings: Settings, src: str, dst: str, clock: _Clock) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, group_id=None
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    tps = [TopicPartition(src, p) for p in range(settings.topic_partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    while True:
        batch = await consumer.getmany(timeout_ms=1000, max_records=settings.batch_max_events)
        values: list[bytes] = []
        for records in batch.values():
            for r in records:
                values.append(r.value)
                if mode == "raw-pipe":
                    await (await producer.send(dst, r.value, key=r.key))
        if values:
            clock.taken(values)


def child(mode: str, bootstrap: str, prefix: str, home: Path, events: int, partitions: int) -> None:
    """Run one consumer until ``events`` paced records are taken; print one result line."""
    from schemas.topics import Topics

    settings = Settings.from_env(
        {}, kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions, home=home
    )
    topics = Topics(prefix)
    clock = _Clock(mode, events)
    if mode.startswith("raw"):
        asyncio.run(_raw_child(mode, settings, topics.events, topics.recommendations, clock))
    else:
        _faust_child(mode, settings, topics.events, topics.recommendations, clock)


async def _offer(
    settings: Settings, topic: str, ready: threading.Event, n: int, rate: float
) -> None:
    """Ping until the child has taken something, then send ``n`` records at ``rate``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        while not ready.is_set():
            await producer.send_and_wait(topic, PING, key=b"ping")
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)  # the pings are taken and the child is quiet
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            value = b"e" * 200
            await producer.send(topic, value, key=f"u{i % 997}".encode())
        await producer.flush()
    finally:
        await producer.stop()


def measure(
    mode: str, bootstrap: str, home: Path, prefix: str, events: int, rate: float, partitions: int
) -> dict[str, Any]:
    """Start the child for ``mode``, offer it ``events`` at ``rate``; its result row."""
    from freshet.wiring import kafka_of
    from schemas.topics import Topics
    from streams.kafka_io.event_producer import ensure_topics

    settings = Settings.from_env(
        {}, kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions, home=home
    )
    topics = Topics(prefix)
    ensure_topics(kafka_of(settings), [topics.events, topics.recommendations])
    cmd = [sys.executable, "-m", "bench.light_load_floor", f"--events={events}",
           f"--partitions={partitions}", "--child", mode, bootstrap, prefix, str(home)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if READY in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        asyncio.run(_offer(settings, topics.events, ready, events, rate))
        proc.wait(timeout=60 + events / rate)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=5)
    found = [ln for ln in lines if RESULT in ln]
    if not found:
        raise RuntimeError(f"no result for {mode}:\n{''.join(lines)[-3000:]}")
    row: dict[str, Any] = json.loads(found[-1].split(RESULT, 1)[1].strip())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "BOOTSTRAP", "PREFIX", "HOME"))
    args = parser.parse_args()
    if args.child:
        mode, boot, prefix, home = args.child
        child(mode, boot, prefix, Path(home), args.events, args.partitions)
        return

    from freshet.services.kafka_local import LocalKafka

    rows: list[dict[str, Any]] = []
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        kafka = LocalKafka(base / "kafka", partitions=args.partitions).start()
        try:
            for n, mode in enumerate(args.modes.split(",")):
                prefix = f"floor{os.getpid()}x{n}"
                rows.append(
                    measure(
                        mode,
                        kafka.bootstrap,
                        base / "home",
                        prefix,
                        args.events,
                        args.rate,
                        args.partitions,
                    )
                )
                loads.append(os.getloadavg()[0])
        finally:
            kafka.stop()

    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}), local Kafka broker on the same cores")
    print(f"  {args.partitions} partitions; {args.events} events offered at {args.rate:g} ev/s")
    print(f"  1-minute load before and after each mode: {[round(x, 1) for x in loads]}")
    print("figures (CPU of the consumer's process, every thread):")
    print("  mode            batches  CPU ms/event   cores")
    for r in rows:
        print(
            f"  {r['mode']:<14} {r['batches']:8,} {r['cpu_ms_per_event']:13.3f} {r['cores']:7.4f}"
        )


if __name__ == "__main__":
    main()
