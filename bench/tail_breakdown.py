"""Where the slowest events' time went: the stream bench's events joined with the probe's rows.

``bench.stream_bench --tail-trace DIR`` runs the worker under ``bench.tail_probe`` and writes
each paced phase's events (user, send stamp, partition, offset, the producer's ack) and the
lists it saw. This joins them, per event, into:

- ``ack``: send stamp to the broker's acknowledgement, as the load generator saw it;
- ``to_worker``: send stamp to the record's chunk put on the agent's queue (linger,
  broker, fetch);
- ``wait``: chunk put to the start of the micro-batch that carries it (the batch in
  progress, then anything else on the loop);
- ``own``: that batch's start to the first list that reflects the event (its stages);
- ``total``: the freshness (send stamp to that list's ``published_ts``).

It prints the components' medians over all events and over the slowest 5 % and 1 %, what
ran while the slowest waited (the batch in progress, loop callbacks over the probe's
``SLOW_MS``, collections), and the slowest events one by one.

    .venv/bin/python -m bench.tail_breakdown DIR [--rates 800,1600]
"""

from __future__ import annotations

import argparse
import bisect
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.freshness import reflecting_stamps
from freshet.settings import Settings

BEHIND_MS = Settings().debounce_behind_ms
"""A batch is late when its oldest event had waited this long at its start (the worker's
adaptive debounce counts it behind from there)."""


@dataclass
class Spans:
    """Rows keyed by (partition, first offset): the row covering an offset, found by bisection."""

    starts: dict[int, list[int]] = field(default_factory=dict)
    rows: dict[int, list[tuple[int, int, Any]]] = field(default_factory=dict)

    @classmethod
    def of(cls, items: Iterable[tuple[int, int, int, Any]]) -> Spans:
        """From (partition, first offset, last offset, row); a later row of an offset
        (a redelivery) is kept as well, the first one found wins."""
        out = cls()
        by_p: dict[int, list[tuple[int, int, Any]]] = {}
        for p, o0, o1, row in items:
            by_p.setdefault(p, []).append((o0, o1, row))
        for p, rows in by_p.items():
            rows.sort(key=lambda r: r[0])
            out.rows[p] = rows
            out.starts[p] = [r[0] for r in rows]
        return out

    def find(self, p: int, offset: int) -> Any:
        """The row whose span holds ``offset`` of partition ``p``, else None.

        >>> Spans.of([(0, 0, 4, "a"), (0, 5, 9, "b")]).find(0, 7)
        'b'
        >>> Spans.of([(0, 0, 4, "a")]).find(1, 0) is None
        True
        """
        starts = self.starts.get(p)
        if not starts:
            return None
        i = bisect.bisect_right(starts, offset) - 1
        if i < 0:
            return None
        o0, o1, row = self.rows[p][i]
        return row if o0 <= offset <= o1 else None


def load_trace(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The probe's rows by kind."""
    out: dict[str, list[dict[str, Any]]] = {}
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                row = orjson.loads(line)
                out.setdefault(row["k"], []).append(row)
    return out


def overlapping(rows: Sequence[dict[str, Any]], t0: float, t1: float) -> list[dict[str, Any]]:
    """Rows with a start ``t`` and a length ``ms`` that overlap [t0, t1]."""
    return [r for r in rows if r["t"] < t1 and r["t"] + r["ms"] > t0]


def breakdown(
    point: dict[str, Any], trace: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Per event of a paced phase, its components (ms) and the rows that explain its wait."""
    chunks = Spans.of((r["p"], r["o0"], r["o1"], r) for r in trace.get("chunk", []))
    batches = Spans.of((s[0], s[1], s[2], b) for b in trace.get("batch", []) for s in b["spans"])
    events = point["events"]
    stamps = reflecting_stamps([(u, ts) for u, ts, *_ in events], point["lists"])
    out = []
    for (user, ts, p, offset, acked), pts in zip(events, stamps, strict=True):
        chunk, batch = chunks.find(p, offset), batches.find(p, offset)
        if pts is None or chunk is None or batch is None:
            continue
        out.append(
            {
                "user": user, "p": p, "offset": offset, "ts": ts, "pts": pts,
                "total": pts - ts,
                "ack": acked - ts if acked else float("nan"),
                "to_worker": chunk["t"] - ts,
                "wait": batch["t0"] - chunk["t"],
                "own": pts - batch["t0"],
                "own_batch": pts <= batch["t1"] + 1,  # reflected by its own batch's lists
                "batch": batch, "fetched": chunk["t"],
            }
        )  # fmt: skip
    return out


def _median(values: Iterable[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


COMPONENTS = ("total", "ack", "to_worker", "wait", "own")
SLOW_GC_MS = 5.0
"""A collection this long (wall) is counted apart."""


def summary(rows: Sequence[dict[str, Any]], trace: dict[str, list[dict[str, Any]]]) -> str:
    """The printable breakdown of one phase's events."""
    rows = sorted(rows, key=lambda r: r["total"])
    n = len(rows)
    lines = [f"  {n} events joined; components: median ms (all / slowest 5 % / slowest 1 %)"]
    groups = {"all": rows, "5%": rows[int(0.95 * n) :], "1%": rows[int(0.99 * n) :]}
    for c in COMPONENTS:
        lines.append(
            f"    {c:<10}" + "".join(f"{_median(r[c] for r in g):9.1f}" for g in groups.values())
        )
    batches = trace.get("batch", [])
    slow, gcs = trace.get("slow", []), trace.get("gc", [])
    for name, group in (("all", rows), ("5%", groups["5%"]), ("1%", groups["1%"])):
        own = [r["batch"] for r in group]
        stages: Counter[str] = Counter()
        for b in own:
            stages.update(b["stages"])
        k = max(1, len(own))
        in_progress = [_in_progress(batches, r) for r in group]
        lines.append(
            f"    {name}: own batch {_median(b['t1'] - b['t0'] for b in own):.1f} ms,"
            f" {_median(b['n'] for b in own):.0f} records; stages (mean ms) "
            + ", ".join(f"{s} {v / k:.1f}" for s, v in stages.most_common())
        )
        lines.append(
            f"      batch in progress at fetch: {_median(b[1] for b in in_progress):.1f} ms"
            f" long, {_median(b[0] for b in in_progress):.1f} ms left;"
            f" reflected by own batch {sum(r['own_batch'] for r in group)}/{len(group)}"
        )
        stalls: Counter[str] = Counter()
        stall_ms: Counter[str] = Counter()
        n_gc = n_long = 0
        for r in group:
            for s in overlapping(slow, r["fetched"], r["batch"]["t0"]):
                stalls[s["what"]] += 1
                stall_ms[s["what"]] += s["ms"]
            held = overlapping(gcs, r["ts"], r["pts"])
            n_gc += bool(held)
            n_long += any(g["ms"] >= SLOW_GC_MS for g in held)
        lines.append(
            f"      events with a collection in their window: {n_gc}/{len(group)}"
            f" (one of {SLOW_GC_MS:g} ms or more: {n_long})"
        )
        for what, count in stalls.most_common(6):
            lines.append(
                f"      loop held while waiting: {what[:70]} x{count},"
                f" {stall_ms[what] / count:.1f} ms each"
            )
    late = late_batches(rows, trace, BEHIND_MS)
    lines.append(
        f"  batches {late['batches']}, late (oldest event over {BEHIND_MS} ms at the start)"
        f" {late['late']}, lone late (the one before was not) {late['lone_late']}: their"
        f" {late['lone_late_events']} events, {late['lone_late_deferred']} reflected later"
    )
    lines.append("  slowest 10: total = to_worker + wait + own (ack); batch n, its stages")
    for r in rows[-10:]:
        b = r["batch"]
        st = " ".join(f"{s[:5]}{v:.0f}" for s, v in b["stages"].items() if v >= 1)
        lines.append(
            f"    {r['total']:5.0f} = {r['to_worker']:5.1f} + {r['wait']:5.1f} + {r['own']:5.1f}"
            f" ({r['ack']:5.1f}) p{r['p']} n={b['n']} {st}"
        )
    return "\n".join(lines)


def late_batches(
    rows: Sequence[dict[str, Any]], trace: dict[str, list[dict[str, Any]]], behind_ms: float
) -> dict[str, int]:
    """How many batches carrying ``rows`` were late (their oldest event had waited over
    ``behind_ms`` at their start), how many of those came after one that was not (a lone
    late batch: a hiccup, no backlog), and those batches' events and deferrals."""
    oldest: dict[int, float] = {}
    for r in rows:
        key = id(r["batch"])
        oldest[key] = min(oldest.get(key, r["ts"]), r["ts"])
    lag = {id(b): b["t0"] - oldest.get(id(b), b["t0"]) for b in trace.get("batch", [])}
    before: dict[int, float] = {}
    last = 0.0
    for b in sorted(trace.get("batch", []), key=lambda b: b["t0"]):
        before[id(b)], last = last, lag[id(b)]
    late = {k for k in oldest if lag[k] > behind_ms}
    lone = {k for k in late if before[k] <= behind_ms}
    in_lone = [r for r in rows if id(r["batch"]) in lone]
    return {
        "batches": len(oldest),
        "late": len(late),
        "lone_late": len(lone),
        "lone_late_events": len(in_lone),
        "lone_late_deferred": sum(not r["own_batch"] for r in in_lone),
    }


def _in_progress(batches: Sequence[dict[str, Any]], row: dict[str, Any]) -> tuple[float, float]:
    """(ms left, its length) of the batch running when the event's chunk arrived, or (0, 0)."""
    t = row["fetched"]
    for b in batches:
        if b["t0"] <= t < b["t1"]:
            return b["t1"] - t, b["t1"] - b["t0"]
    return 0.0, 0.0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rates", default="", help="only these offered rates, e.g. 800,1600")
    args = parser.parse_args(argv)
    trace = load_trace(args.folder / "worker.jsonl")
    wanted = {float(r) for r in args.rates.split(",") if r.strip()}
    for path in sorted(args.folder.glob("point_*.json"), key=lambda p: float(p.stem[6:])):
        point = orjson.loads(path.read_bytes())
        if wanted and point["rate"] not in wanted:
            continue
        rows = breakdown(point, trace)
        print(f"offered {point['rate']:g} ev/s, {len(point['events'])} events")
        print(summary(rows, trace))


if __name__ == "__main__":
    main()
