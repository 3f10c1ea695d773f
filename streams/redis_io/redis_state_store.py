"""The Redis backend of the state store (redis-py asyncio, hiredis parser).

Reads of a batch are one script call (a cluster: one pipelined round trip), the
worker's generation check (``guard``) in front of them. Writes of a batch are one Lua
script call: the users' states, their embeddings and lists, the item popularity
increments and each partition's offset watermark change together or not at all, and
only if every partition's watermark is still the one the batch read (a fence against a
revoked partition's zombie writer). That atomicity, plus skipping records at or below
the watermark, is what makes a crash between the write and the Kafka offset commit
harmless. One script replaces WATCH + MGET + MULTI/EXEC: one round trip instead of three.

In a Redis Cluster every key of a partition shares one hash tag, hence one slot, and
each partition's write is its own script call on the master of that slot. (redis-py's
asyncio cluster pipeline can WATCH, but blocks MGET and queues each transactional
command through a thread of its own.)
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Sequence
from itertools import chain
from typing import Any, Protocol

from redis.exceptions import NoScriptError

from streams.core.state_blobs import StateBlobs
from streams.core.state_rules import PopularityDelta, UserState
from streams.core.state_store import (
    TREND_FLOOR,
    PartitionRead,
    PartitionSnapshot,
    PartitionWrite,
    StaleWatermark,
    UserRecord,
    merge_trending,
    user_record,
)
from streams.redis_io.held_connection import HeldConnection
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.state_scripts import FENCED_WRITE, READ_BATCH, READ_TRENDING

log = logging.getLogger(__name__)

COUNTS_CHUNK = 2_000
"""Fields per HSCAN call when reading item counts (see ``RedisStateStore.counts``)."""


class ReadGuard(Protocol):
    """A check that rides in the state read's round trip (the worker's generation
    follower, ``streams.redis_io.generation``): ``queue`` adds two reads in front of
    the state's, ``admit`` judges their values; False means read again."""

    def queue(self, pipe: Any) -> None: ...

    def read_keys(self) -> tuple[str, str]: ...

    async def admit(self, first: Any, second: Any) -> bool: ...


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
        self._script: Any = None  # a cluster's fenced write (redis-py's ``Script``)
        # Script calls on one held connection (standalone Redis only: a cluster's calls
        # go to each slot's master)
        self.calls = HeldConnection(client, hold=not cluster)
        self._shas: dict[str, str] = {}  # script source -> its SHA1, loaded on first use
        self.guard: ReadGuard | None = None
        self.blobs = StateBlobs()  # the recent state blobs, decoded
        self.count_repairs = 0  # item counts the fenced write found refused and repaired

    async def read(self, reads: Sequence[PartitionRead]) -> dict[int, PartitionSnapshot]:
        while True:
            results = await (self._read_pipelined(reads) if self.cluster else self._read_one(reads))
            if self.guard is None:
                pos = 0
                break
            if await self.guard.admit(results[0], results[1]):
                pos = 2
                break
        out: dict[int, PartitionSnapshot] = {}
        for r in reads:
            wm_raw, ref_raw = results[pos], results[pos + 1]
            pos += 2
            users: dict[str, UserRecord] = {}
            for uid in r.user_ids:
                blob, emb, latest = results[pos]
                pos += 1
                if blob is not None:
                    users[uid] = user_record(self.blobs.decode(blob), emb, latest)
            out[r.partition] = PartitionSnapshot(
                r.partition,
                -1 if wm_raw is None else int(wm_raw),
                None if ref_raw is None else int(ref_raw),
                users,
            )
        return out

    async def _read_one(self, reads: Sequence[PartitionRead]) -> list[Any]:
        """Standalone Redis: the guard's values, then per partition its watermark, its
        trend reference and its users' rows, by one script call (``READ_BATCH``).

        One command, not a pipeline of one per key: redis-py's cost per queued command
        was most of the read's CPU.
        """
        keys: list[str] = [] if self.guard is None else list(self.guard.read_keys())
        head = len(keys)
        for r in reads:
            keys += (self.keys.watermark(r.partition), self.keys.partition_meta(r.partition))
        for r in reads:
            if r.user_ids:
                keys += self.keys.users(r.partition, r.user_ids)
        results = await self._evalsha(READ_BATCH, keys, head, len(reads))
        return _per_partition(results, reads, head)

    async def _evalsha(self, script: str, keys: Sequence[str], *args: Any) -> Any:
        """``script`` by its SHA1 (loaded on first use, again if Redis lost it): one
        round trip, with none of redis-py's ``Script`` wrapper per call, on the held
        connection (``HeldConnection``: no pool check-out per call)."""
        while True:
            sha = self._shas.get(script)
            if sha is None:
                sha = self._shas[script] = _s(await self.client.script_load(script))
            try:
                return await self.calls.execute("EVALSHA", sha, len(keys), *keys, *args)
            except NoScriptError:  # Redis restarted or flushed its scripts
                del self._shas[script]
            finally:
                self.round_trips += 1

    async def _read_pipelined(self, reads: Sequence[PartitionRead]) -> list[Any]:
        """A cluster: the same replies by a pipeline of one command per key (a batch's
        users span slots)."""
        pipe = self.client.pipeline(transaction=False)
        if self.guard is not None:
            self.guard.queue(pipe)
        for r in reads:
            pipe.get(self.keys.watermark(r.partition))
            pipe.hget(self.keys.partition_meta(r.partition), "trend_ref")
            for uid in r.user_ids:
                pipe.hmget(self.keys.user(r.partition, uid), "s", "e", "r")
        try:
            return list(await pipe.execute())
        finally:
            self.round_trips += 1

    def _write_args(self, w: PartitionWrite, keys: list[str], args: list[Any]) -> None:
        """Append one partition's write to the script's ``keys`` and ``args`` (the op
        groups of ``FENCED_WRITE``), in the order Redis applies them."""

        def key_at(key: str) -> int:
            keys.append(key)
            return len(keys)

        trend_key = self.keys.trend(w.partition)
        trend = key_at(trend_key)
        if w.rebase_factor is not None:
            args += ("C", trend, 4, "ZUNIONSTORE", 1, trend_key, "WEIGHTS", w.rebase_factor)
            args += ("C", trend, 2, "ZREMRANGEBYSCORE", "-inf", TREND_FLOOR)
        pop = w.popularity
        packed = packed_popularity(pop)
        if packed is not None:
            args += ("P", trend, len(pop.trend), key_at(self.keys.counts(w.partition)), *packed)
        else:
            if pop.trend:
                args += ("Z", trend, len(pop.trend))
                args += chain.from_iterable(pop.trend.items())
            if pop.counts:
                args += ("I", key_at(self.keys.counts(w.partition)), len(pop.counts))
                args += chain.from_iterable(pop.counts.items())
        p, encode = w.partition, self.blobs.encode
        for field, values in (
            ("s", {uid: encode(s) for uid, s in w.states.items()}),
            ("e", w.embeddings),
            ("r", w.latest),
        ):
            if values:
                first = len(keys) + 1
                keys += self.keys.users(p, list(values))
                args += ("H", first, len(values), field, *values.values())
        args += ("C", key_at(self.keys.watermark(p)), 1, "SET", w.watermark)
        args += ("C", key_at(self.keys.partition_meta(p)), 2, "HSET", "trend_ref", w.trend_ref_ms)

    async def write(self, writes: Sequence[PartitionWrite]) -> None:
        """Write every partition's changes atomically, fenced on the watermarks read.

        Standalone Redis: the whole batch is one script call (one round trip) that
        checks every partition's watermark against what the batch read and writes
        nothing if any moved. A Redis Cluster has no multi-slot scripts, so there each
        partition is its own script call on its slot's master, and a stale partition
        leaves the others of the batch written. Either way ``StaleWatermark`` says so.
        """
        if not writes:
            return
        if not self.cluster:
            await self._write_scripted(writes)  # ``_evalsha`` counts its round trip
            return
        # Let every partition finish before raising: a retry must not race them.
        done = await asyncio.gather(
            *(self._write_scripted([w]) for w in writes), return_exceptions=True
        )
        self.round_trips += 1
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _write_scripted(self, writes: Sequence[PartitionWrite]) -> None:
        """Partitions' writes as one script call, fenced inside the script."""
        fenced = [w for w in writes if w.expected_watermark is not None]
        keys = [self.keys.watermark(w.partition) for w in fenced]
        if len(set(keys)) != len(fenced):
            raise ValueError("two writes for one partition in a batch")
        args: list[Any] = [len(fenced), *(w.expected_watermark for w in fenced)]
        for w in writes:
            self._write_args(w, keys, args)
        if self.cluster:  # one partition a call, routed by redis-py to its slot's master
            if self._script is None:
                self._script = self.client.register_script(FENCED_WRITE)
            stale = await self._script(keys=list(keys), args=args)
        else:
            stale = await self._evalsha(FENCED_WRITE, keys, *args)
        if isinstance(stale, list):
            self._repaired(stale)
        elif stale is not None:
            at, _, seen = _s(stale).partition(":")
            w = fenced[int(at) - 1]
            raise StaleWatermark(
                f"partition {w.partition}: watermark {seen}, batch read {w.expected_watermark}"
            )

    def _repaired(self, reply: list[Any]) -> None:
        """Count and log the item counts the write repaired (see ``FENCED_WRITE``)."""
        for at in range(0, len(reply), 3):
            item, why, old = (_text(v) for v in reply[at : at + 3])
            self.count_repairs += 1
            log.warning("item count of %r repaired (%s; it held %r)", item, why, old)

    async def user(self, partition: int, user_id: str) -> UserRecord | None:
        blob, emb, latest = await self.client.hmget(
            self.keys.user(partition, user_id), "s", "e", "r"
        )
        if blob is None and latest is None:
            return None
        state = UserState() if blob is None else self.blobs.decode(blob)
        return UserRecord(state, emb, latest)

    async def set_latest(self, partition: int, lists: dict[str, bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for uid, raw in lists.items():
            pipe.hset(self.keys.user(partition, uid), "r", raw)
        await pipe.execute()
        self.round_trips += 1

    async def trending(self, partitions: Sequence[int], k: int) -> list[tuple[str, float]]:
        """The top ``k`` items by trend sum over ``partitions``, best first.

        Standalone Redis: one script call (``READ_TRENDING``) whose reply is plain
        strings, where a pipeline of two commands a partition cost the trending timer
        redis-py's per-command queueing and its score callback per member. A cluster
        keeps the pipeline (a partition's keys have a slot of their own).
        """
        depth = max(k * 4, 100)
        sums: list[dict[str, float]] = []
        refs: dict[int, int] = {}
        if self.cluster:
            pipe = self.client.pipeline(transaction=False)
            for p in partitions:
                pipe.zrevrange(self.keys.trend(p), 0, depth - 1, withscores=True)
                pipe.hget(self.keys.partition_meta(p), "trend_ref")
            res = await pipe.execute()
            for i, p in enumerate(partitions):
                pairs, ref = res[2 * i], res[2 * i + 1]
                sums.append({_s(item): float(score) for item, score in pairs})
                if ref is not None:
                    refs[p] = int(ref)
            return merge_trending(sums, refs, partitions, k, self.half_life_s)
        keys: list[str] = []
        for p in partitions:
            keys += (self.keys.trend(p), self.keys.partition_meta(p))
        res = await self._evalsha(READ_TRENDING, keys, depth)
        for i, p in enumerate(partitions):
            flat, ref = res[2 * i], res[2 * i + 1]
            it = iter(flat)
            sums.append({_s(item): float(score) for item, score in zip(it, it, strict=True)})
            if ref is not None:
                refs[p] = int(ref)
        return merge_trending(sums, refs, partitions, k, self.half_life_s)

    async def change_token(self, partitions: Sequence[int]) -> tuple[str, ...]:
        """A value that changes whenever any of ``partitions`` applies a batch: the
        keyspace and their offset watermarks, in one round trip.

        Trending sums and item counts change only with a batch's write, which also moves
        its partition's watermark, so an unchanged token means unchanged trending and
        counts: the worker's timers then skip re-reading them.
        """
        keys = [self.keys.watermark(p) for p in partitions]
        if self.cluster:  # one slot a partition: MGET would span slots
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            values = await pipe.execute()
        else:  # one command (a pipeline of GETs cost twice its CPU), on the held connection
            values = await self.calls.execute("MGET", *keys) if keys else []
        self.round_trips += 1
        return (self.keys.watermark(-1), *(_s(v) if v is not None else "" for v in values))

    async def counts(self, partitions: Sequence[int], chunk: int = COUNTS_CHUNK) -> dict[str, int]:
        """Interaction counts summed over ``partitions``, read by HSCAN in chunks.

        One HGETALL of a 100k-item hash takes the event loop for hundreds of ms to
        parse; chunks of ``chunk`` fields let batches run in between. HSCAN may return
        a field twice across a rehash, so each partition is gathered into its own dict
        (a repeat overwrites) before summing.
        """
        total: dict[str, int] = {}
        for p in partitions:
            key, cursor = self.keys.counts(p), 0
            mine: dict[bytes | str, bytes | str] = {}
            while True:
                cursor, page = await self.client.hscan(key, cursor, count=chunk)
                self.round_trips += 1
                mine.update(page)
                if cursor == 0:
                    break
            for item, n in mine.items():
                name = _s(item)
                try:
                    total[name] = total.get(name, 0) + int(n)
                except ValueError:  # not a count: the next write of the item repairs it
                    log.warning("item count of %r is not an integer: %r", name, _text(n)[:64])
        return total


def packed_popularity(pop: PopularityDelta) -> tuple[str, bytes, bytes] | None:
    """A batch's popularity as ``FENCED_WRITE``'s P group: the items joined by
    newlines, their trend increments and their counts packed; None where the group
    cannot say it (no items, counts and trend over different items, an item with a
    newline, a count past int32), and the Z and I groups carry it instead.

    Four arguments a partition in place of four an item: redis-py's packing costs per
    argument (0.65 -> 0.07 us an event of the worker's CPU at 420-record batches), and
    the script's two reads and two writes a chunk cost Redis less than a ZINCRBY and a
    HINCRBY an item (2.5 -> 2.05 us an event of the server's CPU).

    >>> packed_popularity(PopularityDelta({"a": 1, "b": 2}, {"a": 0.5, "b": 1.0}))[0]
    'a\\nb'
    >>> packed_popularity(PopularityDelta({"a": 1}, {"b": 0.5})) is None
    True
    """
    items = list(pop.trend)
    n = len(items)
    if not n or items != list(pop.counts):
        return None
    joined = "\n".join(items)
    if joined.count("\n") != n - 1:
        return None
    try:
        counts = struct.pack(f"<{n}i", *pop.counts.values())
    except struct.error:
        return None
    return joined, struct.pack(f"<{n}d", *pop.trend.values()), counts


def _per_partition(results: list[Any], reads: Sequence[PartitionRead], head: int) -> list[Any]:
    """``READ_BATCH``'s reply in the pipelined layout: the ``head`` guard values, then
    per partition its watermark, its trend reference and its users' rows."""
    out = results[:head]
    at = head + 2 * len(reads)
    for i, r in enumerate(reads):
        out += results[head + 2 * i : head + 2 * i + 2]
        out += results[at : at + len(r.user_ids)]
        at += len(r.user_ids)
    return out


def _text(value: bytes | str) -> str:
    """A reply value as text for a log line, whatever bytes it holds."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
