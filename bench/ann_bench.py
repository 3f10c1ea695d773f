"""Candidate retrieval latency and recall: AnnIndex (IVF) against exact search.

Run: ``.venv/bin/python bench/ann_bench.py [--n 100000] [--d 64] [--k 200]``. Prints the
conditions, then per-user latency (median over repeats) at several batch sizes for
exact matmul top-k (the baseline) and the IVF index, and the IVF's recall@k.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import faiss
import numpy as np

from inference.ann_index import AnnIndex, exact_topk


def clustered_catalog(n: int, d: int, n_clusters: int, spread: float, seed: int) -> np.ndarray:
    """Unit vectors scattered around random centres (same shape as the unit tests use)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d))
    x = centres[rng.integers(0, n_clusters, n)] + spread * rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def median_seconds(fn: object, repeats: int) -> float:
    assert callable(fn)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--spread", type=float, default=0.7)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--threads", type=int, default=0, help="faiss OpenMP threads (0: default)")
    args = parser.parse_args()
    if args.threads > 0:
        faiss.omp_set_num_threads(args.threads)

    vecs = clustered_catalog(args.n, args.d, 256, args.spread, seed=1)
    t0 = time.perf_counter()
    index = AnnIndex.build(vecs, np.arange(args.n), seed=0)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(2)
    queries = vecs[rng.integers(0, args.n, 512)] + 0.1 * rng.normal(size=(512, args.d))
    queries = queries.astype(np.float32)

    print("conditions")
    print(f"  cpu cores visible   {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))})")
    print(f"  faiss               {faiss.__version__}, omp threads {faiss.omp_get_max_threads()}")
    print(f"  numpy               {np.__version__}")
    print(f"  python / machine    {platform.python_version()} / {platform.machine()}")
    print(
        f"  catalog             n={args.n} d={args.d} clustered (256 centres, spread {args.spread})"
    )
    mode = "exact" if index.is_exact else f"IVF-Flat IP nprobe={index.nprobe}"
    print(f"  index               {mode}, build {build_s:.2f} s")
    print(f"  k                   {args.k}; median of {args.repeats} repeats")

    ann_ids, _ = index.search(queries, args.k)
    exact_ids, _ = exact_topk(queries, vecs, args.k)
    recall = np.mean(
        [np.intersect1d(a, e).size / args.k for a, e in zip(ann_ids, exact_ids, strict=True)]
    )

    print(f"\n{'batch':>6} {'exact µs/user':>14} {'ANN µs/user':>12} {'speed-up':>9}")
    for b in args.batches:
        q = queries[:b]
        exact_s = median_seconds(lambda q=q: exact_topk(q, vecs, args.k), args.repeats)
        ann_s = median_seconds(lambda q=q: index.search(q, args.k), args.repeats)
        print(
            f"{b:>6} {exact_s / b * 1e6:>14.1f} {ann_s / b * 1e6:>12.1f} {exact_s / ann_s:>8.1f}x"
        )
    print(f"\nrecall@{args.k} of ANN vs exact over {queries.shape[0]} queries: {recall:.4f}")


if __name__ == "__main__":
    main()
