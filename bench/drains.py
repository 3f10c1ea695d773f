"""Saturated drains with lists on, repeated, each paired with Faust's no-op ceiling.

``bench.stream_bench --drain-events N --repeats R`` runs this after its paced phases:
R backlogs of N fresh events each, produced with the worker paused and drained once it
resumes (``stream_bench.saturation``), each followed on the same broker by Faust's no-op
agent on as many events with the worker's micro-batch window. A drain of a few thousand
events is only a handful of scored micro-batches at 100k items, so its rate swings with
whatever else the host does; many events and the median of several pairs give a figure
that can rank two trees.

Each drain keeps every field of the single drain (``saturated_worker``) and adds the
no-op rate and the ratio, lists per scored micro-batch (mean, and the spread of lists
per publish stamp), and the raw pipe's rate in the same pair.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.ingest_only import faust_ceiling
from bench.stream_bench import WorkerProc, saturation
from freshet.settings import Settings
from schemas.events import InteractionEvent


def with_ceiling(drain: dict[str, Any], ceiling: dict[str, Any]) -> dict[str, Any]:
    """One drain's figures with the no-op agent's beside them and their ratio.

    >>> d = with_ceiling({"events_per_s": 3000.0, "lists_published": 700.0,
    ...                   "micro_batches_scored": 10, "worker_cpu_ms_per_event": 0.4},
    ...                  {"events_per_s": 10000.0, "cpu_ms_per_event": 0.1, "cores": 1.0})
    >>> d["ratio_to_faust_noop"], d["cpu_ratio_to_faust_noop"], d["lists_per_scored_batch"]
    (0.3, 0.25, 70.0)
    """
    batches = drain.get("micro_batches_scored") or 0
    return {
        **drain,
        "faust_noop_events_per_s": ceiling["events_per_s"],
        "faust_noop_cpu_ms_per_event": ceiling["cpu_ms_per_event"],
        "faust_noop_cores": ceiling["cores"],
        "ratio_to_faust_noop": drain["events_per_s"] / ceiling["events_per_s"],
        # What the rate ratio tends to when both are CPU-bound: on a loaded host the
        # rates swing with the neighbours, and CPU per event less (not nothing).
        "cpu_ratio_to_faust_noop": ceiling["cpu_ms_per_event"] / drain["worker_cpu_ms_per_event"],
        "lists_per_scored_batch": drain["lists_published"] / batches if batches else float("nan"),
    }


def run(
    settings: Settings,
    worker: WorkerProc,
    backlogs: Sequence[Sequence[InteractionEvent]],
    profiles: Path | None = None,
) -> dict[str, Any]:
    """Every drain and its no-op pair; figures for the stream bench's report.

    ``saturated_worker`` is the median drain by ratio (with ``repeats``: all of them),
    ``saturated_baseline`` the raw pipe's median rate, ``faust_noop`` the no-op's median.
    ``profiles``: a folder for a py-spy profile of each drain (``drain_<n>.txt``).
    """
    drains = []
    pipes = []
    for i, events in enumerate(backlogs):
        profile = None
        if profiles is not None:
            profiles.mkdir(parents=True, exist_ok=True)
            profile = profiles / f"drain_{i}.txt"
        drain, pipe = saturation(settings, worker, events, profile)
        ceiling = faust_ceiling(settings, len(events), seed=i)
        drains.append(
            {
                "events": len(events),
                "raw_pipe_events_per_s": pipe["events_per_s"],
                **with_ceiling(drain, ceiling),
            }
        )
        pipes.append(pipe["events_per_s"])
    mid = sorted(drains, key=lambda d: d["ratio_to_faust_noop"])[len(drains) // 2]
    return {
        "saturated_worker": {**mid, "repeats": drains},
        "saturated_baseline": {"events_per_s": statistics.median(pipes)},
        "faust_noop": {
            "events_per_s": statistics.median(d["faust_noop_events_per_s"] for d in drains),
            "within_ms": settings.batch_max_ms,
        },
        "ratio_to_faust_noop": mid["ratio_to_faust_noop"],
    }


def print_drains(figures: dict[str, Any]) -> None:
    """One line per drain, then the median ratio."""
    print("  saturated drains against Faust's no-op agent, back to back:")
    for d in figures["saturated_worker"]["repeats"]:
        lp = d["lists_per_publish_ms"]
        stages = d["stage_ms_per_micro_batch"]
        print(
            f"    {d['events']:,} events: worker {d['events_per_s']:8,.0f} ev/s, no-op"
            f" {d['faust_noop_events_per_s']:8,.0f} ev/s, ratio {d['ratio_to_faust_noop']:.3f}"
            f" (CPU per event {d['cpu_ratio_to_faust_noop']:.3f});"
            f" {d['micro_batches_scored']} scored batches, {d['lists_per_scored_batch']:.1f}"
            f" lists each (per stamp p50 {lp['p50']:.0f}, p99 {lp['p99']:.0f});"
            f" score {stages['score']:.1f} ms/batch (encoder {d['encoder_ms_per_micro_batch']:.1f},"
            f" recommend {d['recommend_ms_per_micro_batch']:.1f}); CPU ms/event"
            f" {d['worker_cpu_ms_per_event']:.3f}"
        )
    print(f"  ratio (median drain): {figures['ratio_to_faust_noop']:.3f} of Faust's no-op ceiling")
