"""The Redis backend of the state store (redis-py asyncio, hiredis parser).

Reads of a batch go out in one pipelined round trip. Writes of a batch are one
MULTI/EXEC per partition: the users' states, their embeddings and lists, the item
popularity increments and the partition's offset watermark change together or not at
all. That atomicity, plus skipping records at or below the watermark, is what makes a
crash between the write and the Kafka offset commit harmless.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from redis.exceptions import WatchError

from streams.keyspace import Keyspace
from streams.state_rules import UserState
from streams.state_store import (
    TREND_FLOOR,
    PartitionRead,
    PartitionSnapshot,
    PartitionWrite,
    StaleWatermark,
    UserRecord,
    merge_trending,
)


class RedisStateStore:
    """State in Redis under one keyspace (namespace + generation)."""

    def __init__(
        self,
        client: Any,
        keyspace: Keyspace,
        *,
        cluster: bool = False,
        trending_half_life_s: float = 6 * 3600.0,
    ) -> None:
        self.client = client
        self.keys = keyspace
        self.cluster = cluster
        self.half_life_s = trending_half_life_s
        self.round_trips = 0

    async def read(self, reads: Sequence[PartitionRead]) -> dict[int, PartitionSnapshot]:
        pipe = self.client.pipeline(transaction=False)
        for r in reads:
            pipe.get(self.keys.watermark(r.partition))
            pipe.hget(self.keys.partition_meta(r.partition), "trend_ref")
            for uid in r.user_ids:
                pipe.hmget(self.keys.user(r.partition, uid), "s", "e", "r")
        results = await pipe.execute()
        self.round_trips += 1
        out: dict[int, PartitionSnapshot] = {}
        pos = 0
        for r in reads:
            wm_raw, ref_raw = results[pos], results[pos + 1]
            pos += 2
            users: dict[str, UserRecord] = {}
            for uid in r.user_ids:
                blob, emb, latest = results[pos]
                pos += 1
                if blob is not None:
                    users[uid] = UserRecord(UserState.from_obj(orjson.loads(blob)), emb, latest)
            out[r.partition] = PartitionSnapshot(
                r.partition,
                -1 if wm_raw is None else int(wm_raw),
                None if ref_raw is None else int(ref_raw),
                users,
            )
        return out

    def _queue_write(self, pipe: Any, w: PartitionWrite) -> None:
        trend_key = self.keys.trend(w.partition)
        if w.rebase_factor is not None:
            pipe.zunionstore(trend_key, {trend_key: w.rebase_factor})
            pipe.zremrangebyscore(trend_key, "-inf", TREND_FLOOR)
        for item, inc in w.popularity.trend.items():
            pipe.zincrby(trend_key, inc, item)
        if w.popularity.counts:
            counts_key = self.keys.counts(w.partition)
            for item, n in w.popularity.counts.items():
                pipe.hincrby(counts_key, item, n)
        for uid in w.states.keys() | w.embeddings.keys() | w.latest.keys():
            mapping: dict[str, bytes] = {}
            if uid in w.states:
                mapping["s"] = orjson.dumps(w.states[uid].to_obj())
            if uid in w.embeddings:
                mapping["e"] = w.embeddings[uid]
            if uid in w.latest:
                mapping["r"] = w.latest[uid]
            pipe.hset(self.keys.user(w.partition, uid), mapping=mapping)
        pipe.set(self.keys.watermark(w.partition), w.watermark)
        pipe.hset(self.keys.partition_meta(w.partition), "trend_ref", w.trend_ref_ms)

    async def write(self, writes: Sequence[PartitionWrite]) -> None:
        """Write every partition's changes in one transaction, fenced on the watermarks.

        The watermark keys are WATCHed and compared with what the batch read; if any
        moved (or moves before EXEC), nothing is written and ``StaleWatermark`` says so.
        """
        if not writes:
            return
        if self.cluster:
            await asyncio.gather(*(self._write_fenced([w]) for w in writes))
        else:
            await self._write_fenced(writes)
        self.round_trips += 2

    async def _write_fenced(self, writes: Sequence[PartitionWrite]) -> None:
        fenced = [w for w in writes if w.expected_watermark is not None]
        keys = [self.keys.watermark(w.partition) for w in fenced]
        async with self.client.pipeline(transaction=True) as pipe:
            try:
                if keys:
                    await pipe.watch(*keys)
                    current = await pipe.mget(keys)
                    for w, raw in zip(fenced, current, strict=True):
                        seen = -1 if raw is None else int(raw)
                        if seen != w.expected_watermark:
                            raise StaleWatermark(
                                f"partition {w.partition}: watermark {seen}, "
                                f"batch read {w.expected_watermark}"
                            )
                pipe.multi()
                for w in writes:
                    self._queue_write(pipe, w)
                await pipe.execute()
            except WatchError:
                raise StaleWatermark("a partition watermark changed during the write") from None

    async def user(self, partition: int, user_id: str) -> UserRecord | None:
        blob, emb, latest = await self.client.hmget(
            self.keys.user(partition, user_id), "s", "e", "r"
        )
        if blob is None and latest is None:
            return None
        state = UserState() if blob is None else UserState.from_obj(orjson.loads(blob))
        return UserRecord(state, emb, latest)

    async def set_latest(self, partition: int, lists: dict[str, bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for uid, raw in lists.items():
            pipe.hset(self.keys.user(partition, uid), "r", raw)
        await pipe.execute()
        self.round_trips += 1

    async def trending(self, partitions: Sequence[int], k: int) -> list[tuple[str, float]]:
        pipe = self.client.pipeline(transaction=False)
        for p in partitions:
            pipe.zrevrange(self.keys.trend(p), 0, max(k * 4, 100) - 1, withscores=True)
            pipe.hget(self.keys.partition_meta(p), "trend_ref")
        res = await pipe.execute()
        sums: list[dict[str, float]] = []
        refs: dict[int, int] = {}
        for i, p in enumerate(partitions):
            pairs, ref = res[2 * i], res[2 * i + 1]
            sums.append({_s(item): float(score) for item, score in pairs})
            if ref is not None:
                refs[p] = int(ref)
        return merge_trending(sums, refs, partitions, k, self.half_life_s)

    async def counts(self, partitions: Sequence[int]) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for p in partitions:
            pipe.hgetall(self.keys.counts(p))
        res = await pipe.execute()
        total: dict[str, int] = {}
        for mapping in res:
            for item, n in mapping.items():
                key = _s(item)
                total[key] = total.get(key, 0) + int(n)
        return total


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
