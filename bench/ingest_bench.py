"""Ingest throughput of one worker: events/s applied to Redis, against raw consumption.

Conditions and figures are printed. The same pre-produced topic is read twice in one
run: first by a bare aiokafka consumer that only counts the records (the baseline),
then by ``freshet worker`` with state updates to Redis. The worker's rate is measured
from the first watermark write to the last, via the partition watermarks in Redis.

With ``--catalog`` the topic is the catalog instead: ``--items`` new items and no
interactions, the cold start of a worker on a new catalog. The worker's rate is then
measured from the first stored item to the last, via the size of the catalog hash.
``--restart`` then starts a real-time worker again on that stored catalog and times
it from process start until its online catalog holds every item (the restart path:
no catalog records to consume, only the catalog log in Redis to read).

    .venv/bin/python bench/ingest_bench.py --events 200000 [--realtime]
    .venv/bin/python bench/ingest_bench.py --catalog --items 200000 [--realtime] [--restart]

Starts its own Kafka broker and Redis under a temporary directory unless
``--bootstrap`` and ``--redis-url`` are given.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.host import cpu_model
from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.codec import encode
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics, catalog_key, event_key


def produce(settings: Settings, events: int, users: int, items: int, seed: int) -> int:
    from kafka import KafkaProducer

    from freshet.simulator.config import SimConfig
    from freshet.simulator.stream import simulate
    from streams.kafka_io.event_producer import ensure_topics

    ensure_topics(kafka_of(settings))
    topics = Topics(settings.topic_prefix)
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20, batch_size=262144
    )
    n = 0
    cfg = SimConfig(users=users, items=items, events=events, new_item_rate=0.5)
    for ev in simulate(cfg, seed=seed):
        if isinstance(ev, InteractionEvent):
            producer.send(topics.events, key=event_key(ev.user_id), value=encode(ev))
            n += 1
        elif isinstance(ev, CatalogEvent):
            producer.send(topics.catalog, key=catalog_key(ev.item_id), value=encode(ev))
    producer.flush()
    producer.close()
    return n


def produce_catalog(settings: Settings, items: int, seed: int) -> int:
    """``items`` new items on the catalog topic, nothing else; returns how many."""
    from bench.stream_bench import produce_bulk
    from freshet.simulator.config import SimConfig
    from freshet.simulator.stream import simulate
    from streams.kafka_io.event_producer import ensure_topics

    ensure_topics(kafka_of(settings))
    cfg = SimConfig(users=1, items=items, events=0, new_item_rate=0.0)
    catalog = [ev for ev in simulate(cfg, seed=seed) if isinstance(ev, CatalogEvent)]
    pairs = ((catalog_key(ev.item_id), encode(ev)) for ev in catalog)
    produce_bulk(settings, Topics(settings.topic_prefix).catalog, pairs)
    return len(catalog)


async def raw_consume(settings: Settings, expect: int, topic: str) -> float:
    """Seconds for a bare aiokafka consumer to read ``expect`` records (no processing)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    seen = 0
    start = None
    try:
        while seen < expect:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                if start is None:
                    start = time.perf_counter()
                seen += len(records)
    finally:
        await consumer.stop()
    return time.perf_counter() - (start or time.perf_counter())


def worker_run(
    settings: Settings, expect: int, realtime: bool, log: Path, catalog: bool = False
) -> tuple[float, float]:
    """(seconds from first to last applied record, peak RSS MB) for one worker.

    Applied means events under the partition watermarks, or with ``catalog`` the
    items stored in the catalog hash.
    """
    from redis import Redis

    from streams.redis_io.keyspace import Keyspace

    proc = start_worker(settings, realtime, log)
    client = Redis.from_url(settings.redis_url)
    keys = Keyspace(settings.redis_namespace)
    parts = range(settings.topic_partitions)
    start: float | None = None
    peak_rss = 0.0
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
            if catalog:
                applied = int(client.hlen(keys.catalog))
            else:
                wms = [client.get(keys.watermark(p)) for p in parts]
                applied = sum(int(w) + 1 for w in wms if w is not None)
            now = time.perf_counter()
            if start is None and applied > 0:
                start = now
            peak_rss = max(peak_rss, rss_mb(proc.pid))
            if applied >= expect:
                return now - (start or now), peak_rss
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def restart_run(settings: Settings, expect: int, log: Path) -> tuple[float, float]:
    """A real-time worker restarted on a catalog already stored in Redis.

    Returns the seconds from its process start until its online catalog holds
    ``expect`` items (the ``freshet_catalog_items`` gauge), and its peak RSS MB.
    """
    from freshet.services.ports import free_port

    port = free_port()
    proc = start_worker(settings, True, log, metrics_port=port)
    t0 = time.perf_counter()
    peak_rss = 0.0
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited; see {log}")
            peak_rss = max(peak_rss, rss_mb(proc.pid))
            if _gauge(port, "freshet_catalog_items") >= expect:
                return time.perf_counter() - t0, peak_rss
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _gauge(port: int, name: str) -> float:
    """One unlabelled metric from the worker's Prometheus endpoint (0 until it is up)."""
    from bench.stream_bench import read_metrics

    try:
        return read_metrics(port, timeout=2).get(name, 0.0)
    except OSError:
        return 0.0


def start_worker(
    settings: Settings,
    realtime: bool,
    log: Path,
    metrics_port: int = 0,
    *,
    log_level: str = "WARNING",
    tree: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``freshet worker`` on ``settings``' stores; ``tree``: run it from that checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHET_")}
    env.update(
        {
            "FRESHET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "FRESHET_REDIS_URL": settings.redis_url,
            "FRESHET_TOPIC_PREFIX": settings.topic_prefix,
            "FRESHET_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "FRESHET_CONSUMER_GROUP": f"{settings.topic_prefix}-bench",
            "FRESHET_REDIS_NAMESPACE": settings.redis_namespace,
            "FRESHET_HOME": str(settings.home),
            "FRESHET_BUNDLE_DIR": str(settings.bundle_dir),
            "FRESHET_REALTIME": "true" if realtime else "false",
            "FRESHET_LOG_LEVEL": log_level,
            "FRESHET_METRICS_PORT": str(metrics_port),
        }
    )
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return subprocess.Popen(
        [sys.executable, "-m", "freshet.cli", "worker"],
        cwd=tree or Path.cwd(),
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--realtime", action="store_true", help="also refresh lists (no bundle)")
    parser.add_argument(
        "--catalog", action="store_true", help="the catalog topic: --items new items, no events"
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="with --catalog: then time a real-time worker restarted on the stored catalog",
    )
    parser.add_argument("--bootstrap")
    parser.add_argument("--redis-url")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        services: list[Any] = []
        if args.bootstrap and args.redis_url:
            bootstrap, redis_url = args.bootstrap, args.redis_url
        else:
            from freshet.services.kafka_local import LocalKafka
            from freshet.services.redis_local import LocalRedis

            home = Settings.from_env().home
            kafka = LocalKafka(base / "kafka", partitions=args.partitions, home=home).start()
            redis = LocalRedis(base / "redis", appendonly=True).start()
            services = [kafka, redis]
            bootstrap, redis_url = kafka.bootstrap, redis.url
        raw_s, worker_s, rss = [], [], []
        restart_s, restart_rss = [], []
        try:
            for r in range(args.repeats):
                settings = Settings.from_env(
                    {},
                    kafka_bootstrap=bootstrap,
                    redis_url=redis_url,
                    topic_prefix=f"bench-{os.getpid()}-{r}",
                    redis_namespace=f"b{os.getpid()}{r}",
                    topic_partitions=args.partitions,
                    home=base / "home",
                )
                topics = Topics(settings.topic_prefix)
                if args.catalog:
                    n = produce_catalog(settings, args.items, seed=r)
                    topic = topics.catalog
                else:
                    n = produce(settings, args.events, args.users, args.items, seed=r)
                    topic = topics.events
                raw_s.append(asyncio.run(raw_consume(settings, n, topic)))
                log = base / f"worker{r}.log"
                secs, peak = worker_run(settings, n, args.realtime, log, catalog=args.catalog)
                if args.catalog and args.restart:
                    again = restart_run(settings, n, base / f"restart{r}.log")
                    restart_s.append(again[0])
                    restart_rss.append(again[1])
                worker_s.append(secs)
                rss.append(peak)
        finally:
            for svc in services:
                svc.stop()

    raw = statistics.median(raw_s)
    work = statistics.median(worker_s)
    print("conditions:")
    print(f"  python {platform.python_version()}, cores {os.cpu_count()}, {platform.machine()}")
    print(f"  cpu {cpu_model()}")
    if args.catalog:
        print(f"  catalog topic: {n:,} new items, no interactions, partitions {args.partitions}")
    else:
        print(
            f"  events {n:,}, users {args.users:,}, items {args.items:,}, "
            f"partitions {args.partitions}"
        )
    mode = "on (model-free, no bundle)" if args.realtime else "off (ingest only)"
    print(f"  realtime lists: {mode}")
    print(f"  repeats {args.repeats} (medians below); Kafka, Redis and the worker share the cores")
    print("figures:")
    unit = "records/s" if args.catalog else "events/s"
    what = "catalog" if args.catalog else "ingest"
    print(f"  raw aiokafka consume     {n / raw:12,.0f} {unit}  ({raw:.2f} s)")
    print(f"  freshet worker ({what}) {n / work:12,.0f} {unit}  ({work:.2f} s)")
    print(f"  ratio worker / raw       {raw / work:12.3f}")
    print(f"  worker peak RSS          {statistics.median(rss):12.0f} MB")
    if restart_s:
        print("  restarted real-time worker on the stored catalog (process start to all items")
        print("  in its online catalog, model-free):")
        print(f"    seconds                {statistics.median(restart_s):12.1f}")
        print(f"    peak RSS               {statistics.median(restart_rss):12.0f} MB")


if __name__ == "__main__":
    main()
