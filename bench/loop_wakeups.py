"""What wakes a process's event loop, and what each wake-up costs: a bench-only probe.

``install()`` wraps asyncio's ``Handle._run`` (every callback the loop runs: a task's
step, a timer, a future's done-callback, a reader) and ``BaseEventLoop._run_once`` (one
pass of the loop: a wake-up from the selector or a timer). Each callback is counted and
its thread CPU summed under a label: the coroutine's qualified name for a task's step,
the callback's qualified name otherwise. ``snapshot()`` copies the counters so that a
window (idle, or paced events) is the difference of two snapshots, and ``threads()``
reads every thread's CPU from ``/proc/self/task``, so work off the loop (a consumer
thread, a library's own thread) shows too.

The probe adds about a microsecond per callback, so it is for attribution (which
service or timer wakes the loop, how often, with what share of the CPU), not for the
figures the floor bench reports without it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

_counts: Counter[str] = Counter()
_cpu: dict[str, float] = {}
_passes = [0]
_installed = [False]


def _label(callback: Any) -> str:
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        name = getattr(coro, "__qualname__", None) or type(coro).__name__
        frame = getattr(coro, "cr_frame", None)
        if name == "Service._execute_task" and frame is not None:  # mode's task wrapper
            inner = frame.f_locals.get("task")
            name = getattr(inner, "__qualname__", None) or type(inner).__name__
        return f"task {name}"
    if isinstance(owner, asyncio.Future):
        return f"future {getattr(callback, '__qualname__', repr(callback))}"
    func = getattr(callback, "func", None)  # functools.partial
    if func is not None:
        return _label(func)
    qual = getattr(callback, "__qualname__", None)
    module = getattr(callback, "__module__", None) or ""
    return f"{module}.{qual}" if qual else repr(callback)[:80]


def install() -> None:
    """Count and time every callback and every pass of every asyncio loop in the process."""
    if _installed[0]:
        return
    _installed[0] = True
    events = asyncio.events
    run = events.Handle._run
    thread_time = time.thread_time

    def _run(self: Any) -> None:
        label = _label(self._callback)  # before: a finished coroutine has no frame
        start = thread_time()
        try:
            run(self)
        finally:
            _counts[label] += 1
            _cpu[label] = _cpu.get(label, 0.0) + thread_time() - start

    events.Handle._run = _run  # type: ignore[method-assign]
    base = asyncio.base_events.BaseEventLoop
    once = base._run_once  # type: ignore[attr-defined]

    def _run_once(self: Any) -> None:
        _passes[0] += 1
        once(self)

    base._run_once = _run_once  # type: ignore[attr-defined]  # a private method


def snapshot() -> dict[str, Any]:
    """The counters now: loop passes, callbacks per label, callback CPU per label."""
    return {
        "passes": _passes[0],
        "counts": dict(_counts),
        "cpu_s": dict(_cpu),
        "threads": threads(),
        "process_s": time.process_time(),
        "wall_s": time.perf_counter(),
    }


def threads() -> dict[str, float]:
    """CPU seconds (user + system) of each thread of this process, by ``name:tid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[f"{name}:{task.name}"] = (int(fields[11]) + int(fields[12])) / tick
    return out


def window(before: dict[str, Any], after: dict[str, Any], events: int = 0) -> dict[str, Any]:
    """What happened between two snapshots: per second of wall time and, when ``events``
    is given, per event; callbacks sorted by CPU."""
    wall = after["wall_s"] - before["wall_s"]
    rows = []
    for label, n in after["counts"].items():
        count = n - before["counts"].get(label, 0)
        if count <= 0:
            continue
        cpu = after["cpu_s"][label] - before["cpu_s"].get(label, 0.0)
        rows.append((label, count, cpu))
    rows.sort(key=lambda r: -r[2])
    per = max(1, events)
    thread_cpu = {
        name: s - before["threads"].get(name, 0.0)
        for name, s in after["threads"].items()
        if s - before["threads"].get(name, 0.0) > 0
    }
    return {
        "wall_s": wall,
        "events": events,
        "process_cpu_s": after["process_s"] - before["process_s"],
        "loop_passes_per_s": (after["passes"] - before["passes"]) / wall,
        "loop_passes_per_event": (after["passes"] - before["passes"]) / per,
        "threads_cpu_s": thread_cpu,
        "callbacks": [
            {
                "label": label,
                "per_s": count / wall,
                "per_event": count / per if events else None,
                "cpu_ms_per_s": 1000.0 * cpu / wall,
                "cpu_ms_per_event": 1000.0 * cpu / per if events else None,
            }
            for label, count, cpu in rows
        ],
    }


def render(name: str, w: dict[str, Any], top: int = 25) -> str:
    """A printable table of one window."""
    lines = [
        f"{name}: {w['wall_s']:.1f} s wall, {w['events']} events, process CPU "
        f"{1000 * w['process_cpu_s']:.1f} ms, loop passes {w['loop_passes_per_s']:.1f}/s"
        + (f" ({w['loop_passes_per_event']:.1f}/event)" if w["events"] else ""),
        "  threads (CPU ms): "
        + ", ".join(f"{k} {1000 * v:.0f}" for k, v in sorted(w["threads_cpu_s"].items())),
        "  callback                                                      /s    /event  "
        "CPU ms/s  CPU ms/event",
    ]
    for r in w["callbacks"][:top]:
        per_event = f"{r['per_event']:8.2f}" if r["per_event"] is not None else "       -"
        cpu_ms = r["cpu_ms_per_event"]
        cpu_event = f"{cpu_ms:12.4f}" if cpu_ms is not None else "           -"
        lines.append(
            f"  {r['label'][:60]:<60} {r['per_s']:6.2f} {per_event} {r['cpu_ms_per_s']:9.4f}"
            f" {cpu_event}"
        )
    return "\n".join(lines)
