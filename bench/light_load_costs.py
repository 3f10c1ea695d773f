"""The real-time shell's own CPU at light load, old way against new, in one process.

Three things the worker did per micro-batch or per tick whatever the load, each timed
against the way it was, alternating, on the same model-free scorer (no services):

- **scoring hop**: the hop to a worker thread and back (the pool's wake-up, the GIL
  passed twice, the loop woken through its self-pipe) that ``LiveRecommender`` skips for
  a small batch after a pause (``INLINE_IDLE_S``), against none.
- **batch metrics**: a batch's figures observed into the histograms and counters as it
  ends (``WorkerMetrics.observe_batch``, as it was) against queued for the next read
  (``observe_events``); ``--gap-ms`` sleeps between calls, as a worker at 10 ev/s idles.
- **a scrape**: the worker's CPU for one read of ``/metrics`` over HTTP (its registry
  with every stage and duty observed), read by another process, ``--scrapes`` times.
- **trailing-edge timer**: the debounce flush ticking every 50 ms with nothing owed
  (as it was) against waiting in ``LiveRecommender.owing``: CPU per second of idle.

CPU is the process's (``time.process_time``, every thread), median per call.

    .venv/bin/python -m bench.light_load_costs --rounds 400
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.host import cpu_model
from freshet.settings import Settings

ITEMS = 10_000
TIMER_S = 0.05  # the old debounce tick: max(0.05, 200 ms / 4000)


async def _empty(*_: Any) -> Any:
    return {}


async def _no_log(after: str) -> list[Any]:
    return []


def shell(home: Path) -> Any:
    """A model-free ``LiveRecommender`` over ``ITEMS`` items."""
    from freshet.wiring import live_recommender
    from streams.core.catalog import CatalogRecord

    live = live_recommender(
        Settings(bundle_dir=home / "bundles", home=home, debounce_mode="fixed"),
        trending_source=_empty,
        counts_source=_empty,
        catalog_log=_no_log,
    )
    live.scorer.apply_catalog(
        [CatalogRecord(f"i{i}", (f"c{i % 50}",), {}, "", 1, 1, False) for i in range(ITEMS)]
    )
    return live


def _noop() -> None:
    return None


async def scoring_hop(rounds: int) -> tuple[float, float]:
    """Median CPU seconds of the hop alone: (a no-op in a worker thread, on the loop).

    What scoring a small batch on the loop saves; the scoring itself costs the same
    either way (the model-free scorer's own CPU varies more per call than the hop)."""
    thread: list[float] = []
    loop: list[float] = []
    for _ in range(rounds):
        await asyncio.sleep(0.002)  # a pause between batches, as at light load
        c = time.process_time()
        await asyncio.to_thread(_noop)
        thread.append(time.process_time() - c)
        await asyncio.sleep(0.002)
        c = time.process_time()
        _noop()
        loop.append(time.process_time() - c)
    return statistics.median(thread), statistics.median(loop)


def batch_metrics(live: Any, rounds: int, gap_s: float = 0.0) -> tuple[float, float]:
    """Median CPU seconds of one batch's metrics: (observed as it ends, queued)."""
    from streams.core.ingest import STAGES, BatchStats
    from streams.runtime.metrics import WorkerMetrics

    metrics = WorkerMetrics(live=live.scorer)
    now_ms = int(time.time() * 1000)
    old: list[float] = []
    new: list[float] = []
    for i in range(rounds):
        for out, queued in ((old, False), (new, True)):
            stats = BatchStats(records=1, applied=1, published=1)
            stats.published_source_ts_ms = [now_ms - 10]
            stats.stages_s = dict.fromkeys(STAGES, 0.001)
            time.sleep(gap_s)
            c = time.process_time()
            if queued:
                metrics.observe_events(stats)
            else:
                metrics.observe_batch(stats)
            out.append(time.process_time() - c)
        if i % 50 == 49:
            metrics.collect()  # the reader: what was queued goes into the metrics
    return statistics.median(old), statistics.median(new)


def scrape_cpu(scrapes: int, gap_s: float) -> float:
    """CPU seconds of this process per read of its ``/metrics`` by another process."""
    import subprocess
    import sys

    from streams.core.ingest import STAGES, BatchStats
    from streams.runtime.metrics import WorkerMetrics

    metrics = WorkerMetrics()
    port = metrics.serve(0, "127.0.0.1")
    try:
        for duty in ("bundle", "catalog", "trending", "popularity"):
            metrics.lock_hold.labels(duty).observe(0.0001)
        for _ in range(100):
            metrics.observe_events(
                BatchStats(
                    applied=1, published_source_ts_ms=[1], stages_s=dict.fromkeys(STAGES, 1e-3)
                )
            )
        reader = (
            "import time, urllib.request\n"
            f"for _ in range({scrapes}):\n"
            f"    urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read()\n"
            f"    time.sleep({gap_s})\n"
        )
        c = time.process_time()
        subprocess.run([sys.executable, "-c", reader], check=True)
        return (time.process_time() - c) / scrapes
    finally:
        metrics.close()


async def idle_timer(live: Any, seconds: float) -> tuple[float, float]:
    """CPU seconds per second of idle: (the 50 ms tick, waiting in ``owing``)."""
    from streams.core.publish import ListPublisher

    publisher = ListPublisher(None, None)  # type: ignore[arg-type]  # nothing is owed

    async def ticking() -> None:
        while True:
            await asyncio.sleep(TIMER_S)
            await live.flush(publisher, int(time.time() * 1000))

    async def waiting() -> None:
        while True:
            await asyncio.sleep(TIMER_S)
            await live.owing()
            await live.flush(publisher, int(time.time() * 1000))

    out = []
    for loop_fn in (ticking, waiting):
        task = asyncio.ensure_future(loop_fn())
        c = time.process_time()
        await asyncio.sleep(seconds)
        out.append((time.process_time() - c) / seconds)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="calls per path")
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds per timer path")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="idle between metrics calls")
    parser.add_argument("--scrapes", type=int, default=100, help="reads of /metrics, 100 ms apart")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        live = shell(Path(tmp))
        hop = asyncio.run(scoring_hop(args.rounds))
        met = batch_metrics(live, args.rounds, args.gap_ms / 1000.0)
        scrape = scrape_cpu(args.scrapes, 0.1)
        idle = asyncio.run(idle_timer(live, args.idle_s))
    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}); load {list(os.getloadavg())}")
    print(f"  model-free scorer, {ITEMS:,} items; median of {args.rounds} calls, alternating")
    print("figures (CPU, this process, all threads):")
    print(
        f"  scoring hop: to a thread and back {hop[0] * 1e6:.0f} us,"
        f" on the loop {hop[1] * 1e6:.0f} us"
    )
    print(
        f"  batch metrics ({args.gap_ms:g} ms apart): observed as the batch ends"
        f" {met[0] * 1e6:.0f} us, queued for the reader {met[1] * 1e6:.0f} us"
    )
    print(f"  one read of /metrics: {scrape * 1e3:.2f} ms of the server's CPU")
    print(
        f"  idle trailing-edge timer: ticking {idle[0] * 1e3:.3f} ms/s,"
        f" waiting {idle[1] * 1e3:.3f} ms/s ({args.idle_s:g} s each)"
    )


if __name__ == "__main__":
    main()
