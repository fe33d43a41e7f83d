"""GET /metrics: the runtime's Prometheus registry plus the API's own series.

The API owns HTTP requests by route, method and status, request latency by route, and
state-derived gauges computed at scrape time from the local replica (jobs by queue and state,
registered workers). Raft and disk series (term, role, commit/applied, proposals, fsync latency,
peer queues, expirations) belong to the runtime's registry (`runtime.metrics_registry`); when a
runtime has none, the node's status is exported here so a scrape is never empty. One registry
per app (not the global one), so several nodes in one test process do not collide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .api_runtime import RuntimeLike, status_doc

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StateCollector(Collector):
    def __init__(self, runtime: RuntimeLike, with_status: bool) -> None:
        self.runtime = runtime
        self.with_status = with_status

    def collect(self) -> Iterator[Any]:
        state = self.runtime.state
        jobs = GaugeMetricFamily(
            "raftsched_jobs", "Jobs on this replica by queue and state", labels=["queue", "state"]
        )
        for queue, counts in state.queue_counts().items():
            for name, count in sorted(counts.items()):
                jobs.add_metric([queue, name], count)
        yield jobs
        yield GaugeMetricFamily(
            "raftsched_workers", "Registered workers on this replica", value=len(state.workers)
        )
        if self.with_status:
            st = status_doc(self.runtime)
            for key in ("term", "commit_index", "applied_index"):
                if isinstance(st.get(key), int):
                    yield GaugeMetricFamily(f"raftsched_raft_{key}", f"Raft {key}", value=st[key])
            role = GaugeMetricFamily(
                "raftsched_raft_role", "1 for this node's role", labels=["role"]
            )
            role.add_metric([str(st.get("role", "unknown"))], 1)
            yield role


class ApiMetrics:
    def __init__(self, runtime: RuntimeLike) -> None:
        self.runtime = runtime
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "raftsched_http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "raftsched_http_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
            buckets=(
                0.0005,
                0.001,
                0.002,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                10.0,
                60.0,
            ),
        )
        self.runtime_registry = getattr(runtime, "metrics_registry", None)
        self.registry.register(_StateCollector(runtime, self.runtime_registry is None))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        text = generate_latest(self.registry)
        if isinstance(self.runtime_registry, CollectorRegistry):
            text = generate_latest(self.runtime_registry) + text
        return text
