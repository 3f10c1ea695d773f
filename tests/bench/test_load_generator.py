"""The paced load generator lands every event once, stamped, evenly spread, on a real broker."""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
from collections import Counter

import orjson
from kafka import KafkaConsumer, TopicPartition

from bench import stream_bench
from bench.load_generator import (
    LoadGenerator,
    Placed,
    Plan,
    SendReport,
    counts_per_window,
    due,
)
from freshet.settings import Settings
from freshet.simulator.stream import SimConfig, simulate
from freshet.wiring import kafka_of
from schemas.events import InteractionEvent
from schemas.topics import event_key
from streams.kafka_io.event_producer import ensure_topics


def events(n: int, seed: int = 3) -> list[InteractionEvent]:
    cfg = SimConfig(users=200, items=500, events=n)
    return [e for e in simulate(cfg, seed=seed) if isinstance(e, InteractionEvent)][:n]


def read_all(settings: Settings, topic: str, expect: int) -> list:
    """Every record of ``topic`` from the start (waits for ``expect``, then 1 s more)."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: list = []
    idle = 0
    while idle < 3:
        got = consumer.poll(timeout_ms=500)
        records = [r for rs in got.values() for r in rs]
        out.extend(records)
        idle = idle + 1 if not records and len(out) >= expect else 0
    consumer.close()
    return out


def test_due_known_answers() -> None:
    assert [due(t, 1000.0, 10) for t in (-0.001, 0.0, 0.0009, 0.001, 0.0049, 0.5)] == [
        0, 1, 1, 2, 5, 10,
    ]  # fmt: skip
    assert due(10.0, 3000.0, 7) == 7  # never past the end


def test_counts_per_window_drops_the_partial_last_window() -> None:
    assert counts_per_window([0, 3, 9, 10, 12, 25], 10) == [3, 2]
    assert counts_per_window([], 10) == []
    assert counts_per_window([5, 5], 10) == []


def test_report_figures_known_answer() -> None:
    r = SendReport([0, 250, 500], [Placed(0, 0)] * 3, 4.0, 2.0, 5, 0.003, 0.6, 1.5)
    assert r.figures() == {
        "load_offered_rate": 4.0,
        "load_sent_events_per_s": 4.0,  # 2 events after the first in 500 ms
        "load_cpu_ms_per_event": 1.0,
        "load_cores": 0.005,
        "load_max_behind_schedule_ms": 1.5,
        "load_tick_ms": 2.0,
        "load_linger_ms": 5,
    }


def test_reached_rate_counts_until_the_last_event_is_reflected() -> None:
    sent = [("a", 1000), ("b", 1500), ("a", 1990)]
    assert stream_bench.reached_rate(sent, {"a": 1990, "b": 1500}, {"a": 10, "b": 5}) == 3.0
    assert math.isnan(stream_bench.reached_rate(sent, {"a": 1990}, {}))  # nothing reflected
    # b's last event never reflected: the load's end was not reached, so no rate
    assert math.isnan(stream_bench.reached_rate(sent, {"a": 1990, "b": 1500}, {"a": 10}))


def test_paced_sender_lands_every_event_once_stamped_and_evenly(settings: Settings) -> None:
    topic = f"{settings.topic_prefix}.load"
    ensure_topics(kafka_of(settings), [topic])
    rate, n = 2000.0, 3000  # 1.5 s of sending
    evs = events(n)
    gen = LoadGenerator(Plan(settings.kafka_bootstrap, topic, evs, rate, linger_ms=5))
    gen.start()
    report = gen.run()

    records = read_all(settings, topic, n)
    values = [orjson.loads(r.value) for r in records]
    # Every event exactly once, with the ts the generator reported, under its user's key.
    assert Counter(v["event_id"] for v in values) == Counter(e.event_id for e in evs)
    by_id = {v["event_id"]: (v, r) for v, r in zip(values, records, strict=True)}
    for ev, ts, placed in zip(evs, report.ts, report.placed, strict=True):
        value, record = by_id[ev.event_id]
        assert value["ts"] == ts and value["item_id"] == ev.item_id
        assert record.key == event_key(ev.user_id)
        assert (record.partition, record.offset) == placed
    # Stamped in send order, and spread evenly: 100 ms windows hold rate/10 events each,
    # give or take the scheduler on a shared host; no window near empty or doubled.
    assert report.ts == sorted(report.ts)
    counts = counts_per_window(report.ts, 100)
    assert len(counts) >= 13
    assert abs(statistics.median(counts) - rate / 10) <= 0.1 * rate / 10
    assert sum(1 for c in counts if 0.5 * rate / 10 <= c <= 1.5 * rate / 10) >= 0.9 * len(counts)
    assert abs(report.sent_events_per_s - rate) <= 0.05 * rate
    figures = report.figures()
    assert figures["load_offered_rate"] == rate and figures["load_cpu_ms_per_event"] > 0
    # Each event's broker acknowledgement, as the producer saw it: after its send stamp.
    assert len(report.acked_ms) == n
    assert all(
        ts <= acked < ts + 60_000 for ts, acked in zip(report.ts, report.acked_ms, strict=True)
    )


def test_low_rate_still_one_event_per_due_time(settings: Settings) -> None:
    """At 50/s (20 ms apart, past the 2 ms tick) each 100 ms window holds 5 events."""
    topic = f"{settings.topic_prefix}.slow"
    ensure_topics(kafka_of(settings), [topic])
    evs = events(60, seed=5)
    landed = asyncio.run(stream_bench.paced_records(settings, topic, evs, 50.0))
    assert [e for e, _, _ in landed] == evs
    ts = [t for _, t, _ in landed]
    gaps = [b - a for a, b in itertools.pairwise(ts)]
    assert statistics.median(gaps) in range(18, 23)
    counts = counts_per_window(ts, 100)
    assert sum(1 for c in counts if 4 <= c <= 6) >= 0.8 * len(counts)
    assert len(read_all(settings, topic, len(evs))) == len(evs)
