"""The stream bench's ``--out`` JSON carries the names issue 19 fixed, with right values."""

from __future__ import annotations

import math

from bench.load_generator import Placed, SendReport
from bench.stream_bench import curve_point, missing_fields, settle, work_figures

STAGE = 'freshet_stage_seconds_{}{{stage="{}"}}'


def scrape(t: float, worker: float, kafka: float | None, decode_s: float, n: int) -> dict:
    out = {
        "wall_seconds": t,
        "worker_cpu_seconds": worker,
        "redis_cpu_seconds": 1.0,
        STAGE.format("sum", "decode"): decode_s,
        STAGE.format("count", "decode"): n,
    }
    if kafka is not None:
        out["kafka_cpu_seconds"] = kafka
    return out


def test_work_figures_known_answers() -> None:
    before = scrape(100.0, 10.0, 5.0, 0.5, 100)
    after = scrape(104.0, 12.0, 6.0, 0.9, 300)
    w = work_figures(before, after, events=1000)
    assert w["worker_cpu_ms_per_event"] == 2.0  # 2 CPU seconds over 1,000 events
    assert w["cores_worker"] == 0.5 and w["cores_kafka"] == 0.25 and w["cores_redis"] == 0.0
    assert w["stage_ms_per_micro_batch"]["decode"] == 2.0  # 0.4 s over 200 batches
    assert math.isnan(w["stage_ms_per_micro_batch"]["score"])  # never observed


def test_kernel_cpu_and_scrapes_inside_the_window() -> None:
    before = {**scrape(0.0, 1.0, 0.0, 0, 0), "worker_kernel_cpu_seconds": 0.5}
    after = {**scrape(10.0, 2.0, 0.0, 0, 0), "worker_kernel_cpu_seconds": 0.9}
    before["worker_scrapes"], after["worker_scrapes"] = 3.0, 7.0
    w = work_figures(before, after, events=100)
    assert w["worker_kernel_cpu_ms_per_event"] == 4.0  # 0.4 s of 1 s over 100 events
    assert w["worker_scrapes"] == 4.0  # the closing scrape and the three in between
    point = curve_point({**paced(), **w}, 100)
    assert point["worker_kernel_cpu_ms_per_event"] == 4.0 and point["worker_scrapes"] == 4.0


def test_kernel_cpu_is_part_of_the_process_cpu() -> None:
    import os

    from bench.stream_bench import cpu_seconds_of

    for _ in range(200):  # a little of both: system calls and arithmetic
        os.stat("/")
        sum(range(10_000))
    total, kernel = cpu_seconds_of(os.getpid()), cpu_seconds_of(os.getpid(), kernel_only=True)
    assert 0.0 <= kernel <= total


def test_unwatched_kafka_is_nan_not_missing() -> None:
    w = work_figures(scrape(0.0, 0.0, None, 0, 0), scrape(1.0, 0.1, None, 0, 0), events=10)
    assert "cores_kafka" in w and math.isnan(w["cores_kafka"])


def paced() -> dict:
    w = work_figures(scrape(0.0, 0.0, 0.0, 0, 0), scrape(2.0, 0.2, 0.1, 0, 0), events=20)
    return {
        "offered_rate": 10.0,
        "sustained_events_per_s": 9.9,
        "reached_events_per_s": 9.8,
        **SendReport(
            [0, 100], [Placed(0, 0), Placed(1, 0)], 10.0, 2.0, 5, 0.01, 0.2, 0.5
        ).figures(),
        "freshness_ms_all_events": {"p50": 12, "p99": 40, "p99.9": 41, "n": 20},
        "freshness_ms_leading_events": {"p50": 10, "p99": 30, "p99.9": 31, "n": 12},
        "freshness_ms_deferred_events": {"p50": 15, "p99": 40, "p99.9": 41, "n": 8},
        "events_never_reflected": 0,
        "latency_ms_published_minus_event": {"p50": 11, "p99": 39, "p99.9": 40, "n": 19},
        "lists_seen": 19,
        **w,
    }


def test_a_complete_report_lacks_nothing_and_each_gap_is_named() -> None:
    point = curve_point(paced(), events=20)
    assert point["cores_worker"] == 0.1 and point["cores_kafka"] == 0.05
    assert point["worker_cpu_ms_per_event"] == 10.0 and point["events"] == 20
    # The load generator's figures ride along: 1 event after the first in 100 ms, 10 ms
    # of CPU for 2 events over 0.2 s.
    assert point["reached_events_per_s"] == 9.8 and point["load_sent_events_per_s"] == 10.0
    assert point["load_cpu_ms_per_event"] == 5.0 and point["load_cores"] == 0.05
    assert point["load_max_behind_schedule_ms"] == 0.5
    # Freshness split by how the event was reflected rides along too.
    assert point["freshness_ms_leading_events"]["n"] == 12
    assert point["freshness_ms_deferred_events"]["n"] == 8
    assert point["events_never_reflected"] == 0
    saturated = {**paced(), "events_per_s": 900.0}
    report = {
        "idle_cores_worker": 0.01,
        "figures": {"paced_worker": paced(), "saturated_worker": saturated, "curve": [point]},
    }
    assert missing_fields(report) == []
    del report["idle_cores_worker"]
    del saturated["cores_kafka"]
    del point["freshness_ms_all_events"]["p99"]
    assert missing_fields(report) == [
        "saturated_worker.cores_kafka",
        "curve[0].freshness_ms_all_events.p99",
        "idle_cores_worker",
    ]


def test_lock_holds_known_answer() -> None:
    from bench.stream_bench import lock_holds

    key = 'freshet_lock_hold_seconds_{}{{duty="catalog"{}}}'
    before = {key.format("count", ""): 1.0, key.format("sum", ""): 0.0005}
    after = {
        key.format("count", ""): 5.0,
        key.format("sum", ""): 0.0105,  # 10 ms over the 4 new holds
        key.format("bucket", ',le="0.001"'): 2.0,  # 1 of the 4 new ones within 1 ms
    }
    before[key.format("bucket", ',le="0.001"')] = 1.0
    holds = lock_holds(before, after)
    assert holds["catalog"] == {"holds": 4.0, "mean_ms": 2.5, "over_1ms": 3.0}
    assert holds["trending"]["holds"] == 0 and math.isnan(holds["trending"]["mean_ms"])


class _Warming:
    """A worker whose CPU rises by ``steps[i]`` seconds over its i-th second, then stops."""

    def __init__(self, steps: list[float]) -> None:
        self.steps = steps
        self.used = 0.0
        self.reads = 0

    def cpu_seconds(self) -> float:
        if self.reads and self.steps:
            self.used += self.steps.pop(0)
        self.reads += 1
        return self.used


def test_the_idle_window_waits_out_the_warm_up() -> None:
    # a warm-up at 0.5 and 0.2 cores for two seconds, then 0.01: two quiet seconds follow it
    worker = _Warming([0.5, 0.2, 0.01, 0.01, 0.01])
    waited = settle(worker, timeout_s=30.0)  # type: ignore[arg-type]
    assert worker.reads == 5  # the first read, two busy seconds, two quiet ones
    assert 4.0 <= waited < 10.0
