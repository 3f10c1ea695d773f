"""The worker's client costs per micro-batch, old way against new, in one process.

Two paths of a micro-batch that issue 19 trimmed, each timed against the way it was,
back to back on the same local Kafka broker and Redis server:

- **publish**: lists handed to the Faust app's producer one ``send`` per list (the
  producer's 16 KiB batches), against ``KafkaSinks``: one record batch per partition
  of the committed bytes (``LIST_BATCH_BYTES``). Each call is awaited to delivery.
- **state read**: the generation check as its own round trip before the read, against
  the check riding in the read's pipeline (``RedisStateStore.guard``).

CPU is the process's (``time.process_time``: this process is the only client), so a
loaded host inflates both sides alike; wall time also counts the broker and Redis.

    .venv/bin/python -m bench.client_costs --rounds 200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from bench.host import cpu_model
from freshet.settings import Settings

LIST_ITEMS = 20


def lists(n: int, round_: int) -> list[Any]:
    """``n`` committed lists of ``LIST_ITEMS`` items, for distinct users."""
    from schemas.codec import encode
    from schemas.recommendation import Recommendation, RecommendedItem
    from streams.core.publish import Committed

    out = []
    for u in range(n):
        items = tuple(
            RecommendedItem(f"item-{(u * 31 + j) % 100_000:06d}", 1.0 - j / 50, "personalised")
            for j in range(LIST_ITEMS)
        )
        rec = Recommendation(f"user-{u}", items, "personalised", "v1", f"e{round_}-{u}", 1, 2)
        out.append(Committed(rec, encode(rec)))
    return out


async def timed(fn: Callable[[], Awaitable[Any]], rounds: int) -> tuple[float, float]:
    """Median CPU and wall seconds of ``rounds`` awaited calls of ``fn``."""
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(rounds):
        c, w = time.process_time(), time.perf_counter()
        await fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


async def publish_costs(
    settings: Settings, sizes: list[int], rounds: int
) -> list[tuple[int, float, float, float, float]]:
    """Per size: (lists, old CPU, new CPU, old wall, new wall), seconds per call."""
    from freshet.wiring import kafka_of
    from schemas.topics import Topics, event_key
    from streams.kafka_io.event_producer import ensure_topics
    from streams.runtime.faust_app import create_app
    from streams.runtime.worker import KafkaSinks

    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_of(settings), [topics.recommendations])
    new_app = create_app(settings, app_id=f"{settings.topic_prefix}-new")
    old_app = create_app(settings, app_id=f"{settings.topic_prefix}-old")
    old_app.conf.producer_max_batch_size = 16 * 1024  # aiokafka's default, as before
    sinks = KafkaSinks(new_app, topics)
    await new_app.producer.start()
    await old_app.producer.start()
    rows = []
    try:

        async def old(batch: list[Any]) -> None:
            producer = old_app.producer
            sent = [
                await producer.send(
                    topics.recommendations, event_key(c.rec.user_id), c.raw, None, None, None
                )
                for c in batch
            ]
            await asyncio.gather(*sent)

        async def new(batch: list[Any]) -> None:
            await sinks.lists(batch)

        for n in sizes:
            batch = lists(n, n)
            await old(batch)
            await new(batch)  # metadata and connections warm
            old_cpu = new_cpu = old_wall = new_wall = 0.0
            for _ in range(2):  # alternate, so drift hits both
                c, w = await timed(partial(old, batch), rounds // 2)
                old_cpu, old_wall = old_cpu + c / 2, old_wall + w / 2
                c, w = await timed(partial(new, batch), rounds // 2)
                new_cpu, new_wall = new_cpu + c / 2, new_wall + w / 2
            rows.append((n, old_cpu, new_cpu, old_wall, new_wall))
    finally:
        await new_app.producer.stop()
        await old_app.producer.stop()
    return rows


async def read_costs(redis_url: str, rounds: int) -> tuple[float, float, float, float]:
    """(old CPU, new CPU, old wall, new wall) per state read of one user on one partition."""
    from redis.asyncio import Redis

    from streams.core.state_store import PartitionRead
    from streams.redis_io.generation import GenerationFollower
    from streams.redis_io.keyspace import Keyspace
    from streams.redis_io.redis_state_store import RedisStateStore

    client = Redis.from_url(redis_url)
    keys = Keyspace("cc")
    await client.hset(keys.user(0, "alice"), mapping={"s": b'{"v":2}', "r": b"x" * 1500})
    follower = GenerationFollower(client, "cc", lambda g: None)
    plain = RedisStateStore(client, keys)
    guarded = RedisStateStore(client, keys)
    guarded.guard = follower
    reads = [PartitionRead(0, ("alice",))]

    async def old() -> None:
        await follower.before_batch()
        await plain.read(reads)

    async def new() -> None:
        await guarded.read(reads)

    try:
        await old()
        await new()
        out = [0.0, 0.0, 0.0, 0.0]
        for _ in range(2):
            c, w = await timed(old, rounds // 2)
            out[0], out[2] = out[0] + c / 2, out[2] + w / 2
            c, w = await timed(new, rounds // 2)
            out[1], out[3] = out[1] + c / 2, out[3] + w / 2
    finally:
        await client.aclose()
    return out[0], out[1], out[2], out[3]


@contextlib.contextmanager
def local_services(partitions: int, prefix: str) -> Iterator[Settings]:
    """A local Kafka broker and Redis server (AOF on) for the run; settings for both."""
    from freshet.services.kafka_local import LocalKafka
    from freshet.services.redis_local import LocalRedis

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        home = Settings.from_env().home
        kafka = LocalKafka(base / "kafka", partitions=partitions, home=home).start()
        redis = LocalRedis(base / "redis", appendonly=True).start()
        try:
            yield Settings.from_env(
                {},
                kafka_bootstrap=kafka.bootstrap,
                redis_url=redis.url,
                topic_prefix=f"{prefix}{os.getpid()}",
                topic_partitions=partitions,
                home=base / "home",
            )
        finally:
            kafka.stop()
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="calls per path and size")
    parser.add_argument("--sizes", default="1,10,200,1000", help="lists per publish call")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with local_services(args.partitions, "ccost") as settings:
        pub = asyncio.run(publish_costs(settings, sizes, args.rounds))
        read = asyncio.run(read_costs(settings.redis_url, args.rounds))

    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}); local Kafka and Redis on the same cores")
    print(f"  {args.partitions} partitions, acks all; lists of {LIST_ITEMS} items")
    print(f"  median of {args.rounds} calls per path, alternating; load {list(os.getloadavg())}")
    print("figures (per call, awaited to delivery):")
    print("  publish  lists   CPU us old -> new   (per list)        wall ms old -> new")
    for n, oc, nc, ow, nw in pub:
        print(
            f"  {n:13,}   {oc * 1e6:8.0f} -> {nc * 1e6:<8.0f}"
            f" ({oc * 1e6 / n:5.1f} -> {nc * 1e6 / n:<5.1f})   {ow * 1e3:7.2f} -> {nw * 1e3:.2f}"
        )
    oc, nc, ow, nw = read
    print(
        f"  state read + generation check: CPU us {oc * 1e6:.0f} -> {nc * 1e6:.0f},"
        f" wall ms {ow * 1e3:.2f} -> {nw * 1e3:.2f} (2 round trips -> 1)"
    )


if __name__ == "__main__":
    main()
