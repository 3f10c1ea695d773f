"""Does the candidate ranker pay for itself? Quality on a simulated shop, then its cost.

Run: ``.venv/bin/python -m bench.ranker_bench [--events 150000] [--threads 2]``.

1. Quality: simulates a shop (``freshet.simulator.stream``), runs the training pipeline with
   ``ranker="on"`` (time split; the ranker learns on the validation part) and prints the
   test table from the evaluation protocol: retrieval over all items (the bundle's
   usual figure), retrieval over the items live at each case's time (the fair baseline:
   the same candidates the ranker sees), and retrieval + ranker, next to the baselines.
2. Cost: loads the bundle it wrote through onnxruntime and times, per micro-batch of
   ``B`` users × ``C`` candidates, building the feature rows, the ``ranker.onnx`` call
   and the whole hook, against the baseline a batch pays anyway: the user encoder call
   for the same ``B`` users and the inner products the ranker replaces.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from rich.console import Console
from rich.table import Table

from freshet.simulator.stream import SimConfig, simulate
from inference.onnx_session import LoadedBundle
from inference.ranker_features import LAYOUT, candidate_features, make_ranker
from training.pipeline import run
from training.ranker_cases import RankerConfig
from training.ranker_train import MIN_GAIN
from training.train import TrainConfig


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def cost_row(
    bundle: LoadedBundle, b: int, c: int, repeats: int, rng: np.random.Generator
) -> list[str]:
    """Median times (ms) of one micro-batch of ``b`` users × ``c`` candidates."""
    items = bundle.item_vectors
    n = bundle.history_len
    users = items[rng.integers(0, items.shape[0], b)]
    cand = items[rng.integers(0, items.shape[0], (b, c))]
    feats = {
        "ann_score": np.einsum("bcd,bd->bc", cand, users).astype(np.float32),
        "log_popularity": rng.uniform(0, 8, (b, c)).astype(np.float32),
        "age_s": rng.uniform(0, 1e6, (b, c)).astype(np.float32),
        "is_trending": (rng.random((b, c)) < 0.1).astype(np.float32),
        "category": rng.integers(-1, 20, (b, c)),
    }
    rows = candidate_features(users, cand, feats).reshape(b * c, -1)
    hist = (
        items[rng.integers(0, items.shape[0], (b, n))],
        rng.integers(1, len(bundle.manifest.event_types), (b, n)),
        rng.uniform(0, 10, (b, n)).astype(np.float32),
        np.ones((b, n), np.float32),
    )
    hook = make_ranker(bundle.rank)
    timings = [
        median_ms(lambda: candidate_features(users, cand, feats), repeats),
        median_ms(lambda: bundle.rank(rows), repeats),
        median_ms(lambda: hook(users, cand, feats), repeats),
        median_ms(lambda: bundle.encode_users(*hist), repeats),
        median_ms(lambda: np.einsum("bcd,bd->bc", cand, users), repeats),
    ]
    return [str(b), str(c), *(f"{t:.2f}" for t in timings)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=140)
    world = SimConfig(
        users=args.users,
        items=args.items,
        events=args.events,
        new_user_rate=0.5,
        new_item_rate=0.5,
    )
    console.print(
        f"conditions: python {platform.python_version()}, torch {torch.__version__}, "
        f"onnxruntime {ort.__version__}, {os.cpu_count()} CPUs visible, torch threads "
        f"{args.threads}; world users={world.users} items={world.items} "
        f"events={world.events} new_user_rate={world.new_user_rate} "
        f"new_item_rate={world.new_item_rate} seed={args.seed}; layout {LAYOUT}; "
        f"C={args.candidates}; ship gate +{MIN_GAIN:.0%} NDCG@10 on hold-out"
    )

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = run(
            simulate(world, seed=args.seed),
            Path(tmp),
            TrainConfig(epochs=args.epochs, seed=args.seed, threads=args.threads),
            protocol="time",
            show=False,
            ranker="on",
            ranker_config=RankerConfig(
                candidates=args.candidates, seed=args.seed, threads=args.threads
            ),
        )
        console.print(f"pipeline: {time.perf_counter() - t0:.0f}s")
        stage = out.ranker
        assert stage is not None
        table = Table("model (test, time split)", "HR@10", "NDCG@10", "MRR", "cases")
        for r in out.results:
            m = r.metrics
            table.add_row(
                r.name,
                f"{m['hr@10']:.4f}",
                f"{m['ndcg@10']:.4f}",
                f"{m['mrr']:.4f}",
                str(int(m["cases"])),
            )
        console.print(table)
        res = stage.result
        console.print(
            f"ranker: {res.cases} validation cases, best epoch {res.best_epoch}, "
            f"{res.seconds:.0f}s; hold-out NDCG@10 {res.retrieval_holdout['ndcg@10']:.4f} -> "
            f"{res.holdout['ndcg@10']:.4f} ({res.gain:+.1%}); test NDCG@10 "
            f"{stage.test_gain:+.1%} over retrieval (live items); passes gate: {stage.passes()}"
        )

        bundle = LoadedBundle.load(Path(tmp), provider="cpu")
        console.print(f"cost on {bundle.provider}, ONNX Runtime default intra-op threads")
        rng = np.random.default_rng(args.seed)
        cost = Table(
            "B users",
            "C",
            "features ms",
            "ranker.onnx ms",
            "hook total ms",
            "baseline: encoder ms",
            "baseline: inner product ms",
        )
        for b in args.batches:
            cost.add_row(*cost_row(bundle, b, args.candidates, args.repeats, rng))
        console.print(cost)


if __name__ == "__main__":
    main()
