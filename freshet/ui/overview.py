"""The live overview: worker metrics scraped now and then, turned into rates and shares.

A ``Sample`` is what one scrape of every worker's ``/metrics`` says, summed over the
workers; an ``OverviewHistory`` keeps the samples of the last minutes and makes each
new one a ``Point``: events/s, lists/s and the fallback shares over a short window,
event-to-publish quantiles from the histogram's bucket increments in that window
(as Prometheus' ``histogram_quantile`` does), and the lag and model as they are now.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Buckets = tuple[tuple[float, float], ...]  # (upper bound in seconds, cumulative count)


@dataclass(frozen=True, slots=True)
class Sample:
    """Counter totals and gauges of all workers at one moment (``at_s``, Unix seconds)."""

    at_s: float
    applied: float = 0.0
    published: float = 0.0
    dead_lettered: float = 0.0
    lists: dict[str, float] = field(default_factory=dict)
    latency: Buckets = ()
    lag: float | None = None
    model_versions: tuple[str, ...] = ()
    workers_up: int = 0
    workers: int = 0


def parse_metrics(text: str) -> Sample:
    """One worker's exposition as a ``Sample`` (time 0; ``merge`` sets it).

    Unknown families are ignored, so a newer worker with more metrics still parses.
    """
    applied = published = dead = 0.0
    lists: dict[str, float] = {}
    buckets: dict[float, float] = {}
    lag: float | None = None
    versions: list[str] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "freshet_events_total" and s.labels.get("outcome") == "applied":
                applied += s.value
            elif s.name == "freshet_lists_published_total":
                published += s.value
            elif s.name == "freshet_dead_letters_total":
                dead += s.value
            elif s.name == "freshet_lists_total":
                key = s.labels.get("strategy", "")
                lists[key] = lists.get(key, 0.0) + s.value
            elif s.name == "freshet_event_to_publish_seconds_bucket":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name == "freshet_consumer_lag":
                lag = (lag or 0.0) + s.value
            elif s.name == "freshet_model_info" and s.labels.get("version", "none") != "none":
                versions.append(s.labels["version"])
    return Sample(
        0.0,
        applied,
        published,
        dead,
        lists,
        tuple(sorted(buckets.items())),
        lag,
        tuple(versions),
        1,
        1,
    )


def merge(at_s: float, samples: Sequence[Sample | None]) -> Sample:
    """The sum of several workers' samples; ``None`` marks a worker that did not answer."""
    up = [s for s in samples if s is not None]
    lists: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for s in up:
        for k, v in s.lists.items():
            lists[k] = lists.get(k, 0.0) + v
        for le, n in s.latency:
            buckets[le] = buckets.get(le, 0.0) + n
    lags = [s.lag for s in up if s.lag is not None]
    return Sample(
        at_s,
        sum(s.applied for s in up),
        sum(s.published for s in up),
        sum(s.dead_lettered for s in up),
        lists,
        tuple(sorted(buckets.items())),
        sum(lags) if lags else None,
        tuple(sorted({v for s in up for v in s.model_versions})),
        len(up),
        len(samples),
    )


def quantile(q: float, buckets: Buckets) -> float | None:
    """The ``q`` quantile of cumulative histogram buckets, interpolated in its bucket.

    ``None`` when the buckets hold no observation; the largest finite bound when the
    quantile falls in the ``+Inf`` bucket.

    >>> quantile(0.5, ((0.1, 2.0), (0.2, 4.0), (math.inf, 4.0)))
    0.1
    >>> round(quantile(0.75, ((0.1, 2.0), (0.2, 4.0), (math.inf, 4.0))), 3)
    0.15
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    target = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, cum in buckets:
        if cum >= target and cum > below:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (target - below) / (cum - below)
        lower, below = le, cum
    return lower


def bucket_increase(old: Buckets, new: Buckets) -> Buckets:
    """``new`` minus ``old`` per bound (a worker restart's drop counts as zero)."""
    before = dict(old)
    return tuple((le, max(0.0, n - before.get(le, 0.0))) for le, n in new)


@dataclass(frozen=True, slots=True)
class Point:
    """What the overview shows for one moment."""

    at_s: float
    events_per_s: float | None
    lists_per_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    fallback_share: float | None
    cold_start_share: float | None
    lag: float | None
    applied_total: float
    published_total: float
    dead_lettered_total: float
    model_versions: tuple[str, ...]
    workers_up: int
    workers: int
    latency_top_ms: float | None = None  # quantiles at this bound mean "this or more"

    def to_dict(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in self.__slots__}


def _rate(new: float, old: float, seconds: float) -> float:
    return max(0.0, new - old) / seconds


def point_between(old: Sample | None, new: Sample) -> Point:
    """The rates and quantiles from ``old`` to ``new``; totals and gauges of ``new``.

    >>> a = Sample(100.0, applied=50, published=40, lists={"personalised": 30, "cold_start": 10})
    >>> b = Sample(110.0, applied=150, published=90, lists={"personalised": 70, "cold_start": 20})
    >>> p = point_between(a, b)
    >>> (p.events_per_s, p.lists_per_s, p.cold_start_share)
    (10.0, 5.0, 0.2)
    """
    rates: list[float | None] = [None, None]
    shares: list[float | None] = [None, None]
    p50 = p99 = None
    seconds = 0.0 if old is None else new.at_s - old.at_s
    if old is not None and seconds > 0:
        rates = [
            _rate(new.applied, old.applied, seconds),
            _rate(new.published, old.published, seconds),
        ]
        grown = {k: max(0.0, v - old.lists.get(k, 0.0)) for k, v in new.lists.items()}
        total = sum(grown.values())
        if total > 0:
            cold = grown.get("cold_start", 0.0)
            shares = [(cold + grown.get("model_free", 0.0)) / total, cold / total]
        window = bucket_increase(old.latency, new.latency)
        q50, q99 = quantile(0.5, window), quantile(0.99, window)
        p50 = None if q50 is None else q50 * 1000.0
        p99 = None if q99 is None else q99 * 1000.0
    return Point(
        new.at_s,
        rates[0],
        rates[1],
        p50,
        p99,
        shares[0],
        shares[1],
        new.lag,
        new.applied,
        new.published,
        new.dead_lettered,
        new.model_versions,
        new.workers_up,
        new.workers,
        max((le * 1000.0 for le, _ in new.latency if not math.isinf(le)), default=None),
    )


class OverviewHistory:
    """The samples of the last ``keep_s`` seconds and the points made of them.

    Each point's rates span the ``window_s`` before it (or all the history there is),
    so a chart of points is smooth without hiding a change for longer than the window.
    It also remembers since when each model version has been seen in service.
    """

    def __init__(self, window_s: float = 30.0, keep_s: float = 600.0) -> None:
        self.window_s = window_s
        self.keep_s = keep_s
        self._samples: deque[Sample] = deque()
        self._points: deque[Point] = deque()
        self.version_since: dict[str, float] = {}

    def add(self, sample: Sample) -> Point:
        # After a gap longer than the window (no page was open) there is no base: the
        # first point shows no rates rather than an average over the gap.
        base = next((s for s in self._samples if sample.at_s - s.at_s <= self.window_s), None)
        point = point_between(base, sample)
        self._samples.append(sample)
        self._points.append(point)
        while self._samples and sample.at_s - self._samples[0].at_s > self.keep_s:
            self._samples.popleft()
        while self._points and sample.at_s - self._points[0].at_s > self.keep_s:
            self._points.popleft()
        for version in sample.model_versions:
            self.version_since.setdefault(version, sample.at_s)
        return point

    def points(self) -> list[Point]:
        return list(self._points)


def reason_rows(counts: Iterable[tuple[str, int]]) -> list[dict[str, object]]:
    """Dead-letter counts per reason, most frequent first, as rows for the page."""
    return [{"reason": r, "count": n} for r, n in sorted(counts, key=lambda kv: (-kv[1], kv[0]))]
