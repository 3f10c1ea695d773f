"""One contract suite for every state-store backend: the in-process fake and real Redis."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import pytest

from schemas.events import InteractionEvent
from streams.core.state_rules import PopularityDelta, StateRules, apply_events
from streams.core.state_store import InMemoryStateStore, PartitionRead, PartitionWrite, StateStore
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_state_store import RedisStateStore

T0 = 1_700_000_000_000
HALF_LIFE = 3600.0
STANDALONE_ONLY = frozenset({"test_one_stale_partition_leaves_the_whole_batch_unwritten"})
"""Tests of all-or-nothing batches, which a Redis Cluster writes per partition instead
(``tests/cluster`` checks that behaviour)."""


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield InMemoryStateStore(trending_half_life_s=HALF_LIFE)
        return
    from redis.asyncio import Redis

    url = request.getfixturevalue("redis_url")
    client = Redis.from_url(url)
    yield RedisStateStore(client, Keyspace("t", "g1"), trending_half_life_s=HALF_LIFE)
    await client.aclose()


def _events(user: str, items: list[str], start: int = 0) -> list[InteractionEvent]:
    return [
        InteractionEvent(f"{user}-{start + i}", user, it, "view", T0 + 1000 * i)
        for i, it in enumerate(items)
    ]


async def test_empty_partition_reads_as_nothing_applied(store: StateStore) -> None:
    snaps = await store.read([PartitionRead(3, ("alice",))])
    assert snaps[3].watermark == -1
    assert snaps[3].trend_ref_ms is None
    assert snaps[3].users == {}


async def test_write_then_read_round_trip(store: StateStore) -> None:
    rules = StateRules()
    out = apply_events({}, _events("alice", ["a", "b", "a"]), rules, T0)
    await store.write(
        [
            PartitionWrite(
                1,
                watermark=41,
                trend_ref_ms=T0,
                states=out.states,
                embeddings={"alice": b"\x00" * 8},
                latest={"alice": b'{"x":1}'},
                popularity=out.popularity,
            )
        ]
    )
    snaps = await store.read([PartitionRead(1, ("alice", "bob"))])
    snap = snaps[1]
    assert snap.watermark == 41 and snap.trend_ref_ms == T0
    assert set(snap.users) == {"alice"}
    assert snap.users["alice"].state == out.states["alice"]
    assert snap.users["alice"].embedding == b"\x00" * 8
    assert snap.users["alice"].latest == b'{"x":1}'
    assert await store.counts([1]) == {"a": 2, "b": 1}
    rec = await store.user(1, "alice")
    assert rec is not None and rec.state == out.states["alice"]
    assert await store.user(1, "nobody") is None


async def test_partitions_are_separate_and_trending_merges_them(store: StateStore) -> None:
    await store.write(
        [
            PartitionWrite(0, 5, T0, popularity=PopularityDelta({"a": 1}, {"a": 1.0, "b": 3.0})),
            PartitionWrite(1, 9, T0, popularity=PopularityDelta({"a": 1}, {"a": 2.5})),
        ]
    )
    top = await store.trending([0, 1], 2)
    assert [i for i, _ in top] == ["a", "b"]
    assert math.isclose(top[0][1], 3.5)
    assert await store.counts([0, 1]) == {"a": 2}
    snaps = await store.read([PartitionRead(0, ()), PartitionRead(1, ())])
    assert (snaps[0].watermark, snaps[1].watermark) == (5, 9)


async def test_rebase_scales_existing_sums(store: StateStore) -> None:
    await store.write([PartitionWrite(0, 1, T0, popularity=PopularityDelta({}, {"a": 8.0}))])
    later = T0 + 2 * 3_600_000
    await store.write(
        [
            PartitionWrite(
                0, 2, later, popularity=PopularityDelta({}, {"b": 1.0}), rebase_factor=0.25
            )
        ]
    )
    top = dict(await store.trending([0], 5))
    assert math.isclose(top["a"], 2.0) and math.isclose(top["b"], 1.0)


async def test_set_latest_keeps_state(store: StateStore) -> None:
    out = apply_events({}, _events("bob", ["x"]), StateRules(), T0)
    await store.write([PartitionWrite(2, 0, T0, states=out.states)])
    await store.set_latest(2, {"bob": b"[1]"})
    rec = await store.user(2, "bob")
    assert rec is not None and rec.latest == b"[1]" and rec.state == out.states["bob"]


async def test_write_is_fenced_on_the_watermark_it_read(store: StateStore) -> None:
    """A writer holding a stale watermark (a revoked partition's zombie) writes nothing."""
    from streams.core.state_store import StaleWatermark

    out = apply_events({}, _events("zed", ["a"]), StateRules(), T0)
    await store.write([PartitionWrite(0, 10, T0, states=out.states, expected_watermark=-1)])
    stale = PartitionWrite(
        0, 12, T0, popularity=PopularityDelta({"a": 1}, {"a": 1.0}), expected_watermark=-1
    )
    with pytest.raises(StaleWatermark):
        await store.write([stale])
    assert await store.counts([0]) == {}  # the refused write left no trace
    snaps = await store.read([PartitionRead(0, ())])
    assert snaps[0].watermark == 10
    fresh = PartitionWrite(0, 12, T0, expected_watermark=10)
    await store.write([fresh])
    assert (await store.read([PartitionRead(0, ())]))[0].watermark == 12


async def test_one_stale_partition_leaves_the_whole_batch_unwritten(store: StateStore) -> None:
    """Standalone stores check every fence before writing anything of the batch."""
    from streams.core.state_store import StaleWatermark

    await store.write([PartitionWrite(1, 5, T0, expected_watermark=-1)])
    fresh = PartitionWrite(
        0, 3, T0, popularity=PopularityDelta({"a": 1}, {"a": 1.0}), expected_watermark=-1
    )
    stale = PartitionWrite(1, 7, T0, expected_watermark=-1)  # partition 1 is at 5
    with pytest.raises(StaleWatermark, match="partition 1: watermark 5"):
        await store.write([fresh, stale])
    assert await store.counts([0, 1]) == {}
    snaps = await store.read([PartitionRead(0, ()), PartitionRead(1, ())])
    assert (snaps[0].watermark, snaps[1].watermark) == (-1, 5)


async def test_change_token_moves_with_a_write_and_only_then(store: StateStore) -> None:
    """The idle worker's gate: trending and counts are re-read only when this moves."""
    token = store.change_token  # type: ignore[attr-defined]
    start, only_0 = await token([0, 1]), await token([0])
    assert await token([0, 1]) == start  # nothing written: the same token
    out = apply_events({}, _events("alice", ["a"]), StateRules(), T0)
    await store.write(
        [
            PartitionWrite(
                1, watermark=7, trend_ref_ms=T0, states=out.states, popularity=out.popularity
            )
        ]
    )
    moved = await token([0, 1])
    assert moved != start
    assert await token([0, 1]) == moved
    assert await token([0]) == only_0  # partition 0 untouched
    await store.set_latest(1, {"alice": b"list"})  # a list alone changes no counts
    assert await token([0, 1]) == moved
