"""Batches written to Redis as grouped script arguments read back as the in-process fake
holds them: many users per partition, states, embeddings and lists on overlapping
subsets of them, popularity, trend rebases, and a guard read folded into the state read.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from schemas.events import InteractionEvent
from streams.core.state_rules import PopularityDelta, StateRules, apply_events
from streams.core.state_store import (
    InMemoryStateStore,
    PartitionRead,
    PartitionWrite,
    StaleWatermark,
)
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import RedisConfig, async_redis
from streams.redis_io.redis_state_store import RedisStateStore

T0 = 1_700_000_000_000
PARTITIONS = 3
USERS = [f"u{i}" for i in range(12)]


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    c = async_redis(RedisConfig(url=redis_url))  # the worker's client (hiredis packer)
    yield c
    await c.aclose()


def random_batch(rnd: random.Random, step: int, marks: list[int]) -> list[PartitionWrite]:
    """One batch over a random subset of partitions; ``marks`` (each partition's
    watermark) is moved on."""
    writes = []
    for p in rnd.sample(range(PARTITIONS), rnd.randint(1, PARTITIONS)):
        users = rnd.sample(USERS, rnd.randint(0, len(USERS)))
        events = [
            InteractionEvent(
                f"e{step}-{p}-{j}",
                u,
                f"i{rnd.randrange(6)}",
                rnd.choice(["view", "click", "purchase"]),
                T0 + 1000 * step + j,
            )
            for j, u in enumerate(users)
        ]
        out = apply_events({}, events, StateRules(), T0)
        some = rnd.sample(USERS, rnd.randint(0, 4))
        writes.append(
            PartitionWrite(
                p,
                watermark=marks[p] + 10,
                trend_ref_ms=T0 + step,
                states=out.states,
                embeddings={u: rnd.randbytes(8) for u in some},
                latest={u: f'{{"s":{step}}}'.encode() for u in rnd.sample(USERS, 2)},
                popularity=PopularityDelta(
                    out.popularity.counts,
                    {i: v * rnd.choice([1.0, 0.1, 1e-9]) for i, v in out.popularity.trend.items()},
                ),
                rebase_factor=0.5 if rnd.random() < 0.2 else None,
                expected_watermark=marks[p],
            )
        )
        marks[p] += 10
    return writes


async def test_grouped_batches_read_back_as_the_fake_holds_them(client: Redis) -> None:
    rnd = random.Random(7)
    fake = InMemoryStateStore()
    redis = RedisStateStore(client, Keyspace("wg"))
    marks = [-1] * PARTITIONS
    for step in range(25):
        batch = random_batch(rnd, step, marks)
        await fake.write(batch)
        await redis.write(batch)
    reads = [PartitionRead(p, tuple(USERS)) for p in range(PARTITIONS)]
    assert await redis.read(reads) == await fake.read(reads)
    parts = list(range(PARTITIONS))
    assert await redis.counts(parts) == await fake.counts(parts)
    got, want = await redis.trending(parts, 10), await fake.trending(parts, 10)
    assert [i for i, _ in got] == [i for i, _ in want]
    assert all(math.isclose(a, b, rel_tol=1e-12) for (_, a), (_, b) in zip(got, want, strict=True))


async def test_a_stale_fence_writes_none_of_a_grouped_batch(client: Redis) -> None:
    rnd = random.Random(3)
    redis = RedisStateStore(client, Keyspace("wf"))
    marks = [-1] * PARTITIONS
    await redis.write(random_batch(rnd, 0, marks))
    reads = [PartitionRead(p, tuple(USERS)) for p in range(PARTITIONS)]
    before = await redis.read(reads)
    batch = random_batch(rnd, 1, marks)
    stale = batch[-1]
    batch[-1] = PartitionWrite(
        stale.partition,
        stale.watermark,
        stale.trend_ref_ms,
        states=stale.states,
        popularity=stale.popularity,
        expected_watermark=stale.expected_watermark - 1,  # another writer got there
    )
    with pytest.raises(StaleWatermark):
        await redis.write(batch)
    assert await redis.read(reads) == before


class Guard:
    """A read guard like the generation follower's: refuses a read that saw the pause
    flag, waits the pause out (here: clears it) and has the store read again."""

    def __init__(self, client: Redis, keys: tuple[str, str]) -> None:
        self.client = client
        self.keys = keys
        self.seen: list[tuple[object, object]] = []

    def queue(self, pipe: object) -> None:
        raise AssertionError("a standalone read carries the guard in its script")

    def read_keys(self) -> tuple[str, str]:
        return self.keys

    async def admit(self, first: object, second: object) -> bool:
        self.seen.append((first, second))
        if first is None:
            return True
        await self.client.delete(self.keys[0])
        return False


async def test_the_guard_rides_in_the_one_read_and_a_refusal_reads_again(
    client: Redis,
) -> None:
    store = RedisStateStore(client, Keyspace("wr"))
    await store.write([PartitionWrite(1, watermark=4, trend_ref_ms=T0)])
    await client.set("wr:pause", "1")
    await client.set("wr:gen", "g1")
    guard = Guard(client, ("wr:pause", "wr:gen"))
    store.guard = guard
    trips = store.round_trips
    snaps = await store.read([PartitionRead(1, ("nobody",)), PartitionRead(2, ())])
    assert guard.seen == [(b"1", b"g1"), (None, b"g1")]
    assert store.round_trips - trips == 2  # one script call per read, guard included
    assert snaps[1].watermark == 4 and snaps[1].trend_ref_ms == T0 and snaps[1].users == {}
    assert snaps[2].watermark == -1


async def test_ids_refused_as_keys_fail_the_write_before_redis(client: Redis) -> None:
    store = RedisStateStore(client, Keyspace("wk"))
    out = apply_events({}, [InteractionEvent("e", "a:b", "i", "view", T0)], StateRules(), T0)
    with pytest.raises(ValueError):
        await store.write([PartitionWrite(0, watermark=1, trend_ref_ms=T0, states=out.states)])
    assert await client.get(Keyspace("wk").watermark(0)) is None
