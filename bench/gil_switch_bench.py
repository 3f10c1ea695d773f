"""How late the event loop wakes while the scorer runs in a thread, by GIL switch interval.

The worker scores a micro-batch in a thread (``LiveRecommender.compute_async``) while its
event loop goes on fetching the next records, reading Redis replies and sending lists.
Each of those wake-ups needs the GIL; while the scorer's thread runs Python code, a
waiting thread gets it only when the holder drops it, which CPython forces once per
switch interval (``sys.setswitchinterval``, 5 ms by default). This bench scores the
stream bench's shop in-process (``bench.score_breakdown``'s scorer, no Kafka, no Redis)
in a thread, batch after batch, while the loop sleeps ``--tick-ms`` again and again and
records how late each wake-up came. The intervals alternate in one process, round after
round (the order rotated), so the host's load falls on each alike; each figure is the
median over the rounds, with the rounds' spread.

    FRESHET_HOME=<own home> .venv/bin/python -m bench.gil_switch_bench --intervals 5,1,0.5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from bench.compute_bench import live_scorer, shop_arguments
from bench.host import cpu_model
from bench.score_breakdown import touched_users
from bench.stream_bench import cached_bundle, simulate_shop
from freshet.settings import Settings
from inference.ann_index import set_search_threads
from inference.mmr_kernel import warm_up


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank below).

    >>> quantile([1.0, 2.0, 3.0, 4.0], 0.5), quantile([1.0, 2.0, 3.0, 4.0], 0.99)
    (3.0, 4.0)
    """
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_round(live: Any, batches: list[Any], now_ms: int, tick_s: float) -> dict[str, Any]:
    """Score ``batches`` in a thread, one after another, while the loop ticks; the
    ticks' lateness (ms), each batch's wall (ms) and the process CPU per batch (ms)."""
    late: list[float] = []
    walls: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        perf = time.perf_counter
        while not done.is_set():
            t = perf()
            await asyncio.sleep(tick_s)
            late.append(1000.0 * (perf() - t - tick_s))

    tick = asyncio.ensure_future(ticker())
    cpu0 = time.process_time()
    try:
        for batch in batches:
            t = time.perf_counter()
            await asyncio.to_thread(live.score, batch, now_ms)
            walls.append(1000.0 * (time.perf_counter() - t))
    finally:
        done.set()
        await tick
    cpu_ms = 1000.0 * (time.process_time() - cpu0) / len(batches)
    return {"late": late, "walls": walls, "cpu_ms": cpu_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shop_arguments(parser)
    parser.add_argument("--batch", type=int, default=30, help="users per batch (1,600 ev/s: 20-60)")
    parser.add_argument("--per-round", type=int, default=10, help="batches per interval a round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--intervals", default="5,1,0.5", help="switch intervals, ms")
    parser.add_argument("--tick-ms", type=float, default=2.0)
    args = parser.parse_args()
    intervals = [float(x) for x in args.intervals.split(",")]

    shop = simulate_shop(args.users, args.items, args.warm, args.events, args.seed)
    base = Settings.from_env({}, onnx_provider="cpu")
    held, touched, now_ms = touched_users(shop, base)
    set_search_threads(base.ann_threads)
    warm_up()
    b = args.batch
    batches = [touched[i : i + b] for i in range(0, len(touched) - b + 1, b)]
    default = sys.getswitchinterval()
    rows: dict[float, list[dict[str, Any]]] = {iv: [] for iv in intervals}
    load = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1, user_api="blas"):
        bundle_dir = Path(tmp) / "bundles"
        version = cached_bundle(args, shop, bundle_dir)
        live = live_scorer(base, held, bundle_dir, version)
        live.score(batches[0], now_ms)  # warm-up, untimed
        gc.collect()
        gc.freeze()
        k = 0
        try:
            for r in range(args.rounds):
                order = intervals[r % len(intervals) :] + intervals[: r % len(intervals)]
                for iv in order:
                    chunk = [batches[(k + j) % len(batches)] for j in range(args.per_round)]
                    k += args.per_round
                    sys.setswitchinterval(iv / 1000.0)
                    rows[iv].append(asyncio.run(one_round(live, chunk, now_ms, args.tick_ms / 1e3)))
        finally:
            sys.setswitchinterval(default)
    load.append(os.getloadavg())

    print("conditions:")
    print(f"  python {platform.python_version()}, {os.cpu_count()} cores ({cpu_model()})")
    print(
        f"  {args.items:,} items, {args.users:,} users, model {version}; batches of {b} users,"
        f" {args.per_round} a round per interval, {args.rounds} rounds, order rotated;"
        f" loop tick {args.tick_ms:g} ms; load average before {load[0]}, after {load[1]}"
    )
    print("figures (median over rounds [min-max]):")
    print("  interval ms  tick late p50 ms  tick late p99 ms  score wall ms/batch  CPU ms/batch")
    for iv in intervals:
        rs = rows[iv]

        def med(fn: Any, rs: list[dict[str, Any]] = rs) -> str:
            vals = [fn(x) for x in rs]
            return f"{statistics.median(vals):6.2f} [{min(vals):.2f}-{max(vals):.2f}]"

        print(
            f"  {iv:11g}  {med(lambda x: quantile(x['late'], 0.5))}"
            f"  {med(lambda x: quantile(x['late'], 0.99))}"
            f"  {med(lambda x: statistics.median(x['walls']))}  {med(lambda x: x['cpu_ms'])}"
        )


if __name__ == "__main__":
    main()
