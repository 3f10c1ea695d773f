"""The re-rank pipeline's cost per list at batch 1, 16 and 128 (``--batches``), against a base tree.

``inference.recommend.recommend`` on a synthetic catalog shaped like the stream
bench's (100k items, d = 32, Zipf popularity, 20 categories, a few new items) with
the live scorer's inputs per user: seen items excluded, recent history, 50 trending
rows, 50 co-visitation candidates. The ANN search is answered from neighbours found
before the timed loop (an exact search per user, looked up by the query vector), so
the figures are the pipeline after the search: merging, relevance, blend, quotas,
shortlist, MMR, reasons and the list objects. Each tree runs in its own process, the
trees alternate, and every figure is the median over rounds of process-CPU ms per list.

    .venv/bin/python -m bench.rerank_bench --base /tmp/k_base
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

N_ITEMS, DIM, N_CATS = 100_000, 32, 20
BATCHES = (1, 16, 128)


class FoundNeighbours:
    """Inner-product search answered from exact neighbours computed beforehand."""

    def __init__(self, vectors: np.ndarray, queries: np.ndarray, k: int) -> None:
        scores = queries @ vectors.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        self.rows = np.take_along_axis(top, order, axis=1).astype(np.int64)
        self.keys = {q.tobytes(): i for i, q in enumerate(queries.astype(np.float32))}

    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, np.float32)
        at = [self.keys[row.tobytes()] for row in q]
        rows = self.rows[at, :k]
        return rows, np.zeros(rows.shape, np.float32)


def workload(n_users: int, seed: int = 0) -> dict[str, Any]:
    """A catalog, users and their per-user inputs, as the live scorer passes them."""
    from inference.candidates import ItemTable

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(N_CATS, DIM))
    cats = rng.integers(0, N_CATS, N_ITEMS)
    vecs = (centres[cats] + 0.6 * rng.normal(size=(N_ITEMS, DIM))).astype(np.float32)
    pop = np.floor(2e4 / (1 + rng.permutation(N_ITEMS)) ** 1.05).astype(np.float32)
    age = np.full(N_ITEMS, 60 * 86_400.0, np.float32)
    age[rng.choice(N_ITEMS, 500, replace=False)] = 3_600.0  # a few new items
    items = ItemTable.create(vecs, [f"i{r}" for r in range(N_ITEMS)], cats, pop, age)
    users = (centres[rng.integers(0, N_CATS, n_users)] + rng.normal(size=(n_users, DIM))).astype(
        np.float32
    )
    users[rng.random(n_users) < 0.05] = 0.0  # a few cold users
    seen = [rng.choice(N_ITEMS, rng.integers(5, 80), replace=False) for _ in range(n_users)]
    cv_rows = rng.integers(0, N_ITEMS, (n_users, 50))
    cv_scores = rng.random((n_users, 50)).astype(np.float32)
    cv_rows[rng.random((n_users, 50)) < 0.2] = -1
    trending = np.argsort(-pop)[:50]
    return {
        "items": items,
        "users": users,
        "seen": seen,
        "history": [s[-20:] for s in seen],
        "covisit": (cv_rows, cv_scores),
        "trending": trending,
        "trending_scores": np.linspace(1.0, 0.1, 50).astype(np.float32),
    }


def measure(
    tree: str, rounds: int, n_users: int, batches: tuple[int, ...] = BATCHES
) -> dict[str, float]:
    """CPU ms per list at each batch size, this process importing ``tree``'s code."""
    sys.path.insert(0, tree)
    from inference.mmr_kernel import warm_up
    from inference.recommend import RecommendConfig, recommend

    warm_up()
    w = workload(n_users)
    config = RecommendConfig()
    index = FoundNeighbours(w["items"].vectors, w["users"], config.candidates + 100)

    def call(lo: int, hi: int, seed: int) -> None:
        recommend(
            w["users"][lo:hi],
            w["items"],
            index,
            config,
            known=np.ones(hi - lo, bool),
            exclude=w["seen"][lo:hi],
            history=w["history"][lo:hi],
            trending=w["trending"],
            trending_scores=w["trending_scores"],
            seed=seed,
            covisit=(w["covisit"][0][lo:hi], w["covisit"][1][lo:hi]),
        )

    call(0, min(max(batches), n_users), 0)  # first-call costs outside the timing
    out: dict[str, list[float]] = {str(b): [] for b in batches}
    for r in range(rounds):
        for b in batches:
            calls = max(1, n_users // b)
            c0 = time.process_time()
            for i in range(calls):
                call(i * b, (i + 1) * b, r * 1000 + i)
            out[str(b)].append(1000 * (time.process_time() - c0) / (calls * b))
    return {b: statistics.median(v) for b, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=None, help="a worktree of the baseline commit")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--users", type=int, default=512, help="users per round and size")
    parser.add_argument(
        "--batches", default=",".join(map(str, BATCHES)), help="batch sizes, comma-separated"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    batches = tuple(int(b) for b in args.batches.split(","))
    if args.worker is not None:
        print(json.dumps(measure(args.worker, args.rounds, args.users, batches)))
        return
    here = str(Path(__file__).resolve().parents[1])
    trees = {"this tree": here} | ({"base": args.base} if args.base else {})
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(2):  # alternate the trees, twice each
        for name, tree in trees.items():
            cmd = [sys.executable, __file__, "--worker", tree]
            cmd += ["--rounds", str(args.rounds), "--users", str(args.users)]
            cmd += ["--batches", args.batches]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(line.strip().splitlines()[-1]))
    print("conditions:")
    print(f"  {N_ITEMS} items, d={DIM}, {N_CATS} categories, default RecommendConfig;")
    print("  per user: 5-80 seen rows excluded, 20 history rows, 50 co-visitation rows,")
    print(f"  50 trending rows; 5% cold users; {args.users} users per batch size per round,")
    print(f"  {args.rounds} rounds per process, 2 processes per tree, trees alternated;")
    print("  ANN neighbours found before timing (the search itself is not in the figures)")
    for name, tree in trees.items():
        print(f"  {name}: {tree}")
    print("figures: process-CPU ms per list (median of rounds, then of processes)")
    print(f"  {'tree':10s}" + "".join(f"  batch {b:>4d}" for b in batches))
    for name in trees:
        cells = [statistics.median(run[str(b)] for run in runs[name]) for b in batches]
        print(f"  {name:10s}" + "".join(f"  {c:10.4f}" for c in cells))


if __name__ == "__main__":
    main()
