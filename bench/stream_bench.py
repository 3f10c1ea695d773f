"""Streaming benchmark: one worker on real Kafka and Redis, against a raw aiokafka pipe.

The simulator builds a shop (100k items, 50k users by default). Its catalog and a
warm-up history go in first (untimed), so users have state and the worker has its
catalog and index. Then, in one run:

1. **Paced.** ``--events`` live events are sent at ``--rate``, each stamped with its
   send wall-clock time. A separate consumer reads ``<p>.recommendations`` and takes
   ``published_ts − event_ts`` of every list triggered by a live event. It also checks
   that each touched user's last event is reflected by a list (debounce loses none).
2. **Saturation.** The worker is paused (SIGSTOP), ``--events`` more are produced as
   fast as possible, and the worker is resumed: the backlog's drain rate is its
   saturated throughput.
3. **Baseline, same run.** A bare aiokafka pipe consumes the same messages and
   produces each value to another topic, with no processing: paced (its latency is the
   output record's timestamp minus ``event_ts``) and on the same saturated backlog.

Freshness is measured per event: the delay to the first list of its user that reflects
it (``bench/freshness.py``), split into *leading* events (no list for that user in the
debounce window before: refreshed at once) and *deferred* ones (folded into the
window's trailing refresh, so bounded by the window by design).

Redis round trips per event and encoder time per micro-batch come from the worker's
own Prometheus endpoint (``FRESHET_METRICS_PORT``). Figures are printed with their
conditions and written as JSON.

    .venv/bin/python bench/stream_bench.py --items 100000 --users 50000 \\
        --events 40000 --rate 1000 --bundle
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Sequence
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import orjson

from bench.freshness import event_freshness
from bench.host import cpu_model
from bench.load_generator import TICK_MS, LoadGenerator, Plan, SendReport, paced_in_process
from freshet.settings import Settings
from freshet.wiring import kafka_of
from schemas.codec import encode
from schemas.events import CatalogEvent, InteractionEvent
from schemas.topics import Topics, catalog_key, event_key

DEBOUNCE_MS = Settings().debounce_ms


@dataclasses.dataclass
class Shop:
    catalog: list[CatalogEvent]
    warm: list[InteractionEvent]
    live: list[InteractionEvent]
    saturate: list[InteractionEvent]
    extra: list[InteractionEvent] = dataclasses.field(default_factory=list)
    drains: list[InteractionEvent] = dataclasses.field(default_factory=list)


def simulate_shop(
    users: int, items: int, warm: int, events: int, seed: int, extra: int = 0, drains: int = 0
) -> Shop:
    """The shop's catalog, then warm-up, live, saturation, ``extra`` and ``drains``
    interactions."""
    from freshet.simulator.stream import SimConfig, simulate

    cfg = SimConfig(users=users, items=items, events=warm + 2 * events + extra + drains)
    catalog: list[CatalogEvent] = []
    inter: list[InteractionEvent] = []
    for ev in simulate(cfg, seed=seed):
        if isinstance(ev, CatalogEvent):
            catalog.append(ev)
        else:
            inter.append(ev)
    live_end, sat_end = warm + events, warm + 2 * events
    extra_end = sat_end + extra
    return Shop(
        catalog,
        inter[:warm],
        inter[warm:live_end],
        inter[live_end:sat_end],
        inter[sat_end:extra_end],
        inter[extra_end:],
    )


def train_bundle(shop: Shop, bundle_dir: Path, samples: int, ranker: str = "off") -> str:
    """A small bundle trained on the warm-up history (few epochs, capped samples).

    ``ranker``: ``on`` ships a candidate ranker whatever its hold-out gain (its cost is
    what the bench measures), ``off`` ships none.
    """
    from training.pipeline import run
    from training.train import TrainConfig

    cfg = TrainConfig(epochs=2, patience=1, samples_per_epoch=samples, valid_cases=500)
    events: list[InteractionEvent | CatalogEvent] = [*shop.catalog, *shop.warm]
    result = run(events, bundle_dir, cfg, test_cases=500, show=False, ranker=ranker)
    return result.bundle.name


def cached_bundle(args: argparse.Namespace, shop: Shop, bundle_dir: Path) -> str:
    """``train_bundle``, or a copy of the one an earlier run trained on the same shop."""
    key = f"{args.items}-{args.users}-{args.warm}-{args.events}-{args.seed}-{args.train_samples}"
    ranker = getattr(args, "ranker", "off")
    key += "-ranker" if ranker == "on" else ""
    from inference.bundle import read_current

    cache = Settings.from_env().home / "bench-bundles" / f"stream-{key}"
    if not (cache / "CURRENT").exists():
        train_bundle(shop, cache, args.train_samples, ranker)
    shutil.copytree(cache, bundle_dir, dirs_exist_ok=True)
    return str(read_current(cache))


# --- the worker and its metrics ------------------------------------------------------
class WorkerProc:
    """``freshet worker`` as a subprocess with its metrics endpoint."""

    def __init__(
        self,
        settings: Settings,
        log: Path,
        extra_env: dict[str, str] | None = None,
        neighbours: dict[str, int] | None = None,
    ) -> None:
        """``neighbours``: pids of the local Kafka and Redis, whose CPU each scrape reads.
        With ``TAIL_TRACE`` set the worker runs under ``bench.tail_probe``."""
        self.port = _free_port()
        self.neighbours = {"bench": os.getpid(), **(neighbours or {})}
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
                "FRESHET_METRICS_PORT": str(self.port),
                "FRESHET_LOG_LEVEL": "INFO",
                **(extra_env or {}),
            }
        )
        self.log = log
        import redis

        self.redis = redis.Redis.from_url(settings.redis_url)  # one client for every scrape
        self.scrapes = 0  # of the endpoint: each costs the worker about 3 ms of CPU
        probe = [] if TAIL_TRACE is None else ["bench.tail_probe", str(TAIL_TRACE / "worker.jsonl")]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *(probe or ["freshet.cli"]), "worker"],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def cpu_seconds(self) -> float:
        """User plus system CPU the worker process has used so far, all threads."""
        return cpu_seconds_of(self.proc.pid)

    def memory_kib(self) -> dict[str, float]:
        """The worker's resident set now (``VmRSS``) and at its peak (``VmHWM``), KiB."""
        out: dict[str, float] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[f"worker_{key.lower()}_kib"] = float(rest.split()[0])
        return out

    def redis_bytes(self) -> dict[str, float]:
        """Bytes Redis has received and sent so far (``INFO stats``): the worker is its
        only client in the timed phases, so the deltas are the worker's traffic."""
        info = self.redis.info("stats")
        return {
            "redis_net_input_bytes": float(info["total_net_input_bytes"]),
            "redis_net_output_bytes": float(info["total_net_output_bytes"]),
        }

    def scrape(self) -> dict[str, float]:
        """Every sample of the endpoint, keyed ``name{labels}`` as exposed, plus the
        process CPU seconds as ``worker_cpu_seconds``, its memory and Redis's traffic."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited; see {self.log}")
        out = read_metrics(self.port)
        self.scrapes += 1
        # The endpoint is read first, so a window between two scrapes holds the
        # exposition of its closing scrape and of every scrape in between.
        out["worker_scrapes"] = float(self.scrapes)
        out["worker_cpu_seconds"] = self.cpu_seconds()
        out["worker_kernel_cpu_seconds"] = cpu_seconds_of(self.proc.pid, kernel_only=True)
        with contextlib.suppress(OSError):  # the event loop's thread: the process's first
            out["worker_loop_cpu_seconds"] = cpu_seconds_of(self.proc.pid, self.proc.pid)
        out["wall_seconds"] = time.monotonic()
        for name, pid in self.neighbours.items():
            with contextlib.suppress(OSError):
                out[f"{name}_cpu_seconds"] = cpu_seconds_of(pid)
        out.update(self.memory_kib())
        out.update(self.redis_bytes())
        return out

    def wait(self, ready: Any, timeout_s: float, what: str) -> dict[str, float]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                m = self.scrape()
                if ready(m):
                    return m
            time.sleep(0.5)  # each scrape costs the worker a metrics exposition
        raise TimeoutError(f"worker not {what} after {timeout_s:.0f} s; see {self.log}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.redis.close()


def cpu_seconds_of(pid: int, thread: int | None = None, kernel_only: bool = False) -> float:
    """User plus system CPU a process has used so far, all threads (``/proc``); with
    ``thread``, that thread's alone; ``kernel_only``: the system part alone."""
    where = f"/proc/{pid}" if thread is None else f"/proc/{pid}/task/{thread}"
    stat = Path(f"{where}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name
    ticks = int(fields[12]) if kernel_only else int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def applied(m: dict[str, float]) -> float:
    return m.get('freshet_events_total{outcome="applied"}', 0.0)


def catalog_applied(m: dict[str, float]) -> float:
    return m.get('freshet_catalog_events_total{outcome="applied"}', 0.0)


def served_model(m: dict[str, float]) -> str:
    for key in m:
        if key.startswith("freshet_model_info{"):
            return key.split('version="', 1)[1].split('"', 1)[0]
    return "none"


def per_batch(before: dict[str, float], after: dict[str, float], name: str) -> tuple[float, int]:
    """(mean ms per observation, observations) of a histogram between two scrapes."""
    n = int(after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0))
    total = after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)
    return (1000.0 * total / n if n else float("nan")), n


STAGES = (
    "take", "queue", "decode", "redis_read", "state_rules", "score", "redis_write", "publish", "ack"
)  # fmt: skip
"""The worker's micro-batch stages (``streams.core.ingest.STAGES``), read from its endpoint so
the bench also runs against a worker that predates them (figures then NaN)."""


def stage_budget(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean ms per micro-batch in each stage (``freshet_stage_seconds``) between scrapes."""
    out = {}
    for stage in STAGES:
        name = f'freshet_stage_seconds_{{}}{{{{stage="{stage}"}}}}'
        n = after.get(name.format("count"), 0) - before.get(name.format("count"), 0)
        total = after.get(name.format("sum"), 0) - before.get(name.format("sum"), 0)
        out[stage] = round(1000.0 * total / n, 3) if n else float("nan")
    return out


DUTIES = ("bundle", "catalog", "trending", "popularity")


def lock_holds(before: dict[str, float], after: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per housekeeping duty: holds of the scoring lock, mean ms, and holds over 1 ms
    (``freshet_lock_hold_seconds``; absent on a worker that predates it)."""

    def delta(duty: str, kind: str, extra: str = "") -> float:
        key = f'freshet_lock_hold_seconds_{kind}{{duty="{duty}"{extra}}}'
        return after.get(key, 0.0) - before.get(key, 0.0)

    out = {}
    for duty in DUTIES:
        n = delta(duty, "count")
        out[duty] = {
            "holds": n,
            "mean_ms": round(1000.0 * delta(duty, "sum") / n, 3) if n else float("nan"),
            "over_1ms": n - delta(duty, "bucket", ',le="0.001"'),
        }
    return out


def work_figures(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, Any]:
    rt = after.get("freshet_redis_round_trips_total", 0) - before.get(
        "freshet_redis_round_trips_total", 0
    )
    enc_ms, batches = per_batch(before, after, "freshet_encoder_seconds")
    rec_ms, _ = per_batch(before, after, "freshet_recommend_seconds")
    cpu_s = after.get("worker_cpu_seconds", 0) - before.get("worker_cpu_seconds", 0)
    lists = after.get("freshet_lists_published_total", 0) - before.get(
        "freshet_lists_published_total", 0
    )

    def delta(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    wall = delta("wall_seconds")
    # Every name is present; NaN where a process was not watched (external services).
    cores = {
        f"cores_{who}": round(delta(f"{who}_cpu_seconds") / wall, 3)
        if wall > 0 and f"{who}_cpu_seconds" in after
        else float("nan")
        for who in ("worker", "kafka", "redis", "bench")
    }

    return {
        "worker_cpu_ms_per_event": 1000.0 * cpu_s / events,
        # Broker CPU next to the worker's, per 1,000 events (issue 19: the Kafka client
        # settings are chosen for low broker CPU as well as latency).
        "worker_cpu_ms_per_1k_events": 1e6 * cpu_s / events,
        # The event loop's thread (Faust's stream, our agent, the Redis and producer
        # clients, a small batch's scoring) apart from the others (Faust's consumer
        # thread with aiokafka's fetches, the scoring thread, ONNX Runtime's threads).
        "worker_loop_thread_cpu_ms_per_event": 1000.0 * delta("worker_loop_cpu_seconds") / events,
        # Of the worker's CPU, the kernel's (socket sends to Redis and the broker, the
        # wake-ups of their processes, epoll), and the bench's reads of ``/metrics``
        # inside the window (each about 3 ms of the worker's CPU: bench.light_load_costs).
        "worker_kernel_cpu_ms_per_event": 1000.0 * delta("worker_kernel_cpu_seconds") / events,
        "worker_scrapes": delta("worker_scrapes"),
        "kafka_cpu_ms_per_1k_events": 1e6 * delta("kafka_cpu_seconds") / events
        if "kafka_cpu_seconds" in after
        else float("nan"),
        "lists_published": lists,
        "redis_round_trips_per_event": rt / events,
        "redis_bytes_in_per_event": delta("redis_net_input_bytes") / events,
        "redis_bytes_out_per_event": delta("redis_net_output_bytes") / events,
        "worker_rss_mib": after.get("worker_vmrss_kib", 0) / 1024,
        "worker_peak_rss_mib": after.get("worker_vmhwm_kib", 0) / 1024,
        **cores,
        "micro_batches_scored": batches,
        "encoder_ms_per_micro_batch": enc_ms,
        "recommend_ms_per_micro_batch": rec_ms,
        "stage_ms_per_micro_batch": stage_budget(before, after),
        "lock_holds": lock_holds(before, after),
    }


# --- producing -----------------------------------------------------------------------
def now_ms() -> int:
    return int(time.time() * 1000)


def read_metrics(port: int, timeout: float = 5.0) -> dict[str, float]:
    """Every sample of a worker's Prometheus endpoint, keyed ``name{labels}`` as exposed."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def produce_bulk(settings: Settings, topic: str, msgs: Iterable[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20, batch_size=262144
    )
    for key, value in msgs:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def stamped(events: Sequence[InteractionEvent]) -> list[tuple[bytes, bytes]]:
    """The events as (key, value), each stamped with the wall clock as it is encoded."""
    return [(event_key(e.user_id), encode(dataclasses.replace(e, ts=now_ms()))) for e in events]


# The paced load generator batches like freshet's own producer (``streams.kafka_io.event_producer``,
# linger 5 ms); ``--load-linger-ms 0`` sends every event in a request of its own.
LOAD_LINGER_MS = 5
TAIL_TRACE: Path | None = None
"""``--tail-trace``: a folder for the probed worker's rows and each paced phase's events."""


async def paced_send(
    settings: Settings, topic: str, events: Sequence[InteractionEvent], rate: float
) -> dict[str, tuple[str, int]]:
    """Send at ``rate``/s, ``ts`` = send time; returns event_id -> (user_id, ts).

    ``ts`` is stamped before the send, so time a record waits in the producer's
    linger is inside every latency figure.
    """
    report = await paced_load(settings, topic, events, rate)
    return {ev.event_id: (ev.user_id, ts) for ev, ts in zip(events, report.ts, strict=True)}


async def paced_records(
    settings: Settings, topic: str, events: Sequence[InteractionEvent], rate: float
) -> list[tuple[InteractionEvent, int, Any]]:
    """``paced_send``'s sending: (event, ts, where it landed: partition, offset)."""
    report = await paced_load(settings, topic, events, rate)
    return list(zip(events, report.ts, report.placed, strict=True))


async def paced_load(
    settings: Settings, topic: str, events: Sequence[InteractionEvent], rate: float
) -> SendReport:
    """The paced send by ``bench.load_generator`` (its own process, a 2 ms tick): each
    event's ``ts`` and place, and the generator's achieved rate and CPU."""
    return await paced_in_process(
        Plan(settings.kafka_bootstrap, topic, events, rate, LOAD_LINGER_MS)
    )


async def tail(
    settings: Settings,
    topic: str,
    out: list[tuple[bytes, int, int]],
    stop: threading.Event | None = None,
) -> None:
    """Append (value, record timestamp ms, receive ms) of every new record until cancelled
    (or, from another thread, until ``stop`` is set)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        while stop is None or not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            got = now_ms()
            for records in batch.values():
                out.extend((r.value, r.timestamp, got) for r in records)
    finally:
        await consumer.stop()


async def raw_pipe(settings: Settings, src: str, dst: str, expect: int) -> float:
    """Consume ``expect`` new-or-backlog records of ``src`` and produce each to ``dst``.

    Returns seconds from the first record received to the last one acknowledged.
    Reads from the committed-nowhere start of ``src`` (earliest), no processing.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    seen = 0
    start: float | None = None
    try:
        while seen < expect:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            futures = []
            for records in batch.values():
                if start is None and records:
                    start = time.perf_counter()
                for r in records:
                    futures.append(await producer.send(dst, r.value, key=r.key))
                seen += len(records)
            await asyncio.gather(*futures)
    finally:
        await consumer.stop()
        await producer.stop()
    return time.perf_counter() - (start or time.perf_counter())


# --- the phases ----------------------------------------------------------------------
def quantiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "p99.9": float("nan"), "n": 0}
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {"p50": q(0.5), "p99": q(0.99), "p99.9": q(0.999), "n": len(ordered)}


async def paced_worker(
    settings: Settings,
    worker: WorkerProc,
    events: Sequence[InteractionEvent],
    rate: float,
    timed: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One paced phase; ``timed`` (if given) gets a row per list timed, for diagnosis."""
    topics = Topics(settings.topic_prefix)
    recs: list[tuple[bytes, int, int]] = []
    reader = asyncio.create_task(tail(settings, topics.recommendations, recs))
    await asyncio.sleep(1.0)  # the tail is positioned before anything is sent
    gen = LoadGenerator(Plan(settings.kafka_bootstrap, topics.events, events, rate, LOAD_LINGER_MS))
    await asyncio.to_thread(gen.start)  # spawned and connected before the timed window
    before = worker.scrape()
    load = await asyncio.to_thread(gen.run)
    sent = {ev.event_id: (ev.user_id, ts) for ev, ts in zip(events, load.ts, strict=True)}
    target = applied(before) + len(events)
    after = await asyncio.to_thread(worker.wait, lambda m: applied(m) >= target, 300.0, "caught up")
    # From the first send to the worker seen caught up by a scrape (0.5 s apart).
    elapsed = time.time() - min(load.ts) / 1000.0
    await asyncio.sleep(DEBOUNCE_MS / 1000.0 + 1.5)  # trailing-edge lists
    after = worker.scrape()
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader

    lat_pub, lat_recv = [], []
    first_reflecting: dict[str, int] = {}
    last_event: dict[str, int] = {}
    lists: list[tuple[str, int, int]] = []
    for _, (user, ts) in sent.items():
        last_event[user] = max(ts, last_event.get(user, 0))
    for value, _, got in recs:
        rec = orjson.loads(value)
        src = rec.get("source_event_id")
        if src in sent:
            lat_pub.append(rec["published_ts"] - rec["event_ts"])
            lat_recv.append(got - rec["event_ts"])
            if timed is not None:
                timed.append(
                    {
                        "offered_rate": rate,
                        "user_id": rec["user_id"],
                        "event_ts": rec["event_ts"],
                        "published_ts": rec["published_ts"],
                        "received_ms": got,
                        "strategy": rec.get("strategy"),
                    }
                )
        user, ets = rec["user_id"], rec.get("event_ts") or 0
        lists.append((user, ets, rec["published_ts"]))
        last = last_event.get(user)
        if last is not None and ets >= last and user not in first_reflecting:
            first_reflecting[user] = rec["published_ts"] - last
    within = sum(1 for d in first_reflecting.values() if d <= DEBOUNCE_MS)
    fresh = event_freshness(sent.values(), lists, DEBOUNCE_MS)
    if TAIL_TRACE is not None:  # for bench.tail_breakdown
        rows = zip(events, load.ts, load.placed, load.acked_ms or [0.0] * len(events), strict=True)
        (TAIL_TRACE / f"point_{rate:g}.json").write_bytes(
            orjson.dumps(
                {
                    "rate": rate,
                    "events": [[e.user_id, ts, p, o, a] for e, ts, (p, o), a in rows],
                    "lists": lists,
                }
            )
        )
    return {
        "offered_rate": rate,
        # Bounded by the catch-up scrape's 0.5 s poll: 600 events at 800/s read 473.
        "sustained_events_per_s": len(events) / elapsed,
        "reached_events_per_s": reached_rate(sent.values(), last_event, first_reflecting),
        **load.figures(),
        "lists_seen": len(recs),
        "freshness_ms_all_events": quantiles(fresh.all),
        "freshness_ms_leading_events": quantiles(fresh.leading),
        "freshness_ms_deferred_events": quantiles(fresh.deferred),
        "events_never_reflected": fresh.unreflected,
        "latency_ms_published_minus_event": quantiles(lat_pub),
        "latency_ms_received_minus_event": quantiles(lat_recv),
        "users_with_events": len(last_event),
        "users_last_event_reflected": len(first_reflecting),
        "users_without_list_after_last_event": len(last_event) - len(first_reflecting),
        "users_reflected_within_debounce": within,
        **work_figures(before, after, len(events)),
    }


def reached_rate(
    sent: Iterable[tuple[str, int]], last_event: dict[str, int], first_reflecting: dict[str, int]
) -> float:
    """Events per second from the first send to the moment every user's last event was
    reflected by a list (from the lists' own stamps, no poll); NaN if any user's last
    event never was (the run did not reach the end of its load).

    >>> reached_rate([("a", 0), ("b", 500), ("a", 990)], {"a": 990, "b": 500}, {"a": 10, "b": 5})
    3.0
    >>> reached_rate([("a", 0), ("b", 500), ("a", 990)], {"a": 990, "b": 500}, {"a": 10})
    nan
    """
    sent = list(sent)
    done = [last_event[u] + d for u, d in first_reflecting.items()]
    if not sent or not done or len(first_reflecting) < len(last_event):
        return float("nan")
    span_ms = max(done) - min(ts for _, ts in sent)
    return 1000.0 * len(sent) / span_ms if span_ms > 0 else float("nan")


async def paced_baseline(
    settings: Settings, events: Sequence[InteractionEvent], rate: float
) -> dict[str, Any]:
    src, dst = f"{settings.topic_prefix}.bench-in", f"{settings.topic_prefix}.bench-out"
    out: list[tuple[bytes, int, int]] = []
    reader = asyncio.create_task(tail(settings, dst, out))
    pipe = asyncio.create_task(raw_pipe(settings, src, dst, len(events)))
    await asyncio.sleep(1.0)
    sent = await paced_send(settings, src, events, rate)
    await pipe
    elapsed = time.time() - min(ts for _, ts in sent.values()) / 1000.0  # from the first send
    await asyncio.sleep(1.0)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    lat_pub, lat_recv = [], []
    for value, ts, got in out:
        ets = orjson.loads(value)["ts"]
        lat_pub.append(ts - ets)
        lat_recv.append(got - ets)
    return {
        "offered_rate": rate,
        "sustained_events_per_s": len(events) / elapsed,
        "latency_ms_produced_minus_event": quantiles(lat_pub),
        "latency_ms_received_minus_event": quantiles(lat_recv),
    }


def saturation(
    settings: Settings,
    worker: WorkerProc,
    events: Sequence[InteractionEvent],
    profile: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(worker, raw pipe) drain rates of one backlog of ``events``.

    ``profile``: a py-spy profile of the drain here (started once the worker resumes:
    py-spy cannot attach to a stopped process).
    """
    topics = Topics(settings.topic_prefix)
    recs: list[tuple[bytes, int, int]] = []
    stop = threading.Event()
    reader = threading.Thread(
        target=lambda: asyncio.run(tail(settings, topics.recommendations, recs, stop)),
        daemon=True,
    )
    reader.start()
    time.sleep(1.0)  # the tail is positioned before anything is sent
    before = worker.scrape()
    worker.proc.send_signal(signal.SIGSTOP)
    try:
        msgs = stamped(events)
        produce_bulk(settings, topics.events, msgs)
        produce_bulk(settings, f"{settings.topic_prefix}.bench-sat", msgs)
    finally:
        worker.proc.send_signal(signal.SIGCONT)
    spy = None if profile is None else py_spy(worker.proc.pid, profile)
    target = applied(before) + len(events)
    start: float | None = None
    try:
        while True:
            m = worker.scrape()
            t = time.perf_counter()
            if start is None and applied(m) > applied(before):
                start = t
            if applied(m) >= target:
                break
            time.sleep(0.2)  # each scrape costs the worker a metrics exposition
    finally:
        stop_spy(spy)
    worker_s = t - (start or t)
    if worker_s <= 0:
        raise SystemExit(
            f"the drain of {len(events):,} events was applied within one scrape (0.2 s):"
            " too short to time; give it more events (--drain-events, else --events)"
        )
    time.sleep(0.5)
    after = worker.scrape()
    time.sleep(DEBOUNCE_MS / 1000.0 + 1.0)  # trailing-edge lists
    stop.set()
    reader.join()
    published = lists_of(recs)
    fresh = event_freshness(
        [(e["user_id"], e["ts"]) for e in (orjson.loads(v) for _, v in msgs)],
        published,
        DEBOUNCE_MS,
    )
    pipe_s = asyncio.run(
        raw_pipe(
            settings,
            f"{settings.topic_prefix}.bench-sat",
            f"{settings.topic_prefix}.bench-sat-out",
            len(events),
        )
    )
    work = work_figures(before, after, len(events))
    return (
        {
            "events_per_s": len(events) / worker_s,
            "lists_per_s": work["lists_published"] / worker_s,
            # Every event of the backlog, stamped as it was produced with the worker
            # stopped: how long a burst's events wait for their lists.
            "freshness_ms_all_events": quantiles(fresh.all),
            "events_never_reflected": fresh.unreflected,
            # A batch's lists share one publish stamp: lists per stamp are lists per
            # scored micro-batch (two batches in one millisecond count as one).
            "lists_per_publish_ms": quantiles(lists_per_stamp(published)),
            **work,
        },
        {"events_per_s": len(events) / pipe_s},
    )


CURVE_FIELDS = (
    "offered_rate",
    "sustained_events_per_s",
    "reached_events_per_s",
    "load_sent_events_per_s",
    "load_cpu_ms_per_event",
    "load_cores",
    "load_max_behind_schedule_ms",
    "freshness_ms_all_events",
    "freshness_ms_leading_events",  # the user had no list in the debounce window before
    "freshness_ms_deferred_events",  # folded into a window's trailing refresh
    "events_never_reflected",
    "latency_ms_published_minus_event",
    "worker_cpu_ms_per_event",
    "cores_worker",
    "cores_kafka",
    "cores_redis",
    "worker_cpu_ms_per_1k_events",
    "kafka_cpu_ms_per_1k_events",
    "stage_ms_per_micro_batch",
    "worker_loop_thread_cpu_ms_per_event",
    "worker_kernel_cpu_ms_per_event",
    "worker_scrapes",
    "encoder_ms_per_micro_batch",
    "recommend_ms_per_micro_batch",
    "micro_batches_scored",
)


def curve_point(paced: dict[str, Any], events: int) -> dict[str, Any]:
    """One point of the freshness-against-offered-rate curve, from a paced phase."""
    return {**{k: paced[k] for k in CURVE_FIELDS}, "events": events}


REQUIRED_PHASE_FIELDS = (
    "freshness_ms_all_events",
    "worker_cpu_ms_per_event",
    "cores_worker",
    "cores_kafka",
)
"""Names every phase and curve point carries in ``--out`` (issue 19: kept as they are)."""


def missing_fields(report: dict[str, Any]) -> list[str]:
    """The required names a report lacks, as ``phase.name``; empty when complete."""
    figures = report["figures"]
    phases = {k: figures[k] for k in ("paced_worker", "saturated_worker")}
    phases.update({f"curve[{i}]": p for i, p in enumerate(figures.get("curve", []))})
    out = [
        f"{phase}.{name}"
        for phase, fig in phases.items()
        for name in REQUIRED_PHASE_FIELDS
        if name not in fig
    ]
    for phase, fig in phases.items():
        fresh = fig.get("freshness_ms_all_events", {})
        out += [f"{phase}.freshness_ms_all_events.{q}" for q in ("p50", "p99") if q not in fresh]
    if "idle_cores_worker" not in report:
        out.append("idle_cores_worker")
    return out


def lists_of(recs: Iterable[tuple[bytes, int, int]]) -> list[tuple[str, int, int]]:
    """(user, event_ts, published_ts) of each list record tailed."""
    out = []
    for value, _, _ in recs:
        rec = orjson.loads(value)
        out.append((rec["user_id"], rec.get("event_ts") or 0, rec["published_ts"]))
    return out


def lists_per_stamp(published: Iterable[tuple[str, int, int]]) -> list[float]:
    """How many lists carry each publish stamp, in stamp order.

    >>> lists_per_stamp([("a", 1, 7), ("b", 2, 7), ("c", 3, 9)])
    [2.0, 1.0]
    """
    counts = collections.Counter(ts for _, _, ts in published)
    return [float(counts[ts]) for ts in sorted(counts)]


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` (on PATH) of ``pid`` into ``out`` (raw, collapsed stacks,
    200 Hz); ``stop_spy`` ends it and writes the file."""
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
         "--output", str(out)],
    )  # fmt: skip


def stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    """Stop a ``py_spy`` recording; it writes its file on SIGINT."""
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


SETTLED_CORES = 0.05
"""A worker past its warm-up: this many cores or fewer over each of two seconds in a row
(the idle target is 0.02). Ready (catalog applied, warm-up events applied, model served)
comes before the live side has finished its own warm-up (the catalog log read, the
index and catalog image swapped in); an idle window begun 2 s after ready held up to a
second of that work (docs/benchmarks, I's section of 2026-12-07)."""


def settle(worker: WorkerProc, timeout_s: float = 120.0) -> float:
    """Seconds until the worker used at most ``SETTLED_CORES`` over each of two seconds
    in a row (its CPU read from ``/proc``: no scrape), at least 2 s; at most ``timeout_s``."""
    start = time.monotonic()
    quiet = 0
    before = worker.cpu_seconds()
    while time.monotonic() - start < timeout_s:
        time.sleep(1.0)
        now = worker.cpu_seconds()
        quiet = quiet + 1 if now - before <= SETTLED_CORES else 0
        before = now
        if quiet >= 2:
            break
    return time.monotonic() - start


def idle_cores(worker: WorkerProc, seconds: float, profile: Path | None = None) -> dict[str, float]:
    """Cores of the worker and of each watched neighbour (``kafka``, ``redis``, ...) over
    ``seconds`` with no traffic; ``profile``: a py-spy flame graph of that window
    (py-spy on PATH). The broker's idle cores show what its clients' idle polling costs
    (a short fetch wait makes an idle worker fetch, and the broker answer, many times a
    second)."""
    spy = None if profile is None else py_spy(worker.proc.pid, profile)
    before = worker.scrape()
    time.sleep(seconds)
    after = worker.scrape()
    stop_spy(spy)
    wall = after["wall_seconds"] - before["wall_seconds"]
    return {
        who: round((after[f"{who}_cpu_seconds"] - before[f"{who}_cpu_seconds"]) / wall, 4)
        for who in ("worker", *worker.neighbours)
        if f"{who}_cpu_seconds" in after and f"{who}_cpu_seconds" in before
    }


def latency_curve(
    settings: Settings,
    worker: WorkerProc,
    events: Sequence[InteractionEvent],
    rates: Sequence[float],
    per_rate: int,
    stop_ms: float,
    timed: list[dict[str, Any]] | None = None,
    profiles: Path | None = None,
) -> list[dict[str, Any]]:
    """Paced phases at rising rates, fresh events each, until p99 passes ``stop_ms``.

    ``profiles``: a folder for a py-spy profile of the worker at each rate
    (``<index>_rate_<ev/s>.txt``, raw collapsed stacks).
    """
    points: list[dict[str, Any]] = []
    for i, rate in enumerate(rates):
        chunk = events[i * per_rate : (i + 1) * per_rate]
        if not chunk:
            break
        spy = None
        if profiles is not None:
            profiles.mkdir(parents=True, exist_ok=True)
            spy = py_spy(worker.proc.pid, profiles / f"{i:02d}_rate_{rate:g}.txt")
        try:
            r = asyncio.run(paced_worker(settings, worker, chunk, rate, timed))
        finally:
            stop_spy(spy)
        points.append(curve_point(r, len(chunk)))
        if r["latency_ms_published_minus_event"]["p99"] > stop_ms:
            break
    return points


def plot_curve(points: Sequence[dict[str, Any]], path: Path) -> None:
    """p50/p99 freshness (and event-to-publish) against the offered rate (log axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [p["offered_rate"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 4))
    for q in ("p50", "p99"):
        ax.plot(x, [p["freshness_ms_all_events"][q] for p in points], "o-", label=f"{q} freshness")
        lat = [p["latency_ms_published_minus_event"][q] for p in points]
        ax.plot(x, lat, ":", label=f"{q} event-to-publish (lists only)")
    ax.axhline(50, color="grey", linestyle=":", label="50 ms target")
    ax.set_yscale("log")
    ax.set_xlabel("offered events/s (one worker)")
    ax.set_ylabel("event to first list reflecting it, ms")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_phases(
    args: argparse.Namespace,
    settings: Settings,
    worker: WorkerProc,
    shop: Shop,
    rates: Sequence[float],
    timed: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """Paced, baseline, saturated and curve phases with lists on; the report's figures."""
    results: dict[str, Any] = {}
    results["paced_worker"] = asyncio.run(
        paced_worker(settings, worker, shop.live, args.rate, timed)
    )
    results["paced_baseline"] = asyncio.run(paced_baseline(settings, shop.live, args.rate))
    if args.drain_events > 0:
        from bench import drains

        n = args.drain_events
        backlogs = [shop.drains[i * n : (i + 1) * n] for i in range(args.repeats)]
        results.update(drains.run(settings, worker, backlogs, args.profile_curve))
    else:
        sat_worker, sat_pipe = saturation(settings, worker, shop.saturate)
        results["saturated_worker"] = sat_worker
        results["saturated_baseline"] = sat_pipe
    results["curve"] = latency_curve(
        settings,
        worker,
        shop.extra,
        rates,
        args.curve_events,
        args.curve_stop_ms,
        timed,
        args.profile_curve,
    )
    return results


# --- main ----------------------------------------------------------------------------
def main() -> None:
    global LOAD_LINGER_MS, TAIL_TRACE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--events", type=int, default=40_000, help="per phase")
    parser.add_argument("--warm", type=int, default=40_000, help="history sent first")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced events/s")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--bundle",
        action="store_true",
        help="train a small bundle first (cached under $FRESHET_HOME/bench-bundles)",
    )
    parser.add_argument("--train-samples", type=int, default=20_000)
    parser.add_argument(
        "--ranker",
        default="off",
        choices=["off", "on"],
        help="with --bundle: ship the candidate ranker (on) or not (off)",
    )
    parser.add_argument("--quick", action="store_true", help="10k items, 5k events")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap")
    parser.add_argument("--redis-url")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/stream_bench.json"))
    parser.add_argument(
        "--curve",
        default="",
        help="latency-vs-throughput curve: rising offered rates, e.g. 250,500,1000,2000;"
        " stops after the first rate whose p99 event-to-publish passes --curve-stop-ms",
    )
    parser.add_argument("--curve-events", type=int, default=3_000, help="events per rate")
    parser.add_argument("--curve-stop-ms", type=float, default=100.0)
    parser.add_argument(
        "--load-linger-ms",
        type=int,
        default=LOAD_LINGER_MS,
        help="linger of the paced load generator's producer (freshet's producer uses 5)",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="FRESHET_NAME=VALUE",
        help="a setting for the worker only (repeatable), e.g. FRESHET_BLAS_THREADS=0 for an A/B",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=900.0,
        help="seconds the worker may take to apply the catalog and warm-up and load its model",
    )
    parser.add_argument(
        "--idle-s",
        type=float,
        default=30.0,
        help="seconds of no traffic, after warm-up, over which idle_cores_worker is measured",
    )
    parser.add_argument(
        "--profile-idle",
        type=Path,
        help="write a py-spy profile (raw, collapsed stacks) of the idle worker here",
    )
    parser.add_argument(
        "--profile-curve",
        type=Path,
        help="a folder for py-spy profiles of the worker at each curve point (with"
        " --ingest-only or --drain-events: of each saturated drain too)",
    )
    parser.add_argument(
        "--ingest-only",
        action="store_true",
        help="lists off (FRESHET_REALTIME=false, no bundle): paced and --curve phases time"
        " each event to its state applied in Redis, the saturated drain runs against Faust's"
        " no-op ceiling (bench/ingest_only.py)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="saturated drain / no-op ceiling pairs: with --ingest-only (--events split), or"
        " with --drain-events",
    )
    parser.add_argument(
        "--drain-events",
        type=int,
        default=0,
        help="lists on: --repeats saturated drains of this many fresh events each, each"
        " paired with Faust's no-op agent, the median reported (bench/drains.py); 0: one"
        " drain of --events, as before",
    )
    parser.add_argument(
        "--tail-trace",
        type=Path,
        help="run the worker under bench.tail_probe and write its rows and each paced"
        " phase's events here, for bench.tail_breakdown (the probe costs some CPU)",
    )
    parser.add_argument(
        "--lists-out",
        type=Path,
        help="write every timed list (event and publish times, user, rate) here as JSONL",
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.curve.split(",") if r.strip()]
    LOAD_LINGER_MS = args.load_linger_ms
    if args.tail_trace is not None:
        args.tail_trace.mkdir(parents=True, exist_ok=True)
        TAIL_TRACE = args.tail_trace
    worker_env = dict(kv.split("=", 1) for kv in args.worker_env)
    if any(not k.startswith("FRESHET_") for k in worker_env):
        parser.error("--worker-env takes FRESHET_NAME=VALUE")
    if args.ingest_only:
        if args.bundle:
            parser.error("--ingest-only runs without lists, so without a bundle")
        worker_env["FRESHET_REALTIME"] = "false"
    if args.quick:
        args.items, args.users = min(args.items, 10_000), min(args.users, 5_000)
        args.events, args.warm = min(args.events, 5_000), min(args.warm, 5_000)

    t_sim = time.perf_counter()
    drain_total = 0 if args.ingest_only else args.drain_events * args.repeats
    shop = simulate_shop(
        args.users,
        args.items,
        args.warm,
        args.events,
        args.seed,
        len(rates) * args.curve_events,
        drain_total,
    )
    sim_s = time.perf_counter() - t_sim
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        services: list[Any] = []
        neighbours: dict[str, int] = {}
        if args.bootstrap and args.redis_url:
            bootstrap, redis_url = args.bootstrap, args.redis_url
        else:
            from freshet.services.kafka_local import LocalKafka
            from freshet.services.redis_local import LocalRedis

            home = Settings.from_env().home
            kafka = LocalKafka(
                base / "kafka", partitions=args.partitions, home=home, die_with_parent=True
            ).start()
            redis = LocalRedis(base / "redis", appendonly=True, die_with_parent=True).start()
            services = [kafka, redis]
            neighbours = {
                name: pid
                for name, pid in (("kafka", kafka.pid), ("redis", redis.pid))
                if pid is not None
            }
            bootstrap, redis_url = kafka.bootstrap, redis.url
        settings = Settings.from_env(
            {},
            kafka_bootstrap=bootstrap,
            redis_url=redis_url,
            topic_prefix=f"sbench-{os.getpid()}",
            redis_namespace=f"sb{os.getpid()}",
            topic_partitions=args.partitions,
            home=base / "home",
        )
        worker: WorkerProc | None = None
        try:
            from streams.kafka_io.event_producer import ensure_topics

            p = settings.topic_prefix
            ensure_topics(kafka_of(settings))
            ensure_topics(
                kafka_of(settings),
                [f"{p}.bench-in", f"{p}.bench-out", f"{p}.bench-sat", f"{p}.bench-sat-out"],
            )
            version = "none (model-free)"
            train_s = 0.0
            has_ranker = False
            if args.bundle:
                t = time.perf_counter()
                version = cached_bundle(args, shop, settings.bundle_dir)
                train_s = time.perf_counter() - t
                manifest = json.loads((settings.bundle_dir / version / "manifest.json").read_text())
                has_ranker = manifest.get("ranker_layout") is not None
            topics = Topics(p)
            produce_bulk(
                settings,
                topics.catalog,
                [(catalog_key(c.item_id), encode(c)) for c in shop.catalog],
            )
            produce_bulk(settings, topics.events, stamped(shop.warm))
            t = time.perf_counter()
            worker = WorkerProc(settings, base / "worker.log", worker_env, neighbours)
            want_model = args.bundle
            # Ready means every catalog record applied by the catalog agent, not only
            # a catalog the size of the bundle's: the agent's backlog of 100k records
            # would otherwise still be draining during the timed phases.
            worker.wait(
                lambda m: (
                    (args.ingest_only or m.get("freshet_catalog_items", 0) >= args.items)
                    and catalog_applied(m) >= len(shop.catalog)
                    and applied(m) >= len(shop.warm)
                    and (not want_model or served_model(m) != "none")
                ),
                args.ready_timeout,
                "ready",
            )
            ready_s = time.perf_counter() - t
            settle_s = settle(worker)
            idle = idle_cores(worker, args.idle_s, args.profile_idle)
            timed: list[dict[str, Any]] | None = [] if args.lists_out else None
            if args.ingest_only:
                from bench import ingest_only

                results = ingest_only.run(
                    settings,
                    worker,
                    shop,
                    args.rate,
                    rates,
                    args.curve_events,
                    args.repeats,
                    args.profile_curve,
                )
            else:
                results.update(run_phases(args, settings, worker, shop, rates, timed))
            if args.lists_out and timed is not None:
                args.lists_out.write_bytes(b"".join(orjson.dumps(t) + b"\n" for t in timed))
            final = worker.scrape()
            provider = _served_provider(worker.log)
        finally:
            if worker is not None:
                worker.stop()
            for svc in services:
                svc.stop()

    conditions = {
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("faust-streaming", "aiokafka", "redis", "onnxruntime-gpu", "faiss-cpu")
        },
        "kafka": "3.9.1 (local KRaft broker)" if not args.bootstrap else "external",
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "items": args.items,
        "users": args.users,
        "warm_events": len(shop.warm),
        "events_per_phase": args.events,
        "offered_rate": args.rate,
        "partitions": args.partitions,
        "debounce_ms": DEBOUNCE_MS,
        # The starting commit has no mode setting: its window was always fixed.
        "debounce_mode": getattr(settings, "debounce_mode", "fixed"),
        "batch_max_events": settings.batch_max_events,
        "batch_max_ms": settings.batch_max_ms,
        "model": version,
        "ranker": has_ranker,
        "worker_env": worker_env,
        "load_producer_linger_ms": LOAD_LINGER_MS,
        "load_tick_ms": TICK_MS,
        "onnx_provider": provider,
        "idle_s": args.idle_s,
        "load_average_1_5_15": list(os.getloadavg()),
        "simulate_s": round(sim_s, 1),
        "train_s": round(train_s, 1),
        "worker_ready_s": round(ready_s, 1),
        "worker_settle_s": round(settle_s, 1),
        "lists_by_strategy": {
            s: final.get(f'freshet_lists_total{{strategy="{s}"}}', 0)
            for s in ("personalised", "cold_start", "model_free")
        },
        "note": "Kafka, Redis, the worker and the bench's producers share the cores",
        "ingest_only": args.ingest_only,
        "drain_events": args.drain_events,
        "drain_repeats": args.repeats if args.drain_events > 0 else 1,
    }
    report = {
        "conditions": conditions,
        "idle_cores_worker": idle["worker"],
        "idle_cores_kafka": idle.get("kafka", float("nan")),
        "lock_holds_whole_run": lock_holds({}, final),
        "figures": results,
    }
    _print(report)
    if missing := missing_fields(report):
        raise SystemExit(f"report lacks {missing}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if results["curve"] and not args.ingest_only:
        plot_curve(results["curve"], args.out.with_suffix(".curve.png"))
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written: {args.out}")


def _print(report: dict[str, Any]) -> None:
    c, f = report["conditions"], report["figures"]
    print("conditions:")
    print(f"  python {c['python']}, cores {c['cores']} ({c['cpu']}), kafka {c['kafka']}")
    print("  " + ", ".join(f"{k} {v}" for k, v in c["versions"].items()))
    print(
        f"  catalog {c['items']:,} items, {c['users']:,} users, partitions {c['partitions']}, "
        f"warm-up {c['warm_events']:,} events, {c['events_per_phase']:,} events per phase"
    )
    print(
        f"  offered rate {c['offered_rate']:,.0f}/s, debounce {c['debounce_ms']} ms"
        f" ({c.get('debounce_mode', 'fixed')}), "
        f"batches <= {c['batch_max_events']} events / {c['batch_max_ms']} ms"
    )
    ranker = "with ranker" if c.get("ranker") else "no ranker"
    print(f"  model {c['model']} ({ranker}), onnx provider {c['onnx_provider']}")
    print(
        f"  load generator: acks=all, linger {c.get('load_producer_linger_ms', 0)} ms,"
        f" its own process, wakes every {c.get('load_tick_ms', 0):g} ms to send the events due"
    )
    if c.get("worker_env"):
        print(f"  worker settings: {c['worker_env']}")
    print(f"  lists by strategy (whole run): {c['lists_by_strategy']}")
    print(f"  {c['note']}; load average {c['load_average_1_5_15']}")
    if c.get("ingest_only"):
        from bench.ingest_only import print_figures

        print_figures(report)
        return
    pw, pb = f["paced_worker"], f["paced_baseline"]
    sw, sb = f["saturated_worker"], f["saturated_baseline"]
    print("figures:")
    print(
        f"  idle worker: {report['idle_cores_worker']:.4f} cores over {c['idle_s']:.0f} s,"
        f" begun {c['worker_settle_s']:.0f} s after ready (its warm-up done)"
        f" (broker meanwhile: {report.get('idle_cores_kafka', float('nan')):.4f} cores)"
    )
    holds = report["lock_holds_whole_run"]
    print(
        "  scoring-lock holds by housekeeping (whole run): "
        + ", ".join(
            f"{d} {h['holds']:.0f} (mean {h['mean_ms']:.2f} ms, {h['over_1ms']:.0f} over 1 ms)"
            for d, h in holds.items()
        )
    )
    print(f"                               {'freshet worker':>16} {'raw aiokafka pipe':>18}")
    print(
        f"  sustained @ {pw['offered_rate']:,.0f}/s offered    "
        f"{pw['sustained_events_per_s']:12,.0f}/s {pb['sustained_events_per_s']:15,.0f}/s"
    )
    print(
        f"  load generator: sent {pw['load_sent_events_per_s']:,.0f}/s, its CPU"
        f" {pw['load_cpu_ms_per_event']:.3f} ms/event ({pw['load_cores']:.2f} cores), at most"
        f" {pw['load_max_behind_schedule_ms']:.1f} ms behind schedule; every event reflected"
        f" at {pw['reached_events_per_s']:,.0f}/s"
    )
    print(
        f"  saturated throughput        {sw['events_per_s']:12,.0f}/s {sb['events_per_s']:15,.0f}/s"
    )
    lw, lb = pw["latency_ms_published_minus_event"], pb["latency_ms_produced_minus_event"]
    rw, rb = pw["latency_ms_received_minus_event"], pb["latency_ms_received_minus_event"]
    for q in ("p50", "p99", "p99.9"):
        print(f"  latency {q:<5} (out ts − event) {lw[q]:10.0f} ms {lb[q]:15.0f} ms")
    for q in ("p50", "p99", "p99.9"):
        print(f"  latency {q:<5} (received − event) {rw[q]:8.0f} ms {rb[q]:15.0f} ms")
    print(f"  lists timed (live events)   {lw['n']:12,}   (baseline records {lb['n']:,})")
    print("  freshness: event -> first list reflecting it (leading: no list in the window before)")
    for name in ("all", "leading", "deferred"):
        fq = pw[f"freshness_ms_{name}_events"]
        print(
            f"    {name:<9} events {fq['n']:7,}: p50 {fq['p50']:6.0f} ms, p99 {fq['p99']:6.0f} ms, "
            f"p99.9 {fq['p99.9']:6.0f} ms"
        )
    print(f"    events no list ever reflected: {pw['events_never_reflected']:,}")
    print(
        f"  users with live events      {pw['users_with_events']:12,}; last event reflected "
        f"{pw['users_last_event_reflected']:,}, within {DEBOUNCE_MS} ms "
        f"{pw['users_reflected_within_debounce']:,}, no list after it "
        f"{pw['users_without_list_after_last_event']:,}"
    )
    for name, w in (("paced", pw), ("saturated", sw)):
        print(
            f"  {name:<9} Redis round trips/event {w['redis_round_trips_per_event']:.3f}; "
            f"encoder {w['encoder_ms_per_micro_batch']:.2f} ms and re-rank "
            f"{w['recommend_ms_per_micro_batch']:.2f} ms per micro-batch "
            f"({w['micro_batches_scored']:,} scored); worker CPU "
            f"{w['worker_cpu_ms_per_event']:.3f} ms/event (kernel "
            f"{w['worker_kernel_cpu_ms_per_event']:.3f}; {w['worker_scrapes']:.0f} scrapes of"
            f" /metrics); {w['lists_published']:,.0f} lists"
        )
        print(
            f"  {name:<9} Redis bytes/event in {w['redis_bytes_in_per_event']:,.0f}, out "
            f"{w['redis_bytes_out_per_event']:,.0f}; worker RSS {w['worker_rss_mib']:,.0f} MiB "
            f"(peak {w['worker_peak_rss_mib']:,.0f} MiB)"
        )
    print(f"  saturated: {sw['lists_per_s']:,.0f} lists/s published while draining")
    fq = sw["freshness_ms_all_events"]
    print(f"  saturated freshness (backlog events): p50 {fq['p50']:.0f} ms, p99 {fq['p99']:.0f} ms")
    for name, w in (("paced", pw), ("saturated", sw)):
        budget = ", ".join(f"{k} {v:.2f}" for k, v in w["stage_ms_per_micro_batch"].items())
        print(f"  {name:<9} ms per micro-batch by stage: {budget}")
    for name, w in (("paced", pw), ("saturated", sw)):
        split = ", ".join(
            f"{k.removeprefix('cores_')} {v:.2f}" for k, v in w.items() if k.startswith("cores_")
        )
        if split:
            print(f"  {name:<9} CPU cores in use: {split} (of {c['cores']})")
    if "ratio_to_faust_noop" in f:
        from bench.drains import print_drains

        print_drains(f)
    if f["curve"]:
        print("  latency vs throughput (event-to-publish, fresh events per rate):")
        print(
            "    (sent/s: the load generator's achieved rate; reached/s: first send to every"
            " event reflected; load CPU: the generator's own)"
        )
        print(
            "    offered/s  sent/s  reached/s  load CPU ms/ev    p50 ms    p99 ms  p99.9 ms"
            "  fresh p50  fresh p99  CPU ms/event  worker cores  kafka cores"
        )
        for p in f["curve"]:
            lq, fq = p["latency_ms_published_minus_event"], p["freshness_ms_all_events"]
            print(
                f"    {p['offered_rate']:9,.0f} {p['load_sent_events_per_s']:7,.0f}"
                f" {p['reached_events_per_s']:10,.0f} {p['load_cpu_ms_per_event']:15.3f}"
                f" {lq['p50']:9.0f} {lq['p99']:9.0f} {lq['p99.9']:9.0f}"
                f" {fq['p50']:10.0f} {fq['p99']:10.0f}"
                f" {p['worker_cpu_ms_per_event']:13.3f} {p['cores_worker']:13.2f}"
                f" {p['cores_kafka']:12.2f}"
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _served_provider(log: Path) -> str:
    """The provider the worker logged when it swapped a bundle in (or 'n/a')."""
    for line in log.read_text(errors="replace").splitlines():
        if "serving bundle" in line and " on " in line:
            return line.rsplit(" on ", 1)[1].strip()
    return "n/a (no bundle)"


def _version(name: str) -> str:
    try:
        return pkg_version(name)
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
