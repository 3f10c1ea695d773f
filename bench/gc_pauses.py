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

Each pass also names the code it ran in (the innermost frames of its thread: an
explicit ``gc.collect``, or the batch's code whose allocation triggered it). After a
pass of ``--slow-ms`` CPU or more, the next generation's largest containers are named
with what holds them, a chain of up to four holders: an attribute with its holder's
class, a dict key, or a running function's local in any thread (in 3.11 a running frame
is no referrer, so ``gc.get_referrers`` alone leaves those unnamed), and the types a
container holds. ``--young-census N`` counts, at the start of every Nth young pass, what
the young generation holds by type and how many referents (what the pass visits).

The census holds the GIL while it walks a generation (tens of ms at 100k items): its
own pauses are in the rows (``census``), so the collections' figures are apart from it.
For timed runs set ``--slow-ms`` and ``--census-s`` high: the naming and the census
stall the worker.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import orjson

SITE = """
import collections, gc, json, os, re, sys, threading, time
_out, _match = os.environ["GC_PAUSES_OUT"], re.compile(os.environ["GC_PAUSES_MATCH"])
_every = float(os.environ.get("GC_PAUSES_CENSUS_S", "20"))
_slow = float(os.environ.get("GC_PAUSES_SLOW_MS", "5"))
_rows, _begun = [], {}
def _timed(phase, info):
    key = threading.get_ident()
    if phase == "start":
        young = _young_kinds() if info["generation"] == 0 and _census_young() else None
        _begun[key] = (time.perf_counter(), time.thread_time(), gc.get_count(), young)
        return
    b = _begun.pop(key, None)
    if b is not None:
        row = {"k": "gc", "t": time.time(), "gen": info["generation"],
            "ms": 1e3 * (time.perf_counter() - b[0]), "cpu": 1e3 * (time.thread_time() - b[1]),
            "collected": info["collected"], "thread": threading.current_thread().name,
            "counts": b[2], "at": _caller()}
        if b[3] is not None:
            row["young"] = b[3]
        if row["gen"] < 2 and row["cpu"] >= _slow:  # what the slow pass just promoted
            row["promoted"] = _largest(gc.get_objects(row["gen"] + 1))
        _rows.append(row)
_name_census = os.environ.get("GC_PAUSES_NAME_CENSUS") == "1"
_young_every, _young_seen = int(os.environ.get("GC_PAUSES_YOUNG_CENSUS", "0")), [0]
def _census_young():  # every Nth young pass is counted (0: none)
    _young_seen[0] += 1
    return _young_every > 0 and _young_seen[0] % _young_every == 0
def _young_kinds():  # what the young generation holds at a pass's start: type -> (n, referents)
    kinds = collections.defaultdict(lambda: [0, 0])
    for o in gc.get_objects(0):
        k = kinds[type(o).__name__]
        k[0] += 1
        k[1] += len(gc.get_referents(o))
    return sorted(((t, n, r) for t, (n, r) in kinds.items()), key=lambda x: -x[2])[:8]
def _caller():  # the code the pass ran in: the innermost frames outside this file
    f, names = sys._getframe(2), []
    while f is not None and len(names) < 3:
        c = f.f_code
        names.append(f"{c.co_qualname} {c.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno}")
        f = f.f_back
    return names
def _largest(objs, n=6):
    sized = []
    for o in objs:
        try:
            sized.append((len(o), id(o)))
        except TypeError:
            pass
    sized.sort(reverse=True)
    want = {j for _, j in sized[:n]}
    top = {id(o): o for o in objs if id(o) in want}
    skip = (objs, top, sized)
    big = [(size, type(top[i]).__name__, _chain(top[i], skip), _kinds(top[i]))
        for size, i in sized[:n]]
    return {"n": len(objs), "refs": sum(x[0] for x in sized), "big": big}
def _kinds(o):  # the types a container holds (a dict: its keys' and values'), sampled
    try:
        items = list(o.items())[:3] if isinstance(o, dict) else list(o)[:3]
    except Exception:
        return ""
    if isinstance(o, dict):
        return ",".join(type(k).__name__ + ":" + type(v).__name__ for k, v in items)
    return ",".join(type(v).__name__ for v in items)
def _where(r):  # a frame named by its function and line
    if type(r).__name__ == "frame":
        c = r.f_code
        return f"frame {c.co_qualname} {c.co_filename.rsplit('/', 2)[-1]}:{r.f_lineno}"
    return None
_thaw = os.environ.get("GC_PAUSES_THAW") == "1"
def _referrers(o):  # with --thaw, frozen holders too (get_referrers skips the frozen)
    if not _thaw:
        return gc.get_referrers(o)
    gc.unfreeze()
    try:
        return gc.get_referrers(o)
    finally:
        gc.freeze()
def _holder(o, skip):  # what holds o: an attribute named with its holder's class
    for r in _referrers(o):
        if any(r is x for x in skip):
            continue
        if type(r).__name__ == "cell":  # a closure's variable: named by its function
            for t in gc.get_referrers(r):
                for fn in gc.get_referrers(t) if isinstance(t, tuple) else ():
                    if getattr(fn, "__closure__", None) is t:
                        return "closure of " + fn.__qualname__, None
            continue
        where = _where(r)
        if where:
            if r.f_code.co_filename.endswith("sitecustomize.py"):
                continue
            return where, None
        if isinstance(r, dict):
            for h in gc.get_referrers(r):
                if getattr(h, "__dict__", None) is r:
                    name = next((k for k, v in r.items() if v is o), "?")
                    return type(h).__name__ + "." + name, h
            key = next((repr(k)[:40] for k, v in r.items() if v is o), "?")
            return f"dict[{key}]", r
        attrs = getattr(r, "__dict__", None)  # 3.11: an instance's values refer directly
        name = next((k for k, v in attrs.items() if v is o), "") if type(attrs) is dict else ""
        return type(r).__name__ + ("." + name if name else ""), r
    for f in sys._current_frames().values():  # a running function's local, any thread
        while f is not None:  # (in 3.11 a running frame is no referrer)
            if not f.f_code.co_filename.endswith("sitecustomize.py"):
                for k, v in f.f_locals.items():
                    if v is o:
                        return f"local {k} of " + _where(f), None
            f = f.f_back
    return "", None
def _chain(o, skip, depth=4):  # holders up to depth: "frame f", "A.x <- B.a <- ..."
    names = []
    for _ in range(depth):
        name, o = _holder(o, skip)
        names.append(name)
        if o is None:
            break
    return " <- ".join(names)
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
        if g > 0 and _name_census:  # who holds the long-lived generations' largest
            gens[-1]["held"] = _largest(objs, 3)["big"]
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


def spread(values: list[float]) -> str:
    """Median / p99 / max of ``values`` (ms), or "-" when there are none."""
    if not values:
        return "-"
    v = sorted(values)
    p99 = v[min(len(v) - 1, int(0.99 * len(v)))]
    return f"{statistics.median(v):.2f} / {p99:.2f} / {v[-1]:.2f}"


def summarize(path: Path, since_s: float = 0.0) -> str:
    """Per generation: collections (per second), wall and CPU (median / p99 / max ms) from
    ``since_s`` after the first one; where the passes of 5 ms or more ran; last census."""
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
    head = next((r["cmd"] for r in rows if r["k"] == "cmd"), path.name)
    passes = [r for r in rows if r["k"] == "gc"]
    begin = passes[0]["t"] + since_s if passes else 0.0
    passes = [r for r in passes if r["t"] >= begin]
    span = max(1e-9, passes[-1]["t"] - begin) if passes else 1.0
    out = [head[:100], f"    passes over {span:.0f} s from {since_s:.0f} s after the first one"]
    out.append(
        "    gen  passes  per s  wall ms (med / p99 / max)   CPU ms (med / p99 / max)"
        "  >=5 ms CPU  CPU ms/s"
    )
    for gen in range(3):
        mine = [r for r in passes if r["gen"] == gen]
        cpu = [r["cpu"] for r in mine]
        out.append(
            f"    {gen}  {len(mine):7d}  {len(mine) / span:5.2f}"
            f"  {spread([r['ms'] for r in mine]):>26}"
            f"  {spread(cpu):>26}  {sum(c >= 5 for c in cpu):10d}  {sum(cpu) / span:8.2f}"
        )
    slow_at = Counter(r["at"][0].split(" ")[0] for r in passes if r["cpu"] >= 5 and r.get("at"))
    if slow_at:
        ran_in = ", ".join(f"{k} {n}" for k, n in slow_at.most_common(6))
        out.append("    the >=5 ms passes ran in: " + ran_in)
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
            for n, name, holder, kinds in g.get("held", []):
                out.append(f"        {name} {n:,} ({kinds}) held by {holder}")
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
    parser.add_argument(
        "--slow-ms", type=float, default=5.0,
        help="after a young or middle pass of this much CPU, name what the next generation's"
        " largest containers are held by (costly: set it high for timed runs)",
    )  # fmt: skip
    parser.add_argument(
        "--young-census", type=int, default=0,
        help="count what every Nth young pass walks, by type, at its start (0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--name-census", action="store_true",
        help="each census names what holds the middle and old generations' largest containers",
    )  # fmt: skip
    parser.add_argument(
        "--thaw", action="store_true",
        help="name frozen holders too: unfreeze, look, freeze again (freezes all there is then:"
        " a diagnostic run only)",
    )  # fmt: skip
    parser.add_argument(
        "--since-s", type=float, default=0.0,
        help="summarize the passes from this many seconds after the process's first one",
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
        env["GC_PAUSES_SLOW_MS"] = str(args.slow_ms)
        env["GC_PAUSES_YOUNG_CENSUS"] = str(args.young_census)
        env["GC_PAUSES_NAME_CENSUS"] = "1" if args.name_census else "0"
        env["GC_PAUSES_THAW"] = "1" if args.thaw else "0"
        if args.young:
            env["GC_PAUSES_YOUNG"] = str(args.young)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
        code = subprocess.call(command, env=env)
        print("collections by generation (the matched processes):")
        for path in sorted(out.glob("*.jsonl"), key=lambda p: p.stat().st_mtime):
            print("  " + summarize(path, args.since_s))
    sys.exit(code)


if __name__ == "__main__":
    main()
