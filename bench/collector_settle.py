"""The collector's settle at a bundle swap: thawing the frozen heap first (ffb0c63) or
not (now), alternated in one process.

The worker's modules are imported and start-up frozen (``worker.tune_collector``), a
bundle is served as the worker serves one (``streams.core.copy_on_write``), then each
round loads the bundle again, swaps it in and times the settle in one of the two ways,
in the order A B B A. Prints the host's load, the frozen count and per way the settle's
wall and thread CPU (median, min, max), and what each found unreachable.

    .venv/bin/python -m bench.collector_settle \\
        --bundle-dir $FRESHET_HOME/bench-bundles/stream-100000-20000-20000-300-0-20000
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from inference.onnx_session import LoadedBundle
from streams.core.copy_on_write import prepare_covisit, swap_bundle
from streams.core.live_scorer import LiveScorer, bundle_parts
from streams.runtime.collector import settle
from streams.runtime.worker import tune_collector


def thawed() -> tuple[float, int]:
    """ffb0c63's settle at a later bundle: unfreeze, collect everything, freeze."""
    start = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return time.perf_counter() - start, found


def serve(scorer: LiveScorer, bundle: LoadedBundle) -> None:
    catalog, index = scorer.prepare(bundle)
    scorer.covisit_frozen = True
    remap = prepare_covisit(scorer, catalog)
    swap_bundle(scorer, bundle, catalog, index, remap, parts=bundle_parts(bundle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=4, help="A B B A blocks")
    args = parser.parse_args()
    tune_collector()
    scorer = LiveScorer()
    serve(scorer, LoadedBundle.load(args.bundle_dir, provider="cpu", serving=True))
    settle()
    ways: dict[str, Callable[[], tuple[float, int]]] = {"thaw (ffb0c63)": thawed, "now": settle}
    names = list(ways)
    rows: dict[str, list[tuple[float, float, int, int]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            serve(scorer, LoadedBundle.load(args.bundle_dir, provider="cpu", serving=True))
            cpu = time.thread_time()
            took, found = ways[name]()
            cpu = time.thread_time() - cpu
            rows[name].append((took, cpu, found, gc.get_freeze_count()))
    print(f"load {os.getloadavg()}, cpus {os.cpu_count()}, rounds {args.rounds} (A B / B A)")
    for name in names:
        walls = [1e3 * w for w, _, _, _ in rows[name]]
        cpus = [1e3 * c for _, c, _, _ in rows[name]]
        unreachable = [f for _, _, f, _ in rows[name]]
        frozen = [z for _, _, _, z in rows[name]]
        print(
            f"{name:>15}: wall ms median {statistics.median(walls):.1f} "
            f"(min {min(walls):.1f}, max {max(walls):.1f}), cpu ms median "
            f"{statistics.median(cpus):.1f} (min {min(cpus):.1f}, max {max(cpus):.1f}), "
            f"unreachable {min(unreachable)}-{max(unreachable)}, "
            f"frozen after {min(frozen)}-{max(frozen)}"
        )


if __name__ == "__main__":
    main()
