"""The collector's passes inside batches or in the gaps between them, in one process.

The ingest path of the worker (``IngestProcessor.process`` on a local Redis, the
stream bench's shop, 100k items) is fed micro-batches of ``--batch`` records one after
another, with a gap before each, as the worker's events lane has between batches while
it keeps up. Two collector settings take turns of ``--turn`` records, the order of each
pair drawn from ``--seed``:

- ``threshold``: the young pass every 10,000 net allocations (``worker.tune_collector``
  as at ``37947b6``: thresholds 10,000 / 10 / 10), wherever the allocation falls;
- ``gaps``: thresholds 10,000 / ``MIDDLE_COLLECTION_EVERY`` / 10 and ``collect_in_gap``
  in each gap (the pass that is due, once ``GAP_YOUNG_MIN`` net allocations wait): what a
  worker could do when its events lane finds its queue empty. Tried and not adopted: the
  count is net of every deallocation (old and frozen objects' too), so while batches
  replace users' states it stays low and the young generation grows past it;
  ``--young-sizes`` saw gap passes over 19-165k young objects at 59 ms-2.1 s of CPU.

Per setting: each batch's thread CPU and wall (a pass the threshold triggered inside
it included), median / p99 / max; the collections inside batches and in gaps, by
generation, per second of the turns and their thread CPU. Thread CPU is what the batch
cost this thread, so a loaded host inflates it less than the wall.

    .venv/bin/python -m bench.gc_gap_bench --batch 16 --turns 10
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.gc_pauses import spread
from bench.host import cpu_model
from bench.ingest_path_bench import records
from bench.stream_bench import simulate_shop
from freshet.services.redis_local import LocalRedis
from schemas.codec import DecodeLimits
from streams.core.ingest import IngestProcessor, SourceRecord
from streams.core.state_rules import StateRules
from streams.redis_io.keyspace import Keyspace
from streams.redis_io.redis_client import RedisConfig, async_redis
from streams.redis_io.redis_state_store import RedisStateStore
from streams.runtime.worker import YOUNG_COLLECTION_EVERY

GAP_YOUNG_MIN = 2_000
"""Net allocations past which a gap runs the pass that is due."""
MIDDLE_COLLECTION_EVERY = 50
"""The gap setting's middle threshold: middle and full passes every 100k / 1M net
allocations, as at CPython's 10 with young passes every 10,000."""
SETTINGS = {"threshold": 10, "gaps": MIDDLE_COLLECTION_EVERY}
"""Each setting's middle-generation threshold (young: ``YOUNG_COLLECTION_EVERY``, old: 10)."""


def collect_in_gap(least: int = GAP_YOUNG_MIN) -> int:
    """The pass that is due, once ``least`` net allocations wait: the generation chosen
    as CPython's threshold chooses it (the oldest whose count passed its threshold, less
    its guard on full passes); its generation, -1 if none ran."""
    counts = gc.get_count()
    if counts[0] < least or not gc.isenabled():
        return -1
    thresholds = gc.get_threshold()
    generation = 2 if counts[2] > thresholds[2] else 1 if counts[1] > thresholds[1] else 0
    gc.collect(generation)
    return generation


class Passes:
    """Every collection's generation and thread CPU (ms), and whether a gap ran it."""

    def __init__(self, sizes: bool = False) -> None:
        self.rows: list[tuple[int, float, bool]] = []
        self.in_gap = False
        self.sizes = sizes
        self.slow: list[tuple[int, float, int, int]] = []  # passes of 20 ms or more
        self._began, self._size = 0.0, 0
        gc.callbacks.append(self._seen)

    def _seen(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":  # the young generation's size: a walk, before the clock
            self._size = len(gc.get_objects(0)) if self.sizes else -1
            self._began = time.thread_time()
        else:
            cpu = 1e3 * (time.thread_time() - self._began)
            self.rows.append((info["generation"], cpu, self.in_gap))
            if cpu >= 20:
                self.slow.append((info["generation"], cpu, self._size, info["collected"]))


async def _nothing(_: Any) -> None:
    return None


async def turn(
    proc: IngestProcessor,
    batches: list[list[SourceRecord]],
    gaps: bool,
    passes: Passes,
    least: int = GAP_YOUNG_MIN,
) -> tuple[list[float], list[float]]:
    """Run ``batches`` one after another, a gap before each (``collect_in_gap`` there when
    ``gaps``); each batch's thread CPU and wall (ms), a pass inside it included."""
    cpu, wall = [], []
    for batch in batches:
        if gaps:
            passes.in_gap = True
            collect_in_gap(least)
            passes.in_gap = False
        c0, w0 = time.thread_time(), time.perf_counter()
        await proc.process(batch)
        cpu.append(1e3 * (time.thread_time() - c0))
        wall.append(1e3 * (time.perf_counter() - w0))
    return cpu, wall


async def run(args: argparse.Namespace, url: str) -> None:
    per_phase = args.turns * args.turn  # the shop's live and saturated phases: each this
    shop = simulate_shop(args.users, args.items, args.warm, per_phase, args.seed)
    offsets = [0] * args.partitions
    warm = records(shop.warm, args.partitions, offsets)
    timed = records([*shop.live, *shop.saturate], args.partitions, offsets)
    client = async_redis(RedisConfig(url=url))  # the worker's client
    store = RedisStateStore(client, Keyspace("bench"))
    proc = IngestProcessor(
        store, StateRules(), DecodeLimits(), dead_letter_sink=_nothing, check_future=False
    )
    for i in range(0, len(warm), 500):
        await proc.process(warm[i : i + 500])
    gc.collect()
    gc.freeze()  # as tune_collector: start-up out of every pass
    passes = Passes(args.young_sizes)
    rng = random.Random(args.seed)
    cpu: dict[str, list[float]] = {name: [] for name in SETTINGS}
    wall: dict[str, list[float]] = {name: [] for name in SETTINGS}
    mine: dict[str, list[tuple[int, float, bool]]] = {name: [] for name in SETTINGS}
    spent: dict[str, float] = dict.fromkeys(SETTINGS, 0.0)
    at = 0
    for _ in range(args.turns):
        order = list(SETTINGS)
        rng.shuffle(order)
        for name in order:
            chunk = timed[at : at + args.turn]
            at += args.turn
            # Counts carry over from the turn before (either setting, in drawn order), so
            # a long turn's middle passes come as often as in a worker that stays in it.
            gc.set_threshold(YOUNG_COLLECTION_EVERY, SETTINGS[name], 10)
            batches = [chunk[i : i + args.batch] for i in range(0, len(chunk), args.batch)]
            first = len(passes.rows)
            t0 = time.perf_counter()
            c, w = await turn(proc, batches, name == "gaps", passes, args.least)
            cpu[name] += c
            wall[name] += w
            spent[name] += time.perf_counter() - t0
            mine[name] += passes.rows[first:]
    await client.aclose()
    slow = ", ".join(
        f"gen {g} {c:.0f} ms ({n:,} young, {k:,} collected)" for g, c, n, k in passes.slow
    )
    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}), local Redis on the same cores")
    print(f"  load average {[round(x, 2) for x in os.getloadavg()]}")
    print(
        f"  {args.users:,} users, {args.items:,} items; {len(warm):,} warm-up records; "
        f"{args.turns} turns of {args.turn:,} records per setting in batches of {args.batch};"
        f" a gap pass past {args.least:,} net allocations"
    )
    print("figures (ms; passes: thread CPU, median / p99 / max):")
    for name in SETTINGS:
        rows = mine[name]
        inside = [cpu for gen, cpu, gap in rows if not gap]
        gapped = [cpu for gen, cpu, gap in rows if gap]
        print(f"  {name}: {len(cpu[name]):,} batches in {spent[name]:.1f} s")
        print(f"    a batch's thread CPU {spread(cpu[name])}; wall {spread(wall[name])}")
        for gen in range(3):
            g_in = [cpu for g, cpu, gap in rows if g == gen and not gap]
            g_gap = [cpu for g, cpu, gap in rows if g == gen and gap]
            print(
                f"    gen {gen}: inside batches {len(g_in) / spent[name]:.2f}/s "
                f"({spread(g_in)}); in gaps {len(g_gap) / spent[name]:.2f}/s ({spread(g_gap)})"
            )
        print(
            f"    collector CPU {sum(inside) / spent[name]:.2f} ms/s inside batches, "
            f"{sum(gapped) / spent[name]:.2f} ms/s in gaps"
        )
    print(f"  passes of 20 ms or more (either setting): {slow or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--warm", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=16, help="records per micro-batch")
    parser.add_argument("--turn", type=int, default=3_000, help="records per turn")
    parser.add_argument("--turns", type=int, default=10, help="turns of each setting")
    parser.add_argument(
        "--least", type=int, default=GAP_YOUNG_MIN, help="net allocations before a gap pass"
    )
    parser.add_argument(
        "--young-sizes", action="store_true",
        help="count the young generation at each pass's start (a walk, off the pass's clock)",
    )  # fmt: skip
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        redis = LocalRedis(Path(d)).start()
        try:
            asyncio.run(run(args, redis.url))
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
