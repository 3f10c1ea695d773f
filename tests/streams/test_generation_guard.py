"""The worker's generation check rides in the batch's state read (real Redis).

Before every ingest batch the worker reads the replay pause and the generation pointer.
Those two reads go in front of the state read's pipeline, so a batch pays one round
trip for both; a read made while paused, or under a generation that is no longer
served, is thrown away and made again under the current keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from streams.core.state_store import PartitionRead
from streams.redis_io.generation import GenerationFollower, pause_key
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_state_store import RedisStateStore

NS = "gg"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    c = Redis.from_url(redis_url)
    yield c
    await c.aclose()


def guarded(client: Redis, switches: list[str]) -> tuple[RedisStateStore, GenerationFollower]:
    store = RedisStateStore(client, Keyspace(NS))

    def switch(generation: str) -> None:
        switches.append(generation)
        store.keys = Keyspace(NS).with_generation(generation)

    follower = GenerationFollower(client, NS, switch, poll_s=0.01)
    store.guard = follower
    return store, follower


async def test_an_admitted_read_is_one_round_trip_with_the_check_in_it(client: Redis) -> None:
    await client.set(Keyspace(NS).watermark(2), 17)
    switches: list[str] = []
    store, _ = guarded(client, switches)
    snaps = await store.read([PartitionRead(2, ("alice",))])
    assert snaps[2].watermark == 17
    assert store.round_trips == 1
    assert switches == []


async def test_a_switched_pointer_rereads_under_the_new_generation(client: Redis) -> None:
    g1, g2 = Keyspace(NS), Keyspace(NS).with_generation("g2")
    await client.set(g1.watermark(0), 5)
    await client.set(g2.watermark(0), 99)
    await client.set(g1.generation_pointer, "g2")
    switches: list[str] = []
    store, follower = guarded(client, switches)
    snaps = await store.read([PartitionRead(0, ())])
    assert snaps[0].watermark == 99  # g2's, not the g1 value read in the first trip
    assert switches == ["g2"] and follower.generation == "g2"
    assert store.round_trips == 2
    await store.read([PartitionRead(0, ())])
    assert store.round_trips == 3 and switches == ["g2"]


async def test_a_read_waits_out_the_pause_and_then_reads_again(client: Redis) -> None:
    keys = Keyspace(NS)
    await client.set(keys.watermark(1), 3)
    await client.set(pause_key(keys), "g2")
    store, follower = guarded(client, [])
    reading = asyncio.ensure_future(store.read([PartitionRead(1, ())]))
    await asyncio.sleep(0.2)
    assert not reading.done()  # held while paused
    await client.set(keys.watermark(1), 8)  # replay's last writes, then the pause ends
    await client.delete(pause_key(keys))
    snaps = await asyncio.wait_for(reading, 5.0)
    assert snaps[1].watermark == 8  # read after the pause, not the value seen during it
    assert follower.paused_batches == 1
