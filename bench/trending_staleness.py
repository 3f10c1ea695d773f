"""How much a trending list read some records ago differs from the one now, on real data.

The worker's trending sync re-reads the top items by decayed interaction sum once
``FRESHET_TRENDING_SYNC_RECORDS`` records were applied, or once anything was and the
last read is ``FRESHET_TRENDING_SYNC_S`` old (``streams.core.sync_policy``). Between
reads the list served is stale by at most that many records. This replays a ratings
file in time order (each rating one interaction of weight 1, sums halving every
``--half-life-h`` hours of event time, as the worker's trend sums do) and, every
``--every`` records after ``--warm``, compares the top ``--k`` now with the top ``--k``
of ``lag`` records earlier: the share of today's top items the stale list holds, and
how often its first ``--head`` differ at all.

    .venv/bin/python -m bench.trending_staleness \\
        --file /work/shared/data/ml-latest-small/ratings.csv --lags 10,50,100,200,500,1000,2000
"""

from __future__ import annotations

import argparse
import csv
import heapq
import math
import os
import statistics
from pathlib import Path

from bench.host import cpu_model


def ratings(path: Path) -> list[tuple[int, str]]:
    """(timestamp s, item) of every rating, in time order (ties: file order)."""
    with path.open(newline="") as f:
        rows = [(int(r["timestamp"]), r["movieId"]) for r in csv.DictReader(f)]
    rows.sort(key=lambda r: r[0])
    return rows


def top_lists(
    rows: list[tuple[int, str]], k: int, half_life_s: float, every: int
) -> list[list[str]]:
    """The top ``k`` items by decayed sum after every ``every``-th record."""
    sums: dict[str, float] = {}
    ref = rows[0][0]
    out: list[list[str]] = []
    for n, (ts, item) in enumerate(rows, 1):
        if ts - ref > 40 * half_life_s:  # rebase before the weights overflow
            scale = math.pow(2.0, -(ts - ref) / half_life_s)
            sums = {i: s * scale for i, s in sums.items() if s * scale > 1e-9}
            ref = ts
        sums[item] = sums.get(item, 0.0) + math.pow(2.0, (ts - ref) / half_life_s)
        if n % every == 0:
            out.append([i for i, _ in heapq.nlargest(k, sums.items(), key=lambda p: p[1])])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, required=True, help="ratings.csv (MovieLens)")
    parser.add_argument("--k", type=int, default=50, help="the trending pool (its default)")
    parser.add_argument("--head", type=int, default=10)
    parser.add_argument("--half-life-h", type=float, default=6.0)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--warm", type=int, default=10_000)
    parser.add_argument("--lags", default="10,50,100,200,500,1000,2000")
    args = parser.parse_args()
    rows = ratings(args.file)
    lists = top_lists(rows, args.k, args.half_life_h * 3600.0, args.every)
    first = args.warm // args.every
    print("conditions:")
    print(f"  {args.file} ({len(rows):,} ratings, time order), weight 1 each")
    print(f"  half-life {args.half_life_h:g} h of event time; top {args.k}, head {args.head}")
    print(f"  compared every {args.every} records after the first {args.warm:,}")
    print(f"  cores {os.cpu_count()} ({cpu_model()})")
    print("records stale | top-k held: mean, p5 | head held: mean | head differs at all")
    for lag in (int(x) for x in args.lags.split(",")):
        step = max(1, lag // args.every)
        held, head, differs = [], [], 0
        for i in range(max(first, step), len(lists)):
            now, old = lists[i], lists[i - step]
            held.append(len(set(now) & set(old)) / len(now))
            h = len(set(now[: args.head]) & set(old[: args.head])) / args.head
            head.append(h)
            differs += h < 1.0
        p5 = statistics.quantiles(held, n=20)[0]
        print(
            f"  {lag:>6} | {statistics.mean(held):.4f}, {p5:.3f} | {statistics.mean(head):.4f}"
            f" | {differs / len(head):.3f}"
        )


if __name__ == "__main__":
    main()
