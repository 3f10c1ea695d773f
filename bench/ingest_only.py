"""Ingest only: one worker with lists off, its rate against Faust's no-op ceiling, one run.

``bench.stream_bench --ingest-only`` runs this on its shop (catalog and warm-up first,
untimed): the worker runs with ``FRESHET_REALTIME=false``, so it decodes, reads state,
applies the rules and writes state and watermarks to Redis, and acks; no scoring, no
lists. The done point of an event is its partition's watermark in Redis reaching the
event's offset: the state it changed and the watermark are written in one atomic
script, so from then on the event is applied for good (Faust commits the acked offset
within its commit interval; the bench reports when the group's committed offsets
cover the backlog too).

1. **Paced**, at ``--rate`` and at each ``--curve`` rate, ``--curve-events`` each (the
   saturated drains take ``--events``): events are sent at the rate,
   stamped with their send time; a thread polls the watermarks every
   ``POLL_S`` and each event's ``freshness_ms_all_events`` is the time from its
   stamp to the first poll that saw it applied (so it includes up to one poll interval).
2. **Saturated**: the worker is paused (SIGSTOP), ``--events`` are produced, the worker
   is resumed; the rate is the events over the time from the first watermark advance
   to the last event applied.
3. **Faust's no-op ceiling** (``bench.faust_take_bench``) on the same broker right after
   each saturated drain, on as many pre-produced events, with the worker's micro-batch
   window; the report gives the ratio of the two rates.

Worker CPU, cores of the worker, broker and Redis come from the same scrapes as the
stream bench's (``worker_cpu_ms_per_event``, ``cores_worker``, ``cores_kafka``).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import signal
import statistics
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stream_bench import (
    WorkerProc,
    applied,
    now_ms,
    paced_records,
    py_spy,
    quantiles,
    stop_spy,
    work_figures,
)
from freshet.settings import Settings
from schemas.codec import encode
from schemas.events import InteractionEvent
from schemas.topics import Topics, event_key

POLL_S = 0.005
"""How often the bench reads the partition watermarks (one MGET) while it times events."""

Sent = list[tuple[int, int, int]]
"""(partition, offset, event ts ms) of each event sent."""


class WatermarkPoller:
    """A thread that reads every partition's watermark every ``interval_s``.

    Keeps (wall ms, watermark per partition) samples; watermarks only grow, so the first
    sample that covers an offset is found by bisection.
    """

    def __init__(self, settings: Settings, interval_s: float = POLL_S) -> None:
        import redis

        from streams.redis_io.keyspace import Keyspace

        self.client = redis.Redis.from_url(settings.redis_url)
        keys = Keyspace(settings.redis_namespace)
        self.keys = [keys.watermark(p) for p in range(settings.topic_partitions)]
        self.interval_s = interval_s
        self.times: list[float] = []
        self.marks: list[list[int]] = [[] for _ in self.keys]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            values = self.client.mget(self.keys)
            self.times.append(time.time() * 1000.0)
            for marks, v in zip(self.marks, values, strict=True):
                marks.append(-1 if v is None else int(v))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> WatermarkPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()

    def latest(self) -> list[int]:
        return [m[-1] if m else -1 for m in self.marks]

    def applied_at(self, partition: int, offset: int) -> float | None:
        """Wall ms of the first sample whose watermark covers ``offset`` (None: never)."""
        marks = self.marks[partition][: len(self.times)]
        i = bisect.bisect_left(marks, offset)
        return self.times[i] if i < len(marks) else None

    def first_advance(self, start: Sequence[int]) -> float | None:
        """Wall ms of the first sample with any watermark above ``start``."""
        for i, t in enumerate(self.times):
            if any(m[i] > s for m, s in zip(self.marks, start, strict=True)):
                return t
        return None


def freshness(poller: WatermarkPoller, sent: Sent) -> tuple[dict[str, float], int]:
    """Quantiles of event-to-applied ms over ``sent``, and how many were never seen applied."""
    out: list[float] = []
    never = 0
    for partition, offset, ts in sent:
        at = poller.applied_at(partition, offset)
        if at is None:
            never += 1
        else:
            out.append(max(0.0, at - ts))
    return quantiles(out), never


def paced_offsets(settings: Settings, events: Sequence[InteractionEvent], rate: float) -> Sent:
    """Send at ``rate``/s with ``ts`` = send time; returns where each event landed."""
    topic = Topics(settings.topic_prefix).events
    landed = asyncio.run(paced_records(settings, topic, events, rate))
    return [(md.partition, md.offset, ts) for _, ts, md in landed]


def bulk_offsets(settings: Settings, events: Sequence[InteractionEvent]) -> Sent:
    """Produce ``events`` as fast as the producer batches them, stamped as encoded."""
    from kafka import KafkaProducer

    topic = Topics(settings.topic_prefix).events
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=20, batch_size=262144
    )
    pending = []
    for ev in events:
        ts = now_ms()
        value = encode(dataclasses.replace(ev, ts=ts))
        pending.append((producer.send(topic, key=event_key(ev.user_id), value=value), ts))
    producer.flush()
    out = []
    for fut, ts in pending:
        md = fut.get()
        out.append((md.partition, md.offset, ts))
    producer.close()
    return out


def paced_phase(
    settings: Settings,
    worker: WorkerProc,
    events: Sequence[InteractionEvent],
    rate: float,
) -> dict[str, Any]:
    """Events at ``rate``; freshness to applied state, and the worker's work figures."""
    before = worker.scrape()
    with WatermarkPoller(settings) as poller:
        sent = paced_offsets(settings, events, rate)
        target = applied(before) + len(events)
        after = worker.wait(lambda m: applied(m) >= target, 300.0, "caught up")
        # From the first send (the load generator's process start is not in it).
        elapsed = time.time() - min(ts for _, _, ts in sent) / 1000.0
    fresh, never = freshness(poller, sent)
    return {
        "offered_rate": rate,
        "sustained_events_per_s": len(events) / elapsed,
        "freshness_ms_all_events": fresh,
        "events_never_applied": never,
        "poll_ms": POLL_S * 1000,
        **work_figures(before, after, len(events)),
    }


def committed_cover(settings: Settings, ends: dict[int, int], timeout_s: float) -> float | None:
    """Monotonic time once the worker group's committed offsets reach ``ends`` (None: not
    within ``timeout_s``)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    group = f"{settings.topic_prefix}-bench"
    topic = Topics(settings.topic_prefix).events
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            offsets = admin.list_group_offsets({group: None}).get(group, {})
            done = all(
                (md := offsets.get(_tp(topic, p))) is not None and md.offset >= end
                for p, end in ends.items()
            )
            if done:
                return time.monotonic()
            time.sleep(0.05)
        return None
    finally:
        admin.close()


def _tp(topic: str, partition: int) -> Any:
    from kafka import TopicPartition

    return TopicPartition(topic, partition)


def saturated_phase(
    settings: Settings,
    worker: WorkerProc,
    events: Sequence[InteractionEvent],
    profile: Path | None = None,
) -> dict[str, Any]:
    """A backlog of ``events`` produced with the worker paused, then drained.

    ``profile``: a py-spy profile of the drain here (started once the worker resumes:
    py-spy cannot attach to a stopped process).
    """
    before_stop = worker.scrape()
    worker.proc.send_signal(signal.SIGSTOP)
    resumed = False
    spy = None
    try:
        sent = bulk_offsets(settings, events)
        ends: dict[int, int] = {}
        for p, off, _ in sent:
            ends[p] = max(ends.get(p, -1), off)
        with WatermarkPoller(settings, interval_s=2 * POLL_S) as poller:
            time.sleep(4 * POLL_S)  # samples from before the worker resumes
            start_marks = poller.latest()
            worker.proc.send_signal(signal.SIGCONT)
            resumed = True
            resumed_ms = time.time() * 1000.0
            before = worker.scrape()
            spy = None if profile is None else py_spy(worker.proc.pid, profile)
            while any(m < ends.get(p, -1) for p, m in enumerate(poller.latest())):
                if worker.proc.poll() is not None:
                    raise RuntimeError(f"worker exited; see {worker.log}")
                time.sleep(0.05)
    finally:
        stop_spy(spy)
        if not resumed:
            worker.proc.send_signal(signal.SIGCONT)
    first = poller.first_advance(start_marks)
    last = max(poller.applied_at(p, end) or 0.0 for p, end in ends.items())
    drain_s = (last - (first or last)) / 1000.0
    timed_from = "first_advance"
    if drain_s <= 0:
        # The whole backlog was applied within one poll interval (a batch delivery
        # takes it in one micro-batch): time it from the resume instead, an upper
        # bound on the drain that includes the worker's wake-up and first fetch.
        drain_s = max(0.0, last - resumed_ms) / 1000.0
        timed_from = "resume"
    target = applied(before_stop) + len(events)
    after = worker.wait(lambda m: applied(m) >= target, 300.0, "acked")
    acked = time.monotonic()
    committed = committed_cover(settings, {p: e + 1 for p, e in ends.items()}, 30.0)
    fresh, never = freshness(poller, sent)
    counted = len(events) - int(applied(before) - applied(before_stop))
    return {
        "events": len(events),
        "events_per_s": len(events) / drain_s if drain_s > 0 else float("nan"),
        "drain_s": drain_s,
        "drain_timed_from": timed_from,
        # From the last event applied in Redis to the group's commit covering it.
        "committed_after_acked_s": None if committed is None else committed - acked,
        "freshness_ms_all_events": fresh,
        "events_never_applied": never,
        **work_figures(before, after, max(1, counted)),
    }


def faust_ceiling(settings: Settings, events: int, seed: int) -> dict[str, Any]:
    """Faust's no-op agent on the same broker, the worker's take window, ``events`` events."""
    from bench.faust_take_bench import measure

    return measure(
        settings.kafka_bootstrap,
        settings.home,
        f"{settings.topic_prefix}-ceiling{seed}",
        events,
        float(settings.batch_max_ms),
        settings.topic_partitions,
        seed,
    )


def run(
    settings: Settings,
    worker: WorkerProc,
    shop: Any,
    rate: float,
    rates: Sequence[float],
    per_rate: int,
    repeats: int,
    profiles: Path | None = None,
) -> dict[str, Any]:
    """Every phase of the ingest-only bench on a ready worker; the report's figures.

    ``profiles``: a folder for a py-spy profile of each saturated drain
    (``saturated_<n>.txt``, raw collapsed stacks; py-spy on PATH).
    """
    figures: dict[str, Any] = {}
    figures["paced_worker"] = paced_phase(settings, worker, shop.live[:per_rate], rate)
    curve = []
    for i, r in enumerate(rates):
        chunk = shop.extra[i * per_rate : (i + 1) * per_rate]
        if chunk:
            point = paced_phase(settings, worker, chunk, r)
            curve.append({**point, "events": len(chunk)})
    figures["curve"] = curve
    chunks = _split(shop.saturate, repeats)
    pairs = []
    for i, chunk in enumerate(chunks):
        if profiles is not None:
            profiles.mkdir(parents=True, exist_ok=True)
        profile = None if profiles is None else profiles / f"saturated_{i}.txt"
        sat = saturated_phase(settings, worker, chunk, profile)
        ceiling = faust_ceiling(settings, len(chunk), seed=i)
        sat["faust_noop_events_per_s"] = ceiling["events_per_s"]
        sat["faust_noop_cpu_ms_per_event"] = ceiling["cpu_ms_per_event"]
        sat["faust_noop_cores"] = ceiling["cores"]
        sat["ratio_to_faust_noop"] = sat["events_per_s"] / ceiling["events_per_s"]
        # What the rate ratio tends to when both are CPU-bound on a quiet host: on a
        # loaded one each gets what share of the cores it can, and rates swing with it.
        # NaN when the drain was too short for the worker's CPU to register (the
        # kernel counts it in 10 ms ticks): a smoke-test size, not a figure.
        worker_cpu = sat["worker_cpu_ms_per_event"]
        sat["cpu_ratio_to_faust_noop"] = (
            ceiling["cpu_ms_per_event"] / worker_cpu if worker_cpu > 0 else float("nan")
        )
        pairs.append(sat)
    mid = sorted(pairs, key=lambda s: s["ratio_to_faust_noop"])[len(pairs) // 2]
    figures["saturated_worker"] = {**mid, "repeats": pairs}
    figures["faust_noop"] = {
        "events_per_s": statistics.median(p["faust_noop_events_per_s"] for p in pairs),
        "within_ms": settings.batch_max_ms,
    }
    figures["ratio_to_faust_noop"] = mid["ratio_to_faust_noop"]
    return figures


def _split(events: Sequence[InteractionEvent], parts: int) -> list[Sequence[InteractionEvent]]:
    size = len(events) // max(1, parts)
    return [events[i * size : (i + 1) * size] for i in range(max(1, parts))]


def print_figures(report: dict[str, Any]) -> None:
    """The ingest-only figures, one line each."""
    f = report["figures"]
    print("figures (ingest only: done = the event's partition watermark in Redis):")
    print(f"  idle worker: {report['idle_cores_worker']:.4f} cores")
    print(
        "    offered/s  sustained/s  applied p50 ms  p99 ms  CPU ms/event"
        "  worker cores  kafka cores  redis cores"
    )
    for p in [f["paced_worker"], *f["curve"]]:
        fq = p["freshness_ms_all_events"]
        print(
            f"    {p['offered_rate']:9,.0f} {p['sustained_events_per_s']:12,.0f}"
            f" {fq['p50']:15.0f} {fq['p99']:7.0f} {p['worker_cpu_ms_per_event']:13.3f}"
            f" {p['cores_worker']:13.2f} {p['cores_kafka']:12.2f} {p['cores_redis']:12.2f}"
        )
    print("  saturated drain against Faust's no-op agent, back to back:")
    for s in f["saturated_worker"]["repeats"]:
        print(
            f"    {s['events']:,} events: worker {s['events_per_s']:8,.0f} ev/s,"
            f" no-op {s['faust_noop_events_per_s']:8,.0f} ev/s, ratio"
            f" {s['ratio_to_faust_noop']:.3f}; CPU ms/event worker"
            f" {s['worker_cpu_ms_per_event']:.3f} no-op {s['faust_noop_cpu_ms_per_event']:.3f};"
            f" cores worker {s['cores_worker']:.2f} no-op {s['faust_noop_cores']:.2f}"
            f" kafka {s['cores_kafka']:.2f}"
            f" redis {s['cores_redis']:.2f}; commit covered"
            f" {_secs(s['committed_after_acked_s'])} after the last ack"
        )
        stages = ", ".join(f"{k} {v:.2f}" for k, v in s["stage_ms_per_micro_batch"].items())
        print(f"      ms per micro-batch by stage: {stages}")
    print(f"  ratio (median pair): {f['ratio_to_faust_noop']:.3f} of Faust's no-op ceiling")
    cpu = statistics.median(s["cpu_ratio_to_faust_noop"] for s in f["saturated_worker"]["repeats"])
    print(f"  CPU per event, no-op / worker (median): {cpu:.3f}")


def _secs(value: float | None) -> str:
    return "never (30 s)" if value is None else f"{value:.2f} s"
