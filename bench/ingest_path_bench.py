"""The ingest path's own CPU per event: ``IngestProcessor.process`` on real Redis, no Kafka.

The stream bench's shop (``bench.stream_bench.simulate_shop``: 20k users, the
simulator's events) is encoded and keyed as the load generator sends it, split over
the partitions by Kafka's key rule, and fed to one ``IngestProcessor`` over a local
Redis in micro-batches of ``--batch`` records, as the worker's agent hands them over
at saturation (the quiet-host drains averaged about 105 records per micro-batch).
The warm-up events are applied first, untimed. Then each round times process CPU
(this process only: Redis runs in its own) and wall time per event over
``--events`` records, and the seconds per stage (``BatchStats.stages_s``); and the Redis
server's own CPU per event over the same rounds (``INFO cpu``: it shares the worker's
cores in a deployment like the bench's).

It isolates what the worker adds to Faust's no-op agent (decode, the Redis read,
the state rules, the fenced write), so two commits can be compared on one host in
minutes with little noise: run it from each tree back to back.

    .venv/bin/python -m bench.ingest_path_bench --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.host import cpu_model
from bench.stream_bench import simulate_shop
from freshet.services.redis_local import LocalRedis
from schemas.codec import DecodeLimits, encode
from schemas.events import InteractionEvent
from schemas.topics import event_key, partition_for
from streams.core.ingest import IngestProcessor, SourceRecord
from streams.core.state_rules import StateRules
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import RedisConfig, async_redis
from streams.redis_io.redis_state_store import RedisStateStore
from streams.runtime.worker import tune_collector


def records(
    events: Sequence[InteractionEvent], partitions: int, next_offset: list[int]
) -> list[SourceRecord]:
    """Events as the worker receives them: encoded, keyed, each partition's offsets
    counting on from ``next_offset`` (updated)."""
    out = []
    for ev in events:
        key = event_key(ev.user_id)
        p = partition_for(key, partitions)
        out.append(SourceRecord("events", p, next_offset[p], key, encode(ev), ev.ts))
        next_offset[p] += 1
    return out


async def _nothing(_: Any) -> None:
    return None


async def run(args: argparse.Namespace, url: str) -> None:
    shop = simulate_shop(args.users, args.items, args.warm, args.events, args.seed)
    offsets = [0] * args.partitions
    warm = records(shop.warm, args.partitions, offsets)
    timed = records([*shop.live, *shop.saturate], args.partitions, offsets)
    client = async_redis(RedisConfig(url=url))  # the worker's client
    store = RedisStateStore(client, Keyspace("bench"))
    proc = IngestProcessor(
        store, StateRules(), DecodeLimits(), dead_letter_sink=_nothing, check_future=False
    )
    n = args.batch
    for i in range(0, len(warm), n):
        await proc.process(warm[i : i + n])
    if args.worker_gc:
        tune_collector()  # as the worker sets its collector at start-up
    per_round = args.events // args.rounds
    await client.config_resetstat()
    redis_cpu0 = _server_cpu_s(await client.info("cpu"))
    cpu_us: list[float] = []
    wall_us: list[float] = []
    stages: dict[str, float] = {}
    batches = 0
    for r in range(args.rounds):
        chunk = timed[r * per_round : (r + 1) * per_round]
        c0, w0 = time.process_time(), time.perf_counter()
        for i in range(0, len(chunk), n):
            stats = await proc.process(chunk[i : i + n])
            batches += 1
            for k, v in stats.stages_s.items():
                stages[k] = stages.get(k, 0.0) + v
        cpu_us.append(1e6 * (time.process_time() - c0) / len(chunk))
        wall_us.append(1e6 * (time.perf_counter() - w0) / len(chunk))
    timed_events = per_round * args.rounds
    redis_us = 1e6 * (_server_cpu_s(await client.info("cpu")) - redis_cpu0) / timed_events
    scripts = (await client.info("commandstats")).get("cmdstat_evalsha", {})
    await client.aclose()
    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}), local Redis on the same cores")
    print(f"  load average {[round(x, 2) for x in os.getloadavg()]}")
    print(
        f"  {args.users:,} users, {args.items:,} items, {args.partitions} partitions;"
        f" {len(warm):,} warm-up records, then {args.rounds} rounds of {per_round:,}"
        f" records in micro-batches of {n}"
    )
    print("figures (us per event; process CPU of this process, Redis apart):")
    print("  CPU per round: " + ", ".join(f"{x:.1f}" for x in cpu_us))
    print("  wall per round: " + ", ".join(f"{x:.1f}" for x in wall_us))
    print(f"  CPU median {statistics.median(cpu_us):.1f}, min {min(cpu_us):.1f}")
    line = ", ".join(f"{k} {1e3 * v / batches:.3f}" for k, v in stages.items() if v > 0)
    print(f"  ms per micro-batch by stage (wall): {line}")
    print(
        f"  Redis server CPU (INFO cpu, its own process): {redis_us:.2f} us per event;"
        f" script calls (read and write) {scripts.get('usec_per_call', 0.0):.0f} us each"
    )


def _server_cpu_s(info: dict[str, Any]) -> float:
    """The Redis server's CPU seconds so far (main thread and children, user and sys)."""
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--warm", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=30_000, help="timed records in all")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=105, help="records per micro-batch")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--worker-gc",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tune the collector as the worker does (streams.runtime.worker.tune_collector)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        redis = LocalRedis(Path(d)).start()
        try:
            asyncio.run(run(args, redis.url))
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
