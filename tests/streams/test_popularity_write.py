"""The fenced write's packed popularity (one P group a partition: ZMSCORE + ZADD, HMGET +
HSET) leaves the trend sorted set and the counts hash as the per-item ZINCRBY and
HINCRBY groups did, to the last bit of every score, on the real Redis."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.core.state_rules import PopularityDelta
from streams.core.state_store import PartitionWrite
from streams.redis_io import redis_state_store
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import RedisConfig, async_redis
from streams.redis_io.redis_state_store import RedisStateStore, packed_popularity

T0 = 1_700_000_000_000
ITEMS = [f"i{i}" for i in range(8)]
_namespaces = itertools.count()

scores = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)
deltas = st.dictionaries(
    st.sampled_from(ITEMS), st.tuples(scores, st.integers(1, 2**31 - 1)), min_size=1
)


def as_writes(batches: Sequence[dict[str, tuple[float, int]]]) -> list[PartitionWrite]:
    """One write a batch on partition 0, each fenced on the one before."""
    return [
        PartitionWrite(
            0,
            watermark=step,
            trend_ref_ms=T0,
            popularity=PopularityDelta(
                {i: c for i, (_, c) in delta.items()}, {i: v for i, (v, _) in delta.items()}
            ),
            expected_watermark=step - 1,
        )
        for step, delta in enumerate(batches)
    ]


async def stored(url: str, writes: Sequence[PartitionWrite], packed: bool) -> tuple[object, ...]:
    """The trend set (scores as Redis replies them: 17 digits) and the counts hash after
    ``writes``, through the P group or (``packed`` False) the Z and I groups."""
    client = async_redis(RedisConfig(url=url))
    keys = Keyspace(f"pw{next(_namespaces)}")
    store = RedisStateStore(client, keys)
    saved = redis_state_store.packed_popularity
    if not packed:
        redis_state_store.packed_popularity = lambda _: None  # type: ignore[assignment]
    try:
        for w in writes:
            await store.write([w])
        trend = await client.zrange(keys.trend(0), 0, -1, withscores=True, score_cast_func=bytes)
        return trend, await client.hgetall(keys.counts(0))
    finally:
        redis_state_store.packed_popularity = saved
        await client.aclose()


def both_forms(url: str, writes: Sequence[PartitionWrite]) -> tuple[object, object]:
    async def run() -> tuple[object, object]:
        return await stored(url, writes, True), await stored(url, writes, False)

    return asyncio.run(run())


# Each example writes under namespaces of its own: the shared database needs no reset.
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(deltas, min_size=1, max_size=5))
def test_packed_popularity_stores_what_per_item_increments_stored(
    redis_url: str, batches: list[dict[str, tuple[float, int]]]
) -> None:
    packed, per_item = both_forms(redis_url, as_writes(batches))
    assert packed == per_item


def test_more_items_than_a_chunk_and_new_and_old_members(redis_url: str) -> None:
    """1,300 items go in three chunks of ZMSCORE/ZADD; the second batch meets members
    the first created and new ones, with sums that round."""
    first = {f"i{i}": (0.1 * (i + 1), i % 7 + 1) for i in range(1_000)}
    second = {f"i{i}": (1 / 3 + i * 1e-17, 2) for i in range(700, 1_300)}
    packed, per_item = both_forms(redis_url, as_writes([first, second]))
    assert packed == per_item
    trend, counts = packed  # type: ignore[misc]
    assert len(trend) == 1_300 and counts[b"i999"] == b"8"  # type: ignore[index]


@pytest.mark.parametrize(
    "pop",
    [
        PopularityDelta({"a": 1}, {"b": 0.5}),  # counts and trend over different items
        PopularityDelta({"a": 2**31}, {"a": 0.5}),  # a count past int32
        PopularityDelta({"a\nb": 1}, {"a\nb": 0.5}),  # an item holding the separator
        PopularityDelta({}, {}),
    ],
)
def test_what_the_packed_group_cannot_say_goes_per_item(pop: PopularityDelta) -> None:
    assert packed_popularity(pop) is None


def test_the_odd_deltas_still_store_as_before(redis_url: str) -> None:
    writes = [
        PartitionWrite(0, 0, T0, popularity=PopularityDelta({"a": 2**31}, {"a": 0.5})),
        PartitionWrite(0, 1, T0, popularity=PopularityDelta({"a": 1, "b": 2}, {"b": 0.25})),
        PartitionWrite(0, 2, T0, popularity=PopularityDelta({"a": 1}, {"a": -0.0})),
    ]
    packed, per_item = both_forms(redis_url, writes)
    assert packed == per_item
    assert packed[1] == {b"a": str(2**31 + 2).encode(), b"b": b"2"}  # type: ignore[index]


# Counts the packed group adds to, at the edges of a double's exact integers (2^53), of
# the 17 significant digits Redis 7.0 formats a Lua number with (1e17 came back as
# "1e+17", which HINCRBY and the counts reader refuse), and of int64.
BIG = [2**53 - 1, 2**53, 2**53 + 1, 10**17 - 1, 10**17, 123456789012345678, 2**62, 2**63 - 2**31]


@pytest.mark.parametrize("old", BIG)
@pytest.mark.parametrize("inc", [1, 2, 2**31 - 1])
def test_large_counts_add_exactly(redis_url: str, old: int, inc: int) -> None:
    """A count past int32 goes per item (HINCRBY); the next batch's packed count adds
    to it: the sum is exact, as HINCRBY gives it, never a rounded or exponent form."""
    writes = [
        PartitionWrite(0, 0, T0, popularity=PopularityDelta({"a": old}, {"a": 1.0})),
        PartitionWrite(
            0, 1, T0, popularity=PopularityDelta({"a": inc, "b": 3}, {"a": 1.0, "b": 1.0})
        ),
    ]
    assert packed_popularity(writes[1].popularity) is not None  # the P group carries it
    packed, per_item = both_forms(redis_url, writes)
    assert packed[1] == {b"a": str(old + inc).encode(), b"b": b"3"}  # type: ignore[index]
    assert packed == per_item


def test_a_count_past_int64_is_clamped_not_refused(redis_url: str) -> None:
    """HINCRBY refuses an overflow; the write clamps the count to int64's bound instead
    (the packed group must not store a float either), in both forms."""
    writes = [
        PartitionWrite(0, 0, T0, popularity=PopularityDelta({"a": 2**63 - 2}, {"a": 1.0})),
        PartitionWrite(
            0, 1, T0, popularity=PopularityDelta({"a": 5, "b": 1}, {"a": 1.0, "b": 1.0})
        ),
    ]
    packed, per_item = both_forms(redis_url, writes)
    assert packed[1] == {b"a": str(2**63 - 1).encode(), b"b": b"1"}  # type: ignore[index]
    assert packed == per_item
