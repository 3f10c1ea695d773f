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
- ``agent-redis``: ``agent-publish`` plus the worker's two Redis round trips per batch
  (a read and a write script call, ``EVALSHA``, through freshet's redis-py client) on
  a local ``redis-server``: the clients' floor under the worker's own work;
- ``agent-io``: the worker's own I/O for a batch around no scoring: its batch's users'
  state read (``RedisStateStore.read``, the generation check riding in it), the fenced
  write of their states and lists, then the lists out through ``KafkaSinks`` (one
  committed list a user, the direct produce path), the ack waiting for their delivery;
- ``faust-ack-loop``, ``agent-noop-loop``, ``agent-publish-loop``, ``agent-redis-loop``:
  the same with the worker's consumer on the app's event loop
  (``FRESHET_KAFKA_CONSUMER_ON_LOOP``, ``streams.runtime.faust_loop_consumer``) instead of
  Faust's consumer thread;
- ``agent-noop-batch``, ``agent-publish-batch``, ``agent-redis-batch``, ``agent-io-batch``:
  the loop modes with
  the batch delivery (``FRESHET_KAFKA_BATCH_DELIVERY``, ``streams.runtime.faust_batches``):
  a fetch's records go to the agent per partition, no Faust event per record;
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

from bench import loop_wakeups
from bench.host import cpu_model
from freshet.settings import Settings

RESULT = "FLOOR-RESULT "
READY = "FLOOR-READY"
FAUST_MODES = ("faust-ack", "agent-noop", "agent-publish", "agent-redis", "agent-io")
LOOP = "-loop"  # a Faust mode with this suffix runs the consumer on the app's loop
BATCH = "-batch"  # ... on the app's loop, with the batch delivery
MODES = (
    *FAUST_MODES,
    *(m + LOOP for m in FAUST_MODES),
    *(m + BATCH for m in FAUST_MODES[1:]),
    "raw-consume",
    "raw-pipe",
)
PING = b"ping"


class _Clock:
    """Counts paced events (values other than ``PING``) and prints the result once
    ``events`` of them are taken: CPU and wall from the first to the last."""

    def __init__(self, mode: str, events: int, wakeups: bool = False) -> None:
        self.mode, self.events = mode, events
        self.seen = 0
        self.batches = 0
        self.ready = False
        self.start: tuple[float, float, float] | None = None
        self.wakeups = wakeups  # ``bench.loop_wakeups`` installed: report its windows
        self.marks: list[dict[str, Any]] = []  # after the last ping, at the first paced

    def taken(self, values: list[bytes]) -> None:
        if not self.ready:
            self.ready = True
            print(READY, flush=True)
        paced = sum(1 for v in values if v != PING)
        if not paced:
            if self.wakeups:
                self.marks[:] = [loop_wakeups.snapshot()]
            return
        if self.start is None:
            if self.wakeups:
                self.marks.append(loop_wakeups.snapshot())
            self.start = (time.perf_counter(), time.process_time(), time.thread_time())
            paced -= 1  # counted from the first event's arrival
        self.seen += paced
        self.batches += 1
        if self.seen >= self.events - 1:
            wall = time.perf_counter() - self.start[0]
            cpu = time.process_time() - self.start[1]
            loop = time.thread_time() - self.start[2]  # the event loop's thread alone
            out = {
                "mode": self.mode,
                "events": self.seen + 1,
                "batches": self.batches,
                "cpu_ms_per_event": 1000.0 * cpu / self.seen,
                "loop_cpu_ms_per_event": 1000.0 * loop / self.seen,
                "cores": cpu / wall,
                "wall_s": wall,
            }
            if self.wakeups and len(self.marks) == 2:
                end = loop_wakeups.snapshot()
                out["wakeups"] = {
                    "idle": loop_wakeups.window(self.marks[0], self.marks[1]),
                    "paced": loop_wakeups.window(self.marks[1], end, self.seen),
                }
            print(RESULT + json.dumps(out), flush=True)
            os._exit(0)  # a Faust worker does not return from its command line


_READ = "return {redis.call('GET', KEYS[1]), redis.call('HMGET', KEYS[2], 's', 'e', 'r')}"
_WRITE = "redis.call('HSET', KEYS[2], 's', ARGV[1]); return redis.call('SET', KEYS[1], ARGV[2])"


def _faust_child(
    mode: str, settings: Settings, src: str, dst: str, clock: _Clock, commit_s: float
) -> None:
    import faust

    from freshet.wiring import redis_of
    from streams.core.ingest import BatchStats
    from streams.core.micro_batches import quiet_take
    from streams.redis_io.redis_client import async_redis
    from streams.runtime.faust_app import add_batch_agent, create_app

    app = create_app(settings, app_id=f"{settings.topic_prefix}-floor")
    if commit_s:
        app.conf.broker_commit_interval = commit_s
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
        redis: Any = None
        keys = [f"{settings.topic_prefix}:wm", f"{settings.topic_prefix}:u"]

        async def handler(records: Any) -> BatchStats:
            nonlocal redis
            if mode == "agent-redis":
                if redis is None:
                    client = async_redis(redis_of(settings))
                    redis = (client.register_script(_READ), client.register_script(_WRITE))
                await redis[0](keys=keys)
                await redis[1](keys=keys, args=[b"s" * 300, records[-1].offset])
            if mode in ("agent-publish", "agent-redis"):
                sent.append(await app.producer.send(dst, b"k", b"x" * 1500, None, None, None))
            clock.taken([r.value for r in records])
            return BatchStats(records=len(records))

        async def delivered() -> Any:
            if sent:
                await sent.pop()

        if mode == "agent-io":
            handler, delivered = _worker_io(app, settings, clock)
        add_batch_agent(
            app,
            src,
            handler,
            name="floor",
            max_events=settings.batch_max_events,
            within_s=within,
            delivered=None if mode == "agent-noop" else delivered,
        )
    faust.Worker(app, loglevel="warning").execute_from_commandline()


def _worker_io(app: Any, settings: Settings, clock: _Clock) -> tuple[Any, Any]:
    """``agent-io``'s handler and ``delivered``: the worker's state read, fenced write and
    list publish for a batch's users (a user per key), through the worker's own classes."""
    from bench.client_costs import lists
    from freshet.wiring import redis_of
    from schemas.topics import Topics
    from streams.core.ingest import BatchStats
    from streams.core.publish import Committed
    from streams.core.state_rules import PopularityDelta, UserState
    from streams.core.state_store import PartitionRead, PartitionWrite
    from streams.redis_io.generation import GenerationFollower
    from streams.redis_io.keyspace import Keyspace
    from streams.redis_io.redis_client import async_redis
    from streams.redis_io.redis_state_store import RedisStateStore
    from streams.runtime.list_sinks import KafkaSinks

    committed = lists(1, 0)[0]
    parts: dict[str, Any] = {}

    async def handler(records: Any) -> BatchStats:
        if not parts:
            client = async_redis(redis_of(settings))
            parts["store"] = store = RedisStateStore(client, Keyspace(settings.topic_prefix))
            store.guard = GenerationFollower(client, settings.topic_prefix, lambda g: None)
            parts["sinks"] = KafkaSinks(app, Topics(settings.topic_prefix))
        store, sinks = parts["store"], parts["sinks"]
        users: dict[int, dict[str, int]] = {}
        for r in records:
            users.setdefault(r.partition, {})[(r.key or b"").decode()] = r.offset
        snaps = await store.read([PartitionRead(p, tuple(u)) for p, u in users.items()])
        writes, out = [], []
        for p, mine in users.items():
            snap = snaps[p]
            states = {uid: UserState(n_events=off) for uid, off in mine.items()}
            latest = {uid: committed.raw for uid in mine}
            pop = PopularityDelta({"item-000001": len(mine)}, {"item-000001": 1.0})
            writes.append(PartitionWrite(p, max(mine.values()), 1, states, {}, latest, pop,
                                         None, snap.watermark))  # fmt: skip
            out += [Committed(committed.rec, committed.raw) for _ in mine]
        await store.write(writes)
        await sinks.enqueue_lists(out)
        clock.taken([r.value for r in records])
        return BatchStats(records=len(records))

    def delivered() -> Any:
        return parts["sinks"].delivered()

    return handler, delivered


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


def child(mode: str, bootstrap: str, prefix: str, home: Path, args: argparse.Namespace) -> None:
    """Run one consumer until ``events`` paced records are taken; print one result line."""
    from schemas.topics import Topics

    settings = Settings.from_env(
        {},
        kafka_bootstrap=bootstrap,
        topic_prefix=prefix,
        topic_partitions=args.partitions,
        home=home,
        redis_url=args.redis_url,
        kafka_consumer_on_loop=mode.endswith((LOOP, BATCH)),
        kafka_batch_delivery=mode.endswith(BATCH),
    )
    events = args.events
    topics = Topics(prefix)
    clock = _Clock(mode, events, args.wakeups)
    if args.wakeups:
        loop_wakeups.install()
    if mode.startswith("raw"):
        asyncio.run(_raw_child(mode, settings, topics.events, topics.recommendations, clock))
    else:
        shell = mode.removesuffix(LOOP).removesuffix(BATCH)
        _faust_child(shell, settings, topics.events, topics.recommendations, clock, args.commit_s)


async def _offer(
    settings: Settings, topic: str, ready: threading.Event, n: int, rate: float, idle_s: float
) -> None:
    """Ping until the child has taken something, then send ``n`` records at ``rate``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        while not ready.is_set():
            await producer.send_and_wait(topic, PING, key=b"ping")
            await asyncio.sleep(0.5)
        await asyncio.sleep(idle_s)  # the pings are taken and the child is quiet
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


def measure(mode: str, bootstrap: str, home: Path, prefix: str, args: argparse.Namespace) -> dict:
    """Start the child for ``mode``, offer it ``args.events`` at ``args.rate``; its row."""
    from freshet.wiring import kafka_of
    from schemas.topics import Topics
    from streams.kafka_io.event_producer import ensure_topics

    settings = Settings.from_env(
        {}, kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=args.partitions,
        home=home,
    )  # fmt: skip
    topics = Topics(prefix)
    ensure_topics(kafka_of(settings), [topics.events, topics.recommendations])
    cmd = [sys.executable, "-m", "bench.light_load_floor", f"--events={args.events}",
           f"--partitions={args.partitions}", f"--commit-s={args.commit_s}",
           f"--redis-url={args.redis_url}", *(["--wakeups"] if args.wakeups else []),
           "--child", mode, bootstrap, prefix, str(home)]  # fmt: skip
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
        asyncio.run(_offer(settings, topics.events, ready, args.events, args.rate, args.idle_s))
        proc.wait(timeout=60 + args.idle_s + args.events / args.rate)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=5)
    found = [ln for ln in lines if RESULT in ln]
    if not found:
        raise RuntimeError(f"no result for {mode}:\n{''.join(lines)[-3000:]}")
    row: dict[str, Any] = json.loads(found[-1].split(RESULT, 1)[1].strip())
    return row


async def _round_trips(url: str, rounds: int) -> dict[str, float]:
    """CPU µs per script round trip (``EVALSHA``) of freshet's connection against the same
    connection sending as redis-py does (``asyncio.wait_for``); alternating blocks."""
    from redis.asyncio import Redis
    from redis.asyncio.connection import Connection

    from streams.redis_io.redis_client import HiredisPackConnection

    class WaitForSend(HiredisPackConnection):
        send_packed_command = Connection.send_packed_command

    cpu = {"redis-py send (wait_for)": 0.0, "freshet send (timeout scope)": 0.0}
    classes = dict(zip(cpu, (WaitForSend, HiredisPackConnection), strict=True))
    clients = {name: Redis.from_url(url, connection_class=c) for name, c in classes.items()}
    scripts = {name: c.register_script(_READ) for name, c in clients.items()}
    keys = ["rt:wm", "rt:u"]
    for script in scripts.values():
        await script(keys=keys)  # connect and load outside the timing
    block = 50
    for _ in range(max(1, rounds // block)):
        for name, script in scripts.items():
            start = time.process_time()
            for _ in range(block):
                await script(keys=keys)
            cpu[name] += time.process_time() - start
    for c in clients.values():
        await c.aclose()
    n = max(1, rounds // block) * block
    return {name: 1e6 * total / n for name, total in cpu.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--commit-s", type=float, default=0.0, help="Faust's commit interval")
    parser.add_argument("--redis-url", default="")
    parser.add_argument(
        "--round-trips", type=int, default=4000, help="Redis round trips per send path"
    )
    parser.add_argument(
        "--idle-s", type=float, default=2.0, help="quiet time before the paced events"
    )
    parser.add_argument(
        "--wakeups",
        action="store_true",
        help="count the child's loop wake-ups and callbacks (bench.loop_wakeups): the idle"
        " window before the paced events and the paced one, printed per mode",
    )
    parser.add_argument("--child", nargs=4, metavar=("MODE", "BOOTSTRAP", "PREFIX", "HOME"))
    args = parser.parse_args()
    if args.child:
        mode, boot, prefix, home = args.child
        child(mode, boot, prefix, Path(home), args)
        return

    from freshet.services.kafka_local import LocalKafka
    from freshet.services.redis_local import LocalRedis

    rows: list[dict[str, Any]] = []
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        kafka = LocalKafka(base / "kafka", partitions=args.partitions).start()
        redis = LocalRedis(base / "redis").start()
        args.redis_url = redis.url
        try:
            trips = asyncio.run(_round_trips(redis.url, args.round_trips))
            for n, mode in enumerate(args.modes.split(",")):
                prefix = f"floor{os.getpid()}x{n}"
                rows.append(measure(mode, kafka.bootstrap, base / "home", prefix, args))
                loads.append(os.getloadavg()[0])
        finally:
            redis.stop()
            kafka.stop()

    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}), local Kafka broker on the same cores")
    print(f"  {args.partitions} partitions; {args.events} events offered at {args.rate:g} ev/s")
    commit = f"{args.commit_s:g} s" if args.commit_s else "the worker's"
    print(f"  Faust's commit interval: {commit}; Redis: a local redis-server (AOF on)")
    print(f"  1-minute load before and after each mode: {[round(x, 1) for x in loads]}")
    print("figures (CPU of the consumer's process, every thread):")
    print("  mode                batches  CPU ms/event  loop thread   cores")
    for r in rows:
        print(
            f"  {r['mode']:<18} {r['batches']:8,} {r['cpu_ms_per_event']:13.3f}"
            f" {r['loop_cpu_ms_per_event']:12.3f} {r['cores']:7.4f}"
        )
    for r in rows:
        if "wakeups" in r:
            print(f"wake-ups of {r['mode']} (bench.loop_wakeups; the probe adds its own cost):")
            print(loop_wakeups.render("  idle", r["wakeups"]["idle"]))
            print(loop_wakeups.render("  paced", r["wakeups"]["paced"]))
    print(f"Redis script round trip, CPU µs each ({args.round_trips:,} per path, alternating):")
    for name, us in trips.items():
        print(f"  {name:<30} {us:8.1f}")


if __name__ == "__main__":
    main()
