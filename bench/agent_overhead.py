"""The batch agent's own cost: freshet's ingest agent with a handler that does nothing,
against Faust's no-op agent (``bench.faust_take_bench``), on the same broker.

The agent is the worker's (``streams.runtime.faust_app.add_batch_agent``): ``quiet_take``
micro-batches that fill under a backlog, a ``SourceRecord`` per event, the waiting queue,
the in-order finish and the per-event acks; only the handler is empty (it returns the
batch's counts). The no-op takes ``noack_take`` batches and acks each event. Both run
in a fresh subprocess on a pre-produced topic, alternated, with the worker's collector
setting (``tune_collector``) in the agent's process as in the worker. What the worker
costs per event beyond the agent's figure is its handler (decode, Redis, rules).
``--batch-delivery`` runs the agent a second time in each turn with the batch delivery
(``FRESHET_KAFKA_BATCH_DELIVERY``: a fetch's records handed over per partition, no Faust
event per record); the ratio's denominator stays Faust's own no-op.

    .venv/bin/python -m bench.agent_overhead --events 40000 --pairs 2 [--batch-delivery]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.faust_take_bench import RESULT, finish
from bench.faust_take_bench import measure as faust_noop
from bench.host import cpu_model
from freshet.settings import Settings


def child(
    bootstrap: str, prefix: str, home: Path, events: int, within_s: float, batches: bool = False
) -> None:
    """Run the batch agent with an empty handler until ``events`` records are acked."""
    import faust

    from schemas.topics import Topics
    from streams.core.ingest import BatchStats, SourceRecord
    from streams.runtime.faust_app import add_batch_agent, create_app
    from streams.runtime.worker import tune_collector

    settings = Settings.from_env(
        {}, kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=4, home=home,
        kafka_batch_delivery=batches,
    )  # fmt: skip
    app = create_app(settings, app_id=f"{prefix}-agent")
    sizes: list[int] = []
    started: list[float] = []

    async def nothing(records: Sequence[SourceRecord]) -> BatchStats:
        if not started:
            started.extend([time.perf_counter(), time.process_time()])
        return BatchStats(records=len(records))

    def on_batch(stats: BatchStats) -> None:  # called once a batch is acked
        sizes.append(stats.records)
        if sum(sizes) >= events:
            finish(sizes, started)

    add_batch_agent(
        app,
        Topics(prefix).events,
        nothing,
        name="ingest",
        max_events=settings.batch_max_events,
        within_s=within_s,
        on_batch=on_batch,
    )
    tune_collector()
    faust.Worker(app, loglevel="warning").execute_from_commandline()


def agent_row(
    bootstrap: str, home: Path, prefix: str, events: int, seed: int, batches: bool = False
) -> dict[str, Any]:
    """Pre-produce ``events``, then time the agent on them in a fresh process."""
    from bench.ingest_bench import produce

    settings = Settings.from_env(
        {}, kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=4, home=home
    )
    produced = produce(settings, events, 20_000, 10_000, seed=seed)
    argv = [sys.executable, "-m", "bench.agent_overhead", f"--events={produced}", "--child"]
    if batches:
        argv.insert(-1, "--batch-delivery")
    proc = subprocess.run(
        [*argv, bootstrap, prefix, str(home), str(settings.batch_max_ms / 1000.0)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = proc.stdout + proc.stderr  # Faust may log the line on either stream
    lines = [ln for ln in output.splitlines() if RESULT in ln]
    if not lines:
        raise RuntimeError(f"no result (rc {proc.returncode}):\n{output[-3000:]}")
    row: dict[str, Any] = json.loads(lines[-1].split(RESULT, 1)[1].strip())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--pairs", type=int, default=2, help="no-op, agent pairs, alternated")
    parser.add_argument("--batch-delivery", action="store_true", help="also the batch delivery")
    parser.add_argument("--child", nargs=4, metavar=("BOOTSTRAP", "PREFIX", "HOME", "WITHIN"))
    args = parser.parse_args()
    if args.child:
        boot, prefix, home, within = args.child
        child(boot, prefix, Path(home), args.events, float(within), args.batch_delivery)
        return

    from freshet.services.kafka_local import LocalKafka

    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        window_ms = float(Settings.from_env().batch_max_ms)
        kafka = LocalKafka(base / "kafka", partitions=4, home=Settings.from_env().home).start()
        try:
            for i in range(args.pairs):
                boot, home = kafka.bootstrap, base / "home"
                noop = faust_noop(boot, home, f"ao{os.getpid()}n{i}", args.events, window_ms, 4, i)
                rows.append(("faust no-op", noop))
                rows.append(
                    ("batch agent", agent_row(boot, home, f"ao{os.getpid()}a{i}", args.events, i))
                )
                if args.batch_delivery:
                    pre = f"ao{os.getpid()}b{i}"
                    rows.append(("batch dlvry", agent_row(boot, home, pre, args.events, i, True)))
        finally:
            kafka.stop()

    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}), local Kafka broker on the same cores")
    print(f"  4 partitions, {window_ms:.0f} ms window; load average {list(os.getloadavg())}")
    print(f"  {args.events:,} pre-produced events per run; runs alternated as listed")
    print("figures:")
    print("  agent           events/s   batches  median batch  CPU ms/event  cores")
    for name, r in rows:
        print(
            f"  {name:12s} {r['events_per_s']:10,.0f} {r['batches']:9,}"
            f" {r['median_batch']:13.0f} {r['cpu_ms_per_event']:13.4f} {r['cores']:6.2f}"
        )
    ceilings = [r["events_per_s"] for n, r in rows if n == "faust no-op"]
    for name in ("batch agent", "batch dlvry"):
        rates = [r["events_per_s"] for n, r in rows if n == name]
        if rates and ceilings:
            print(f"  {name}: {sum(rates) / sum(ceilings):.2f} of Faust's no-op (mean of turns)")


if __name__ == "__main__":
    main()
