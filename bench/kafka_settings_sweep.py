"""Kafka client settings of the worker, measured: the stream bench's quick run per candidate.

Each candidate (fetch minimum bytes and maximum wait of the worker's consumer, linger of
its list producer, its consumer on Faust's thread instead of the worker's loop) runs
``bench.stream_bench`` once per repeat, in a fresh process with its own broker and
Redis, back to back; the candidates take turns within each repeat so
a change of host load falls on all of them alike. Per run it prints freshness p50/p99 at
the paced rate, worker and broker CPU per 1,000 events, idle cores of the worker and the
broker, and the saturated rate; the rows and the conditions go to ``--out`` as JSON.

Acks are not a candidate: the list producer always uses ``acks=all`` (no setting), which
with one replica does the same work as ``1``.

    .venv/bin/python -m bench.kafka_settings_sweep --repeats 2 -- --bundle
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.host import cpu_model

CANDIDATES: dict[str, dict[str, str]] = {
    "fetch 1 B / 1,500 ms, linger 0 (default)": {},
    "fetch 1 B / 100 ms": {"FRESHET_KAFKA_FETCH_MAX_WAIT_MS": "100"},
    "fetch 4 KiB / 10 ms": {
        "FRESHET_KAFKA_FETCH_MIN_BYTES": "4096",
        "FRESHET_KAFKA_FETCH_MAX_WAIT_MS": "10",
    },
    "fetch 16 KiB / 50 ms": {
        "FRESHET_KAFKA_FETCH_MIN_BYTES": "16384",
        "FRESHET_KAFKA_FETCH_MAX_WAIT_MS": "50",
    },
    "list linger 5 ms": {"FRESHET_KAFKA_LINGER_MS": "5"},
    "consumer on Faust's thread": {"FRESHET_KAFKA_CONSUMER_ON_LOOP": "false"},
}
"""Name -> the worker settings that differ from the defaults."""

BENCH_ARGS = ["--quick", "--events", "2000", "--rate", "100", "--idle-s", "10"]
"""The stream bench's quick run: 10k items, 2,000 events paced at 100 ev/s, then drained."""


def row_of(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of one stream bench report that the table shows."""
    paced = report["figures"]["paced_worker"]
    sat = report["figures"]["saturated_worker"]
    fresh = paced["freshness_ms_all_events"]
    return {
        "freshness_p50_ms": fresh["p50"],
        "freshness_p99_ms": fresh["p99"],
        "worker_cpu_ms_per_1k_events": paced["worker_cpu_ms_per_1k_events"],
        "kafka_cpu_ms_per_1k_events": paced["kafka_cpu_ms_per_1k_events"],
        "idle_cores_worker": report["idle_cores_worker"],
        "idle_cores_kafka": report.get("idle_cores_kafka", float("nan")),
        "saturated_events_per_s": sat["events_per_s"],
        "load_average_1": report["conditions"]["load_average_1_5_15"][0],
    }


def run_one(name: str, env: dict[str, str], extra: list[str], out: Path) -> dict[str, Any]:
    """One stream bench run with ``env`` for the worker; its table row."""
    cmd = [sys.executable, "-m", "bench.stream_bench", *BENCH_ARGS, *extra, "--out", str(out)]
    for key, value in env.items():
        cmd += ["--worker-env", f"{key}={value}"]
    started = time.strftime("%H:%M:%S", time.gmtime())
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: stream bench failed\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return {"settings": name, "started_utc": started, **row_of(json.loads(out.read_text()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", action="append", default=[], help="a candidate's name")
    parser.add_argument("--out", type=Path, default=Path("kafka_settings_sweep.json"))
    parser.add_argument("extra", nargs="*", help="after --: more stream bench arguments")
    args = parser.parse_args()
    names = args.only or list(CANDIDATES)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for i, name in enumerate(names):
                out = Path(tmp) / f"run{r}-{i}.json"
                rows.append(run_one(name, CANDIDATES[name], args.extra, out))
                print_row(rows[-1], flush=True)
    conditions = {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "stream_bench_args": [*BENCH_ARGS, *args.extra],
        "repeats": args.repeats,
        "note": "one worker; Kafka, Redis, the worker and the load generator share the cores",
    }
    print("conditions:")
    print(f"  cores {conditions['cores']} ({conditions['cpu']}), {conditions['note']}")
    print(f"  stream bench: {' '.join(conditions['stream_bench_args'])}; repeats {args.repeats}")
    print("figures (per run, in run order):")
    print(HEADER)
    for row in rows:
        print_row(row)
    args.out.write_text(json.dumps({"conditions": conditions, "runs": rows}, indent=2) + "\n")
    print(f"written: {args.out}")


HEADER = (
    "  start     settings                                  fresh p50/p99 ms  broker ms/1k"
    "  worker ms/1k  idle cores w/b   sat ev/s  load"
)


def print_row(row: dict[str, Any], flush: bool = False) -> None:
    print(
        f"  {row['started_utc']}  {row['settings']:<40} {row['freshness_p50_ms']:7.0f} /"
        f" {row['freshness_p99_ms']:6.0f} {row['kafka_cpu_ms_per_1k_events']:13,.0f}"
        f" {row['worker_cpu_ms_per_1k_events']:13,.0f}"
        f"  {row['idle_cores_worker']:.3f} / {row['idle_cores_kafka']:.3f}"
        f" {row['saturated_events_per_s']:10,.0f} {row['load_average_1']:5.1f}",
        flush=flush,
    )


if __name__ == "__main__":
    main()
