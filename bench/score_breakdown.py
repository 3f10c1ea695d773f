"""Where ``LiveScorer.score``'s time goes at a saturated drain's batch size, by stage.

The stream bench's saturated drains score micro-batches of ~340 lists at 100k items;
its JSON splits a batch only into the encoder and "recommend". This bench scores the
same simulated shop in-process (no Kafka, no Redis; ``bench.compute_bench``'s shop,
scorer and bundle) and times each stage the scorer calls, by wrapping those functions
with timers for the run. Times are exclusive: a stage's own time, less the stages it
calls (the ANN search inside the candidates, the co-visitation scoring inside the
chooser's look). What no wrapper holds is "score, the rest". A wrapper costs about a
microsecond per call; the per-user ones (exclusions, list records) are called once per
user, the rest a few times per batch. The collector is frozen after set-up, as in the
worker. ``--beside`` runs a thread of pure-Python work next to the scorer, as the
worker's event loop decodes and applies the next batches while one is scored: what
sharing the GIL does to the scorer's wall time. ``--batch 1 --gap-ms 100`` is the worker
at 10 events/s, where each event is its own micro-batch and the scorer's code and data
have gone cold in the caches by the next one (the stream bench's light-load figures);
``--gap-ms 0`` the same calls back to back, hot. The last column is each stage's median
over the batches, what a batch of one usually costs.

    FRESHET_HOME=<own home> .venv/bin/python -m bench.score_breakdown --items 100000 \
        --users 20000 --warm 20000 --events 3000 --batch 340 --limit 8 [--beside]
    FRESHET_HOME=<own home> .venv/bin/python -m bench.score_breakdown --batch 1 --limit 400 \
        --gap-ms 100
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import platform
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import inference.damping_choice as chooser_module
import inference.recommend as recommend_module
import streams.core.live_scorer as scorer_module
from bench.compute_bench import live_scorer, shop_arguments, shop_state
from bench.host import cpu_model
from bench.stream_bench import cached_bundle, simulate_shop
from freshet.settings import Settings
from inference.ann_index import AnnIndex, RepeatedSearch, set_search_threads
from inference.covisit import CovisitTable
from inference.damping_choice import DampingChooser
from inference.item_catalog import ItemCatalog
from inference.mmr_kernel import warm_up
from inference.onnx_session import BoundRun, LoadedBundle
from streams.core.ingest import TouchedUser
from streams.core.live_scorer import LiveScorer

Timed = defaultdict[str, float]

# (stage name, owner of the function, attribute): wrapped where the scorer looks it up
STAGES: list[tuple[str, Any, str]] = [
    ("score (whole call)", LiveScorer, "score"),
    ("history rows (catalog lookups)", LiveScorer, "history_rows"),
    ("encoder: ONNX encode_users", LoadedBundle, "encode_users"),
    ("encoder: ONNX bound run (a batch of one)", BoundRun, "run"),
    ("encoder: inputs, fold-in, the rest", LiveScorer, "embed"),
    ("catalog table snapshot", ItemCatalog, "table"),
    ("co-visitation learning (pairs)", LiveScorer, "_learn_covisit"),
    ("co-visitation table add", CovisitTable, "add"),
    ("new items' vectors (placement)", LiveScorer, "_place_new_items"),
    ("chooser credit", DampingChooser, "credit"),
    ("recent rows (co-visitation query)", scorer_module, "recent_rows"),
    ("co-visitation score_each (all dampings)", CovisitTable, "score_each"),
    ("co-visitation score (served damping)", CovisitTable, "score"),
    ("seen/purchased rows per user", LiveScorer, "_seen_purchased"),
    ("ANN search (faiss IVF)", AnnIndex, "search_matrix"),
    ("ANN repeated-search bookkeeping", RepeatedSearch, "search"),
    ("candidates: merge, exclusions, draws", recommend_module, "candidate_batch"),
    ("re-rank: relevance, quotas, MMR, records", scorer_module, "recommend"),
    ("chooser look (remember_candidates)", scorer_module, "remember_candidates"),
    ("chooser unseen tops", chooser_module, "_unseen_top"),
    ("list messages per user", LiveScorer, "_message"),
]


def touched_users(shop: Any, base: Settings) -> tuple[dict[str, Any], list[TouchedUser], int]:
    """The shop's state as the worker holds it, every user with an event (the warm
    history's too: the live events alone touch too few for big batches) as touched by
    their last one, and the clock at the shop's last event."""
    held = shop_state(shop, base)
    last = {ev.user_id: ev for ev in [*shop.warm, *shop.live]}
    touched = [TouchedUser(u, 0, held["states"][u], None, ev, ev.ts) for u, ev in last.items()]
    return held, touched, shop.live[-1].ts


def wrap_stages(timed: Timed, calls: Timed) -> Callable[[], None]:
    """Time every ``STAGES`` function (exclusive seconds into ``timed``); returns undo."""
    stack: list[float] = []  # per open stage: seconds its callees took
    undo: list[tuple[Any, str, Any]] = []

    def timer(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            stack.append(0.0)
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                took = time.perf_counter() - t
                inner = stack.pop()
                timed[name] += took - inner
                calls[name] += 1
                if stack:
                    stack[-1] += took

        return timed_call

    for name, owner, attr in STAGES:
        fn = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        undo.append((owner, attr, fn))
        setattr(owner, attr, timer(name, fn))

    def restore() -> None:
        for owner, attr, fn in reversed(undo):
            setattr(owner, attr, fn)

    return restore


def busy_python(stop: threading.Event) -> None:
    """Pure-Python work until ``stop``: a stand-in for the worker's event loop, which
    decodes and applies the next batches while one is scored, sharing the GIL."""
    event = {"user_id": "u1", "item_id": "i1", "type": "view", "ts": 1, "v": 1}
    while not stop.is_set():
        for _ in range(1000):
            json.loads(json.dumps(event))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shop_arguments(parser)
    parser.add_argument("--batch", type=int, default=340, help="distinct users per batch")
    parser.add_argument("--limit", type=int, default=8, help="batches timed (after one warm-up)")
    parser.add_argument("--onnx-threads", type=int, default=1)
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=0.0,
        help="sleep between batches, as a worker at light load idles between events",
    )
    parser.add_argument(
        "--thrash-mib",
        type=int,
        default=0,
        help="read and write a buffer this large between batches (untimed), as the rest of"
        " the worker, Kafka and Redis evict the scorer's data from the caches between events",
    )
    parser.add_argument(
        "--beside",
        action="store_true",
        help="a thread doing pure-Python work beside the scorer (the worker's loop shares"
        " the GIL so)",
    )
    args = parser.parse_args()

    shop = simulate_shop(args.users, args.items, args.warm, args.events, args.seed)
    base = Settings.from_env({}, onnx_provider="cpu", onnx_threads=args.onnx_threads)
    held, touched, now_ms = touched_users(shop, base)
    set_search_threads(base.ann_threads)
    warm_up()
    b = args.batch
    batches = [touched[i : i + b] for i in range(0, len(touched) - b + 1, b)][: args.limit + 1]
    if len(batches) < 2:
        raise SystemExit(f"too few users with live events for batches of {b}")
    timed: Timed = defaultdict(float)
    calls: Timed = defaultdict(float)
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1, user_api="blas"):
        bundle_dir = Path(tmp) / "bundles"
        version = cached_bundle(args, shop, bundle_dir)
        live = live_scorer(base, held, bundle_dir, version)
        live.score(batches[0], now_ms)  # warm-up, untimed
        # as the worker does after its set-up (streams/runtime/worker.py): the held
        # objects leave the collector's view, so no full collection lands in a batch
        gc.collect()
        gc.freeze()
        stop = threading.Event()
        if args.beside:
            threading.Thread(target=busy_python, args=(stop,), daemon=True).start()
        restore = wrap_stages(timed, calls)
        walls: list[float] = []
        each: list[dict[str, float]] = []  # per batch, each stage's seconds
        thrash = np.ones(args.thrash_mib << 18, np.float32)  # 4-byte floats
        cpu_s = 0.0
        try:
            for batch in batches[1:]:
                if args.gap_ms:
                    time.sleep(args.gap_ms / 1000)
                if thrash.size:
                    thrash += 1.0
                before = dict(timed)
                cpu0 = time.process_time()
                t = time.perf_counter()
                live.score(batch, now_ms)
                walls.append((time.perf_counter() - t) * 1000)
                cpu_s += time.process_time() - cpu0
                each.append({k: v - before.get(k, 0.0) for k, v in timed.items()})
        finally:
            stop.set()
            restore()
        cpu_ms = cpu_s * 1000

    n = len(walls)
    users = n * b
    total = sum(timed.values()) * 1000
    print("conditions:")
    print(f"  python {platform.python_version()}, {cpu_model()}, CPU onnxruntime")
    print(
        f"  catalog {args.items:,} items, {args.users:,} users, warm {args.warm:,}, live"
        f" {args.events:,} events ({len(touched):,} users with events), model {version}"
    )
    print(
        f"  in-process LiveScorer.score, {n} batches of {b} distinct users after one warm-up;"
        f" ONNX threads {args.onnx_threads}, BLAS 1, ANN threads {base.ann_threads};"
        f" gc frozen after set-up; {'a busy Python thread beside' if args.beside else 'alone'};"
        f" between batches: sleep {args.gap_ms:g} ms, {args.thrash_mib} MiB touched"
    )
    print("figures:")
    print(
        f"  score wall ms per batch: median {statistics.median(walls):.1f}"
        f" (min {min(walls):.1f}, max {max(walls):.1f}); process CPU ms per batch"
        f" {cpu_ms / n:.1f}, per list {cpu_ms / users:.3f}"
    )
    print("  score wall ms per batch, in order: " + " ".join(f"{w:.0f}" for w in walls))
    slow = each[walls.index(max(walls))]
    top = sorted(slow.items(), key=lambda kv: -kv[1])[:3]
    print(
        "  the slowest batch's largest stages, ms: "
        + ", ".join(f"{k} {v * 1000:.1f}" for k, v in top)
    )
    head = f"{'ms/batch':>9} {'ms/list':>8} {'share':>6} {'calls/batch':>11} {'median ms':>9}"
    print(f"  {'stage (exclusive time)':44} {head}")
    medians = 0.0
    for name, _, _ in STAGES:
        label = "score, the rest (not in a stage)" if name.startswith("score") else name
        ms = timed[name] * 1000
        med = 1000 * statistics.median(e.get(name, 0.0) for e in each)
        medians += med
        print(
            f"  {label:44} {ms / n:9.2f} {ms / users:8.4f} {100 * ms / max(total, 1e-9):5.1f}%"
            f" {calls[name] / n:11.1f} {med:9.3f}"
        )
    print(
        f"  {'sum (= score wall, with the wrappers)':44} {total / n:9.2f} {total / users:8.4f}"
        f" {'':6} {'':11} {medians:9.3f}"
    )


if __name__ == "__main__":
    main()
