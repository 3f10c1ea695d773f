"""How long training takes on this machine: ~1M simulated events, CPU threads as given.

Prints its conditions (torch version, threads, events, epochs) and figures (log build,
per-epoch and total training time, time per 1M training examples), and the quality of
the model next to the baselines fitted in the same run, on the same held-out events.

    .venv/bin/python -m bench.train_speed --events 1000000 --epochs 1
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from streams.simulator import SimConfig, simulate
from training.data import build_log, time_split
from training.evaluation.baselines import fit_baselines
from training.evaluation.protocols import build_cases, evaluate
from training.models.retrieval import TorchScorer
from training.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--history-len", type=int, default=20)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    world = SimConfig(
        users=args.users,
        items=args.items,
        events=args.events,
        new_user_rate=0.05,
        new_item_rate=0.05,
    )
    log = build_log(simulate(world, seed=args.seed))
    t_log = time.perf_counter() - t0
    split = time_split(log)
    config = TrainConfig(
        dim=args.dim,
        history_len=args.history_len,
        epochs=args.epochs,
        patience=args.epochs,
        batch_size=args.batch_size,
        threads=args.threads,
        seed=args.seed,
    )
    print(
        f"conditions: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads {torch.get_num_threads()}, events {log.n_events}, users {log.n_users}, "
        f"items {log.n_items}, train examples {split.train.size}, epochs {args.epochs}, "
        f"batch {args.batch_size}, N {args.history_len}, dim {args.dim}"
    )
    print(f"simulate + build log: {t_log:.1f} s")
    result = train(log, split, config, show=False)
    for rec in result.history:
        print(
            f"epoch {rec.epoch}: {rec.seconds:.1f} s (incl. validation), loss {rec.loss:.4f}, "
            f"valid NDCG@10 {rec.valid['ndcg@10']:.4f}"
        )
    per_million = result.seconds / max(result.samples, 1) * 1e6
    print(
        f"training: {result.seconds:.1f} s for {result.samples} examples "
        f"= {per_million:.0f} s per 1M training examples"
    )
    cases = build_cases(log, split, "test", args.history_len, 5000, args.seed)
    popularity = log.popularity(split.train)
    t1 = time.perf_counter()
    baselines = fit_baselines(log, split.train)
    t_base = time.perf_counter() - t1
    print(f"baselines fitted in {t_base:.1f} s")
    print(f"{'model':<14} {'HR@10':>7} {'NDCG@10':>8} {'coverage':>9} {'tail':>6}")
    for scorer in [TorchScorer(result.model), *baselines]:
        mt = evaluate(scorer, cases, popularity).metrics
        print(
            f"{scorer.name:<14} {mt['hr@10']:7.4f} {mt['ndcg@10']:8.4f} "
            f"{mt['coverage']:9.4f} {mt['long_tail_share']:6.3f}"
        )


if __name__ == "__main__":
    main()
