"""The co-visitation table alone, replayed per event on a ratings stream: a fast dev loop.

Each interaction, in time order: if the user has history and the item is new to them,
every ``--every``-th such case is scored (HR@10 of the table's top followers of the
user's recent items, touched items excluded), then the event's pairs are added, at its
event time. No model, blend or diversity: it prices the table's shape in seconds where
the prequential loop takes minutes, on a prefix kept for development (``--stop``).

    .venv/bin/python -m bench.covisit_replay --file ../shared/data/ml-latest-small/ratings.csv \\
        --stop 50000 --shape "" --shape "damping=0.5,half_life_days=500"
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.prequential import file_events
from inference.covisit import BACKWARD, DAMPING, FLATNESS, CovisitTable, follow_pairs, recent_rows
from schemas.events import InteractionEvent
from training.evaluation.prequential import Event

SHAPE = {
    "window": 10,
    "backward": BACKWARD,
    "flatness": FLATNESS,
    "damping": DAMPING,
    "width": 200,
    "recent": 10,
    "decay": 0.8,
    "half_life_days": 500.0,
}
"""The served shape (``freshet.settings`` and the scorer's recent-10 query)."""


def replay(
    events: Sequence[Event], shape: dict[str, float], every: int = 10, stop: int = 0, k: int = 10
) -> tuple[float, int]:
    """HR@``k`` of the table alone and the number of scored cases."""
    s = {**SHAPE, **shape}
    window, recent = int(s["window"]), int(s["recent"])
    table = CovisitTable(int(s["width"]), s["damping"], s["half_life_days"] * 86_400_000.0)
    rows: dict[str, int] = {}
    hist: dict[str, list[int]] = {}
    seen: dict[str, set[int]] = {}
    hits = cases = eligible = n = 0
    for e in events:
        if not isinstance(e, InteractionEvent):
            continue
        n += 1
        if stop and n > stop:
            break
        r = rows.setdefault(e.item_id, len(rows))
        h, touched = hist.setdefault(e.user_id, []), seen.setdefault(e.user_id, set())
        if h and r not in touched:
            eligible += 1
            if eligible % every == 0:
                cases += 1
                top, _ = table.score(*recent_rows([np.array(h)], recent, s["decay"]), 50)
                hits += r in [x for x in top[0].tolist() if x >= 0 and x not in touched][:k]
        h.append(r)
        touched.add(r)
        pairs = follow_pairs(
            [np.array(h[-(window + 2) :])],
            [1],
            window,
            backward=s["backward"],
            flatness=s["flatness"],
        )
        table.add(*pairs, e.ts)
    return hits / max(cases, 1), cases


def parse_shape(text: str) -> dict[str, float]:
    """``KEY=VALUE,...`` over ``SHAPE``'s keys."""
    out: dict[str, float] = {}
    for pair in filter(None, text.split(",")):
        key, _, value = pair.partition("=")
        if key.strip() not in SHAPE:
            raise ValueError(f"unknown shape key {key!r} (of {', '.join(SHAPE)})")
        out[key.strip()] = float(value)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--stop", type=int, default=0, help="the first N interactions (0: all)")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--shape", action="append", default=[], help="KEY=VALUE,... changes")
    args = parser.parse_args(argv)
    events, _ = file_events(args.file)
    print(f"covisit replay: {args.file}, first {args.stop or 'all'} interactions")
    print(f"served shape: {SHAPE}")
    for text in args.shape or [""]:
        t0 = time.perf_counter()
        hr, cases = replay(events, parse_shape(text), args.every, args.stop)
        took = time.perf_counter() - t0
        print(f"  {text or 'served'}: HR@10 {hr:.4f} on {cases} cases ({took:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
