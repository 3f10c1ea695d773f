"""Diversity and long-tail against accuracy: NDCG@10 as ``mmr_lambda`` and ``longtail_share`` move.

Every grid point is a freshet ``LiveRecommender`` with those two settings, all driven
through one prequential run (``training.evaluation.prequential``) on the same events,
with the same retrained bundles (cached with ``bench/prequential.py``'s, so a run on the
same data trains nothing new), next to most-popular as the reference. Writes a table,
JSON and a PNG with one curve per λ so an operator can pick a point.

    .venv/bin/python -m bench.tradeoff --quick --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from bench.prequential import (
    QUICK_SIM,
    Retrainer,
    conditions,
    markdown,
    run_benchmark,
    sim_events,
)
from freshet.settings import Settings
from schemas.events import InteractionEvent
from training.evaluation.online_freshet import FreshetOnline
from training.evaluation.prequential import OnlineModel, PrequentialConfig, StreamState
from training.train import TrainConfig

QUICK_GRID = ([1.0, 0.7, 0.4], [0.0, 0.5, 0.8])
FULL_GRID = ([1.0, 0.85, 0.7, 0.5, 0.3], [0.0, 0.2, 0.4, 0.6])


def grid_name(lam: float, tail: float) -> str:
    return f"λ={lam:g} tail={tail:g}"


def plot(rows: list[dict[str, float]], reference: dict[str, float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in (
        (axes[0], "long_tail_share", "long-tail share of top-10"),
        (axes[1], "ild", "intra-list diversity (1 − cos)"),
    ):
        for lam in sorted({r["mmr_lambda"] for r in rows}, reverse=True):
            pts = sorted((r for r in rows if r["mmr_lambda"] == lam), key=lambda r: r[key])
            ax.plot([p[key] for p in pts], [p["ndcg@10"] for p in pts], "o-", label=f"λ={lam:g}")
            for p in pts:
                ax.annotate(f"{p['longtail_share']:g}", (p[key], p["ndcg@10"]), fontsize=7)
        ax.axhline(reference["ndcg@10"], color="grey", ls="--", label="most-popular")
        ax.set_xlabel(label)
        ax.set_ylabel("prequential NDCG@10")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("freshet: accuracy vs long tail and diversity (labels: longtail_share)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--users", type=int, default=QUICK_SIM["users"])
    parser.add_argument("--items", type=int, default=QUICK_SIM["items"])
    parser.add_argument("--events", type=int, default=QUICK_SIM["events"])
    parser.add_argument("--lambdas", type=float, nargs="+")
    parser.add_argument("--tails", type=float, nargs="+")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    lambdas, tails = QUICK_GRID if args.quick else FULL_GRID
    lambdas, tails = args.lambdas or lambdas, args.tails or tails
    events = sim_events(args.users, args.items, args.events, args.seed)
    n_inter = sum(isinstance(e, InteractionEvent) for e in events)
    every = max(-(-n_inter // 3), 1)
    settings = Settings.from_env()
    # the same training config as bench.prequential, so its cached bundles are reused
    train_config = TrainConfig(
        dim=32,
        epochs=args.epochs,
        patience=2,
        valid_cases=500,
        threads=args.threads,
        seed=args.seed,
    )
    cache = args.cache or settings.home / "bench-bundles"
    retrainer = Retrainer(cache, train_config, provider=settings.onnx_provider)

    def grid(stream: StreamState) -> list[OnlineModel]:
        return [
            FreshetOnline(
                stream,
                settings.with_(mmr_lambda=lam, longtail_share=tail),
                name=grid_name(lam, tail),
            )
            for lam in lambdas
            for tail in tails
        ]

    config = PrequentialConfig(retrain_every=every, warmup_events=every)
    print(f"trade-off: {len(lambdas) * len(tails)} settings on {n_inter} interactions")
    result, summary, wall = run_benchmark(
        events,
        baselines=["most-popular"],
        config=config,
        retrainer=retrainer,
        settings=settings,
        seed=args.seed,
        extra_models=grid,
    )
    rows = []
    for lam in lambdas:
        for tail in tails:
            r = summary[grid_name(lam, tail)]
            rows.append(
                {
                    "mmr_lambda": lam,
                    "longtail_share": tail,
                    "ndcg@10": r["ndcg@10"],
                    "hr@10": r["hr@10"],
                    "long_tail_share": r["long_tail_share"],
                    "ild": r.get("ild", 0.0),
                    "coverage": r["coverage"],
                }
            )
    reference = summary["most-popular"]
    header = ["mmr_lambda", "longtail_share", "NDCG@10", "HR@10", "long-tail", "ILD", "coverage"]
    cells = [
        [
            f"{r['mmr_lambda']:g}",
            f"{r['longtail_share']:g}",
            f"{r['ndcg@10']:.4f}",
            f"{r['hr@10']:.4f}",
            f"{r['long_tail_share']:.3f}",
            f"{r['ild']:.3f}",
            f"{r['coverage']:.3f}",
        ]
        for r in rows
    ]
    cells.append(
        [
            "most-popular",
            "",
            f"{reference['ndcg@10']:.4f}",
            f"{reference['hr@10']:.4f}",
            f"{reference['long_tail_share']:.3f}",
            f"{reference.get('ild', 0.0):.3f}",
            f"{reference['coverage']:.3f}",
        ]
    )
    table = markdown(header, cells)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, reference, args.out / "tradeoff.png")
    report = {
        "benchmark": "tradeoff",
        "quick": bool(args.quick),
        "source": f"simulator users={args.users} items={args.items} events={args.events}",
        "conditions": conditions(
            {
                "onnx_provider": settings.onnx_provider,
                "threads": args.threads,
                "interactions": n_inter,
                "retrain_every": every,
            }
        ),
        "counts": result.counts,
        "wall_s": round(wall, 1),
        "grid": rows,
        "most_popular": reference,
    }
    (args.out / "tradeoff.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "tradeoff.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
