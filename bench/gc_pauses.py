"""The collector's pauses in a worker, by generation, and what each generation holds.

Runs a command (a stream bench, say) with a ``sitecustomize`` on ``PYTHONPATH`` that,
in each Python process whose command line matches ``--match`` (the worker), times every
collection with ``gc.callbacks`` (wall and the collecting thread's CPU, generation,
thread) and, every ``--census-s`` seconds, counts the objects each generation holds by
type (``gc.get_objects(generation)``; the frozen ones by ``gc.get_freeze_count``) with
the process's RSS. Then it prints, per process, per generation: how many collections,
their wall and CPU (median, p99, max) and the census taken last.

    .venv/bin/python -m bench.gc_pauses --out /tmp/gc -- .venv/bin/python -m \\
        bench.stream_bench --items 100000 --users 20000 --warm 20000 --events 3000 \\
        --rate 100 --bundle --curve 800,1600 --curve-events 3000

The census holds the GIL while it walks a generation (tens of ms at 100k items): its
own pauses are in the rows (``census``), so the collections' figures are apart from it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

SITE = """
import collections, gc, json, os, re, threading, time
_out, _match = os.environ["GC_PAUSES_OUT"], re.compile(os.environ["GC_PAUSES_MATCH"])
_every = float(os.environ.get("GC_PAUSES_CENSUS_S", "20"))
_slow = float(os.environ.get("GC_PAUSES_SLOW_MS", "5"))
_rows, _begun = [], {}
def _timed(phase, info):
    key = threading.get_ident()
    if phase == "start":
        _begun[key] = (time.perf_counter(), time.thread_time(), gc.get_count())
        return
    b = _begun.pop(key, None)
    if b is not None:
        row = {"k": "gc", "t": time.time(), "gen": info["generation"],
            "ms": 1e3 * (time.perf_counter() - b[0]), "cpu": 1e3 * (time.thread_time() - b[1]),
            "collected": info["collected"], "thread": threading.current_thread().name,
            "counts": b[2]}
        if row["gen"] < 2 and row["cpu"] >= _slow:  # what the slow pass just promoted
            row["promoted"] = _largest(gc.get_objects(row["gen"] + 1))
        _rows.append(row)
def _largest(objs, n=6):
    sized = []
    for o in objs:
        try:
            sized.append((len(o), id(o)))
        except TypeError:
            pass
    sized.sort(reverse=True)
    top = {i: o for o in objs for i in [id(o)] if any(i == j for _, j in sized[:n])}
    big = [(size, type(top[i]).__name__, _owner(top[i], (objs, top))) for size, i in sized[:n]]
    return {"n": len(objs), "refs": sum(x[0] for x in sized), "big": big}
def _owner(o, skip):  # what holds o (an attribute: its holder's class), ours left out
    for r in gc.get_referrers(o):
        if any(r is x for x in skip) or type(r).__name__ in ("frame", "cell"):
            continue
        if isinstance(r, dict):
            for h in gc.get_referrers(r):
                if getattr(h, "__dict__", None) is r:
                    return type(h).__name__ + "." + next((k for k, v in r.items() if v is o), "?")
        return type(r).__name__
    return ""
def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
def _census():
    t0 = time.perf_counter()
    gens = []
    for g in range(3):
        objs = gc.get_objects(g)
        sized = []
        for o in objs:
            try:
                sized.append((len(o), type(o).__name__))
            except TypeError:
                pass
        sized.sort(reverse=True)
        gens.append({"n": len(objs), "refs": sum(n for n, _ in sized), "big": sized[:6],
            "types": collections.Counter(type(o).__name__ for o in objs).most_common(12)})
        del objs, sized
    return {"k": "census", "t": time.time(), "gens": gens, "frozen": gc.get_freeze_count(),
        "counts": gc.get_count(), "threshold": gc.get_threshold(), "rss_mb": _rss(),
        "ms": 1e3 * (time.perf_counter() - t0)}
def _run():
    cmd = open(f"/proc/{os.getpid()}/cmdline").read().replace("\\0", " ")
    if not _match.search(cmd):
        return
    gc.callbacks.append(_timed)
    path = os.path.join(_out, f"{os.getpid()}.jsonl")
    with open(path, "a") as f:
        f.write(json.dumps({"k": "cmd", "cmd": cmd.strip()[:160]}) + "\\n")
        last = time.monotonic()
        while True:
            time.sleep(1.0)
            if time.monotonic() - last >= _every:
                last = time.monotonic()
                _rows.append(_census())
            n = len(_rows)
            taken = _rows[:n]
            del _rows[:n]
            f.write("".join(json.dumps(r) + "\\n" for r in taken))
            f.flush()
if os.environ.get("GC_PAUSES_YOUNG"):  # the worker's own setting, overridden
    _young, _set = int(os.environ["GC_PAUSES_YOUNG"]), gc.set_threshold
    gc.set_threshold = lambda t0, *rest: _set(_young, *rest)
    gc.set_threshold(_young, *gc.get_threshold()[1:])
threading.Thread(target=_run, daemon=True, name="gc-pauses").start()
"""


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    v = sorted(values)
    p99 = v[min(len(v) - 1, int(0.99 * len(v)))]
    return f"{statistics.median(v):.2f} / {p99:.2f} / {v[-1]:.2f}"


def summarize(path: Path) -> str:
    """Per generation: collections, wall and CPU (median / p99 / max ms), last census."""
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    head = next((r["cmd"] for r in rows if r["k"] == "cmd"), path.name)
    out = [head[:100]]
    out.append("    gen  passes  wall ms (med / p99 / max)   CPU ms (med / p99 / max)   >=5 ms CPU")
    for gen in range(3):
        mine = [r for r in rows if r["k"] == "gc" and r["gen"] == gen]
        cpu = [r["cpu"] for r in mine]
        out.append(
            f"    {gen}  {len(mine):7d}  {_spread([r['ms'] for r in mine]):>26}"
            f"  {_spread(cpu):>26}  {sum(c >= 5 for c in cpu):6d}"
        )
    census = [r for r in rows if r["k"] == "census"]
    for c in census[-1:]:
        out.append(
            f"    last census: frozen {c['frozen']:,}, rss {c['rss_mb']:.0f} MB,"
            f" counts {c['counts']}, threshold {c['threshold']} ({c['ms']:.0f} ms)"
        )
        for gen, g in enumerate(c["gens"]):
            kinds = ", ".join(f"{name} {n:,}" for name, n in g["types"][:8])
            out.append(f"      gen {gen}: {g['n']:,} objects: {kinds}")
            big = ", ".join(f"{name} {n:,}" for n, name in g.get("big", [])[:4])
            out.append(f"        sized containers' lengths {g.get('refs', 0):,}, largest: {big}")
    if census:
        out.append("    rss MB over the run: " + " ".join(f"{c['rss_mb']:.0f}" for c in census))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--match", default=r"freshet\.cli worker|tail_probe .* worker")
    parser.add_argument("--census-s", type=float, default=20.0)
    parser.add_argument("--out", type=Path, help="keep the rows here (one file a process)")
    parser.add_argument(
        "--young", type=int, default=0,
        help="young threshold in the matched processes, whatever they set (0: theirs)",
    )  # fmt: skip
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    with tempfile.TemporaryDirectory() as site, tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        Path(site, "sitecustomize.py").write_text(SITE)
        env = dict(os.environ, GC_PAUSES_OUT=str(out), GC_PAUSES_MATCH=args.match)
        env["GC_PAUSES_CENSUS_S"] = str(args.census_s)
        if args.young:
            env["GC_PAUSES_YOUNG"] = str(args.young)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
        code = subprocess.call(command, env=env)
        print("collections by generation (the matched processes):")
        for path in sorted(out.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
            print("  " + summarize(path))
    sys.exit(code)


if __name__ == "__main__":
    main()
