"""Prometheus metrics of the read API, in a registry of its own per application."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

# Reads are one or two Redis round trips: resolve well below a millisecond.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class ApiMetrics:
    """Request counts by route and status, latency by route, lists by source.

    Routes are labelled by their pattern (``/v1/users/{user_id}/recommendations``),
    never by the raw path, so the number of series stays fixed whatever is requested.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "freshet_api_requests",
            "HTTP requests answered, by route pattern and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "freshet_api_request_seconds",
            "Time to answer an HTTP request, by route pattern.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.lists = Counter(
            "freshet_api_lists",
            "Lists served: stored (written by a worker) or cold_start (trending fallback).",
            ["source"],
            registry=self.registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)
