"""How long housekeeping holds the scoring lock: in place (before) against copy-on-write.

The live recommender's duties (a bundle swap, catalog pages, the trending and
popularity syncs) change what the scorer holds; while one holds the scoring lock no
batch is scored. The issue's target is at most 1 ms per hold. This bench runs, in one
process on the simulator's shop and its trained bundle (the stream bench's cached one):

1. **In place, as before.** Each duty's whole work timed on a ``LiveScorer`` directly,
   the way the old shell ran it under the lock: ``apply_catalog`` of each page,
   ``set_trending``, ``set_popularity`` and ``install`` (the co-visitation table
   re-numbered and the late records applied inside it).
2. **Copy-on-write.** The same duties through ``LiveRecommender`` (the worker's shell),
   while two tasks score batches of warm users without pause; the holds are the
   shell's own record (``LiveStats.lock_hold_ms``, exported as
   ``freshet_lock_hold_seconds{duty}``), and each batch's time waiting on the lock.

The duties: the catalog (the shop's records, then ``--pages`` pages of ``--new-items``
new items and removals each), ``--syncs`` trending and popularity syncs (every item's
count), and one bundle swap with a learnt co-visitation table and catalog pages landing
during its load. In-process sources stand in for Redis: the reads are not what is timed.

    FRESHET_HOME=/tmp/fr/home .venv/bin/python -m bench.housekeeping_bench --items 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import platform
import random
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.host import cpu_model
from bench.stream_bench import cached_bundle, simulate_shop
from freshet.settings import Settings
from freshet.wiring import live_recommender, onnx_loader
from streams.core.catalog import CATALOG_LOG_PAGE, CatalogRecord, apply_catalog_event
from streams.core.ingest import TouchedUser
from streams.core.live_scorer import LiveScorer
from streams.core.state_rules import HistoryEntry, UserState
from streams.runtime.live_recommender import LiveRecommender

DUTIES = ("bundle", "catalog", "trending", "popularity")


class Renamed:
    """A loaded bundle under another version name (a second bundle to swap to)."""

    def __init__(self, bundle: Any, version: str) -> None:
        self._bundle, self.version = bundle, version

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bundle, name)


def users_of(events: list[Any], n: int, history: int = 20) -> list[TouchedUser]:
    """``n`` warm users with their last ``history`` interactions."""
    by_user: dict[str, list[Any]] = defaultdict(list)
    for ev in events:
        by_user[ev.user_id].append(ev)
    out = []
    for user, evs in list(by_user.items())[:n]:
        hist = tuple(HistoryEntry(e.item_id, e.type, e.ts) for e in evs[-history:])
        state = UserState(
            history=hist, seen=tuple(h.item_id for h in hist), n_events=len(evs), last_ts=evs[-1].ts
        )
        out.append(TouchedUser(user, 0, state, None, None, evs[-1].ts))
    return out


def new_pages(records: list[CatalogRecord], pages: int, size: int, seed: int) -> list[list[Any]]:
    """Pages of ``size`` records: new items (copies of shop items' content) and removals."""
    rng = random.Random(seed)
    out = []
    for p in range(pages):
        page = []
        for i in range(size):
            src = rng.choice(records)
            if i % 5 == 4:  # one in five removes an item of the shop
                page.append(dataclasses.replace(src, removed=True, updated_ts=src.updated_ts + 1))
            else:
                page.append(dataclasses.replace(src, item_id=f"new-{p}-{i}"))
        out.append(page)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    if not a.size:
        return {"holds": 0}
    return {
        "holds": int(a.size),
        "mean_ms": round(float(a.mean()), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
        "over_1ms": int((a > 1.0).sum()),
    }


def in_place(
    bundle: Any,
    records: list[CatalogRecord],
    pages: list[list[Any]],
    users: list[TouchedUser],
    counts: dict[str, int],
    top: list[tuple[str, float]],
    syncs: int,
) -> dict[str, list[float]]:
    """Each duty's whole work, timed as the old shell held the lock for it."""
    scorer = LiveScorer(seed=0)
    timed: dict[str, list[float]] = defaultdict(list)

    def hold(duty: str, fn: Any, *args: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args)
        timed[duty].append((time.perf_counter() - t) * 1e3)
        return out

    catalog, index = scorer.prepare(bundle, [])
    hold("bundle", scorer.install, bundle, catalog, index)
    for lo in range(0, len(records), CATALOG_LOG_PAGE):
        hold("catalog", scorer.apply_catalog, records[lo : lo + CATALOG_LOG_PAGE])
    for lo in range(0, len(users), 64):
        scorer.score(users[lo : lo + 64], users[0].source_timestamp_ms)  # learn co-visits
    for _ in range(syncs):
        hold("trending", scorer.set_trending, top)
        hold("popularity", scorer.set_popularity, counts)
    for page in pages[: len(pages) // 2]:
        hold("catalog", scorer.apply_catalog, page)
    second = Renamed(bundle, "v2")
    catalog, index = scorer.prepare(second, list(scorer.records.values()))
    late = [r for page in pages[len(pages) // 2 :] for r in page]  # came during the load
    for page in pages[len(pages) // 2 :]:
        hold("catalog", scorer.apply_catalog, page)
    hold("bundle", scorer.install, second, catalog, index, late)
    return timed


def hold_cpu(live: LiveRecommender, cpu: dict[str, list[float]]) -> None:
    """Also record each hold's CPU time on the holding thread (``time.thread_time``).

    The shell's record is wall time, which is what scoring waits for; on a loaded host
    a short hold can be pre-empted. CPU time says how much work the hold itself is.
    """
    own = type(live)._housekeeping.__wrapped__  # type: ignore[attr-defined]

    @contextlib.asynccontextmanager
    async def timed(duty: str) -> Any:
        async with contextlib.asynccontextmanager(own)(live, duty):
            start = time.thread_time()
            try:
                yield
            finally:
                cpu[duty].append((time.thread_time() - start) * 1e3)

    live._housekeeping = timed  # type: ignore[method-assign]


async def copy_on_write(
    settings: Settings,
    bundle: Any,
    records: list[CatalogRecord],
    pages: list[list[Any]],
    users: list[TouchedUser],
    counts: dict[str, int],
    top: list[tuple[str, float]],
    syncs: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], list[float]]:
    """The same duties through the worker's shell while batches are scored."""
    log: list[CatalogRecord] = list(records)

    async def catalog_log(after: str) -> list[tuple[str, CatalogRecord]]:
        start = int(after)
        page = log[start : start + CATALOG_LOG_PAGE]
        return [(str(start + i + 1), r) for i, r in enumerate(page)]

    async def counts_source() -> dict[str, int]:
        return counts

    async def trending_source(k: int) -> list[tuple[str, float]]:
        return top

    versions = {"v1": bundle, "v2": Renamed(bundle, "v2")}
    live = live_recommender(
        settings,
        trending_source=trending_source,
        counts_source=counts_source,
        catalog_log=catalog_log,
        bundle_loader=lambda _dir, version: versions[version],
    )
    cpu: dict[str, list[float]] = defaultdict(list)
    hold_cpu(live, cpu)
    (settings.bundle_dir / "CURRENT").write_text("v1\n")
    await live.check_bundle()
    await live.sync_catalog()
    now = users[0].source_timestamp_ms
    for lo in range(0, len(users), 64):
        await live.compute_async(users[lo : lo + 64], now)  # learn co-visits
    waits: list[float] = []
    stop = asyncio.Event()
    rng = random.Random(1)

    async def score() -> None:
        while not stop.is_set():
            batch = rng.sample(users, 32)
            t = time.perf_counter()
            async with live._lock:  # the wait a batch has before it can score
                waits.append((time.perf_counter() - t) * 1e3)
            await live.compute_async(batch, now)
            await asyncio.sleep(0)

    async def duties() -> None:
        for _ in range(syncs):
            await live.sync_trending()
            await live.sync_popularity()
        for page in pages[: len(pages) // 2]:
            log.extend(page)
            await live.sync_catalog()
        (settings.bundle_dir / "CURRENT").write_text("v2\n")
        swap = asyncio.create_task(live.check_bundle())
        for page in pages[len(pages) // 2 :]:
            log.extend(page)
            await live.sync_catalog()
        assert await swap
        await live.sync_catalog()
        stop.set()

    await asyncio.gather(score(), duties())  # one scoring task: its waits are the holds
    holds: dict[str, list[float]] = defaultdict(list)
    for duty, ms in live.stats.lock_hold_ms:
        holds[duty].append(ms)
    return holds, cpu, waits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--warm", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=3_000, help="the stream bench's key")
    parser.add_argument("--train-samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--new-items", type=int, default=50, help="records per page")
    parser.add_argument("--syncs", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    shop = simulate_shop(args.users, args.items, args.warm, args.events, args.seed)
    records = [r for r in (apply_catalog_event(None, e) for e in shop.catalog) if r]
    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = Path(tmp) / "bundles"
        version = cached_bundle(args, shop, bundle_dir)
        settings = Settings(bundle_dir=bundle_dir)
        bundle = onnx_loader(settings)(bundle_dir, version)
        users = users_of(shop.warm, 2_000)
        counts = dict(Counter(e.item_id for e in shop.warm))
        counts.update({r.item_id: counts.get(r.item_id, 0) for r in records})  # every item
        top = [(item, float(n)) for item, n in Counter(counts).most_common(200)]
        pages = new_pages(records, args.pages, args.new_items, args.seed)
        before = in_place(bundle, records, pages, users, counts, top, args.syncs)
        holds, cpu, waits = asyncio.run(
            copy_on_write(settings, bundle, records, pages, users, counts, top, args.syncs)
        )
    report = {
        "conditions": {
            "items": args.items,
            "users_scored": len(users),
            "pages": args.pages,
            "records_per_page": args.new_items,
            "syncs": args.syncs,
            "counts": len(counts),
            "host": cpu_model(),
            "python": platform.python_version(),
        },
        "in_place": {d: summary(before[d]) for d in DUTIES},
        "copy_on_write": {d: summary(holds[d]) for d in DUTIES},
        "copy_on_write_cpu": {d: summary(cpu[d]) for d in DUTIES},
        "batch_lock_wait_ms": summary(waits),
    }
    c = report["conditions"]
    print(
        f"{c['items']:,} items, bundle {version}, {c['pages']} pages of {c['records_per_page']}"
        f" records, {c['syncs']} syncs of {c['counts']:,} counts; host {c['host']}"
    )
    print(
        f"{'duty':<11} {'in place: holds / mean / max ms':>34}"
        f" {'copy-on-write: holds / mean / p99 / max ms (>1 ms)':>52}"
    )
    for d in DUTIES:
        b, a = report["in_place"][d], report["copy_on_write"][d]
        print(
            f"{d:<11} {b['holds']:>8} / {b.get('mean_ms', 0):>9.3f} / {b.get('max_ms', 0):>9.3f}"
            f"   {a['holds']:>8} / {a.get('mean_ms', 0):>7.3f} / {a.get('p99_ms', 0):>7.3f}"
            f" / {a.get('max_ms', 0):>7.3f} ({a.get('over_1ms', 0)})"
        )
    print("copy-on-write holds, CPU time of the holding thread (wall above includes pre-emption):")
    for d in DUTIES:
        a = report["copy_on_write_cpu"][d]
        print(
            f"{d:<11} {a['holds']:>8} / {a.get('mean_ms', 0):>7.3f} / {a.get('p99_ms', 0):>7.3f}"
            f" / {a.get('max_ms', 0):>7.3f} ({a.get('over_1ms', 0)} over 1 ms)"
        )
    w = report["batch_lock_wait_ms"]
    print(
        f"batches' wait for the lock meanwhile: {w['holds']} batches, p99 {w.get('p99_ms')} ms,"
        f" max {w.get('max_ms')} ms (from housekeeping alone: one scoring task)"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
