"""Scoring cost of the real-time path per user: ``LiveScorer.score`` in-process.

No Kafka, no Redis: the worker's compute step alone, on the stream bench's simulated
shop (same sizes, same seed, same cached bundle), so its figures say how many fresh
lists per second one core can make. For each onnxruntime thread setting and batch size
it times micro-batches of distinct touched users and prints the medians: wall ms per
batch, wall and CPU ms per user (process CPU, all threads), and the encoder and re-rank
parts. CPU per user is the figure to compare on a shared machine: wall time moves with
the neighbours, CPU time much less.

``--gap-ms`` sleeps between batches, as the worker waits between micro-batches at a
modest rate; the CPU figure then includes whatever the libraries' idle threads burn in
the gaps (``--blas-threads 0`` leaves numpy's and faiss's OpenBLAS pools at their
default, a spinning thread per core; the worker caps them with FRESHET_BLAS_THREADS).

    .venv/bin/python bench/compute_bench.py --items 100000 --users 50000 --onnx-threads 0,1
    .venv/bin/python bench/compute_bench.py --batches 1,4 --onnx-threads 1 --blas-threads 0,1 \
        --gap-ms 10

``--compare-to DIR`` first runs the same bench, with the same arguments, in DIR, a
checkout of another commit (``git worktree add DIR <commit>``), and then prints the two
side by side: ms per ``score`` call, wall and CPU, before and after in one run.

    git worktree add /tmp/freshet-base <start commit>
    .venv/bin/python -m bench.compute_bench --items 10000 --users 5000 --warm 5000 \
        --events 2000 --batches 1,64 --onnx-threads 1 --limit 20 --compare-to /tmp/freshet-base
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from bench.stream_bench import Shop, cached_bundle, simulate_shop
from freshet.settings import Settings
from freshet.wiring import live_config, onnx_loader, rules_of
from inference.ann_index import set_search_threads
from inference.mmr_kernel import warm_up
from inference.thread_limits import limit_blas_threads
from streams.core.catalog import CatalogRecord, apply_catalog_event
from streams.core.ingest import TouchedUser
from streams.core.live_scorer import LiveScorer
from streams.core.state_rules import UserState, apply_event


def shop_state(shop: Shop, settings: Settings) -> dict[str, Any]:
    """What the worker would hold after the shop's history: catalog log, states, counts."""
    records: dict[str, CatalogRecord] = {}
    for cev in shop.catalog:
        rec = apply_catalog_event(records.get(cev.item_id), cev)
        if rec is not None:
            records[cev.item_id] = rec
    rules = rules_of(settings)
    states: dict[str, UserState] = {}
    counts: dict[str, int] = {}
    for ev in [*shop.warm, *shop.live]:
        states[ev.user_id] = apply_event(states.get(ev.user_id, UserState()), ev, rules)
        counts[ev.item_id] = counts.get(ev.item_id, 0) + 1
    return {"records": list(records.values()), "states": states, "counts": counts}


def shop_arguments(
    parser: argparse.ArgumentParser, users: int = 20_000, events: int = 3_000
) -> None:
    """The simulated shop's size and seed, as the in-process scorer benches take them
    (``simulate_shop`` and ``cached_bundle`` read these names)."""
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=users)
    parser.add_argument("--events", type=int, default=events, help="live events (users drawn)")
    parser.add_argument("--warm", type=int, default=20_000, help="history before")
    parser.add_argument("--train-samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)


def live_scorer(
    settings: Settings, held: dict[str, Any], bundle_dir: Path, version: str
) -> LiveScorer:
    """A ``LiveScorer`` serving ``version``, with the shop's catalog and trending."""
    counts: dict[str, int] = held["counts"]
    top = sorted(counts.items(), key=lambda kv: -kv[1])
    live = LiveScorer(live_config(settings))
    live.apply_catalog(held["records"])
    live.swap_bundle(onnx_loader(settings)(bundle_dir, version))
    pool = max(live.config.recommend.trending_pool, 1)
    live.set_trending([(item, float(n)) for item, n in top[:pool]])
    live.set_popularity(counts)
    return live


def time_batches(
    live: LiveScorer,
    touched: Sequence[TouchedUser],
    batch: int,
    now_ms: int,
    limit: int,
    gap_s: float = 0.0,
) -> dict[str, float]:
    """Medians over up to ``limit`` batches of ``batch`` distinct users (one warm-up first),
    sleeping ``gap_s`` after each; CPU counts the gaps, wall does not."""
    batches = [touched[i : i + batch] for i in range(0, len(touched) - batch + 1, batch)]
    batches = batches[: limit + 1]
    if len(batches) < 2:
        raise SystemExit(f"too few users with live events for batches of {batch}")
    live.score(batches[0], now_ms)
    live.stats.take_timings()
    walls: list[float] = []
    cpu0 = time.process_time()
    for b in batches[1:]:
        t = time.perf_counter()
        live.score(b, now_ms)
        walls.append((time.perf_counter() - t) * 1000)
        if gap_s > 0:
            time.sleep(gap_s)
    cpu_ms = (time.process_time() - cpu0) * 1000
    enc, rec = live.stats.take_timings()
    n_users = batch * len(walls)
    return {
        "batch": batch,
        "batches": len(walls),
        "wall_ms_per_batch": statistics.median(walls),
        "wall_ms_per_user": statistics.median(walls) / batch,
        "cpu_ms_per_user": cpu_ms / n_users,
        "encoder_ms_per_batch": statistics.median(enc),
        "rerank_ms_per_batch": statistics.median(rec),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=10_000, help="live events (users drawn)")
    parser.add_argument("--warm", type=int, default=20_000, help="history before")
    parser.add_argument("--train-samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batches", default="10,40,128", help="batch sizes")
    parser.add_argument("--limit", type=int, default=30, help="most batches timed per size")
    parser.add_argument(
        "--onnx-threads", default="0,1", help="FRESHET_ONNX_THREADS values (0: ORT's default)"
    )
    parser.add_argument(
        "--blas-threads", default="1", help="FRESHET_BLAS_THREADS values (0: the libraries' own)"
    )
    parser.add_argument("--gap-ms", type=float, default=0.0, help="sleep between batches")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--compare-to", type=Path, help="a checkout of another commit: run there first, compare"
    )
    args = parser.parse_args()
    before = compare_run(args) if args.compare_to else None

    shop = simulate_shop(args.users, args.items, args.warm, args.events, args.seed)
    base = Settings.from_env({}, onnx_provider="cpu")
    held = shop_state(shop, base)
    last = {ev.user_id: ev for ev in shop.live}
    touched = [TouchedUser(u, 0, held["states"][u], None, ev, ev.ts) for u, ev in last.items()]
    now_ms = shop.live[-1].ts
    set_search_threads(base.ann_threads)
    warm_up()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = Path(tmp) / "bundles"
        version = cached_bundle(args, shop, bundle_dir)
        for blas in [int(t) for t in args.blas_threads.split(",")]:
            for threads in [int(t) for t in args.onnx_threads.split(",")]:
                settings = Settings.from_env({}, onnx_provider="cpu", onnx_threads=threads)
                live = live_scorer(settings, held, bundle_dir, version)
                with threadpool_limits(limits=blas or None, user_api="blas"):
                    for batch in [int(b) for b in args.batches.split(",")]:
                        timed = time_batches(
                            live, touched, batch, now_ms, args.limit, args.gap_ms / 1000.0
                        )
                        rows.append({"blas_threads": blas, "onnx_threads": threads} | timed)

    print("conditions:")
    print(f"  python {platform.python_version()}, cores {os.cpu_count()}, CPU onnxruntime")
    print(
        f"  catalog {args.items:,} items, {args.users:,} users, {len(touched):,} users with"
        f" live events, model {version}, ANN threads {base.ann_threads}"
    )
    print(
        "  in-process LiveScorer.score: no Kafka, no Redis; medians over batches;"
        f" {args.gap_ms:g} ms sleep between batches"
    )
    print("  BLAS libraries at their defaults: " + str(limit_blas_threads(0)))
    print("figures:")
    print(
        f"  {'blas':>4} {'onnx threads':>15} batch  ms/batch  wall ms/user  CPU ms/user"
        "  encoder ms  re-rank ms"
    )
    for r in rows:
        label = "0 (ORT default)" if r["onnx_threads"] == 0 else str(r["onnx_threads"])
        pool = "own" if r["blas_threads"] == 0 else str(r["blas_threads"])
        print(
            f"  {pool:>4} {label:>15} {r['batch']:5d} {r['wall_ms_per_batch']:9.1f}"
            f" {r['wall_ms_per_user']:13.3f} {r['cpu_ms_per_user']:12.3f}"
            f" {r['encoder_ms_per_batch']:11.1f} {r['rerank_ms_per_batch']:11.1f}"
        )
    if before is not None:
        print_comparison(before, rows)
    if args.out:
        report = {"conditions": vars(args) | {"model": version}, "rows": rows, "before": before}
        args.out.write_text(json.dumps(report, indent=2, default=str))
        print(f"written: {args.out}")


def compare_run(args: argparse.Namespace) -> dict[str, Any]:
    """This bench with the same arguments in ``args.compare_to`` (another commit), as JSON."""
    where: Path = args.compare_to
    commit = subprocess.run(
        ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    same = [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in [
            "items",
            "users",
            "events",
            "warm",
            "train_samples",
            "seed",
            "batches",
            "limit",
            "onnx_threads",
            "blas_threads",
            "gap_ms",
        ]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "before.json"
        print(f"before: bench.compute_bench at {commit} in {where}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "bench.compute_bench", *same, "--out", str(out)],
            cwd=where,
            check=True,
        )
        return {"commit": commit, "rows": json.loads(out.read_text())["rows"]}


def print_comparison(before: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    """ms per ``score`` call before (the other commit) and now, wall median and CPU."""
    old = {(r["blas_threads"], r["onnx_threads"], r["batch"]): r for r in before["rows"]}
    print(f"before ({before['commit']}) against now, ms per score call:")
    print(f"  {'blas':>4} {'onnx':>4} batch  wall before  wall now  ratio  CPU before  CPU now")
    for r in rows:
        b = old.get((r["blas_threads"], r["onnx_threads"], r["batch"]))
        if b is None:
            continue
        cpu_b, cpu_n = b["cpu_ms_per_user"] * b["batch"], r["cpu_ms_per_user"] * r["batch"]
        print(
            f"  {r['blas_threads']:>4} {r['onnx_threads']:>4} {r['batch']:5d}"
            f" {b['wall_ms_per_batch']:12.2f} {r['wall_ms_per_batch']:9.2f}"
            f" {b['wall_ms_per_batch'] / r['wall_ms_per_batch']:6.2f}"
            f" {cpu_b:11.2f} {cpu_n:8.2f}"
        )


if __name__ == "__main__":
    main()
