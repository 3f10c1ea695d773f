"""ANN index build cost, which a worker pays at start-up and on every bundle swap.

Builds ``AnnIndex`` over the same vectors with its defaults and with each ``--baseline``
setting (``LISTSxPOINTS``: IVF lists, k-means training points per list), one after the
other in one process, and prints per build: seconds (k-means, adding the catalog and
tuning nprobe), the lists, the tuned nprobe and its recall@200, and the median search
time per user at batch 1. ``--vectors`` takes a bundle's ``item_vectors.npy``; without it
the vectors are the clustered synthetic catalog of ``bench/ann_bench.py``.

    .venv/bin/python -m bench.ann_build_bench --vectors BUNDLE/item_vectors.npy \\
        --baseline 4000x256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench.ann_bench import clustered_catalog
from inference.ann_index import MAX_LISTS, TRAIN_POINTS_PER_LIST, AnnIndex


def build_row(
    vecs: np.ndarray, nlist: int | None, per_list: int, queries: np.ndarray, repeats: int
) -> dict[str, Any]:
    t0 = time.perf_counter()
    index = AnnIndex.build(
        vecs, np.arange(vecs.shape[0]), seed=0, nlist=nlist, train_points_per_list=per_list
    )
    build_s = time.perf_counter() - t0
    times = []
    for i in range(repeats):
        q = queries[i : i + 1]
        t = time.perf_counter()
        index.search(q, 200)
        times.append(time.perf_counter() - t)
    assert index.nlist is not None, "catalog under the exact-search size: nothing to build"
    return {
        "lists": index.nlist,
        "train_points_per_list": per_list,
        "build_s": round(build_s, 1),
        "nprobe": index.nprobe,
        "tuned_recall_at_200": round(float(index.tuned_recall or 0.0), 3),
        "search_us_per_user_b1": round(statistics.median(times) * 1e6),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=Path, help="an (n, d) float .npy, e.g. a bundle's")
    parser.add_argument("--n", type=int, default=0, help="first n rows (0: all / 1M synthetic)")
    parser.add_argument("--baseline", action="append", default=[], metavar="LISTSxPOINTS")
    parser.add_argument("--repeats", type=int, default=64, help="single-user searches timed")
    parser.add_argument("--threads", type=int, default=1, help="faiss threads (worker: 1)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(args.threads)
    if args.vectors:
        vecs = np.load(args.vectors, mmap_mode="r")
        vecs = np.ascontiguousarray(vecs[: args.n or vecs.shape[0]], dtype=np.float32)
        source = str(args.vectors)
    else:
        vecs = clustered_catalog(args.n or 1_000_000, 64, 256, 0.7, seed=1)
        source = "clustered synthetic (bench/ann_bench.py)"
    rng = np.random.default_rng(2)
    queries = vecs[rng.integers(0, vecs.shape[0], args.repeats)]
    print("conditions")
    print(f"  vectors             {source}: {vecs.shape[0]:,} x {vecs.shape[1]}")
    print(f"  faiss               {faiss.__version__}, {args.threads} thread(s)")
    print(f"  cpu cores visible   {os.cpu_count()}, python {platform.python_version()}")
    print(f"  default build       about 4*sqrt(n) lists, at most {MAX_LISTS},")
    print(f"                      k-means on {TRAIN_POINTS_PER_LIST} points per list")
    rows = [
        {"build": "default", **build_row(vecs, None, TRAIN_POINTS_PER_LIST, queries, args.repeats)}
    ]
    for spec in args.baseline:
        lists, per = (int(x) for x in spec.lower().split("x"))
        rows.append({"build": spec, **build_row(vecs, lists, per, queries, args.repeats)})
    print(
        f"\n{'build':>9} {'lists':>6} {'pts/list':>8} {'build s':>8} {'nprobe':>6} "
        f"{'recall@200':>10} {'µs/user B=1':>11}"
    )
    for r in rows:
        print(
            f"{r['build']:>9} {r['lists']:>6} {r['train_points_per_list']:>8} "
            f"{r['build_s']:>8.1f} {r['nprobe']:>6} {r['tuned_recall_at_200']:>10.3f} "
            f"{r['search_us_per_user_b1']:>11}"
        )
    if args.out:
        args.out.write_text(json.dumps({"source": source, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
