"""CPU of each client call of a micro-batch of one, and of each live timer's run, at light load.

At 10 ev/s each event is its own micro-batch, 100 ms after the last, and each call
runs cold. This bench makes the worker's own calls, in one process, on a local Kafka
broker and Redis server, with ``--gap-ms`` of sleep before each, and times each with
``time.thread_time`` (the event loop's thread: where the worker spends 99% of its CPU
at 10 ev/s) and wall time:

- **state read**: ``RedisStateStore.read`` of one user on one partition, the
  generation check riding in it (the worker's ``guard``);
- **fenced write**: ``RedisStateStore.write`` of that user's state, list, embedding
  and one item's popularity, fenced on the watermark read;
- **publish**: ``KafkaSinks.enqueue_lists`` of one committed list, then the agent's
  ``delivered()`` awaited (the producer's send to the broker's ack, acks all);
- **timers**, as they run when nothing changed and when one batch was written since
  the last run: the change token, the trending read and merge, the catalog log tail.

Each figure is the median over ``--rounds`` calls.

``--held-pairs N`` also times a batch's two Redis calls (the guarded state read of one
user, then its fenced write) through the pool per call (``HeldConnection(hold=False)``:
a connection checked out and back per call, as before ``HeldConnection``) against the
store's held connection, alternated call pair by call pair in this process, ``--gap-ms``
before each pair: loop-thread CPU and wall of the pair, median and quartiles of N each.

    .venv/bin/python -m bench.batch_path_costs --rounds 200 --gap-ms 100
    .venv/bin/python -m bench.batch_path_costs --rounds 0 --held-pairs 300 --gap-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.client_costs import lists, local_services
from bench.host import cpu_model
from freshet.settings import Settings

ITEMS = 5_000  # members per partition's trending set


async def _timed(
    fn: Callable[[], Awaitable[Any]], rounds: int, gap_s: float
) -> tuple[float, float]:
    """Median loop-thread CPU and wall seconds of ``rounds`` calls, ``gap_s`` apart."""
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(rounds):
        await asyncio.sleep(gap_s)
        c, w = time.thread_time(), time.perf_counter()
        await fn()
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


async def costs(settings: Settings, rounds: int, gap_s: float) -> list[tuple[str, float, float]]:
    """(call, CPU s, wall s) per call."""
    from freshet.wiring import kafka_of, redis_of
    from schemas.topics import Topics
    from streams.core.state_rules import PopularityDelta, UserState
    from streams.core.state_store import PartitionRead, PartitionWrite
    from streams.kafka_io.event_producer import ensure_topics
    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.generation import GenerationFollower
    from streams.redis_io.keyspace import Keyspace
    from streams.redis_io.redis_client import async_redis
    from streams.redis_io.redis_state_store import RedisStateStore
    from streams.runtime.faust_app import create_app
    from streams.runtime.list_sinks import KafkaSinks

    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings), [topics.recommendations])
    app = create_app(settings, app_id=f"{settings.topic_prefix}-costs")
    sinks = KafkaSinks(app, topics)
    await app.producer.start()
    client = async_redis(redis_of(settings))
    keys = Keyspace(settings.redis_namespace)
    store = RedisStateStore(client, keys)
    store.guard = GenerationFollower(client, settings.redis_namespace, lambda g: None)
    catalog = RedisCatalogStore(client, keys)
    parts = list(range(settings.topic_partitions))
    for p in parts:
        await client.zadd(
            keys.trend(p), {f"item-{i:06d}": (i * 7919 % ITEMS) for i in range(ITEMS)}
        )
    committed = lists(1, 0)[0]
    uid = committed.rec.user_id
    wm = [0]

    async def read() -> None:
        await store.read([PartitionRead(0, (uid,))])

    async def write() -> None:
        snap = (await store.read([PartitionRead(0, (uid,))]))[0]
        wm[0] += 1
        pop = PopularityDelta({"item-000001": 1}, {"item-000001": 1.0})
        w = PartitionWrite(0, wm[0], 1, {uid: UserState()}, {uid: b"e" * 256},
                           {uid: committed.raw}, pop, None, snap.watermark)  # fmt: skip
        c = time.thread_time()
        await store.write([w])
        spent[0] += time.thread_time() - c

    async def publish() -> None:
        await sinks.enqueue_lists([committed])
        await sinks.delivered()

    async def token() -> None:
        await store.change_token(parts)

    async def trending() -> None:
        await store.trending(parts, 50)

    async def catalog_tail() -> None:
        await catalog.read_log("0")  # an empty log: nothing new

    spent = [0.0]
    rows: list[tuple[str, float, float]] = []
    try:
        for fn in (read, write, publish, token, trending, catalog_tail):
            await fn()  # connections, scripts, metadata
        for name, fn in (
            ("state read (guarded, 1 user)", read),
            ("change token", token),
            ("trending read + merge (k 50)", trending),
            ("catalog log tail, nothing new", catalog_tail),
            ("publish: enqueue + delivered", publish),
        ):
            c, w = await _timed(fn, rounds, gap_s)
            rows.append((name, c, w))
        spent[0] = 0.0
        _, w = await _timed(write, rounds, gap_s)
        rows.append(("fenced write (after its read)", spent[0] / rounds, float("nan")))
    finally:
        await app.producer.stop()
        await client.aclose()
    return rows


async def held_pairs(settings: Settings, pairs: int, gap_s: float) -> dict[str, list[float]]:
    """Loop CPU and wall (s) of a batch's read + fenced write, per way, alternated."""
    from freshet.wiring import redis_of
    from streams.core.state_rules import PopularityDelta, UserState
    from streams.core.state_store import PartitionRead, PartitionWrite
    from streams.redis_io.generation import GenerationFollower
    from streams.redis_io.held_connection import HeldConnection
    from streams.redis_io.keyspace import Keyspace
    from streams.redis_io.redis_client import async_redis
    from streams.redis_io.redis_state_store import RedisStateStore

    client = async_redis(redis_of(settings))
    committed = lists(1, 0)[0]
    stores = {}
    for way, hold in (("pool per call", False), ("held", True)):
        store = RedisStateStore(client, Keyspace(f"{settings.redis_namespace}{int(hold)}"))
        store.calls = HeldConnection(client, hold=hold)
        store.guard = GenerationFollower(client, settings.redis_namespace, lambda g: None)
        stores[way] = store
    uid = committed.rec.user_id

    async def one_batch(store: RedisStateStore) -> None:
        snap = (await store.read([PartitionRead(0, (uid,))]))[0]
        pop = PopularityDelta({"item-000001": 1}, {"item-000001": 1.0})
        w = PartitionWrite(0, snap.watermark + 1, 1, {uid: UserState()}, {uid: b"e" * 256},
                           {uid: committed.raw}, pop, None, snap.watermark)  # fmt: skip
        await store.write([w])

    out: dict[str, list[float]] = {f"{w} {m}": [] for w in stores for m in ("cpu", "wall")}
    try:
        for store in stores.values():
            await one_batch(store)  # connect, load the scripts
        for i in range(pairs):
            order = list(stores.items()) if i % 2 else list(stores.items())[::-1]
            for way, store in order:
                await asyncio.sleep(gap_s)
                c, w = time.thread_time(), time.perf_counter()
                await one_batch(store)
                out[f"{way} cpu"].append(time.thread_time() - c)
                out[f"{way} wall"].append(time.perf_counter() - w)
    finally:
        await client.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=100.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--held-pairs", type=int, default=0, help="read + write, pool vs held")
    args = parser.parse_args()

    rows: list[tuple[str, float, float]] = []
    held: dict[str, list[float]] = {}
    with local_services(args.partitions, "bpc") as settings:
        if args.rounds:
            rows = asyncio.run(costs(settings, args.rounds, args.gap_ms / 1000.0))
        if args.held_pairs:
            held = asyncio.run(held_pairs(settings, args.held_pairs, args.gap_ms / 1000.0))
    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}); local Kafka and Redis on the same cores")
    print(f"  {args.partitions} partitions, acks all; {args.gap_ms:g} ms before each call")
    print(f"  median of {args.rounds} calls; load {[round(x, 1) for x in os.getloadavg()]}")
    print("figures (loop thread CPU us, wall ms; the write's CPU is a mean):")
    for name, c, w in rows:
        print(f"  {name:<34} {c * 1e6:8.0f} us {w * 1e3:8.2f} ms")
    if held:
        print(f"a batch's state read + fenced write, {args.held_pairs} of each way, alternated")
        print("  (loop thread CPU us / wall us: median, quartiles):")
        for name, values in held.items():
            q1, med, q3 = statistics.quantiles(values, n=4)
            print(f"  {name:<20} {med * 1e6:8.0f}  ({q1 * 1e6:.0f}-{q3 * 1e6:.0f})")


if __name__ == "__main__":
    main()
