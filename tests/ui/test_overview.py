"""The overview's arithmetic on real worker expositions: known answers, no services."""

from __future__ import annotations

import doctest
import math

import pytest

import freshet.ui.overview
import freshet.ui.views
from freshet.ui.overview import (
    OverviewHistory,
    Sample,
    merge,
    parse_metrics,
    point_between,
    quantile,
    reason_rows,
)
from streams.runtime.metrics import WorkerMetrics


def _exposition(applied: int, published: int, latencies_s: list[float], lag: int) -> str:
    m = WorkerMetrics(clock=lambda: 0.0)
    m.events.labels("applied").inc(applied)
    m.events.labels("duplicate").inc(7)  # not counted as applied
    m.published.inc(published)
    for s in latencies_s:
        m.latency.observe(s)
    m.lists.labels("personalised").inc(30)
    m.lists.labels("cold_start").inc(6)
    m.lists.labels("model_free").inc(4)
    m.set_lag({("t.events", 0): lag, ("t.events", 1): 1})
    m.model.info({"version": "v3"})
    return m.exposition().decode()


def test_a_worker_exposition_parses_into_totals_buckets_lag_and_model() -> None:
    s = parse_metrics(_exposition(50, 40, [0.004] * 10, lag=5))
    assert (s.applied, s.published, s.lag, s.model_versions) == (50, 40, 6, ("v3",))
    assert s.lists == {"personalised": 30, "cold_start": 6, "model_free": 4}
    assert dict(s.latency)[0.005] == 10 and dict(s.latency)[0.003] == 0
    assert s.latency[-1] == (math.inf, 10)


def test_a_worker_without_a_model_reports_none() -> None:
    assert parse_metrics(WorkerMetrics().exposition().decode()).model_versions == ()


def test_quantiles_interpolate_inside_the_bucket_like_prometheus() -> None:
    # 100 observations between 3 and 5 ms: the median is placed halfway, at 4 ms.
    buckets = ((0.003, 0.0), (0.005, 100.0), (math.inf, 100.0))
    assert quantile(0.5, buckets) == pytest.approx(0.004)
    assert quantile(0.99, buckets) == pytest.approx(0.00498)
    assert quantile(0.5, ((0.1, 0.0), (math.inf, 0.0))) is None
    # Everything above the last finite bound: the bound is the best answer there is.
    assert quantile(0.5, ((0.1, 0.0), (math.inf, 5.0))) == 0.1


def test_rates_and_quantiles_cover_only_the_window() -> None:
    old = parse_metrics(_exposition(100, 80, [2.0] * 50, lag=0))
    new = parse_metrics(_exposition(400, 230, [2.0] * 50 + [0.004] * 100, lag=0))
    p = point_between(
        Sample(10.0, old.applied, old.published, latency=old.latency, lists=old.lists),
        Sample(20.0, new.applied, new.published, latency=new.latency, lists=new.lists),
    )
    assert (p.events_per_s, p.lists_per_s) == (30.0, 15.0)
    # The 50 slow lists came before the window, so they do not move the quantiles.
    assert p.p50_ms == pytest.approx(4.0) and p.p99_ms == pytest.approx(4.98)
    assert p.fallback_share is None  # no list of any strategy in the window
    assert p.latency_top_ms == 5000.0  # the largest finite bucket of the worker's histogram


def test_a_restarted_worker_gives_no_negative_rate() -> None:
    p = point_between(Sample(0.0, applied=1000), Sample(5.0, applied=20))
    assert p.events_per_s == 0.0


def test_workers_are_summed_and_a_silent_one_is_counted_as_down() -> None:
    a = parse_metrics(_exposition(10, 5, [0.01], lag=2))
    b = parse_metrics(_exposition(20, 6, [0.01, 0.02], lag=3))
    s = merge(99.0, [a, None, b])
    assert (s.applied, s.published, s.lag, s.workers_up, s.workers) == (30, 11, 7, 2, 3)
    assert s.lists["cold_start"] == 12 and s.latency[-1] == (math.inf, 3)
    assert merge(1.0, [None]).lag is None


def test_history_rates_span_the_window_and_remember_model_versions() -> None:
    h = OverviewHistory(window_s=30.0, keep_s=60.0)
    for t in range(0, 100):
        version = ("v1",) if t < 50 else ("v2",)
        p = h.add(Sample(float(t), applied=10.0 * t, model_versions=version))
    assert p.events_per_s == pytest.approx(10.0)
    assert h.version_since == {"v1": 0.0, "v2": 50.0}
    points = h.points()
    assert points[0].at_s >= 99 - 60 and points[-1].at_s == 99
    # A pause in the flow shows within the window: 30 s back, 700 were applied.
    assert h.add(Sample(100.0, applied=850.0)).events_per_s == pytest.approx(5.0)
    # After an hour with no page open, no rate is made up from the gap.
    assert h.add(Sample(3700.0, applied=99_999.0)).events_per_s is None
    assert h.add(Sample(3702.0, applied=100_019.0)).events_per_s == pytest.approx(10.0)


def test_reason_rows_most_frequent_first() -> None:
    rows = reason_rows([("invalid_id", 2), ("invalid_json", 5), ("too_large", 2)])
    assert [r["reason"] for r in rows] == ["invalid_json", "invalid_id", "too_large"]


@pytest.mark.parametrize("module", [freshet.ui.overview, freshet.ui.views])
def test_docstring_examples_hold(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
