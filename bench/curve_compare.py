"""Freshness against offered rate for two or more stream-bench runs, in one plot.

Reads the ``--out`` JSON of ``bench.stream_bench`` runs (their ``curve`` points) and
draws ``freshness_ms_all_events`` p50 and p99 against the offered rate, one colour
per run, on log axes; prints the same figures as a table.

    python -m bench.curve_compare start=base.json now=now.json --out curve.png
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def curve_of(run: dict[str, Any]) -> list[tuple[float, float, float]]:
    """(offered rate, p50, p99) of each curve point of one stream-bench JSON."""
    points = run["figures"]["curve"]
    return [
        (
            float(p["offered_rate"]),
            float(p["freshness_ms_all_events"]["p50"]),
            float(p["freshness_ms_all_events"]["p99"]),
        )
        for p in points
    ]


def table(curves: dict[str, list[tuple[float, float, float]]]) -> str:
    """A Markdown table: one row per offered rate, p50 / p99 per run."""
    rates = sorted({r for c in curves.values() for r, _, _ in c})
    lines = ["| offered ev/s | " + " | ".join(f"{n} p50 / p99 ms" for n in curves) + " |"]
    lines.append("|---|" + "---|" * len(curves))
    for rate in rates:
        cells = []
        for c in curves.values():
            hit = [(p50, p99) for r, p50, p99 in c if r == rate]
            cells.append(f"{hit[0][0]:,.0f} / {hit[0][1]:,.0f}" if hit else "–")
        lines.append(f"| {rate:,.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curves: dict[str, list[tuple[float, float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, c) in enumerate(curves.items()):
        rates = [r for r, _, _ in c]
        colour = f"C{i}"
        ax.plot(rates, [p50 for _, p50, _ in c], "o-", color=colour, label=f"{name} p50")
        ax.plot(rates, [p99 for _, _, p99 in c], "s--", color=colour, label=f"{name} p99")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered events/s")
    ax.set_ylabel("event to first list reflecting it, ms")
    ax.set_title("freshness against offered rate (every event counted)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=JSON", help="a label and a run's JSON")
    parser.add_argument("--out", type=Path, help="write the plot here (PNG)")
    args = parser.parse_args(argv)
    curves: dict[str, list[tuple[float, float, float]]] = {}
    for spec in args.runs:
        name, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"{spec!r}: give NAME=JSON")
        curves[name] = curve_of(json.loads(Path(path).read_text()))
    print(table(curves))
    if args.out:
        plot(curves, args.out)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
