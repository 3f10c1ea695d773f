"""Diversity and long-tail against accuracy: NDCG@10 as ``mmr_lambda`` and ``longtail_share`` move.

Every grid point is a freshet ``LiveScorer`` with those two settings, all driven
through one prequential run (``training.evaluation.prequential``) on the same events,
with the same retrained bundles (cached with ``bench/prequential.py``'s, so a run on the
same data trains nothing new), next to most-popular as the reference. Writes a table,
JSON and a PNG with one curve per λ so an operator can pick a point.

    .venv/bin/python -m bench.tradeoff --quick --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.prequential import (
    QUICK_SIM,
    Retrainer,
    conditions,
    markdown,
    run_benchmark,
    sim_events,
)
from freshet.settings import Settings
from freshet.wiring import live_config
from schemas.events import InteractionEvent
from training.evaluation.online_freshet import FreshetOnline
from training.evaluation.prequential import OnlineModel, PrequentialConfig, StreamState
from training.train import TrainConfig

QUICK_GRID = ([1.0, 0.7, 0.4], [0.0, 0.5, 0.8])
FULL_GRID = ([1.0, 0.85, 0.7, 0.4], [0.0, 0.5, 0.8])


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


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)``: this process runs grid points K, K+N, K+2N, …"""
    k, _, n = text.partition("/")
    shard, shards = int(k), int(n)
    if not 0 <= shard < shards:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: want K/N with 0 <= K < N")
    return shard, shards


def run_points(args: argparse.Namespace, points: list[tuple[float, float]]) -> dict[str, Any]:
    """The prequential loop over ``points`` next to most-popular; rows in ``points`` order."""
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
                live_config(settings.with_(mmr_lambda=lam, longtail_share=tail)),
                name=grid_name(lam, tail),
            )
            for lam, tail in points
        ]

    config = PrequentialConfig(retrain_every=every, warmup_events=every)
    print(f"trade-off: {len(points)} settings on {n_inter} interactions")
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
    for lam, tail in points:
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
                "seconds": r.get("seconds", 0.0),
            }
        )
    return {
        "rows": rows,
        "reference": summary["most-popular"],
        "counts": result.counts,
        "wall_s": round(wall, 1),
        "onnx_provider": settings.onnx_provider,
        "interactions": n_inter,
        "retrain_every": every,
    }


def run_shards(args: argparse.Namespace, argv: Sequence[str]) -> list[dict[str, Any]]:
    """``args.jobs`` child processes, each on every ``jobs``-th grid point; their parts.

    Every child replays the same events and loads the same bundles (the cache's lock
    lets one train while the others wait), so a grid point's figures do not depend on
    which child ran it: only the wall time is shared out.
    """
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="freshet-tradeoff-") as tmp:
        children = []
        for k in range(args.jobs):
            part = Path(tmp) / f"part{k}.json"
            cmd = [
                sys.executable,
                "-m",
                "bench.tradeoff",
                *argv,
                f"--shard={k}/{args.jobs}",
                f"--part-out={part}",
            ]
            children.append((subprocess.Popen(cmd), cmd, part))
        failed = [cmd for child, cmd, _ in children if child.wait() != 0]
        if failed:
            raise SystemExit(f"trade-off shard failed: {' '.join(failed[0])}")
        return [json.loads(part.read_text()) for _, _, part in children]


def merge_parts(parts: list[dict[str, Any]], points: list[tuple[float, float]]) -> dict[str, Any]:
    """One result from the shards' parts, rows back in grid order."""
    by_point = {(r["mmr_lambda"], r["longtail_share"]): r for p in parts for r in p["rows"]}
    missing = [pt for pt in points if pt not in by_point]
    if missing:
        raise SystemExit(f"trade-off shards left out grid points {missing}")
    merged = dict(parts[0])
    merged["rows"] = [by_point[pt] for pt in points]
    merged["shard_wall_s"] = [p["wall_s"] for p in parts]
    return merged


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
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="split the grid over this many processes (one core each is the point)",
    )
    parser.add_argument("--shard", type=parse_shard, help=argparse.SUPPRESS)
    parser.add_argument("--part-out", type=Path, help=argparse.SUPPRESS)
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    lambdas, tails = QUICK_GRID if args.quick else FULL_GRID
    lambdas, tails = args.lambdas or lambdas, args.tails or tails
    points = [(lam, tail) for lam in lambdas for tail in tails]

    t0 = time.perf_counter()
    if args.shard is not None:
        if args.part_out is None:
            parser.error("--shard needs --part-out")
        shard, shards = args.shard
        _set_threads(args.threads)
        part = run_points(args, points[shard::shards])
        args.part_out.write_text(json.dumps(part) + "\n")
        return
    if args.jobs > 1:
        # the children take the parent's arguments; the last --jobs wins
        res = merge_parts(run_shards(args, [*raw, "--jobs=1"]), points)
    else:
        _set_threads(args.threads)
        res = run_points(args, points)
    wall = time.perf_counter() - t0
    rows, reference = res["rows"], res["reference"]
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
                "onnx_provider": res["onnx_provider"],
                "threads": args.threads,
                "jobs": args.jobs,
                "interactions": res["interactions"],
                "retrain_every": res["retrain_every"],
            }
        ),
        "counts": res["counts"],
        "wall_s": round(wall, 1),
        "shard_wall_s": res.get("shard_wall_s", [res["wall_s"]]),
        "grid": rows,
        "most_popular": reference,
    }
    (args.out / "tradeoff.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "tradeoff.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
