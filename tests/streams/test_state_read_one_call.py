"""The state read of a batch's users in one script call (standalone Redis) returns what
one HMGET per user returns (the cluster path), and survives Redis losing its scripts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from streams.core.state_rules import HistoryEntry, UserState
from streams.core.state_store import PartitionRead, PartitionWrite
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_state_store import RedisStateStore

NS = "oc"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    c = Redis.from_url(redis_url)
    yield c
    await c.aclose()


def state(item: str, n: int) -> UserState:
    return UserState(history=(HistoryEntry(item, "click", 5),), seen=(item,), n_events=n)


READS = [
    PartitionRead(0, ("alice", "nobody", "bob")),
    PartitionRead(3, ("carol",)),
    PartitionRead(1, ()),  # a partition with records but no valid events
]


async def stored(client: Redis) -> RedisStateStore:
    store = RedisStateStore(client, Keyspace(NS))
    await store.write(
        [
            PartitionWrite(
                0,
                watermark=41,
                trend_ref_ms=1000,
                states={"alice": state("a", 1), "bob": state("b", 2)},
                embeddings={"bob": b"\x00\x01"},
                latest={"alice": b'{"l":1}'},
            ),
            PartitionWrite(3, watermark=7, trend_ref_ms=2000, states={"carol": state("c", 3)}),
        ]
    )
    return store


async def test_one_call_read_equals_one_hmget_per_user(client: Redis) -> None:
    store = await stored(client)
    per_user = RedisStateStore(client, Keyspace(NS), cluster=True)  # HMGET per user
    got, want = await store.read(READS), await per_user.read(READS)
    assert got == want
    assert got[0].watermark == 41 and got[0].trend_ref_ms == 1000
    assert set(got[0].users) == {"alice", "bob"}  # nobody has no state
    assert got[0].users["bob"].state == state("b", 2)
    assert got[0].users["bob"].embedding == b"\x00\x01"
    assert got[0].users["alice"].latest == b'{"l":1}'
    assert got[3].users["carol"].state.n_events == 3
    assert got[1].watermark == -1 and got[1].users == {}
    assert store.round_trips == 2  # the write, then the read's one pipeline


async def test_a_flushed_script_is_loaded_again(client: Redis) -> None:
    store = await stored(client)
    first = await store.read(READS)
    await client.script_flush()
    assert await store.read(READS) == first


async def test_trending_in_one_call_equals_the_pipeline_and_survives_a_flush(
    client: Redis,
) -> None:
    store = await stored(client)
    keys = Keyspace(NS)
    await client.zadd(keys.trend(0), {"a": 0.1 + 0.2, "b": 2.5, "c": 1e-9})  # 17 digits kept
    await client.zadd(keys.trend(3), {"b": 1.0, "d": 3.0})
    per_command = RedisStateStore(client, keys, cluster=True)
    parts = [0, 1, 3]
    got, want = await store.trending(parts, 3), await per_command.trending(parts, 3)
    assert got == want
    assert [item for item, _ in got] == ["b", "d", "a"]  # b's sums on a common time
    before = store.round_trips
    await client.script_flush()
    assert await store.trending(parts, 3) == want
    assert store.round_trips == before + 2  # refused once, then loaded and called


async def test_change_token_in_one_command_equals_the_pipeline(client: Redis) -> None:
    store = await stored(client)
    per_command = RedisStateStore(client, Keyspace(NS), cluster=True)
    token = await store.change_token([0, 1, 3])
    assert token == await per_command.change_token([0, 1, 3])
    assert token[1:] == ("41", "", "7")
