"""The live timers' CPU and Redis calls per second, as they ran and as they run, in one process.

Two ``LiveRecommender`` shells over the same real Redis (a local ``redis-server``)
and the same 100k-item catalog (model-free scorer; ``CURRENT`` names a version that
is refused, so the bundle check finds nothing to do, as in a worker serving a bundle),
their duties run in turns of ``--window-s`` seconds, in a shuffled order each round,
each turn starting at a random point of every duty's period:

- **before**: the loops of ``add_live_timers`` as they were at ``d47379f``: the catalog
  log polled every 0.5 s, trending every 1 s and popularity every 10 s, each reading
  the change token and re-reading whenever it moved, ``CURRENT`` read every 2 s;
- **now**: ``streams.runtime.live_timers.live_duties`` with the default settings: the
  catalog by a blocking read, one token read a second for both syncs and their
  ``SyncPolicy``, ``CURRENT`` stat'ed; and the same with the counts re-read every
  10 s as before (``FRESHET_POPULARITY_SYNC_S=10``, **now-pop10**);
- **none**: no duty (the process's own floor).

Phases: **idle** (nothing writes) and **paced** (another process applies ``--rate``
records a second the way batches do: a watermark, a trend member and a count, over 4
partitions). CPU is this process's (``time.process_time``: the loop and its threads);
Redis calls are the server's ``INFO commandstats`` over the turn.

    .venv/bin/python -m bench.live_timer_costs --window-s 20 --rounds 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.host import cpu_model
from freshet.settings import Settings

ITEMS = 100_000
MEMBERS = 5_000  # members per partition's trend set and counts hash
PARTITIONS = 4

_WRITER = """
import json, sys, time, redis
url, keys, rate = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
client = redis.Redis.from_url(url)
n, start = 0, time.monotonic()
while True:
    p = keys[n % len(keys)]
    item = f"i{(n * 7919) % 100000}"
    pipe = client.pipeline(transaction=False)
    pipe.incr(p["wm"]).zincrby(p["trend"], 1.0, item).hincrby(p["cnt"], item, 1)
    pipe.execute()
    n += 1
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
"""


def _refuse(folder: Path, version: str) -> Any:
    raise RuntimeError(f"{version}: no bundle in this bench")


def before_duties(live: Any, rng: random.Random) -> dict[str, Callable[[], Awaitable[None]]]:
    """The loops ``add_live_timers`` ran at ``d47379f`` (``live`` reads at every change)."""
    from inference.bundle import read_current

    async def old_bundle_check() -> None:  # the old check when nothing changed: a read
        version = read_current(live.bundle_dir)
        if version is None or version == live.model_version or version in live.refused_versions:
            return
        await live.check_bundle()

    def every(interval: float, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        async def loop() -> None:
            # A turn starts at a random point of each loop's period, as a worker that
            # has run for a while: each runs ``window / interval`` times on average.
            await asyncio.sleep(rng.uniform(0.0, interval))
            while True:
                await asyncio.sleep(interval)
                await fn()

        return loop

    return {
        "bundle": every(2.0, old_bundle_check),
        "catalog": every(0.5, live.sync_catalog),
        "trending": every(1.0, live.sync_trending),
        "popularity": every(10.0, live.sync_popularity),
    }


def _mid_period(live: Any, rng: random.Random) -> None:
    """Date the syncs' last reads back by a random share of their policy's age: a turn
    then starts at a random point of their period, as ``before_duties``' loops do (a
    shell idle since its last turn would find every read due at once)."""
    now = time.monotonic()
    for name, (token, _at) in list(live._synced.items()):
        live._synced[name] = (token, now - rng.uniform(0.0, live.policies[name].max_age_s))


async def _turn(
    duties: dict[str, Callable[[], Awaitable[None]]], seconds: float, probe: Any
) -> tuple[float, dict[str, int]]:
    """CPU seconds of this process and Redis calls by command over one turn."""
    before = await probe.info("commandstats")
    c = time.process_time()
    tasks = [asyncio.ensure_future(d()) for d in duties.values()]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    cpu = time.process_time() - c
    after = await probe.info("commandstats")
    calls = {
        k.removeprefix("cmdstat_"): v["calls"] - before.get(k, {}).get("calls", 0)
        for k, v in after.items()
        if k != "cmdstat_info"
    }
    return cpu, {k: n for k, n in calls.items() if n}


async def measure(url: str, home: Path, args: argparse.Namespace) -> dict[str, Any]:
    from redis.asyncio import Redis

    from streams.core.catalog import CatalogRecord
    from streams.core.publish import ListPublisher
    from streams.redis_io.catalog_store import RedisCatalogStore
    from streams.redis_io.keyspace import Keyspace
    from streams.redis_io.redis_client import RedisConfig, async_redis
    from streams.redis_io.redis_state_store import RedisStateStore
    from streams.runtime.live_timers import live_duties
    from streams.runtime.worker import build_live

    bundles = home / "bundles"
    bundles.mkdir(parents=True)
    (bundles / "CURRENT").write_text("v-not-here\n")
    os.utime(bundles / "CURRENT", (time.time() - 60, time.time() - 60))
    base = Settings(home=home, bundle_dir=bundles, redis_url=url, topic_partitions=PARTITIONS)
    every_change = base.with_(trending_sync_records=1, trending_sync_s=0.0, popularity_sync_s=0.0)
    keys = Keyspace(base.redis_namespace)
    client = async_redis(RedisConfig(url=url))
    probe = Redis.from_url(url)
    catalog = RedisCatalogStore(client, keys)
    for lo in range(0, ITEMS, 10_000):
        page = range(lo, lo + 10_000)
        await catalog.put(
            [CatalogRecord(f"i{i}", (f"c{i % 50}",), {}, "", 1, 1, False) for i in page]
        )
    for p in range(PARTITIONS):
        members = {f"i{(i * 7919 + p) % ITEMS}": float(i % 997) for i in range(MEMBERS)}
        await client.zadd(keys.trend(p), members)
        await client.hset(keys.counts(p), mapping={m: int(s) + 1 for m, s in members.items()})
        await client.set(keys.watermark(p), 1000)
    store = RedisStateStore(client, keys)
    lives = {}
    pop10 = base.with_(popularity_sync_s=10.0)  # the counts as often as before
    for name, settings in (("before", every_change), ("now", base), ("now-pop10", pop10)):
        live = build_live(settings, store, catalog)
        live.bundle_loader = _refuse
        if name == "before":
            live.catalog_wait = None  # the poll
        await live.check_bundle()
        await live.sync_catalog()
        await live.sync_changes()
        lives[name] = live
    publisher = ListPublisher(None, None)  # type: ignore[arg-type]  # nothing is owed
    rng = random.Random(args.seed)
    variants: dict[str, dict[str, Callable[[], Awaitable[None]]]] = {
        "before": before_duties(lives["before"], rng),
        "none": {},  # the process's own floor
    }
    for name in ("now", "now-pop10"):
        duties = live_duties(lives[name], publisher)
        variants[name] = {k: duties[k] for k in ("bundle", "catalog", "changes")}
    wm_keys = [
        {"wm": keys.watermark(p), "trend": keys.trend(p), "cnt": keys.counts(p)}
        for p in range(PARTITIONS)
    ]
    results: dict[str, Any] = {}
    for phase in ("idle", "paced"):
        writer = None
        if phase == "paced":
            writer = subprocess.Popen(
                [sys.executable, "-c", _WRITER, url, json.dumps(wm_keys), str(args.rate)]
            )
        try:
            for r in range(args.rounds):
                order = ["before", "now", "now-pop10", "none"]
                rng.shuffle(order)
                for name in order:
                    if name in lives:
                        _mid_period(lives[name], rng)
                    cpu, calls = await _turn(variants[name], args.window_s, probe)
                    results.setdefault(f"{phase}/{name}", []).append((cpu, calls))
                    print(
                        f"  {phase:<5} {name:<6} round {r}: {1e3 * cpu / args.window_s:.3f}"
                        f" ms CPU/s, {sum(calls.values()) / args.window_s:.2f} calls/s {calls}",
                        flush=True,
                    )
        finally:
            if writer is not None:
                writer.kill()
                writer.wait()
    await client.aclose()
    await probe.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-s", type=float, default=20.0, help="seconds per turn")
    parser.add_argument("--rounds", type=int, default=4, help="turns per variant and phase")
    parser.add_argument("--rate", type=float, default=10.0, help="records a second, paced")
    parser.add_argument("--seed", type=int, default=0, help="turn order and loop phases")
    args = parser.parse_args()
    from freshet.services.redis_local import LocalRedis

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalRedis(Path(tmp) / "redis", appendonly=True).start()
        try:
            results = asyncio.run(measure(server.url, Path(tmp) / "home", args))
        finally:
            server.stop()
    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}); local redis-server on the same cores")
    print(
        f"  {ITEMS:,} catalog items, {PARTITIONS} partitions x {MEMBERS:,} trend members and counts"
    )
    print(f"  turns of {args.window_s:g} s, {args.rounds} per variant and phase, shuffled")
    print(f"  paced: {args.rate:g} records/s from another process")
    after = [round(x, 2) for x in os.getloadavg()]
    print(f"  load before {[round(x, 2) for x in load_before]}, after {after}")
    print("figures (median over turns [min-max]):")
    for key, turns in results.items():
        cpu = [1e3 * c / args.window_s for c, _ in turns]
        calls = [sum(k.values()) / args.window_s for _, k in turns]
        print(
            f"  {key:<13} CPU {statistics.median(cpu):.3f} ms/s [{min(cpu):.3f}-{max(cpu):.3f}]"
            f"   Redis calls {statistics.median(calls):.2f}/s [{min(calls):.2f}-{max(calls):.2f}]"
        )


if __name__ == "__main__":
    main()
