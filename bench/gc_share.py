"""The garbage collector's share of a worker's CPU, while a benchmark drives it.

Runs a command (a stream bench, say) with a ``sitecustomize`` on ``PYTHONPATH`` that
times every collection with ``gc.callbacks`` (CPU time of the collecting thread) in each
Python process whose command line matches ``--match``, and samples the process's CPU
and the collector's every second. Then it prints, per process, the collector's share of
its CPU over the whole run and over the busy seconds only (at least ``--busy-cores``),
where a drain is; ``--skip-s`` leaves a process's start-up out (the worker's loads
its catalog, busy too, in its first tens of seconds).

    .venv/bin/python -m bench.gc_share --skip-s 8 -- .venv/bin/python -m bench.stream_bench \\
        --ingest-only --users 20000 --warm 5000 --events 60000 --repeats 3 --items 100000

Two collector settings can be compared on one tree with ``--young N``: the matched
processes start with ``gc.set_threshold(N, ...)`` (the worker then sets its own at start).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SITE = """
import gc, os, re, threading, time
_out, _match = os.environ["GC_SHARE_OUT"], re.compile(os.environ["GC_SHARE_MATCH"])
_spent, _count, _start = [0.0, 0.0, 0.0], [0, 0, 0], [0.0]
def _timed(phase, info):
    if phase == "start":
        _start[0] = time.thread_time()
    else:
        _spent[info["generation"]] += time.thread_time() - _start[0]
        _count[info["generation"]] += 1
def _sample():
    cmd = open(f"/proc/{os.getpid()}/cmdline").read().replace("\\0", " ")
    if not _match.search(cmd):
        return
    gc.callbacks.append(_timed)
    with open(os.path.join(_out, str(os.getpid())), "a") as f:
        f.write(cmd.strip()[:120] + "\\n")
        while True:
            f.write(f"{time.time():.3f} {time.process_time():.4f} {sum(_spent):.4f} {_count}\\n")
            f.flush()
            time.sleep(1.0)
if os.environ.get("GC_SHARE_YOUNG"):
    gc.set_threshold(int(os.environ["GC_SHARE_YOUNG"]), *gc.get_threshold()[1:])
threading.Thread(target=_sample, daemon=True).start()
"""


def summarize(path: Path, busy_cores: float, skip_s: float) -> str:
    """One line for one process: its CPU, the collector's, both overall and when busy
    (the busy seconds from ``skip_s`` after its start on: past its start-up)."""
    lines = path.read_text().splitlines()
    rows = [tuple(float(x) for x in ln.split()[:3]) for ln in lines[1:] if ln[:1].isdigit()]
    if len(rows) < 2:
        return f"{lines[0][:70]}: too short to sample"
    cpu, gc_s = rows[-1][1] - rows[0][1], rows[-1][2] - rows[0][2]
    busy_cpu = busy_gc = 0.0
    for (t0, c0, g0), (t1, c1, g1) in itertools.pairwise(rows):
        if t0 - rows[0][0] >= skip_s and t1 > t0 and (c1 - c0) / (t1 - t0) >= busy_cores:
            busy_cpu += c1 - c0
            busy_gc += g1 - g0
    share = f"{100 * busy_gc / busy_cpu:.1f} % of {busy_cpu:.1f} s" if busy_cpu else "none busy"
    return (
        f"{lines[0][:70]}\n    whole run: collector {gc_s:.2f} s of {cpu:.1f} s CPU"
        f" ({100 * gc_s / max(cpu, 1e-9):.1f} %); busy seconds: {share}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--match", default=r"freshet\.cli worker|faust_take_bench")
    parser.add_argument("--busy-cores", type=float, default=0.3)
    parser.add_argument("--skip-s", type=float, default=0.0, help="start-up to leave out")
    parser.add_argument("--young", type=int, default=0, help="young threshold at start")
    parser.add_argument("--samples", type=Path, help="keep the per-second samples here")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    with tempfile.TemporaryDirectory() as site, tempfile.TemporaryDirectory() as tmp:
        out = str(args.samples or tmp)
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(site, "sitecustomize.py").write_text(SITE)
        env = dict(os.environ, GC_SHARE_OUT=out, GC_SHARE_MATCH=args.match)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
        if args.young:
            env["GC_SHARE_YOUNG"] = str(args.young)
        code = subprocess.call(command, env=env)
        print(
            f"collector's share (busy: at least {args.busy_cores} cores over a second,"
            f" {args.skip_s:g} s after a process started or later):"
        )
        for path in sorted(Path(out).iterdir(), key=lambda p: p.stat().st_mtime):
            print("  " + summarize(path, args.busy_cores, args.skip_s))
    sys.exit(code)


if __name__ == "__main__":
    main()
