"""Producer throughput: freshet's ``EventProducer`` sending simulated events to Kafka.

Starts the local broker (or uses ``--bootstrap``), then sends the same simulated events
``--repeats`` times through ``streams.kafka_io.event_producer.EventProducer`` (kafka-python,
acks=all, linger 5 ms), each time timing send + flush, and prints the median events/s
and the producer's CPU seconds per 1,000 events. kafka-python checksums every record
batch (CRC-32C): with the ``crc32c`` package it does so in C, without it in pure Python.
``--pure-python-crc`` hides the package, for the A/B:

    .venv/bin/python -m bench.producer_bench --events 100000
    .venv/bin/python -m bench.producer_bench --events 100000 --pure-python-crc
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from freshet.wiring import kafka_of


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bootstrap", help="an existing broker (default: start one)")
    parser.add_argument("--pure-python-crc", action="store_true")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.pure_python_crc:
        sys.modules["crc32c"] = None  # type: ignore[assignment]  # import now fails
    import kafka.record.util as kafka_util

    from freshet.settings import Settings
    from freshet.simulator.stream import SimConfig, simulate
    from schemas.events import InteractionEvent
    from streams.kafka_io.event_producer import EventProducer, ensure_topics

    crc = "C (crc32c package)" if kafka_util.crc32c_c is not None else "pure Python"
    events = [
        ev
        for ev in simulate(SimConfig(users=args.users, items=args.items, events=args.events))
        if isinstance(ev, InteractionEvent)
    ]
    with tempfile.TemporaryDirectory(prefix="freshet-pbench-") as tmp:
        kafka = None
        bootstrap = args.bootstrap
        if bootstrap is None:
            from freshet.services.kafka_local import LocalKafka

            settings0 = Settings.from_env({})
            kafka = LocalKafka(
                Path(tmp) / "kafka",
                partitions=args.partitions,
                home=settings0.home,
                die_with_parent=True,
            ).start()
            bootstrap = kafka.bootstrap
        try:
            rates, cpu_per_k = [], []
            for rep in range(args.repeats):
                settings = Settings.from_env(
                    {},
                    kafka_bootstrap=bootstrap,
                    topic_prefix=f"pbench-{os.getpid()}-{rep}",
                    topic_partitions=args.partitions,
                )
                ensure_topics(kafka_of(settings))
                with EventProducer(kafka_of(settings)) as producer:
                    producer.flush()  # connected and metadata fetched before timing
                    t, c = time.perf_counter(), time.process_time()
                    for ev in events:
                        producer.send(ev)
                    stats = producer.flush()
                    wall, cpu = time.perf_counter() - t, time.process_time() - c
                if stats.delivered < len(events) or stats.failed:
                    raise SystemExit(f"delivery incomplete: {stats}")
                rates.append(len(events) / wall)
                cpu_per_k.append(cpu / len(events) * 1000)
                print(f"  run {rep + 1}: {rates[-1]:,.0f} ev/s, {cpu_per_k[-1]:.3f} CPU s / 1k")
        finally:
            if kafka is not None:
                kafka.stop()
    result = {
        "benchmark": "producer",
        "conditions": {
            "events": len(events),
            "repeats": args.repeats,
            "partitions": args.partitions,
            "crc32c": crc,
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "events_per_s_median": round(statistics.median(rates)),
        "cpu_s_per_1k_events_median": round(statistics.median(cpu_per_k), 4),
        "events_per_s": [round(r) for r in rates],
    }
    print(
        f"producer: {len(events):,} events x {args.repeats}, CRC-32C in {crc}: "
        f"median {result['events_per_s_median']:,} ev/s, "
        f"{result['cpu_s_per_1k_events_median']} CPU s per 1,000 events"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
