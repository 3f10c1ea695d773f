"""The fenced write repairs an item count Redis refuses to HINCRBY (a field holding no
integer, a sum past int64) instead of stopping part-way, on the real Redis: the batch is
applied whole, once, and the repair is reported."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest
from redis.exceptions import ResponseError

from streams.core.state_rules import PopularityDelta, UserState
from streams.core.state_store import PartitionWrite
from streams.redis_io import redis_state_store, state_scripts
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import RedisConfig, async_redis
from streams.redis_io.redis_state_store import RedisStateStore
from streams.runtime.metrics import WorkerMetrics

T0 = 1_700_000_000_000
ITEMS = [f"i{i}" for i in range(600)]  # two chunks of the packed group: 500, then 100
BAD, BIG = "i550", "i560"  # both in the second chunk: the first is written before them
_namespaces = itertools.count()


def a_batch(watermark: int, expected: int) -> PartitionWrite:
    return PartitionWrite(
        0,
        watermark=watermark,
        trend_ref_ms=T0,
        states={"u1": UserState()},
        latest={"u1": b"a list"},
        popularity=PopularityDelta(dict.fromkeys(ITEMS, 1) | {BIG: 2}, dict.fromkeys(ITEMS, 1.0)),
        expected_watermark=expected,
    )


async def write_over_bad_counts(url: str) -> tuple[RedisStateStore, dict[bytes, bytes], object]:
    """Plant a non-integer and a count near int64's edge, write a batch over them, then
    the next batch; return the store, the counts hash and what the counts reader sums."""
    client = async_redis(RedisConfig(url=url))
    keys = Keyspace(f"cr{next(_namespaces)}")
    store = RedisStateStore(client, keys)
    try:
        await client.hset(keys.counts(0), mapping={"i0": 7, BAD: "not a count", BIG: 2**63 - 2})
        await store.write([a_batch(10, -1)])
        assert await client.get(keys.watermark(0)) == b"10"
        assert await client.hget(keys.user(0, "u1"), "r") == b"a list"
        assert await client.zcard(keys.trend(0)) == len(ITEMS)
        summed = await store.counts([0])
        await store.write([a_batch(20, 10)])  # the partition moves on
        assert await client.get(keys.watermark(0)) == b"20"
        return store, await client.hgetall(keys.counts(0)), summed
    finally:
        await client.aclose()


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "per_item"])
def test_refused_counts_are_repaired_and_the_batch_applied_whole(
    redis_url: str, packed: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not packed:
        monkeypatch.setattr(redis_state_store, "packed_popularity", lambda _: None)
    with caplog.at_level(logging.WARNING, logger=redis_state_store.__name__):
        store, counts, summed = asyncio.run(write_over_bad_counts(redis_url))
    assert counts[b"i0"] == b"9" and counts[b"i1"] == b"2"  # each batch counted once
    assert counts[BAD.encode()] == b"2"  # restarted from the first batch's increment
    assert counts[BIG.encode()] == str(2**63 - 1).encode()  # clamped, then saturated
    assert store.count_repairs == 2
    metrics = WorkerMetrics(store=store)
    metrics.collect()
    assert metrics.registry.get_sample_value("freshet_item_count_repairs_total") == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"item count of '{BAD}' repaired (not an integer; it held 'not a count')",
        f"item count of '{BIG}' repaired (int64 overflow; it held '{2**63 - 2}')",
    ]  # the second batch's overflow leaves the count at the bound, unreported
    assert isinstance(summed, dict) and summed[BAD] == 1 and summed["i0"] == 8


def test_the_counts_reader_skips_a_field_that_is_no_count(redis_url: str) -> None:
    async def run() -> dict[str, int]:
        client = async_redis(RedisConfig(url=redis_url))
        keys = Keyspace(f"cr{next(_namespaces)}")
        try:
            await client.hset(keys.counts(0), mapping={"a": 3, "b": "x"})
            await client.hset(keys.counts(1), mapping={"a": 2})
            return await RedisStateStore(client, keys).counts([0, 1])
        finally:
            await client.aclose()

    assert asyncio.run(run()) == {"a": 5}


def test_a_bad_increment_raises_and_leaves_the_stored_count(redis_url: str) -> None:
    """Only a stored value that is no integer is repaired: Redis refuses a bad increment
    with 'value is not an integer or out of range', which must not replace the count."""

    async def run() -> tuple[str, bytes | None]:
        client = async_redis(RedisConfig(url=redis_url))
        keys = Keyspace(f"cr{next(_namespaces)}")
        try:
            await client.hset(keys.counts(0), mapping={"a": 5})
            script = client.register_script(state_scripts.FENCED_WRITE)
            with pytest.raises(ResponseError) as refused:
                await script(keys=[keys.counts(0)], args=[0, "I", 1, 1, "a", "1.5"])
            return str(refused.value), await client.hget(keys.counts(0), "a")
        finally:
            await client.aclose()

    error, stored = asyncio.run(run())
    assert "value is not an integer or out of range" in error
    assert stored == b"5"
