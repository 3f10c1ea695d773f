"""Faust's own ceiling: a worker-configured Faust app that takes micro-batches and does nothing.

The same app settings as ``freshet worker`` (``streams.runtime.faust_app.create_app``), the same
``noack_take`` and per-event acks, but no decoding, no Redis and no scoring: the rate
it drains a pre-produced topic at is the most any agent built this way can reach on
the machine, and the gap to the raw aiokafka figures of the other benches is Faust's
per-event machinery. Each window size runs in a fresh subprocess (a Faust worker owns
its process), on the same local broker.

    .venv/bin/python bench/faust_take_bench.py --events 60000 --within-ms 2,10,50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.host import cpu_model
from freshet.settings import Settings

RESULT = "FAUST-TAKE-RESULT "


def child(
    bootstrap: str, prefix: str, home: Path, events: int, within_s: float, partitions: int = 4
) -> None:
    """Run the no-op agent until ``events`` records are taken; print one result line."""
    import faust

    from schemas.topics import Topics
    from streams.runtime.faust_app import create_app

    settings = Settings.from_env(
        {}, kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions, home=home,
        kafka_consumer_on_loop=False,  # the ceiling stays Faust's own: its consumer thread
    )  # fmt: skip
    app = create_app(settings, app_id=f"{prefix}-take-{int(within_s * 1000)}")
    topic = app.topic(Topics(prefix).events, key_serializer="raw", value_serializer="raw")
    sizes: list[int] = []
    started: list[float] = []

    @app.agent(topic, concurrency=1)
    async def take(stream: Any) -> None:
        async for batch in stream.noack_take(settings.batch_max_events, within=within_s):
            if not started:
                started.extend([time.perf_counter(), time.process_time()])
            sizes.append(len(batch))
            for ev in batch:
                await stream.ack(ev)
            if sum(sizes) >= events:
                finish(sizes, started, within_ms=within_s * 1000)

    faust.Worker(app, loglevel="warning").execute_from_commandline()


def finish(sizes: list[int], started: list[float], **extra: Any) -> None:
    """Print the result line of a timed agent (``started``: perf counter and process
    time at its first batch; ``sizes``: its batches) and end the process."""
    secs = time.perf_counter() - started[0]
    cpu_s = time.process_time() - started[1]  # every thread of the process
    out = {
        **extra,
        "events": sum(sizes),
        "events_per_s": sum(sizes) / secs,
        "cpu_ms_per_event": 1000.0 * cpu_s / sum(sizes),
        "cores": cpu_s / secs,
        "batches": len(sizes),
        "median_batch": statistics.median(sizes),
    }
    print(RESULT + json.dumps(out), flush=True)
    os._exit(0)  # a Faust worker does not return from its command line


def measure(
    bootstrap: str,
    home: Path,
    prefix: str,
    events: int,
    within_ms: float,
    partitions: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Pre-produce ``events`` on ``prefix``'s events topic, then time the no-op agent on
    them in a fresh process; its result row (``events_per_s``, ``batches``, ...)."""
    from bench.ingest_bench import produce

    settings = Settings.from_env(
        {}, kafka_bootstrap=bootstrap, topic_prefix=prefix, topic_partitions=partitions, home=home
    )
    produced = produce(settings, events, 20_000, 10_000, seed=seed)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.faust_take_bench",
            f"--events={produced}",
            f"--partitions={partitions}",
            "--child",
            bootstrap,
            prefix,
            str(home),
            str(within_ms / 1000.0),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    # Faust redirects print() into its log, so the line can come on either stream,
    # behind a log prefix.
    output = proc.stdout + proc.stderr
    lines = [ln for ln in output.splitlines() if RESULT in ln]
    if not lines:
        raise RuntimeError(
            f"no result for {within_ms} ms (rc {proc.returncode}):\n{output[-3000:]}"
        )
    row: dict[str, Any] = json.loads(lines[-1].split(RESULT, 1)[1].strip())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--within-ms", default="2,10,50", help="noack_take windows to run")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--child", nargs=4, metavar=("BOOTSTRAP", "PREFIX", "HOME", "WITHIN"))
    args = parser.parse_args()
    if args.child:
        boot, prefix, home, within = args.child
        child(boot, prefix, Path(home), args.events, float(within), args.partitions)
        return

    from freshet.services.kafka_local import LocalKafka

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        home = Settings.from_env().home
        kafka = LocalKafka(base / "kafka", partitions=args.partitions, home=home).start()
        try:
            for n, ms in enumerate(float(w) for w in args.within_ms.split(",")):
                prefix = f"ftake{os.getpid()}x{n}"
                row = measure(
                    kafka.bootstrap, base / "home", prefix, args.events, ms, args.partitions, n
                )
                rows.append(row)
        finally:
            kafka.stop()

    print("conditions:")
    print(f"  cores {os.cpu_count()} ({cpu_model()}), local Kafka broker on the same cores")
    print(f"  {args.partitions} partitions; load average {list(os.getloadavg())}")
    print(f"  {args.events:,} pre-produced events per run; agent acks each event, no work")
    print("figures:")
    print("  within ms   events/s   batches  median batch  CPU ms/event  cores")
    for r in rows:
        print(
            f"  {r['within_ms']:9.0f} {r['events_per_s']:10,.0f} {r['batches']:9,}"
            f" {r['median_batch']:13.0f} {r['cpu_ms_per_event']:13.3f} {r['cores']:6.2f}"
        )


if __name__ == "__main__":
    main()
