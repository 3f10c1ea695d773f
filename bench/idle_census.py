"""Where an idle worker's CPU goes: per thread, per loop callback, in a real worker.

Runs a command (a stream bench, say) with a ``sitecustomize`` on ``PYTHONPATH`` that, in
the Python process whose command line matches ``--match`` (the worker), installs
``bench.loop_wakeups`` and writes a snapshot every ``--every-s`` seconds: each thread's
CPU (``/proc/self/task``, named by its Python thread where it has one), the loop's
passes and every callback's count and CPU. Then it prints the quietest ``--window-s``
seconds of the run (least process CPU: with a stream bench's ``--idle-s`` at least that
long, its idle window), per thread and per callback, per second.

    .venv/bin/python -m bench.idle_census --out /tmp/idle -- .venv/bin/python -m \\
        bench.stream_bench --items 100000 --users 20000 --warm 20000 --events 3000 \\
        --rate 100 --bundle --curve 10 --curve-events 50 --curve-stop-ms 2000 --idle-s 30

The probe costs about a microsecond a callback (tens a second at idle) and a snapshot
a second (well under a millisecond), so it is for attribution, not for the figure the
stream bench reports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench import loop_wakeups

SITE = """
import os, re, threading, time
_argv = open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace")
if re.search(os.environ["IDLE_CENSUS_MATCH"], _argv):
    import orjson
    from bench import loop_wakeups
    loop_wakeups.install()
    _out, _every = os.environ["IDLE_CENSUS_OUT"], float(os.environ["IDLE_CENSUS_EVERY_S"])
    def _names():
        return {str(t.native_id): t.name for t in threading.enumerate()}
    def _run():
        path = f"{_out}/census-{os.getpid()}.jsonl"
        while True:
            time.sleep(_every)
            row = loop_wakeups.snapshot()
            row["names"] = _names()
            with open(path, "ab") as f:
                f.write(orjson.dumps(row) + b"\\n")
    threading.Thread(target=_run, name="idle-census", daemon=True).start()
"""


def quietest(rows: list[dict[str, Any]], window_s: float) -> tuple[int, int]:
    """Indices ``(i, j)`` of the two snapshots at least ``window_s`` apart with the least
    process CPU per second between them.

    >>> rows = [{"wall_s": t, "process_s": c} for t, c in [(0, 0), (1, 5), (2, 5.1), (3, 5.2)]]
    >>> quietest(rows, 2.0)
    (1, 3)
    """
    best: tuple[float, int, int] | None = None
    j = 0
    for i, row in enumerate(rows):
        j = max(j, i + 1)
        while j < len(rows) and rows[j]["wall_s"] - row["wall_s"] < window_s:
            j += 1
        if j >= len(rows):
            break
        wall = rows[j]["wall_s"] - row["wall_s"]
        rate = (rows[j]["process_s"] - row["process_s"]) / wall
        if best is None or rate < best[0]:
            best = (rate, i, j)
    if best is None:
        raise ValueError(f"no two snapshots {window_s} s apart")
    return best[1], best[2]


def by_thread(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, float]]:
    """CPU ms per second of each thread between two snapshots, busiest first, each
    named ``<python name or comm>:<tid>``."""
    wall = after["wall_s"] - before["wall_s"]
    names = {**before.get("names", {}), **after.get("names", {})}
    rows = []
    for key, s in after["threads"].items():
        comm, _, tid = key.rpartition(":")
        ms = 1000.0 * (s - before["threads"].get(key, 0.0)) / wall
        rows.append((f"{names.get(tid, comm)}:{tid}", ms))
    return sorted(rows, key=lambda r: -r[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a folder for the snapshots")
    parser.add_argument("--match", default=r"freshet\.cli worker", help="the worker's argv")
    parser.add_argument("--every-s", type=float, default=1.0)
    parser.add_argument("--window-s", type=float, default=30.0)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as site:
        Path(site, "sitecustomize.py").write_text(SITE)
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, root, env.get("PYTHONPATH")) if p)
        env.update(
            IDLE_CENSUS_OUT=str(args.out),
            IDLE_CENSUS_MATCH=args.match,
            IDLE_CENSUS_EVERY_S=str(args.every_s),
        )
        rc = subprocess.call(command, env=env)
    for path in sorted(args.out.glob("census-*.jsonl")):
        rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
        i, j = quietest(rows, args.window_s)
        w = loop_wakeups.window(rows[i], rows[j])
        print(f"{path.name}: the quietest {w['wall_s']:.0f} s of {len(rows)} snapshots")
        print(f"  process CPU {1000 * w['process_cpu_s'] / w['wall_s']:.2f} ms/s")
        for name, ms in by_thread(rows[i], rows[j]):
            if ms > 0:
                print(f"  thread {name:<40} {ms:7.2f} ms/s")
        print(loop_wakeups.render("  loop", w))
        (args.out / f"{path.stem}.window.json").write_bytes(
            orjson.dumps({"window": w, "threads": by_thread(rows[i], rows[j])})
        )
    sys.exit(rc)


if __name__ == "__main__":
    main()
