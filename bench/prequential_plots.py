"""Plots of the prequential bench: NDCG@10 bars per segment, HR@10 over the stream."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.evaluation.prequential import PrequentialResult


def plot_prequential(out: Path) -> None:
    """Bar charts of NDCG@10 (all, cold users, cold items) from ``out/prequential.json``."""
    pq = out / "prequential.json"
    if not pq.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = json.loads(pq.read_text())["models"]
    names = list(models)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, title in (
        (axes[0], "ndcg@10", "NDCG@10 (all)"),
        (axes[1], "cold_user/ndcg@10", "NDCG@10 (cold users ≤5 events)"),
        (axes[2], "cold_item/ndcg@10", "NDCG@10 (cold items <10 interactions)"),
    ):
        ax.barh(names[::-1], [models[n][key] for n in names[::-1]], color="tab:blue")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "prequential.png", dpi=110)
    plt.close(fig)


def plot_hr_over_stream(result: PrequentialResult, path: Path, buckets: int = 20) -> None:
    """HR@K of each model per twentieth of the scored events, in stream order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = result.k
    edges = np.unique(np.linspace(0, result.ranks.shape[1], buckets + 1).astype(int))
    mid = 100 * (edges[:-1] + edges[1:]) / 2 / max(result.ranks.shape[1], 1)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, name in enumerate(result.names):
        hits = result.ranks[i] < k
        per = np.add.reduceat(hits, edges[:-1]) / np.maximum(np.diff(edges), 1)
        ax.plot(mid, per, label=name)
    ax.set_xlabel("scored events, % of the stream (time order)")
    ax.set_ylabel(f"HR@{k} in each {100 // buckets}% slice")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
