"""The state store's script calls on one held connection (``HeldConnection``), real Redis:
no pool check-out per call, and a killed, cancelled or busy connection changes no reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from streams.core.state_rules import HistoryEntry, UserState
from streams.core.state_store import PartitionRead, PartitionWrite
from streams.redis_io.held_connection import HeldConnection
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import RedisConfig, async_redis
from streams.redis_io.redis_state_store import RedisStateStore


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    c = async_redis(RedisConfig(url=redis_url))  # the worker's client
    yield c
    await c.aclose()


def state(n: int) -> UserState:
    return UserState(history=(HistoryEntry(f"i{n}", "click", n),), seen=(f"i{n}",), n_events=n)


async def batch(store: RedisStateStore, partition: int, user: str, n: int) -> None:
    """One batch of one event as the worker runs it: read, then the fenced write."""
    snap = (await store.read([PartitionRead(partition, (user,))]))[partition]
    await store.write(
        [
            PartitionWrite(
                partition,
                watermark=snap.watermark + 1,
                trend_ref_ms=1000,
                states={user: state(n)},
                latest={user: b'{"n":%d}' % n},
                expected_watermark=snap.watermark,
            )
        ]
    )


def count_checkouts(client: Redis) -> list[int]:
    """Counts the pool's ``get_connection`` calls from now on."""
    pool: Any = client.connection_pool
    taken = [0]
    original = pool.get_connection

    async def counted(*args: Any, **kwargs: Any) -> Any:
        taken[0] += 1
        return await original(*args, **kwargs)

    pool.get_connection = counted
    return taken


async def test_a_batchs_read_and_write_take_no_connection_from_the_pool(client: Redis) -> None:
    """Fails on the code before: each call checked a connection out (20 here)."""
    store = RedisStateStore(client, Keyspace("hc1"))
    await batch(store, 0, "u", 0)  # scripts loaded, the connection taken
    taken = count_checkouts(client)
    for n in range(1, 11):
        await batch(store, 0, "u", n)
    token = await store.change_token([0, 1])  # the timers' token too
    assert taken[0] == 0
    assert token[1:] == ("10", "")
    assert len(await store.change_token([])) == 1  # no partitions: no MGET sent, as before
    snap = (await store.read([PartitionRead(0, ("u",))]))[0]
    assert snap.watermark == 10 and snap.users["u"].state == state(10)
    assert snap.users["u"].latest == b'{"n":10}'


async def test_a_killed_connection_is_replaced_and_the_batch_lands(
    client: Redis, redis_url: str
) -> None:
    store = RedisStateStore(client, Keyspace("hc2"))
    await batch(store, 1, "u", 1)
    other = Redis.from_url(redis_url)
    try:
        killed = await other.client_kill_filter(_type="normal", skipme=True)
    finally:
        await other.aclose()
    assert killed >= 1
    await batch(store, 1, "u", 2)  # the held one fails, the pool's path runs the call
    assert store.calls.dropped == 1
    snap = (await store.read([PartitionRead(1, ("u",))]))[1]
    assert snap.watermark == 1 and snap.users["u"].state == state(2)


async def test_a_call_cancelled_before_its_reply_leaves_no_reply_behind(client: Redis) -> None:
    calls = HeldConnection(client)
    await client.set("hc3:k", "value")
    waiting = asyncio.ensure_future(calls.execute("BLPOP", "hc3:empty", 0.3))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await client.rpush("hc3:empty", "late")  # would be the BLPOP's reply, were it read
    assert await calls.execute("GET", "hc3:k") == b"value"
    assert calls.dropped == 1
    assert await calls.execute("LRANGE", "hc3:empty", 0, -1) == [b"late"]


async def test_calls_at_once_go_through_the_pool_beside_the_held_one(client: Redis) -> None:
    store = RedisStateStore(client, Keyspace("hc4"))
    for p in range(4):
        await batch(store, p, f"u{p}", p + 1)
    snaps = await asyncio.gather(*(store.read([PartitionRead(p, (f"u{p}",))]) for p in range(4)))
    for p, snap in enumerate(snaps):
        assert snap[p].watermark == 0 and snap[p].users[f"u{p}"].state == state(p + 1)
    assert store.calls.shared == 3


async def test_the_fenced_write_reloads_a_script_redis_lost(client: Redis) -> None:
    store = RedisStateStore(client, Keyspace("hc5"))
    await batch(store, 2, "u", 1)
    await client.script_flush()
    await batch(store, 2, "u", 2)  # NoScriptError on the held connection: loaded, sent again
    snap = (await store.read([PartitionRead(2, ("u",))]))[2]
    assert snap.watermark == 1 and snap.users["u"].state == state(2)
    assert store.calls.dropped == 0
