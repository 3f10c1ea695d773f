"""The scorer's post-retrieval kernels per call, two source trees alternated in one run.

What ``LiveScorer.score`` does once the user vectors and the ANN hits are known: the
candidates, relevance, quotas, MMR, reasons and list records (``inference.recommend``),
and the co-visitation scores (``CovisitTable.score_each``). Each tree's worker process
builds ``bench.score_breakdown``'s 100k shop and scorer, scores ``--calls`` batches of
``--batch`` users while recording those two calls' inputs (the ANN hits precomputed, so
the search, which is not these kernels', is left out), then replays them on demand.
The driver asks the trees in turn (A B, then B A), sleeping ``--gap-ms`` before each
call: with 100 ms a batch of one runs cold, as at 10 events/s; with 0, hot, as at
thousands a second. Figures: thread CPU per call, medians and quartiles, the median of
the per-round ratio (B over A), and whether every call's lists and scores were the same
in both trees (a digest of item ids, score bits, reasons and strategies).

    FRESHET_HOME=<own home> .venv/bin/python -m bench.kernel_costs --tree <base tree> \\
        --tree . --batch 1 --gap-ms 100 --rounds 300
    FRESHET_HOME=<own home> .venv/bin/python -m bench.kernel_costs --tree <base tree> \\
        --tree . --batch 50 --gap-ms 0 --rounds 60

A tree needs ``bench.score_breakdown`` and ``bench.stream_bench`` (any since 2026-12-06).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("recommend", "covisit")


class Hits:
    """The ANN hits of a recorded call, standing in for the index when it is replayed."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, None]:
        if self.ids.shape != (len(queries), k):
            raise ValueError(f"recorded hits {self.ids.shape}, asked {(len(queries), k)}")
        return self.ids, None


def record(args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """Score the shop's batches in this tree, recording ``recommend``'s and
    ``score_each``'s inputs (the table's arrays copied as they were)."""
    from threadpoolctl import threadpool_limits

    import streams.core.live_scorer as scorer_module
    from bench.compute_bench import live_scorer
    from bench.score_breakdown import touched_users
    from bench.stream_bench import cached_bundle, simulate_shop
    from freshet.settings import Settings
    from inference.ann_index import set_search_threads
    from inference.candidates import batch_inputs
    from inference.covisit import CovisitTable
    from inference.mmr_kernel import warm_up

    shop = simulate_shop(args.users, args.items, args.warm, args.events, args.seed)
    base = Settings.from_env({}, onnx_provider="cpu", onnx_threads=1)
    held, touched, now_ms = touched_users(shop, base)
    set_search_threads(base.ann_threads)
    warm_up()
    recs: list[Any] = []
    cvs: list[Any] = []
    recommend, score_each = scorer_module.recommend, CovisitTable.score_each

    def recorded_recommend(*a: Any, **k: Any) -> Any:
        u, warm = batch_inputs(a[0], a[1], k.get("known"), None, (), None, 0)[:2]
        n_excl = max((len(x) for x in k.get("exclude") or []), default=0)
        width = a[3].candidates + min(n_excl, a[3].max_overfetch)
        found = a[2].search(u[warm], width)[0] if warm.any() else np.empty((0, width), np.int64)
        recs.append(((a[0], a[1], Hits(np.asarray(found)), *a[3:]), k))
        return recommend(*a, **k)

    def recorded_score_each(table: CovisitTable, *a: Any) -> Any:
        copy = CovisitTable(table.width, table.damping, table.half_life_ms, table.ref_ms)
        for name in ("slot", "nbr", "weight", "error", "occ"):
            setattr(copy, name, getattr(table, name).copy())
        copy.used = table.used
        cvs.append((copy, a))
        return score_each(table, *a)

    patched: list[tuple[Any, str, Any, Any]] = [
        (scorer_module, "recommend", recorded_recommend, recommend),
        (CovisitTable, "score_each", recorded_score_each, score_each),
    ]
    for owner, name, fn, _ in patched:
        setattr(owner, name, fn)
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1, user_api="blas"):
        bundle_dir = Path(tmp) / "bundles"
        version = cached_bundle(args, shop, bundle_dir)
        live = live_scorer(base, held, bundle_dir, version)
        b = args.batch
        for i in range(args.calls):
            live.score(touched[(i * b) % (len(touched) - b) :][:b], now_ms)
    for owner, name, _, fn in patched:
        setattr(owner, name, fn)
    return recs, cvs


def digest(lists: Any, cv: Any) -> str:
    """A short digest of a call's lists (ids, score bits, reasons) and co-visitation rows."""
    h = hashlib.sha256()
    for ul in lists:
        h.update(ul.strategy.encode())
        for it in ul.items:
            h.update(it.item_id.encode() + struct.pack("<d", it.score) + it.reason.encode())
            h.update((it.reason_item_id or "-").encode())
    for rows, scores in cv:
        h.update(rows.tobytes() + scores.tobytes())
    return h.hexdigest()[:16]


def serve(args: argparse.Namespace) -> None:
    """A tree's worker: record, then on each line ``i`` replay call ``i`` and answer
    ``recommend_us covisit_us digest``."""
    import inference.recommend as recommend_module

    recs, cvs = record(args)
    n_cv = len(cvs)

    def run(i: int) -> tuple[float, float, str]:
        a, k = recs[i % len(recs)]
        t0 = time.thread_time_ns()
        lists = recommend_module.recommend(*a, **k)
        t1 = time.thread_time_ns()
        cv: Any = []
        if n_cv:
            table, cv_args = cvs[i % n_cv]
            t1 = time.thread_time_ns()
            cv = table.score_each(*cv_args)
        t2 = time.thread_time_ns()
        return (t1 - t0) / 1000, (t2 - t1) / 1000, digest(lists, cv)

    for i in range(3):
        run(i)
    gc.collect()
    gc.freeze()
    print(f"ready {len(recs)} {n_cv}", flush=True)
    for line in sys.stdin:
        rec_us, cv_us, dig = run(int(line))
        print(f"{rec_us:.1f} {cv_us:.1f} {dig}", flush=True)


def quartiles(xs: list[float], digits: int = 1) -> str:
    s = sorted(xs)
    lo, mid, hi = s[len(s) // 4], statistics.median(s), s[(3 * len(s)) // 4]
    return f"{mid:8.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def drive(args: argparse.Namespace) -> None:
    """Start a worker per tree, ask them in turn, print the comparison."""
    trees = [str(Path(t).resolve()) for t in args.tree]
    env = {**os.environ, "PYTHONPATH": ""}
    worker_args = [
        *("--items", str(args.items), "--users", str(args.users), "--warm", str(args.warm)),
        *("--events", str(args.events), "--seed", str(args.seed)),
        *("--train-samples", str(args.train_samples), "--batch", str(args.batch)),
        *("--calls", str(args.calls)),
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", "--root", t, *worker_args],
            cwd=t,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for t in trees
    ]
    ready = [p.stdout.readline().split() if p.stdout else [] for p in procs]
    if any(not r or r[0] != "ready" for r in ready):
        raise SystemExit(f"a worker failed to start: {ready}")
    cpu: dict[str, list[list[float]]] = {t: [[], []] for t in trees}
    ratios: list[list[float]] = [[], []]
    differ = 0
    load = os.getloadavg()[0]
    for r in range(args.rounds):
        order = range(len(trees)) if r % 2 == 0 else reversed(range(len(trees)))
        answers: dict[int, list[str]] = {}
        for j in order:
            time.sleep(args.gap_ms / 1000)
            stdin, stdout = procs[j].stdin, procs[j].stdout
            assert stdin is not None and stdout is not None
            stdin.write(f"{r}\n")
            stdin.flush()
            answers[j] = stdout.readline().split()
            for s in range(2):
                cpu[trees[j]][s].append(float(answers[j][s]))
        differ += len({a[2] for a in answers.values()}) > 1
        if len(trees) == 2:
            for s in range(2):
                a, b = float(answers[0][s]), float(answers[1][s])
                if a > 0:
                    ratios[s].append(b / a)
    for p in procs:
        if p.stdin:
            p.stdin.close()
        p.wait()
    print("conditions:")
    print(
        f"  {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load:.2f} at the start,"
        f" {os.getloadavg()[0]:.2f} at the end; FRESHET_HOME {os.environ.get('FRESHET_HOME')}"
    )
    print(
        f"  shop: {args.items:,} items, {args.users:,} users, warm {args.warm:,}, live"
        f" {args.events:,}; batches of {args.batch} users, {args.calls} recorded calls"
        f" ({ready[0][1]} recommend, {ready[0][2]} score_each), replayed in turn"
    )
    print(
        f"  {args.rounds} rounds, trees asked A B then B A, sleep {args.gap_ms:g} ms before"
        " each call; thread CPU µs per call (ANN search excluded)"
    )
    print("figures:")
    for i, t in enumerate(trees):
        print(f"  {'AB'[i] if i < 2 else i} {t}")
        for s, name in enumerate(STAGES):
            print(f"      {name:10} median (quartiles) {quartiles(cpu[t][s])}")
    if len(trees) == 2:
        for s, name in enumerate(STAGES):
            if ratios[s]:
                print(f"  B / A per round, {name}: {quartiles(ratios[s], 3)}")
    print(f"  rounds whose lists or co-visitation scores differ between trees: {differ}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", help="source tree (repeat; default .)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--warm", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=300, help="live events")
    parser.add_argument("--train-samples", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1, help="users per scoring call")
    parser.add_argument("--calls", type=int, default=200, help="calls recorded per tree")
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=100.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        sys.path[0] = args.root  # the tree's packages, not this file's folder
        serve(args)
        return
    args.tree = args.tree or ["."]
    drive(args)


if __name__ == "__main__":
    main()
