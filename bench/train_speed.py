"""Training speed: today's one-prediction-per-history trainer against the causal one.

Both train freshet's retrieval model on the same data in the same run, one after the
other, with the same threads and the same wall-time budget, and both are scored after
every epoch on the same validation cases (leave-one-out: each user's second-to-last
event, ranked against every item the user has not rated). Printed: conditions (host
CPU, load, torch threads, data), per-epoch figures (predicted positions, training
seconds, predicted positions per second, validation NDCG@10, wall time so far), and
the best validation NDCG@10 each had reached at a few wall times.

    .venv/bin/python -m bench.train_speed \\
        --ratings ../shared/data/ml-latest-small/ratings.csv --budget-s 120 --threads 1
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

import torch

from bench.host import cpu_model
from bench.leave_one_out import SHARED_RATINGS, movielens_events
from training.data import build_log, leave_one_out
from training.train import CAUSAL, TrainConfig, TrainResult, train

TODAY = TrainConfig(
    objective="last", history_len=20, temperature=0.1, negatives=1024, fused_optimizer=False
)
"""The trainer as it was: one prediction per history, with its defaults of then."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=Path, default=SHARED_RATINGS)
    parser.add_argument("--budget-s", type=float, default=120.0, help="Wall time per trainer.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--history-len", type=int, default=50, help="N of the causal trainer.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    log = build_log(movielens_events(args.ratings))
    split = leave_one_out(log)
    common = {
        "epochs": 10_000,
        "patience": 10_000,
        "time_budget_s": args.budget_s,
        "threads": args.threads,
        "seed": args.seed,
    }
    trainers = {
        "today (last)": replace(TODAY, **common),
        # Today's objective with the new optimizer kernel: how much of the gain is which.
        "last, fused": replace(TODAY, fused_optimizer=True, **common),
        "causal": replace(CAUSAL, history_len=args.history_len, **common),
    }
    print(
        f"conditions: {cpu_model()}, load average {os.getloadavg()[0]:.1f} at start, "
        f"torch {torch.__version__}, threads {args.threads}; data {args.ratings} "
        f"({log.n_events} events, {log.n_users} users, {log.n_items} items, movies.csv "
        f"content), leave-one-out, {split.train.size} training events, {split.valid.size} "
        f"validation cases; budget {args.budget_s:.0f} s of wall time per trainer"
    )
    results: dict[str, TrainResult] = {}
    for name, config in trainers.items():
        print(
            f"\n{name}: N {config.history_len}, dim {config.dim}, batch "
            f"{config.batch_size if config.objective == 'last' else config.windows_per_batch}"
            f" {'events' if config.objective == 'last' else 'windows'}, {config.negatives} "
            f"sampled negatives + in-batch, fused AdamW {config.fused_optimizer}"
        )
        head = ("epoch", "positions", "train s", "pos/s", "NDCG@10", "wall s")
        print("{:>5} {:>9} {:>8} {:>7} {:>8} {:>7}".format(*head))
        results[name] = result = train(log, split, config, show=False)
        for rec in result.history:
            print(
                f"{rec.epoch:5d} {rec.positions:9d} {rec.train_seconds:8.1f} "
                f"{rec.positions / rec.train_seconds:7.0f} {rec.valid['ndcg@10']:8.4f} "
                f"{rec.elapsed:7.1f}"
            )
    print("\nsummary")
    rates = {}
    for name, result in results.items():
        positions = sum(r.positions for r in result.history)
        seconds = sum(r.train_seconds for r in result.history)
        rates[name] = positions / seconds
        print(
            f"{name:<13} {rates[name]:8.0f} predicted positions/s, "
            f"{seconds / len(result.history):6.1f} s per epoch (training only), "
            f"{len(result.history)} epochs"
        )
    print(f"ratio: {rates['causal'] / rates['today (last)']:.1f}x predicted positions/s")
    marks = [args.budget_s * f for f in (0.25, 0.5, 0.75, 1.0)]
    print(
        "best validation NDCG@10 reached by wall time (s): " + " ".join(f"{m:.0f}" for m in marks)
    )
    for name, result in results.items():
        best = [
            max((r.valid["ndcg@10"] for r in result.history if r.elapsed <= m), default=0.0)
            for m in marks
        ]
        print(f"{name:<13} " + " ".join(f"{b:.4f}" for b in best))


if __name__ == "__main__":
    main()
