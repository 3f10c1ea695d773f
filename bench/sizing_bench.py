"""Redis memory per user and per item, measured by applying a simulated shop.

Conditions and figures are printed. A private ``redis-server`` is started; a simulated
world is applied through the worker's own processors (``CatalogProcessor`` and
``IngestProcessor`` on ``RedisStateStore``) from ``SourceRecord`` batches built here,
so no Kafka is needed. Then every user gets what the real-time path adds: a 64-d
float32 embedding and a 20-item list, written through ``PartitionWrite.embeddings`` /
``latest``. After each phase ``INFO memory`` is read; the deltas give the bytes.

    .venv/bin/python bench/sizing_bench.py --users 20000 --items 10000 --events 200000

The baseline is the empty server measured in the same run. ``MEMORY USAGE`` of the
keys splits the popularity keys (per partition) from the user hashes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from freshet.settings import Settings
from schemas.codec import encode
from schemas.events import CatalogEvent, EventType, InteractionEvent
from schemas.recommendation import REASONS, Recommendation, RecommendedItem
from schemas.topics import Topics, catalog_key, event_key, partition_for
from streams.core.ingest import SourceRecord
from streams.core.state_store import PartitionRead, PartitionWrite

BATCH = 500


async def used_memory(client: Any) -> int:
    """``used_memory`` after letting lazy frees finish."""
    await asyncio.sleep(0.2)
    info = await client.info("memory")
    return int(info["used_memory"])


async def key_bytes(client: Any, pattern: str) -> tuple[int, int]:
    """(keys, summed ``MEMORY USAGE``) of the keys matching ``pattern``."""
    n = total = 0
    async for key in client.scan_iter(match=pattern, count=1000):
        total += int(await client.memory_usage(key, samples=0) or 0)
        n += 1
    return n, total


def batches(records: Sequence[SourceRecord], size: int = BATCH) -> list[list[SourceRecord]]:
    return [list(records[i : i + size]) for i in range(0, len(records), size)]


def build_records(
    events: list[InteractionEvent | CatalogEvent], topics: Topics, partitions: int
) -> tuple[list[SourceRecord], list[SourceRecord]]:
    """Catalog and interaction records, partitioned and numbered as Kafka would."""
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    catalog: list[SourceRecord] = []
    interactions: list[SourceRecord] = []
    for ev in events:
        if isinstance(ev, CatalogEvent):
            topic, key, out = topics.catalog, catalog_key(ev.item_id), catalog
        else:
            topic, key, out = topics.events, event_key(ev.user_id), interactions
        p = partition_for(key, partitions)
        offset = offsets[(topic, p)]
        offsets[(topic, p)] = offset + 1
        out.append(SourceRecord(topic, p, offset, key, encode(ev), ev.ts))
    return catalog, interactions


def realistic_list(user_id: str, items: list[str], rng: np.random.Generator) -> bytes:
    """A 20-slot list as the worker stores it: contract JSON with scores and reasons."""
    picks = rng.choice(len(items), size=20, replace=False)
    scores = np.sort(rng.random(20))[::-1]
    slots = []
    for j, (i, s) in enumerate(zip(picks.tolist(), scores.tolist(), strict=True)):
        reason = REASONS[j % len(REASONS)]
        other = items[int(rng.integers(len(items)))] if reason == "similar_to_item" else None
        slots.append(RecommendedItem(items[i], float(s), reason, other))
    rec = Recommendation(
        user_id,
        tuple(slots),
        "personalised",
        "20260101T000000Z-abcdef",
        f"s0-{int(rng.integers(1 << 30))}",
        1_704_067_200_000 + int(rng.integers(1 << 30)),
        1_704_067_200_000 + int(rng.integers(1 << 30)),
    )
    return encode(rec)


async def measure(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    from redis.asyncio import Redis

    from freshet.simulator.stream import SimConfig, simulate
    from streams.core.catalog import CatalogProcessor
    from streams.core.ingest import IngestProcessor
    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace
    from streams.redis_io.redis_state_store import RedisStateStore
    from streams.runtime.worker import limits_of, rules_of

    settings = Settings.from_env({}, redis_url=redis_url, topic_partitions=args.partitions)
    topics = Topics("sizing")
    t0 = time.perf_counter()
    world = SimConfig(users=args.users, items=args.items, events=args.events)
    events = list(simulate(world, seed=args.seed))
    catalog_recs, event_recs = build_records(events, topics, args.partitions)
    users = sorted({ev.user_id for ev in events if isinstance(ev, InteractionEvent)})
    items = sorted({ev.item_id for ev in events if isinstance(ev, CatalogEvent)})
    sim_s = time.perf_counter() - t0

    async def no_letters(letters: Sequence[Any]) -> None:
        if letters:
            raise RuntimeError(f"{len(letters)} records refused: {letters[0]}")

    client = Redis.from_url(redis_url)
    keys = Keyspace(settings.redis_namespace)
    store = RedisStateStore(client, keys, trending_half_life_s=settings.trending_half_life_s)
    limits = limits_of(settings)
    catalog = CatalogProcessor(RedisCatalogStore(client, keys), limits, dead_letter_sink=no_letters)
    ingest = IngestProcessor(
        store, rules_of(settings), limits, dead_letter_sink=no_letters, check_future=False
    )
    out: dict[str, Any] = {"simulate_s": sim_s, "users": len(users), "items": len(items)}
    try:
        await client.flushall()
        out["empty"] = await used_memory(client)

        t0 = time.perf_counter()
        for batch in batches(catalog_recs):
            await catalog.process(batch)
        out["catalog_s"] = time.perf_counter() - t0
        out["after_catalog"] = await used_memory(client)
        out["catalog_keys"] = await key_bytes(client, f"{settings.redis_namespace}:*catalog*")

        t0 = time.perf_counter()
        for batch in batches(event_recs):
            stats = await ingest.process(batch)
            assert stats.dead_lettered == 0
        out["ingest_s"] = time.perf_counter() - t0
        out["after_events"] = await used_memory(client)
        out["user_keys_state"] = await key_bytes(client, f"{settings.redis_namespace}:*:u:*")
        trend = await key_bytes(client, f"{settings.redis_namespace}:*:trend")
        counts = await key_bytes(client, f"{settings.redis_namespace}:*:cnt")
        out["popularity_keys"] = (trend[0] + counts[0], trend[1] + counts[1])
        out["trend_entries"] = sum(
            [await client.zcard(keys.trend(p)) for p in range(args.partitions)]
        )

        # What the real-time path adds per user: embedding + latest list, in the same
        # write the worker uses (watermark and trend reference unchanged).
        rng = np.random.default_rng(args.seed)
        by_part: dict[int, list[str]] = defaultdict(list)
        for uid in users:
            by_part[partition_for(event_key(uid), args.partitions)].append(uid)
        list_bytes = emb_bytes = 0
        t0 = time.perf_counter()
        for p, uids in by_part.items():
            for i in range(0, len(uids), BATCH):
                chunk = uids[i : i + BATCH]
                snap = (await store.read([PartitionRead(p, ())]))[p]
                vecs = rng.standard_normal((len(chunk), args.dim)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                write = PartitionWrite(p, snap.watermark, snap.trend_ref_ms or 0)
                for uid, vec in zip(chunk, vecs, strict=True):
                    write.embeddings[uid] = vec.tobytes()
                    write.latest[uid] = realistic_list(uid, items, rng)
                    list_bytes += len(write.latest[uid])
                    emb_bytes += len(write.embeddings[uid])
                await store.write([write])
        out["lists_s"] = time.perf_counter() - t0
        out["after_lists"] = await used_memory(client)
        out["user_keys_full"] = await key_bytes(client, f"{settings.redis_namespace}:*:u:*")
        out["mean_list_json"] = list_bytes / len(users)
        out["mean_embedding"] = emb_bytes / len(users)
        info = await client.info("memory")
        out["rss"] = int(info["used_memory_rss"])
        out["allocator"] = info.get("mem_allocator", "?")
        out["redis_version"] = (await client.info("server"))["redis_version"]
        out["mean_state_json"] = await mean_state_bytes(client, keys, users, args.partitions)
        out["heavy"] = await heavy_users(args, ingest, client, keys, items, event_recs, topics)
    finally:
        await client.aclose()
    return out


async def heavy_users(
    args: argparse.Namespace,
    ingest: Any,
    client: Any,
    keys: Any,
    items: list[str],
    applied: list[SourceRecord],
    topics: Topics,
) -> tuple[int, float]:
    """(users, mean ``MEMORY USAGE``) of users whose state is at every cap.

    Each gets ``--heavy-events`` events on distinct items, cycling through the four
    funnel types, so history, seen, purchased and the dedup window all fill up.
    Run last, after every other measurement, so it moves none of them.
    """
    if args.heavy_users <= 0:
        return 0, 0.0
    next_offset: dict[int, int] = defaultdict(int)
    for rec in applied:
        next_offset[rec.partition] = max(next_offset[rec.partition], rec.offset + 1)
    types: tuple[EventType, ...] = ("view", "click", "add_to_cart", "purchase")
    ts0 = max(rec.timestamp_ms for rec in applied) + 1000
    records: list[SourceRecord] = []
    uids = [f"heavy-user-{k:04d}" for k in range(args.heavy_users)]
    for j in range(args.heavy_events):
        for k, uid in enumerate(uids):
            item = items[(j * 7 + k * 131) % len(items)]
            ev = InteractionEvent(f"heavy-{k}-{j:06d}", uid, item, types[j % 4], ts0 + j * 1000)
            key = event_key(uid)
            p = partition_for(key, args.partitions)
            records.append(SourceRecord(topics.events, p, next_offset[p], key, encode(ev), ev.ts))
            next_offset[p] += 1
    for batch in batches(records):
        await ingest.process(batch)
    total = 0
    for uid in uids:
        key = keys.user(partition_for(event_key(uid), args.partitions), uid)
        total += int(await client.memory_usage(key, samples=0) or 0)
    return len(uids), total / len(uids)


async def mean_state_bytes(client: Any, keys: Any, users: list[str], partitions: int) -> float:
    """Mean length of the ``s`` field (the user state JSON) over a sample of users."""
    sample = users[:: max(1, len(users) // 1000)]
    total = 0
    for uid in sample:
        total += int(
            await client.hstrlen(keys.user(partition_for(event_key(uid), partitions), uid), "s")
        )
    return total / len(sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heavy-users", type=int, default=20)
    parser.add_argument("--heavy-events", type=int, default=2000)
    args = parser.parse_args()

    from freshet.services.redis_local import LocalRedis

    with tempfile.TemporaryDirectory() as tmp:
        server = LocalRedis(Path(tmp) / "redis", appendonly=False).start()
        try:
            m = asyncio.run(measure(args, server.url))
        finally:
            server.stop()

    users, items = m["users"], m["items"]
    catalog_b = m["after_catalog"] - m["empty"]
    state_b = m["after_events"] - m["after_catalog"]
    lists_b = m["after_lists"] - m["after_events"]
    pop_n, pop_b = m["popularity_keys"]
    user_n, user_state_b = m["user_keys_state"]
    _, user_full_b = m["user_keys_full"]
    mib = 1 << 20
    print("conditions:")
    print(f"  python {platform.python_version()}, cores {os.cpu_count()}, {platform.machine()}")
    print(f"  redis {m['redis_version']} ({m['allocator']}), no persistence, one node")
    print(
        f"  world: {users:,} users with events, {items:,} catalog items, {args.events:,} "
        f"events (seed {args.seed}), {args.partitions} partitions"
    )
    print(
        f"  settings: history_len {Settings().history_len}, seen_max {Settings().seen_max}, "
        f"dedup_window {Settings().dedup_window}; embedding {args.dim}-d float32, "
        f"20-item list"
    )
    print(
        f"  time: simulate {m['simulate_s']:.1f} s, catalog {m['catalog_s']:.1f} s, "
        f"ingest {m['ingest_s']:.1f} s ({args.events / m['ingest_s']:,.0f} events/s in-process, "
        f"one connection), lists {m['lists_s']:.1f} s"
    )
    print("figures (used_memory deltas; baseline: the empty server in this run):")
    print(f"  empty server                {m['empty'] / mib:9.1f} MiB")
    print(
        f"  + catalog                   {catalog_b / mib:9.1f} MiB  {catalog_b / items:8.0f} B/item"
    )
    print(
        f"  + events (state, popularity){state_b / mib:9.1f} MiB  "
        f"{(state_b - pop_b) / users:8.0f} B/user state, {pop_b / items:6.0f} B/item popularity "
        f"({pop_n} keys, {m['trend_entries']:,} trend entries)"
    )
    print(f"  + embeddings and lists      {lists_b / mib:9.1f} MiB  {lists_b / users:8.0f} B/user")
    total = (m["after_lists"] - m["empty"]) / mib
    print(f"  total                       {total:9.1f} MiB, rss {m['rss'] / mib:.1f} MiB")
    print("per-key MEMORY USAGE (samples=0):")
    print(f"  user hash, state only       {user_state_b / user_n:8.0f} B/user ({user_n:,} keys)")
    print(f"  user hash, state+emb+list   {user_full_b / user_n:8.0f} B/user")
    print(f"  catalog hash + log          {m['catalog_keys'][1] / items:8.0f} B/item")
    print(f"  trend + counts              {pop_b / items:8.0f} B/item")
    heavy_n, heavy_b = m["heavy"]
    print(
        f"  user hash at every cap      {heavy_b:8.0f} B/user ({heavy_n} users x "
        f"{args.heavy_events} events on distinct items; state only)"
    )
    print("payloads:")
    print(
        f"  state JSON {m['mean_state_json']:.0f} B, embedding {m['mean_embedding']:.0f} B, "
        f"list JSON {m['mean_list_json']:.0f} B (means)"
    )
    per_user = (user_full_b) / user_n
    per_item = (m["catalog_keys"][1] + pop_b) / items
    print("sizing rule (per-key figures):")
    print(f"  bytes/user {per_user:,.0f}, bytes/item {per_item:,.0f}")


if __name__ == "__main__":
    main()
