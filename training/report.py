"""The training report: learning curves (PNG) and a metrics table (markdown)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from training.train import TrainResult

TABLE_COLUMNS = ("hr@10", "ndcg@10", "mrr", "coverage", "long_tail_share", "novelty")


def metrics_table(rows: Sequence[tuple[str, str, Mapping[str, float]]]) -> str:
    """Markdown table of ``(protocol, model, metrics)`` rows."""
    head = "| protocol | model | " + " | ".join(TABLE_COLUMNS) + " | cases |"
    sep = "|" + "---|" * (len(TABLE_COLUMNS) + 3)
    lines = [head, sep]
    for protocol, model, values in rows:
        cells = " | ".join(f"{values.get(c, float('nan')):.4f}" for c in TABLE_COLUMNS)
        lines.append(f"| {protocol} | {model} | {cells} | {int(values.get('cases', 0))} |")
    return "\n".join(lines) + "\n"


def write_report(
    result: TrainResult,
    rows: Sequence[tuple[str, str, Mapping[str, float]]],
    out_dir: Path,
    title: str = "Training report",
) -> tuple[Path, Path]:
    """Write ``curves.png`` and ``report.md`` into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = [r.epoch for r in result.history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [r.loss for r in result.history], marker="o")
    ax1.set_title("training loss")
    ax1.set_xlabel("epoch")
    for key in ("ndcg@10", "hr@10"):
        ax2.plot(epochs, [r.valid[key] for r in result.history], marker="o", label=key)
    ax2.axvline(result.best_epoch, color="grey", linestyle="--", label="kept")
    ax2.set_title("validation")
    ax2.set_xlabel("epoch")
    ax2.legend()
    fig.tight_layout()
    png = out_dir / "curves.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    lines = [
        f"# {title}",
        "",
        f"{result.samples} training examples in {result.seconds:.1f} s; "
        f"best epoch {result.best_epoch} of {len(result.history)}.",
        "",
        "| epoch | loss | valid NDCG@10 | valid HR@10 | seconds |",
        "|---|---|---|---|---|",
        *(
            f"| {r.epoch} | {r.loss:.4f} | {r.valid['ndcg@10']:.4f} | {r.valid['hr@10']:.4f} "
            f"| {r.seconds:.1f} |"
            for r in result.history
        ),
        "",
        "## Test metrics",
        "",
        metrics_table(rows),
        "![curves](curves.png)",
        "",
    ]
    md = out_dir / "report.md"
    md.write_text("\n".join(lines), encoding="utf-8")
    return png, md
